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

-- What a VM is: "qemu" (a QEMU with the image's kernel) or "local" (the image's agent as PID 1
-- of namespaces on the host, docs/local.md). --vmm gives the run's default, provium:vmm(v) the
-- file's, provium:vm's {vmm = v} one VM's.
local VMMS = { qemu = true, ["local"] = true }
local file_vmm

local function check_vmm(v, where)
    if v ~= nil and not VMMS[v] then
        error(where .. ": vmm must be \"qemu\" or \"local\", got " .. P.show(v), 3)
    end
    return v
end

-- provium:vmm() -> the file's default; provium:vmm(v) sets it for the VMs made after.
function provium:vmm(v)
    if self ~= provium then error("provium:vmm must be called with ':'", 2) end
    file_vmm = check_vmm(v, "provium:vmm") or file_vmm
    return file_vmm or internal.default_vmm()
end

-- provium:vm(name, image?, opts?): opts.vmm ("qemu" or "local") for this VM alone.
function provium:vm(name, image, opts)
    if self ~= provium then error("provium:vm must be called with ':'", 2) end
    if type(name) ~= "string" then
        error("bad argument #1 to 'vm' (VM name expected, got " .. type(name) .. ")", 2)
    end
    if type(image) == "table" and opts == nil then image, opts = nil, image end
    if image ~= nil and type(image) ~= "string" then
        error("bad argument #2 to 'vm' (image name expected, got " .. type(image) .. ")", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad argument #3 to 'vm' (options table expected, got " .. type(opts) .. ")", 2)
    end
    for k in pairs(opts or {}) do
        if k ~= "vmm" then error("provium:vm: unknown option '" .. tostring(k) .. "' (vmm)", 2) end
    end
    local vmm = check_vmm(opts and opts.vmm, "provium:vm") or provium:vmm()
    local ok, vm = pcall(internal.vm_new, name, vmm)
    if not ok then error(vm, 2) end
    P.vm_state(vm).image = image or "default"
    internal.vm_list[#internal.vm_list + 1] = vm
    return vm
end
internal.vm_list = {}
