-- provium.lua: the provium object's VMs (each with one record of its Lua-side state), and parallel.
local P = ...
local provium, internal = P.provium, P.internal

-- A VM's Lua-side state, all in one record: image (the name it boots), ram (a fixture
-- builder's RAM file in the cache), links (its cards on bridges, in attach order), file_start
-- (its snapshot for provium.reset_between_tests).
local records = setmetatable({}, { __mode = "k" })
function P.vm_state(vm)
    local rec = records[vm]
    if not rec then
        rec = { links = {} }
        records[vm] = rec
    end
    return rec
end

-- provium:parallel(fn, ...) runs the functions at once, each in its own coroutine, and returns
-- when all have. The first error fails the call with that branch's own message and location;
-- the other branches are stopped (their guest operations cancelled).
function provium:parallel(...)
    if self ~= provium then error("provium:parallel must be called with ':'", 2) end
    for i = 1, select("#", ...) do
        local f = select(i, ...)
        if type(f) ~= "function" then
            error("bad argument #" .. i .. " to 'parallel' (function expected, got " .. type(f) .. ")", 2)
        end
    end
    local ok, err = internal.parallel(...)
    if not ok then error(err, 0) end
end

-- provium:claim{memory = "2G", cpus = 4}: what the file needs of the run's resource pool, at
-- its top level before its first test; the dispatcher starts it when that fits.
function provium:claim(opts)
    if self ~= provium then error("provium:claim must be called with ':'", 2) end
    if type(opts) ~= "table" then
        error("bad argument #1 to 'claim' (table expected, got " .. type(opts) .. ")", 2)
    end
    local ok, err = pcall(internal.claim, opts)
    if not ok then error(err, 2) end
end

function provium:vm(name, image)
    if self ~= provium then error("provium:vm must be called with ':'", 2) end
    if type(name) ~= "string" then
        error("bad argument #1 to 'vm' (VM name expected, got " .. type(name) .. ")", 2)
    end
    if image ~= nil and type(image) ~= "string" then
        error("bad argument #2 to 'vm' (image name expected, got " .. type(image) .. ")", 2)
    end
    local ok, vm = pcall(internal.vm_new, name)
    if not ok then error(vm, 2) end
    P.vm_state(vm).image = image or "default"
    internal.vm_list[#internal.vm_list + 1] = vm
    return vm
end
internal.vm_list = {}
