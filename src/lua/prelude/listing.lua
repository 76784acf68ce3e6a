-- listing.lua: provium list runs a file's top level to learn its tests and its claim, and
-- nothing may reach a host or a guest. internal.enter_listing() swaps what makes VMs,
-- bridges, captures, disks and fixtures for functions that return a stand-in: every field of it, and
-- every call on it, is the stand-in again, so a top level that boots and prepares a VM runs
-- on to the tests it declares, and nothing is booted.
local P = ...
local provium, internal = P.provium, P.internal

local stand_in = {}
local function same() return stand_in end
setmetatable(stand_in, {
    __index = same, __call = same, __newindex = function() end,
    __concat = same, __add = same, __sub = same, __mul = same, __div = same, __mod = same,
    __unm = same, __idiv = same, __pow = same,
    __len = function() return 0 end,
    __lt = function() return false end, __le = function() return false end,
    __close = function() end,
    __tostring = function() return "(not made: provium list)" end,
})

local makers = { "vm", "bridge", "capture", "disk", "vm_fixture", "lab_fixture" }

function internal.enter_listing()
    for _, name in ipairs(makers) do
        local who = "provium:" .. name
        provium[name] = function(self)
            if self ~= provium then error(who .. " must be called with ':'", 2) end
            return stand_in
        end
    end
end
