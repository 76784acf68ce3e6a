-- impairment.lua: impairments of a bridge or a link (partition, isolate, drop, latency, rate), heal.
local P = ...
local internal, show, raise = P.internal, P.show, P.raise
local net, Link, check_bridge_alive = P.net, P.Link, P.check_bridge_alive
local Bridge = internal.Bridge

-- Impairments: each returns a handle whose :undo() removes it; bridge:heal() removes them all.
local Impairment = {}
P.api.Impairment = Impairment
Impairment.__index = Impairment
Impairment.__tostring = function(i) return "Impairment(" .. net[i.bridge].name .. ", " .. i.kind .. ")" end

-- An impairment is undone by its own function (netem in the guest, a bandwidth limit) or, for
-- the nftables ones, by its rule's id on the bridge.
function Impairment:undo()
    if self.undone then return end
    if self.undo_fn then
        self.undo_fn()
    else
        local ok, err = self.bridge:_unimpair(self.id)
        if not ok then raise(err) end
    end
    self.undone = true
end

local function tap_of(b, vm, what)
    local link = internal.is_vm(vm) and net[b].links[vm]
    if not link then
        raise(string.format("bridge %s: %s: %s is not attached to this bridge", net[b].name, what,
                            internal.is_vm(vm) and ("vm " .. vm:name()) or show(vm)))
    end
    return link.tap
end

local function impair(b, kind, rules)
    check_bridge_alive(b, kind)
    local id, err = b:_impair(kind, table.concat(rules, "\n") .. "\n")
    if not id then raise(err) end
    return setmetatable({ bridge = b, id = id, kind = kind }, Impairment)
end

local function side(b, list, what)
    if internal.is_vm(list) then list = { list } end
    if type(list) ~= "table" or #list == 0 then
        raise(string.format("bridge %s: %s: a VM or a non-empty list of VMs expected, got %s",
                            net[b].name, what, show(list)))
    end
    local taps = {}
    for _, vm in ipairs(list) do taps[#taps + 1] = tap_of(b, vm, what) end
    return taps
end

-- bridge:partition(a, b, opts?): no frames between the VMs of side a and those of side b;
-- opts.oneway: only from a to b.
function Bridge:partition(a, b, opts)
    local from, to = side(self, a, "partition"), side(self, b, "partition")
    local oneway = type(opts) == "table" and opts.oneway
    local rules = {}
    for _, x in ipairs(from) do
        for _, y in ipairs(to) do
            rules[#rules + 1] = string.format('    iifname "%s" oifname "%s" drop', x, y)
            if not oneway then
                rules[#rules + 1] = string.format('    iifname "%s" oifname "%s" drop', y, x)
            end
        end
    end
    return impair(self, oneway and "partition (one-way)" or "partition", rules)
end

-- bridge:isolate(vm): nothing in or out of vm's port.
function Bridge:isolate(vm)
    local tap = tap_of(self, vm, "isolate")
    return impair(self, "isolate", {
        string.format('    iifname "%s" drop', tap), string.format('    oifname "%s" drop', tap),
    })
end

-- bridge:heal(): every impairment of the bridge and its links goes (rules, latency, caps).
function Bridge:heal()
    check_bridge_alive(self, "heal")
    local ok, err = self:_unimpair(0)
    if not ok then raise(err) end
    local queued = net[self].queued or {}
    net[self].queued = {}
    for _, h in ipairs(queued) do
        if not h.undone then h:undo() end
    end
end

-- The links an impairment applies to: one, or every link of the bridge.
local function targets(self)
    if getmetatable(self) == Link then return self.bridge, { self.state } end
    return self, net[self].order
end

-- A handle for an impairment outside nftables (latency, bandwidth): heal() undoes it too.
local function handle(b, kind, undo)
    local h = setmetatable({ bridge = b, kind = kind, undo_fn = undo }, Impairment)
    local st = net[b]
    st.queued = st.queued or {}
    st.queued[#st.queued + 1] = h
    return h
end


-- Sets netem (in the guest) on the links of self (a bridge or a link) and says so with
-- event(b, link); returns the handle that clears it (both directions: the agent's clear takes
-- off the root netem and the ingress qdisc and IFB device of opts.direction "in" or "both").
local function netem_on(self, what, ms, jitter, opts, event)
    local b, links = targets(self)
    check_bridge_alive(b, what)
    local who = "bridge " .. net[b].name .. ": " .. what
    local done = {}
    for _, link in ipairs(links) do
        if not link.dev or link.vm:state() ~= "running" then
            raise(string.format("%s: vm %s is not up on the bridge (%s)", who, link.vm:name(), link.vm:state()))
        end
        local called, ok, err = pcall(link.vm._netem, link.vm, link.dev, ms, jitter, opts)
        if not called then raise((tostring(ok):gsub(P.PRELUDE_WHERE, ""))) end
        if not ok then raise(who .. ": " .. err) end
        done[#done + 1] = link
        event(b, link)
    end
    return handle(b, what == "add_latency" and "latency" or what, function()
        for _, link in ipairs(done) do
            if link.vm:state() == "running" then
                local ok, err = link.vm:_netem_clear(link.dev)
                if not ok then raise(err) end
            end
        end
    end)
end

-- add_latency(ms, jitter?): frames a VM sends are delayed by ms (+/- jitter) on its side of
-- the link (netem in the guest: the host kernel here has no sch_netem). On a link, the round
-- trip to that VM rises by ms; on the whole bridge, by 2 ms between any two VMs.
local function add_latency(self, ms, jitter)
    local b = targets(self)
    local who = "bridge " .. net[b].name .. ": add_latency"
    if type(ms) ~= "number" or ms < 0 then raise(who .. ": milliseconds must be a number >= 0, got " .. show(ms)) end
    jitter = jitter or 0
    if type(jitter) ~= "number" or jitter < 0 then raise(who .. ": jitter must be a number >= 0, got " .. show(jitter)) end
    return netem_on(self, "add_latency", ms, jitter, nil, function(br, link)
        internal.event("bridge.latency", { bridge = net[br].name, vm = link.vm:name(), ms = ms,
                                           jitter_ms = jitter, where = "guest" })
    end)
end

local NETEM_OPTIONS = { "delay_ms", "jitter_ms", "loss", "loss_correlation", "duplicate", "duplicate_correlation",
                        "corrupt", "corrupt_correlation", "reorder", "reorder_correlation", "direction" }
local NETEM_DIRECTIONS = { out = true, ["in"] = true, both = true }

-- netem{delay_ms, jitter_ms, loss, duplicate, corrupt, reorder and each's _correlation,
-- direction}: what a VM sends on the link (direction "out", the default: its egress, netem in
-- the guest), receives ("in": its ingress, turned through an IFB device in the guest to a netem
-- there) or both ("both") is delayed, lost, duplicated, corrupted or reordered; on the whole
-- bridge, on every VM's link. Fractions are 0..1; reorder needs a delay (the frames it does not
-- send at once wait it). It replaces the link's add_latency and netem, in both directions, and
-- undo clears all. The kernel's netem draws its own randomness: the run's seed does not reach it.
local function netem(self, opts)
    local b = targets(self)
    local who = "bridge " .. net[b].name .. ": netem"
    if type(opts) ~= "table" then raise(who .. ": options table expected, got " .. show(opts)) end
    for k in pairs(opts) do
        local known = false
        for _, o in ipairs(NETEM_OPTIONS) do known = known or o == k end
        if not known then raise(who .. ": unknown option " .. show(k) .. P.suggest(tostring(k), NETEM_OPTIONS)) end
    end
    local direction = opts.direction or "out"
    if not NETEM_DIRECTIONS[direction] then
        raise(who .. ': direction must be "out", "in" or "both", got ' .. show(opts.direction))
    end
    local ms = opts.delay_ms or 0
    if (opts.reorder or 0) > 0 and ms == 0 then
        raise(who .. ": reorder needs delay_ms (the frames not sent at once wait it)")
    end
    local text = {}
    for _, o in ipairs(NETEM_OPTIONS) do
        if opts[o] and o ~= "direction" then text[#text + 1] = o .. "=" .. tostring(opts[o]) end
    end
    return netem_on(self, "netem", ms, opts.jitter_ms or 0, opts, function(br, link)
        internal.event("bridge.netem", { bridge = net[br].name, vm = link.vm:name(), what = table.concat(text, " "),
                                         direction = direction })
    end)
end

-- A seeded pattern: which of every 1000 IPv4 frames are dropped (each with probability p).
local function drop_pattern(seed, p)
    local x = seed ~ 0x2545F4914F6CDD1D
    if x == 0 then x = 1 end
    local picks = {}
    for i = 0, 999 do
        x = x ~ (x << 13)
        x = x ~ (x >> 7)
        x = x ~ (x << 17)
        if ((x >> 11) / 9007199254740992.0) < p then picks[#picks + 1] = i end
    end
    return picks
end

-- drop_rate(p): each IPv4 frame crossing the bridge (or to or from the link's VM) is dropped
-- with probability p; the choices come from the bridge's rng_seed, so a run repeats exactly.
local function drop_rate(self, p)
    local b, links = targets(self)
    local who = "bridge " .. net[b].name .. ": drop_rate"
    if type(p) ~= "number" or p < 0 or p > 1 then
        raise(who .. ": probability must be between 0 and 1, got " .. show(p))
    end
    local st = net[b]
    local seed = st.seed + (getmetatable(self) == Link and self.state.mac:byte(-1) or 0)
    local picks = drop_pattern(seed, p)
    local rules = {}
    if #picks > 0 then
        local set = "{ " .. table.concat(picks, ", ") .. " }"
        if getmetatable(self) == Link then
            for _, dir in ipairs({ "iifname", "oifname" }) do
                rules[#rules + 1] = string.format('    %s "%s" ether type ip numgen inc mod 1000 %s drop',
                                                  dir, links[1].tap, set)
            end
        else
            rules[#rules + 1] = "    ether type ip numgen inc mod 1000 " .. set .. " drop"
        end
    else
        rules[#rules + 1] = "    # drop_rate 0"
    end
    local h = impair(b, "drop_rate", rules)
    local print = 0xcbf29ce484222325 -- FNV-1a over the picks: the choices, in the event log
    for _, i in ipairs(picks) do print = (print ~ i) * 0x100000001b3 end
    internal.event("bridge.drop_rate", { bridge = st.name, p = p, dropped_per_1000 = #picks,
                                         pattern = string.format("%016x", print),
                                         vm = getmetatable(self) == Link and self.vm:name() or "" })
    return h
end

local rate_units = { bit = 1, kbit = 1e3, mbit = 1e6, gbit = 1e9, bps = 8, kbps = 8e3, mbps = 8e6, gbps = 8e9 }

-- bandwidth_limit(rate): a tbf cap on the port's way into its VM (on the whole bridge: every
-- port, so every flow across it). rate: bits/s, or "10mbit", "500kbit", "1mbps" (bytes).
local function bandwidth_limit(self, rate)
    local b, links = targets(self)
    check_bridge_alive(b, "bandwidth_limit")
    local who = "bridge " .. net[b].name .. ": bandwidth_limit"
    local bits
    if type(rate) == "number" then bits = rate
    elseif type(rate) == "string" then
        local n, unit = rate:match("^%s*([%d.]+)%s*(%a*)%s*$")
        n, unit = tonumber(n), (unit or ""):lower()
        if n and rate_units[unit ~= "" and unit or "bit"] then bits = n * rate_units[unit ~= "" and unit or "bit"] end
    end
    if not bits or bits <= 0 then
        raise(who .. ": rate must be positive, like 10000000 (bits/s) or \"10mbit\", got " .. show(rate))
    end
    local bytes = math.floor(bits / 8)
    local tap = getmetatable(self) == Link and links[1].tap or nil
    local ok, err = b:_set_rate(tap, bytes)
    if not ok then raise(err) end
    internal.event("bridge.bandwidth", { bridge = net[b].name, bytes_per_s = bytes,
                                         vm = getmetatable(self) == Link and self.vm:name() or "" })
    return handle(b, "bandwidth_limit", function()
        local ok2, err2 = b:_set_rate(tap, 0)
        if not ok2 then raise(err2) end
    end)
end

Bridge.add_latency, Link.add_latency = add_latency, add_latency
Bridge.netem, Link.netem = netem, netem
Bridge.drop_rate, Link.drop_rate = drop_rate, drop_rate
Bridge.bandwidth_limit, Link.bandwidth_limit = bandwidth_limit, bandwidth_limit

-- For grudge.lua: an nftables impairment of b, and a VM's port.
P.impair, P.tap_of = impair, tap_of
