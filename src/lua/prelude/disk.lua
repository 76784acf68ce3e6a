-- disk.lua: disks. provium:disk(name, opts) makes one; vm:attach_disk and vm:detach_disk plug
-- it in (on the command line before boot, hot-plugged after); the host reads and writes its
-- sectors; faults (I/O errors, slowness) come and go at run time, each with a handle; in
-- power-loss mode a VM that dies loses what it had not flushed.
local P = ...
local provium, internal, VM = P.provium, P.internal, P.VM
local show, raise, call = P.show, P.raise, P.call

local Disk = internal.Disk
local disks = {} -- name -> Disk, for "a disk of that name exists"
local every = setmetatable({}, { __mode = "k" }) -- every disk of the file, fixture clones' too

-- After each test, each fault's hits so far (disk.fault_hit), for the faults still in effect.
P.after_test[#P.after_test + 1] = function()
    for d in pairs(every) do d:_report_hits() end
end
local SECTOR = 512

local attached_to = setmetatable({}, { __mode = "k" }) -- Disk -> the VM it is attached to
local disks_of = setmetatable({}, { __mode = "k" })    -- VM -> {name -> Disk}

local function is_disk(v)
    local mt = type(v) == "userdata" and getmetatable(v)
    return mt and mt.__index == Disk
end

local function check_disk(self, what)
    if not is_disk(self) then error("disk:" .. what .. " must be called with ':' on a disk", 3) end
end

local function opt_int(who, opts, key, min, default)
    local v = opts[key]
    if v == nil then return default end
    if math.type(v) ~= "integer" or v < min then
        raise(string.format("%s: %s must be an integer >= %d, got %s", who, key, min, show(v)))
    end
    return v
end

local function check_options(who, opts, known)
    if opts == nil then return {} end
    if type(opts) ~= "table" then raise(who .. ": options table expected, got " .. show(opts)) end
    for k in pairs(opts) do
        if not known[k] then
            local names = {}
            for n in pairs(known) do names[#names + 1] = n end
            table.sort(names)
            raise(string.format("%s: unknown option %s (%s)", who, show(k), table.concat(names, ", ")))
        end
    end
    return opts
end

-- "64M", "1G", "512K" or a number of MiB -> bytes
local UNITS = { K = 1024, M = 1024 ^ 2, G = 1024 ^ 3, T = 1024 ^ 4 }
local function size_bytes(who, v)
    if math.type(v) == "integer" and v > 0 then return v * 1024 * 1024 end
    local n, unit = tostring(v):match("^(%d+)([KMGT]?)i?B?$")
    if type(v) == "string" and n and tonumber(n) > 0 then
        return math.tointeger(tonumber(n) * (UNITS[unit] or 1024 * 1024))
    end
    raise(who .. ": size must be like \"64M\", \"1G\", \"512K\" or a number of MiB, got " .. show(v))
end

-- provium:disk(name, {size = "64M"} | {from = "path/to/raw.img" | other_disk}, rng_seed = n)
function provium:disk(name, opts)
    if self ~= provium then error("provium:disk must be called with ':'", 2) end
    if type(name) ~= "string" then
        error("bad argument #1 to 'disk' (disk name expected, got " .. show(name) .. ")", 2)
    end
    local who = "disk " .. name
    opts = check_options(who, opts, { size = true, from = true, rng_seed = true })
    if disks[name] then raise(who .. ": a disk of that name exists in this file") end
    local from = opts.from
    local from_path, from_disk
    if type(from) == "string" then
        from_path = from
    elseif is_disk(from) then
        from_disk = from
    elseif from ~= nil then
        raise(who .. ": from must be an image's path or a disk, got " .. show(from))
    end
    if opts.size == nil and not from then raise(who .. ": give a size (size = \"64M\") or from") end
    local size = opts.size ~= nil and size_bytes(who, opts.size) or 0
    local seed = opts.rng_seed
    if seed ~= nil and math.type(seed) ~= "integer" then
        raise(who .. ": rng_seed must be an integer, got " .. show(seed))
    end
    if not seed then -- the same choices in every run with the run's seed (seed.lua)
        seed = P.derived_seed("disk", name)
    end
    local d, err = internal.disk_new(name, size, from_path, from_disk, seed)
    if not d then raise(err) end
    disks[name] = d
    every[d] = true
    return d
end

function Disk:sector_size() return SECTOR end

-- disk:read_sectors(lba, count) -> count * 512 bytes: every write the guest's QEMU has sent
-- (flushed or not); not what the guest still holds in its page cache.
function Disk:read_sectors(lba, count)
    check_disk(self, "read_sectors")
    return call("read_sectors", self._read, self, lba, count)
end

-- disk:write_sectors(lba, data): #data a multiple of 512, durable at once. A guest that has
-- those sectors in its page cache keeps reading its copy until it drops it.
function Disk:write_sectors(lba, data)
    check_disk(self, "write_sectors")
    call("write_sectors", self._write, self, lba, data)
end

---------------------------------------------------------------------------------------------
-- faults

local Fault = {}
P.api.Fault = Fault
Fault.__index = Fault
function Fault:undo() self.disk:_undo(self.id) end
function Fault:hits() return self.disk:_hits(self.id) end
Fault.__tostring = function(f) return string.format("disk %s: %s fault %d", f.disk:name(), f.kind, f.id) end

local function eio(kind)
    return function(self, opts)
        check_disk(self, kind)
        local who = "disk " .. self:name() .. ": " .. kind
        opts = check_options(who, opts, { lba = true, count = true, errno = true, times = true,
                                          probability = true })
        local lba = opt_int(who, opts, "lba", 0, 0)
        local count = opt_int(who, opts, "count", 1, opts.lba and 1 or 0)
        local errno_name = opts.errno or "EIO"
        local e = type(errno_name) == "string" and internal.fault_errno(errno_name)
        if not e then
            raise(who .. ": errno must be one of EIO, ENOSPC, EPERM, ENOMEM, EINVAL, EOVERFLOW, " ..
                  "ENOTSUP (what NBD carries), got " .. show(errno_name))
        end
        local times = opt_int(who, opts, "times", 1, -1)
        local p = opts.probability or 1
        if type(p) ~= "number" or not (p > 0 and p <= 1) then
            raise(who .. ": probability must be a number in (0, 1], got " .. show(p))
        end
        local id, err = self:_fault(kind, lba, count, e, times, p, 0, 0, 0)
        if not id then raise(err) end
        return setmetatable({ disk = self, id = id, kind = kind }, Fault)
    end
end

-- disk:eio_read{lba =, count =, errno = "EIO", times = n, probability = p} -> fault handle
Disk.eio_read = eio("eio_read")
-- disk:eio_write{...}: writes, write-zeroes, trims and (with no range) flushes
Disk.eio_write = eio("eio_write")

local OPS = { read = 1, write = 2, all = 3 }

-- disk:slow{ms =, jitter_ms = 0, ops = "read" | "write" | "all", lba =, count =} -> handle
function Disk:slow(opts)
    check_disk(self, "slow")
    local who = "disk " .. self:name() .. ": slow"
    if type(opts) ~= "table" then raise(who .. ": options table expected ({ms = 50}), got " .. show(opts)) end
    check_options(who, opts, { ms = true, jitter_ms = true, ops = true, lba = true, count = true })
    local ms = opt_int(who, opts, "ms", 0, nil)
    if not ms then raise(who .. ": ms is required") end
    local jitter = opt_int(who, opts, "jitter_ms", 0, 0)
    local ops = OPS[opts.ops or "all"]
    if not ops then raise(who .. ": ops must be \"read\", \"write\" or \"all\", got " .. show(opts.ops)) end
    local lba = opt_int(who, opts, "lba", 0, 0)
    local count = opt_int(who, opts, "count", 1, opts.lba and 1 or 0)
    local id, err = self:_fault("slow", lba, count, 0, -1, 1, ms, jitter, ops)
    if not id then raise(err) end
    return setmetatable({ disk = self, id = id, kind = "slow" }, Fault)
end

-- disk:heal(): every fault undone
function Disk:heal()
    check_disk(self, "heal")
    self:_undo(0)
end

-- disk:power_loss_mode(on, {drop = 1 | p}): while on, a VM that dies without closing the disk
-- (vm:kill(), a crash) loses the writes it had not flushed: all (drop = 1), or each with
-- probability p, drawn from the disk's rng_seed. Off flushes what waits.
function Disk:power_loss_mode(on, opts)
    check_disk(self, "power_loss_mode")
    local who = "disk " .. self:name() .. ": power_loss_mode"
    if type(on) ~= "boolean" then raise(who .. ": true or false expected, got " .. show(on)) end
    opts = check_options(who, opts, { drop = true })
    local drop = opts.drop == nil and 1 or opts.drop
    if type(drop) ~= "number" or not (drop > 0 and drop <= 1) then
        raise(who .. ": drop must be a number in (0, 1], got " .. show(drop))
    end
    local ok, err = self:_power_loss(on, drop)
    if not ok then raise(err) end
end

-- disk:last_power_loss() -> {dropped = n, kept = n}: the writes of the last power loss
function Disk:last_power_loss()
    local dropped, kept = self:_last_loss()
    return { dropped = dropped, kept = kept }
end

---------------------------------------------------------------------------------------------
-- VMs

-- disk:guest_path(vm?) -> "/dev/vdX": the device whose serial is the disk's name, in vm (the
-- VM it is attached to by default). A disk attached to vm that its kernel has not probed yet
-- (just after boot or a hot-plug) is waited for, up to 20 s.
local function find_in_guest(disk, vm)
    local r = vm:run({ "sh", "-c",
        'for f in /sys/block/*/serial; do [ "$(cat "$f")" = "$1" ] && echo "${f%/serial}"; done; true',
        "sh", disk:name() })
    local dev = r.stdout:match("/sys/block/([%w]+)")
    return dev and "/dev/" .. dev
end

function Disk:guest_path(vm)
    check_disk(self, "guest_path")
    vm = vm or attached_to[self]
    if vm == nil then raise("disk " .. self:name() .. ": guest_path: the disk is not attached") end
    local deadline = internal.now() + 20
    while true do
        local path = find_in_guest(self, vm)
        if path then return path end
        if attached_to[self] ~= vm or internal.now() > deadline then
            raise("disk " .. self:name() .. ": guest_path: vm " .. vm:name() .. " has no disk of that serial" ..
                  (attached_to[self] == vm and " (attached, but not seen by the guest within 20 s)" or ""))
        end
        internal.sleep(0.05)
    end
end

-- vm:attach_disk(disk, {plain = true}?): before boot on its command line; after boot
-- hot-plugged, and this returns once the guest sees the device. plain: QEMU opens the disk's
-- file itself, without the NBD server (no faults, no power loss, no base image): the floor
-- the disk bench compares with.
function VM:attach_disk(disk, opts)
    if not is_disk(disk) then
        raise("vm " .. self:name() .. ": attach_disk: a disk expected, got " .. show(disk))
    end
    opts = check_options("vm " .. self:name() .. ": attach_disk", opts, { plain = true })
    local running = self:state() == "running"
    call("attach_disk", self._attach_disk, self, disk, opts.plain == true)
    attached_to[disk] = self
    disks_of[self] = disks_of[self] or {}
    disks_of[self][disk:name()] = disk
    if running then
        local ok, err = pcall(disk.guest_path, disk, self)
        if not ok then
            raise("vm " .. self:name() .. ": attach_disk " .. disk:name() .. ": " ..
                  tostring(err):gsub(P.PRELUDE_WHERE, ""))
        end
    end
end

-- vm:detach_disk(disk): unplugged (the guest lets it go first) or taken off the command line
function VM:detach_disk(disk)
    if not is_disk(disk) then
        raise("vm " .. self:name() .. ": detach_disk: a disk expected, got " .. show(disk))
    end
    call("detach_disk", self._detach_disk, self, disk)
    attached_to[disk] = nil
    disks_of[self][disk:name()] = nil
end

-- vm:disk(name) -> the disk of that name attached to the VM (a fixture clone's own, say)
function VM:disk(name)
    local d = disks_of[self] and disks_of[self][name]
    if not d then raise("vm " .. self:name() .. ": disk: no disk " .. show(name) .. " is attached") end
    return d
end

-- What a fixture keeps of a VM's disks: their names and sizes (their bytes are saved beside
-- the VM's state by the save itself: <state>.disk-<name>).
function P.disks_save_info(vm)
    local list = {}
    for name, d in pairs(disks_of[vm] or {}) do list[#list + 1] = { name = name, size = d:size() } end
    table.sort(list, function(a, b) return a.name < b.name end)
    return list
end

-- A fixture clone's disks: copy-on-write over the saved bytes in the cache (each clone its
-- own layer), attached before the clone's QEMU starts. Errors name what is wrong.
local nclones = 0
function P.disks_restore(vm, saved_disks, state)
    if saved_disks == nil then return end
    if type(saved_disks) ~= "table" then error("its disks are not a list", 0) end
    for i, rec in ipairs(saved_disks) do
        if type(rec) ~= "table" or type(rec.name) ~= "string" or math.type(rec.size) ~= "integer" then
            error("disk " .. i .. " of its record is not {name, size}", 0)
        end
        local path = state .. ".disk-" .. rec.name
        local f = io.open(path, "rb")
        local size = f and f:seek("end")
        if f then f:close() end
        if size ~= rec.size then
            error(string.format("disk %s: %s is %s bytes, its record says %d", rec.name, path,
                                tostring(size), rec.size), 0)
        end
        nclones = nclones + 1
        local d, err = internal.disk_new(rec.name, 0, path, nil, 0, rec.name .. "-clone" .. nclones)
        if not d then error(err, 0) end
        every[d] = true
        VM.attach_disk(vm, d)
    end
end
