-- nemesis.lua: provium:nemesis{...}: a seeded schedule of faults in a task of its own beside
-- the test's workload, as Jepsen's nemesis: partitions (grudge presets), a VM paused, a clock
-- skewed, loss or latency on a VM's link, a process killed and started again, disk errors.
-- Which fault, on what and when are drawn from the run's seed, in an order that does not
-- depend on timing; each fault applied or healed is a nemesis.fault event (and, with
-- opts.history, a :nemesis operation of the history). quiet(s) heals and holds faults off for
-- s seconds (Antithesis's STOP_FAULTS); stop() ends it healed, as does the end of the test.
local P = ...
local provium, internal = P.provium, P.internal
local raise, show = P.raise, P.show

local Nemesis = {}
Nemesis.__index = Nemesis
P.api.Nemesis = Nemesis

local KINDS = { "partition", "pause", "clock", "drop", "latency", "kill", "disk" }
local OPTIONS = { "vms", "bridge", "faults", "interval", "duration", "name", "history", "partitions",
                  "process", "disks", "skew_ppm", "drop", "latency_ms", "primaries" }
local SLICE = 0.1 -- seconds a nemesis sleeps at a time, so that stop and quiet act at once

local running = {} -- this test's nemeses, stopped after it
local count = 0    -- nemeses made in this file: each its own stream

local function list_of(who, name, v, check)
    if type(v) ~= "table" or #v == 0 then raise(who .. ": " .. name .. " must be a non-empty list, got " .. show(v)) end
    for _, x in ipairs(v) do check(x) end
    return v
end

local function validate(opts)
    local who = "provium:nemesis"
    if type(opts) ~= "table" then raise(who .. ": options table expected, got " .. show(opts)) end
    for k in pairs(opts) do
        local known = false
        for _, o in ipairs(OPTIONS) do known = known or o == k end
        if not known then raise(who .. ": unknown option " .. show(k) .. P.suggest(tostring(k), OPTIONS)) end
    end
    local faults = list_of(who, "faults", opts.faults, function(f)
        local ok = false
        for _, k in ipairs(KINDS) do ok = ok or k == f end
        if not ok then
            raise(who .. ": no fault " .. show(f) .. " (" .. table.concat(KINDS, ", ") .. ")" .. P.suggest(tostring(f), KINDS))
        end
    end)
    local need = {}
    for _, f in ipairs(faults) do need[f] = true end
    if need.partition or need.pause or need.clock or need.drop or need.latency or need.kill then
        list_of(who, "vms", opts.vms, function(vm)
            if not internal.is_vm(vm) then raise(who .. ": vms must hold VMs, got " .. show(vm)) end
        end)
    end
    if (need.partition or need.drop or need.latency) and not (opts.bridge ~= nil and P.net[opts.bridge]) then
        raise(who .. ": faults partition, drop and latency need a bridge (bridge = lan)")
    end
    if need.kill and (type(opts.process) ~= "table" or type(opts.process.kill) ~= "function" or
                      type(opts.process.start) ~= "function") then
        raise(who .. ": fault kill needs process = { kill = function(vm) ... end, start = function(vm) ... end }")
    end
    if need.disk then list_of(who, "disks", opts.disks, function() end) end
    for _, p in ipairs(opts.partitions or {}) do
        if p == "primaries" and type(opts.primaries) ~= "table" and type(opts.primaries) ~= "function" then
            raise(who .. ": partitions preset primaries needs primaries = {vm, ...} or a function returning them")
        end
    end
    for _, k in ipairs({ "interval", "duration" }) do
        if opts[k] ~= nil and not (P.is_seconds(opts[k]) and opts[k] > 0) then
            raise(who .. ": " .. k .. " must be seconds above 0, got " .. show(opts[k]))
        end
    end
    return who
end

local function record(nem, action, fault)
    local at = internal.now() - nem.t0
    nem.log[#nem.log + 1] = { at = at, action = action, fault = fault.kind, targets = fault.targets }
    internal.event("nemesis.fault", { nemesis = nem.name, fault = fault.kind, action = action,
                                      targets = fault.targets, at = at })
    if nem.history then
        nem.history:invoke("nemesis", (action == "apply" and "start-" or "stop-") .. fault.kind, fault.targets):info()
    end
end

local function pick(list, draw) return list[math.floor(draw() * #list) + 1] end

-- Applies one fault of kind; returns it, with how to heal it. Every draw happens whatever the
-- kind, so the choices that follow never depend on which one came up.
local function apply(nem, kind)
    local draw = nem.draw
    local d1, d2 = draw(), draw()
    local vm = nem.vms and nem.vms[math.floor(d1 * #nem.vms) + 1]
    local fault = { kind = kind }
    if kind == "partition" then
        local preset = nem.partitions[math.floor(d2 * #nem.partitions) + 1]
        local h = nem.bridge:grudge(preset, { vms = nem.vms, primaries = nem.primaries })
        fault.targets, fault.heal = preset .. ": " .. h.text, function() h:undo() end
    elseif kind == "pause" then
        vm:pause()
        fault.targets, fault.heal = vm:name(), function() vm:resume() end
    elseif kind == "clock" then
        local ppm = (d2 < 0.5 and -1 or 1) * nem.skew_ppm
        vm:clock():skew(ppm)
        fault.targets, fault.heal = string.format("%s %+d ppm", vm:name(), ppm), function() vm:clock():skew(0) end
    elseif kind == "drop" then
        local h = nem.bridge:link(vm):drop_rate(nem.drop)
        fault.targets, fault.heal = string.format("%s p=%g", vm:name(), nem.drop), function() h:undo() end
    elseif kind == "latency" then
        local h = nem.bridge:link(vm):add_latency(nem.latency_ms)
        fault.targets, fault.heal = string.format("%s %d ms", vm:name(), nem.latency_ms), function() h:undo() end
    elseif kind == "kill" then
        nem.process.kill(vm)
        fault.targets, fault.heal = vm:name(), function() nem.process.start(vm) end
    elseif kind == "disk" then
        local disk = pick(nem.disks, function() return d1 end)
        local f = d2 < 0.5 and disk:eio_read({ probability = 0.5 }) or disk:eio_write({ probability = 0.5 })
        fault.targets, fault.heal = string.format("%s %s", disk:name(), d2 < 0.5 and "eio_read" or "eio_write"),
                                    function() f:undo() end
    end
    return fault
end

local function heal(nem, fault)
    if fault.healed then return end
    fault.healed = true
    for i, f in ipairs(nem.active) do if f == fault then table.remove(nem.active, i) break end end
    fault.heal()
    record(nem, "heal", fault)
end

local function heal_all(nem)
    local first
    while #nem.active > 0 do
        local ok, err = pcall(heal, nem, nem.active[1])
        if not ok then first = first or err end
    end
    if first then raise("nemesis " .. nem.name .. ": healing: " .. tostring(first)) end
end

-- Sleeps seconds on the host's clock, in slices; false when stop or quiet cut it short.
local function hold(nem, seconds)
    local until_t = internal.now() + seconds
    while internal.now() < until_t do
        if nem.stopping or internal.now() < nem.quiet_until then return false end
        internal.sleep(math.min(SLICE, until_t - internal.now()))
    end
    return not nem.stopping
end

local function run(nem)
    while not nem.stopping do
        -- the next fault starts after interval, give or take half of it
        local wait = nem.interval * (0.5 + nem.draw())
        local kind = nem.faults[math.floor(nem.draw() * #nem.faults) + 1]
        while internal.now() < nem.quiet_until and not nem.stopping do internal.sleep(SLICE) end
        if not hold(nem, wait) then
            if nem.stopping then break end
        else
            local fault = apply(nem, kind)
            nem.active[#nem.active + 1] = fault
            record(nem, "apply", fault)
            hold(nem, nem.duration)
            heal(nem, fault)
        end
    end
    nem.done = true
end

-- provium:nemesis{vms, bridge, faults, interval = 5, duration = interval / 2, ...}: starts it.
function provium:nemesis(opts)
    if self ~= provium then raise("provium:nemesis must be called with ':'") end
    validate(opts)
    count = count + 1
    local name = opts.name or ("nemesis" .. (count > 1 and count or ""))
    local interval = opts.interval or 5
    local nem = setmetatable({
        name = name, vms = opts.vms, bridge = opts.bridge, faults = opts.faults, interval = interval,
        duration = opts.duration or interval / 2, history = opts.history,
        partitions = opts.partitions or { "random-halves", "random-node", "majorities-ring", "bridge", "minority-third" },
        primaries = opts.primaries, process = opts.process, disks = opts.disks, skew_ppm = opts.skew_ppm or 50000, drop = opts.drop or 0.3,
        latency_ms = opts.latency_ms or 100, draw = P.stream("nemesis", name), t0 = internal.now(),
        quiet_until = 0, active = {}, log = {}, stopping = false, done = false,
    }, Nemesis)
    if nem.vms and #nem.vms < 3 then -- presets that need 3 VMs are left out of a pair's schedule
        local two = {}
        for _, p in ipairs(nem.partitions) do if p ~= "majorities-ring" and p ~= "bridge" then two[#two + 1] = p end end
        nem.partitions = two
    end
    running[#running + 1] = nem
    internal.event("nemesis.start", { nemesis = name, faults = table.concat(nem.faults, " "),
                                      interval = interval, duration = nem.duration })
    internal.spawn(function()
        local ok, err = pcall(run, nem)
        nem.done = true
        if not ok then raise("nemesis " .. name .. ": " .. tostring(err)) end
    end)
    return nem
end

-- nemesis:quiet(seconds): heals every fault now and starts none for that long; returns at once.
function Nemesis:quiet(seconds)
    if not (P.is_seconds(seconds) and seconds > 0) then
        raise("nemesis " .. self.name .. ": quiet: seconds above 0 expected, got " .. show(seconds))
    end
    self.quiet_until = internal.now() + seconds
    heal_all(self)
    internal.event("nemesis.quiet", { nemesis = self.name, seconds = seconds })
    return self
end

-- nemesis:stop(): no more faults; returns once every fault is healed.
function Nemesis:stop()
    if self.stopped then return self end
    self.stopping = true
    heal_all(self)
    local deadline = internal.now() + 60
    while not self.done and internal.now() < deadline do internal.sleep(0.05) end
    heal_all(self) -- what it applied while this waited
    self.stopped = true
    internal.event("nemesis.stop", { nemesis = self.name, records = #self.log })
    for i, n in ipairs(running) do if n == self then table.remove(running, i) break end end
    return self
end

-- nemesis:schedule(): what it did so far: {at (seconds since it started), action ("apply" or
-- "heal"), fault, targets}, in order.
function Nemesis:schedule()
    local copy = {}
    for i, r in ipairs(self.log) do copy[i] = { at = r.at, action = r.action, fault = r.fault, targets = r.targets } end
    return copy
end

-- A nemesis never outlives its test: stopped (healed) after it.
table.insert(P.after_test, function()
    while #running > 0 do
        local nem = running[1]
        local ok = pcall(nem.stop, nem)
        if not ok then table.remove(running, 1) end
    end
end)
