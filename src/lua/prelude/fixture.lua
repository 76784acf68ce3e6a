-- fixture.lua: provium:vm_fixture and provium:lab_fixture: VM states built once, cached, restored.
-- Also what a saved VM's record holds and how it is read back (its image, its
-- network cards), in one place.
local P = ...
local provium, internal = P.provium, P.internal
local show, raise, vm_state, net = P.show, P.raise, P.vm_state, P.net

-- The shape of a saved VM's record (vm:_config() and its cards as a list): part of every key,
-- so that entries saved in another shape are never read as this one.
local RECORD_SHAPE = "vm record 3"

-- The text of fn (its lines in its file) and the values of its plain upvalues: a change to
-- either changes the fixture's key.
local function function_source(fn)
    local info = debug.getinfo(fn, "S")
    local text = info.source
    if text:sub(1, 1) == "@" then
        local lines, n = {}, 0
        local f = io.open(text:sub(2), "r")
        if f then
            for line in f:lines() do
                n = n + 1
                if n > info.lastlinedefined then break end
                if n >= info.linedefined then lines[#lines + 1] = line end
            end
            f:close()
        end
        text = table.concat(lines, "\n")
    end
    local ups = {}
    for i = 1, 255 do
        local name, v = debug.getupvalue(fn, i)
        if not name then break end
        local ty = type(v)
        if ty == "string" or ty == "number" or ty == "boolean" then
            ups[#ups + 1] = name .. "=" .. ty .. ":" .. tostring(v)
        end
    end
    return text .. "\0" .. table.concat(ups, "\0")
end

-- Options as text with sorted keys; the boot timeout does not shape the VM.
local function canonical(v, top)
    if type(v) ~= "table" then return type(v) .. ":" .. tostring(v) end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
        if not (top and k == "timeout") then
            parts[#parts + 1] = tostring(k) .. "=" .. canonical(v[k])
        end
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

-- The builder's view of a lab: lab:vm(name, image) makes a VM whose RAM lives in the cache.
local Lab = {}
P.api.Lab = Lab
Lab.__index = Lab

-- lab:bridge(name): a bridge saved with the lab; its VMs come back attached to it.
function Lab:bridge(name)
    local ok, b = pcall(provium.bridge, provium, name)
    if not ok then raise(string.format("fixture %s: %s", self.name, b)) end
    self.bridges[#self.bridges + 1] = b
    return b
end

function Lab:vm(name, image)
    if self.vms[name] then
        raise(string.format("fixture %s: the lab has a VM named '%s' already", self.name, name))
    end
    local ok, vm = pcall(provium.vm, provium, name, image)
    if not ok then raise(string.format("fixture %s: %s", self.name, vm)) end
    vm_state(vm).ram = self.build:ram_path(name)
    self.vms[name] = vm
    self.order[#self.order + 1] = name
    return vm
end

local function save_lab(lab)
    if #lab.order == 0 then error("the setup function made no VM", 0) end
    for _, name in ipairs(lab.order) do
        local vm = lab.vms[name]
        if vm:state() ~= "running" then
            error(string.format("vm %s is %s when the setup function returns; a fixture saves " ..
                                "running VMs", name, vm:state()), 0)
        end
    end
    for _, name in ipairs(lab.order) do
        local vm = lab.vms[name]
        local record = vm:_config()
        record.net = internal.net_save_info(vm, lab.bridges)
        record.disks = P.disks_save_info(vm)
        local saved, err = vm:_save(lab.build:state_path(name))
        if not saved then error({ save_failed = err }, 0) end
        lab.build:add_vm(name, record)
    end
end

-- Runs setup(lab) on fresh VMs, saves them into the build's staging directory and commits it.
-- A failure caches nothing and names the fixture and the failure's own location.
local function build_fixture(name, build, setup)
    local lab = setmetatable({ name = name, build = build, vms = {}, order = {}, bridges = {} }, Lab)
    local ok, err = pcall(setup, lab)
    if ok then ok, err = pcall(save_lab, lab) end
    for _, vmname in ipairs(lab.order) do internal.vm_release(lab.vms[vmname]) end
    for _, b in ipairs(lab.bridges) do internal.net_forget_bridge(b) end
    if not ok then
        local what = "setup failed"
        if type(err) == "table" and err.save_failed then what, err = "saving its VMs failed", err.save_failed end
        err = type(err) == "string" and err or show(err)
        build:abort(err)
        raise(string.format("fixture %s: %s: %s", name, what, err))
    end
    local entry, cerr = build:commit()
    if not entry then raise(cerr) end
    return entry
end

-- The cache entry for key: found, built here, or built by another file runner meanwhile.
local function image_key(image, opts)
    local key, err = internal.image_key(image, opts)
    if not key then error(err, 0) end
    return key
end

-- A saved VM's image must still be the image of that name. A lab's key cannot hold its images
-- (its setup names them), so every hit is checked: when one changed since (an edited recipe,
-- a new agent), that entry is passed over for one keyed by the images' current keys as well.
-- Returns that extra key material, or nil when the entry is current.
local function changed_images(entry)
    local current, changed = {}, false
    for _, saved in ipairs(entry.vms) do
        local config = saved.config
        local image = config.image or "default"
        local saved_key = config.image_key
        local key = image_key(image, { kernel = config.kernel, initrd = config.initrd })
        current[#current + 1] = saved.name .. "=" .. image .. "=" .. key
        if saved_key and saved_key ~= key then changed = true end
    end
    return changed and table.concat(current, ",") or nil
end

local function fixture_entry(name, key, setup)
    local passed_over = 0
    while true do
        local status, a = internal.fixture_open(name, key)
        if status == nil then raise(a) end
        if status == "build" then return build_fixture(name, a, setup) end
        if status == "hit" then
            local ok, changed = pcall(changed_images, a)
            if not ok then raise(string.format("fixture %s: %s", name, changed)) end
            if not changed then return a end
            passed_over = passed_over + 1
            if passed_over > 4 then
                raise(string.format("fixture %s: its images keep changing while it is restored", name))
            end
            key = internal.fixture_key(key .. "\0images\0" .. changed)
        else
            internal.sleep(0.05) -- "busy": another runner is building it
        end
    end
end

local function free_vm_name(name, vmm)
    for i = 1, 100 do
        local candidate = i == 1 and name or (name .. "-" .. i)
        local ok, vm = pcall(internal.vm_new, candidate, vmm)
        if ok then return vm, candidate end
    end
    raise("fixture: no free VM name for " .. name)
end

-- New VMs loading the entry's saved states (RAM mapped copy-on-write from the cache). Guest
-- clocks are set to the host's time (vm.c), unless the fixture was booted with initial_time.
local function restore_fixture(name, entry, timeout, pool)
    local vms, bridges_made = {}, {}
    for _, saved in ipairs(entry.vms) do
        local vm, vmname = free_vm_name(saved.name)
        vm_state(vm).image = "default"
        internal.vm_list[#internal.vm_list + 1] = vm
        local cards = saved.config.net
        if cards then
            local ok, err = pcall(internal.net_restore, vm, cards, bridges_made)
            if not ok then raise(string.format("fixture %s: vm %s: %s", name, vmname, err)) end
        end
        local dok, derr = pcall(P.disks_restore, vm, saved.config.disks, saved.state)
        if not dok then raise(string.format("fixture %s: vm %s: %s", name, vmname, derr)) end
        local ok, err = vm:_boot_saved(saved.state, saved.ram, saved.config, timeout, pool)
        if not ok then raise(string.format("fixture %s: restoring vm %s: %s", name, vmname, err)) end
        P.seed_hwrng(vm, saved.config.rng_seed)
        vms[saved.name] = vm
    end
    for bname, b in pairs(bridges_made) do vms[bname] = b end
    return vms
end

-- The key over what shapes the fixture; a failure (the image cannot be built, say) is raised
-- at the caller's line.
local function fixture_key(name, parts)
    local ok, res = pcall(parts)
    if not ok then
        raise(string.format("fixture %s: %s", name, (tostring(res):gsub(P.PRELUDE_WHERE, ""))))
    end
    -- the machine and its slots: a state saved with other devices must never be loaded
    return internal.fixture_key(RECORD_SHAPE .. "\0" .. internal.machine_layout() .. "\0" ..
                                table.concat(res, "\0"))
end

local function check_fixture_args(self, what, name, setup, opts)
    if self ~= provium then error("provium:" .. what .. " must be called with ':'", 3) end
    if type(name) ~= "string" or not name:match("^[%w_-]+$") or #name > 32 then
        error("bad argument #1 to '" .. what .. "' (fixture name of 1-32 characters A-Z a-z " ..
              "0-9 - _ expected, got " .. show(name) .. ")", 3)
    end
    if type(setup) ~= "function" then
        error("bad argument #2 to '" .. what .. "' (setup function expected, got " ..
              type(setup) .. ")", 3)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad argument #3 to '" .. what .. "' (options table expected, got " ..
              type(opts) .. ")", 3)
    end
end

-- Under --vmm local a fixture is its setup, run again each time on fresh local VMs: a local
-- VM has no RAM to save, and its start costs about what a restore does (docs/local.md).
local LocalLab = { bridge = Lab.bridge }
LocalLab.__index = LocalLab

function LocalLab:vm(name, image)
    if self.vms[name] then
        raise(string.format("fixture %s: the lab has a VM named '%s' already", self.name, name))
    end
    local vm = free_vm_name(name, "local")
    vm_state(vm).image = image or "default"
    internal.vm_list[#internal.vm_list + 1] = vm
    self.vms[name] = vm
    return vm
end

local function local_fixture(name, setup)
    local lab = setmetatable({ name = name, vms = {}, bridges = {} }, LocalLab)
    local ok, err = pcall(setup, lab)
    if ok and next(lab.vms) == nil then ok, err = false, "the setup function made no VM" end
    for vmname, vm in pairs(ok and lab.vms or {}) do
        if vm:state() ~= "running" then
            ok, err = false, string.format("vm %s is %s when the setup function returns; a " ..
                                           "fixture saves running VMs", vmname, vm:state())
        end
        -- the check a saved lab's cards get: on the lab's own bridges only
        if ok then ok, err = pcall(internal.net_save_info, vm, lab.bridges) end
    end
    if not ok then
        err = type(err) == "string" and err or show(err)
        raise(string.format("fixture %s: setup failed: %s", name, err))
    end
    for _, b in ipairs(lab.bridges) do lab.vms[net[b].name] = b end
    return lab.vms
end

-- provium:vm_fixture(name, setup, opts?) -> a running VM restored from the fixture, which is
-- built first (boot with opts, then setup(vm)) when the cache has no entry for its key.
function provium:vm_fixture(name, setup, opts)
    check_fixture_args(self, "vm_fixture", name, setup, opts)
    local boot_opts, image, pool = {}, "default", nil
    for k, v in pairs(opts or {}) do
        if k == "image" then image = v elseif k == "pool" then pool = v else boot_opts[k] = v end
    end
    -- spares loaded ahead for the next clones (vm_spare.c, at most VM_MAX_SPARES): not in the key
    if pool ~= nil and (math.type(pool) ~= "integer" or pool < 0 or pool > 8) then
        error("bad option 'pool' to 'vm_fixture' (spares kept for the next clones: an integer " ..
              "0-8 expected, got " .. show(pool) .. ")", 2)
    end
    if provium:vmm() == "local" then
        return local_fixture(name, function(lab) setup(lab:vm(name, image):boot(boot_opts)) end)[name]
    end
    local key = fixture_key(name, function()
        return { "vm", name, function_source(setup), canonical(boot_opts, true), image,
                 image_key(image, boot_opts), internal.qemu_version(), internal.accel() }
    end)
    local entry = fixture_entry(name, key, function(lab)
        setup(lab:vm(name, image):boot(boot_opts))
    end)
    return restore_fixture(name, entry, boot_opts.timeout, pool)[name]
end

-- provium:lab_fixture(name, setup) -> {vm name = VM}: setup(lab) makes and prepares several
-- VMs with lab:vm(name, image):boot(opts); all of them are saved and restored together.
function provium:lab_fixture(name, setup)
    check_fixture_args(self, "lab_fixture", name, setup, nil)
    if provium:vmm() == "local" then return local_fixture(name, setup) end
    local key = fixture_key(name, function()
        return { "lab", name, function_source(setup), image_key("default"),
                 internal.qemu_version(), internal.accel() }
    end)
    return restore_fixture(name, fixture_entry(name, key, setup))
end

---------------------------------------------------------------------------------------------
-- networks in fixtures: a lab's bridges are saved with it; its VMs come back attached

-- A record per card of vm's (all on bridges of the lab): its bridge's name and index, the
-- host number of its address, its MAC, address and guest device.
function internal.net_save_info(vm, lab_bridges)
    local mine = {}
    for _, b in ipairs(lab_bridges) do mine[b] = true end
    local parts = {}
    for _, link in ipairs(vm_state(vm).links) do
        if not mine[link.bridge] then
            error(string.format("vm %s is on bridge %s, which the lab did not make (use lab:bridge)",
                                vm:name(), net[link.bridge].name), 0)
        end
        local st = net[link.bridge]
        parts[#parts + 1] = { bridge = st.name, index = st.index,
                              host = tonumber(link.ip:match("(%d+)$")), mac = link.mac,
                              ip = link.ip, dev = link.dev }
    end
    return parts
end

-- A saved card as net_save_info wrote it, or an error naming what is wrong.
local function saved_card(card)
    local function bad(what) error("bad saved network card: " .. what, 0) end
    if type(card) ~= "table" then bad("not a record") end
    for _, k in ipairs({ "bridge", "mac", "ip" }) do
        if type(card[k]) ~= "string" then bad(k .. " is not a string") end
    end
    for _, k in ipairs({ "index", "host" }) do
        if math.type(card[k]) ~= "integer" or card[k] < 0 then bad(k .. " is not an integer") end
    end
    if card.dev ~= nil and type(card.dev) ~= "string" then bad("dev is not a string") end
    return card
end

-- Before a saved VM is loaded: its cards back on bridges of the same names and subnets (made
-- here once per restore), with the addresses its guest already has.
function internal.net_restore(vm, cards, made)
    if type(cards) ~= "table" then error("bad saved network cards: not a list", 0) end
    for _, card in ipairs(cards) do
        local c = saved_card(card)
        local bname, index, host, mac, ip, dev = c.bridge, c.index, c.host, c.mac, c.ip, c.dev
        local b = made[bname]
        if not b then
            b = provium:bridge(bname, { _index = index })
            made[bname] = b
        end
        local st = net[b]
        local link = { bridge = b, vm = vm, tap = P.new_tap(), ip = ip, mac = mac, dev = dev,
                       configured = true }
        local ok, err = b:_add_tap(link.tap)
        if not ok then error(err, 0) end
        local added, nerr = vm:_add_nic(link.tap, mac)
        if not added then error(nerr, 0) end
        st.links[vm] = link
        st.order[#st.order + 1] = link
        st.next_host = math.max(st.next_host, host + 1)
        table.insert(vm_state(vm).links, link)
    end
end
