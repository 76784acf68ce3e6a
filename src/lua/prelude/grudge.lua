-- grudge.lua: partitions as grudges (who cannot hear whom), and Jepsen's partition presets
-- over a bridge's VMs: random-halves, random-node, minority-third, majorities-ring, bridge,
-- primaries (given by the test: the database knows who they are).
-- The random ones draw from the run's seed (seed.lua): the same seed, the same grudges.
local P = ...
local internal, show, raise = P.internal, P.show, P.raise
local net, impair, tap_of = P.net, P.impair, P.tap_of
local Bridge = internal.Bridge

local presets = { "random-halves", "random-node", "minority-third", "majorities-ring", "bridge", "primaries" }

-- A shuffled copy of list, from draw (a function giving floats in [0, 1)).
local function shuffled(list, draw)
    local v = {}
    for i, x in ipairs(list) do v[i] = x end
    for i = #v, 2, -1 do
        local j = math.floor(draw() * i) + 1
        v[i], v[j] = v[j], v[i]
    end
    return v
end

-- Both ways between every VM of a and every VM of b: into g (victim -> list of VMs it ignores).
local function cut(g, a, b)
    for _, x in ipairs(a) do
        for _, y in ipairs(b) do
            g[x] = g[x] or {}
            g[y] = g[y] or {}
            table.insert(g[x], y)
            table.insert(g[y], x)
        end
    end
end

local function split(v, at)
    local a, b = {}, {}
    for i, x in ipairs(v) do if i <= at then a[#a + 1] = x else b[#b + 1] = x end end
    return a, b
end

-- The primaries a test gives (a list of VMs, or a function returning one when the grudge is
-- made, so a nemesis finds the current leader), each one of vms.
local function primaries_of(given, vms, who)
    local list = given
    if type(given) == "function" then list = given() end
    if type(list) ~= "table" or #list == 0 then
        raise(who .. ": primaries needs opts.primaries, a non-empty list of VMs (or a function " ..
              "returning one), got " .. show(list))
    end
    local member = {}
    for _, vm in ipairs(vms) do member[vm] = true end
    for _, vm in ipairs(list) do
        if not member[vm] then raise(who .. ": primaries: " .. show(vm) .. " is not one of the VMs partitioned") end
    end
    return list
end

-- The grudge of a preset over vms (at least 2; majorities-ring and bridge at least 3).
local function preset_grudge(name, vms, draw, who, opts)
    local n, g = #vms, {}
    local v = shuffled(vms, draw)
    if name == "primaries" then
        -- as Jepsen's: a non-empty subset of the primaries, each alone; the others together
        local prims = shuffled(primaries_of(opts.primaries, vms, who), draw)
        local k = math.floor(draw() * #prims) + 1
        local parts, alone = {}, {}
        for i = 1, k do parts[#parts + 1] = { prims[i] }; alone[prims[i]] = true end
        local rest = {}
        for _, x in ipairs(v) do if not alone[x] then rest[#rest + 1] = x end end
        if #rest > 0 then parts[#parts + 1] = rest end
        for i = 1, #parts do
            for j = i + 1, #parts do cut(g, parts[i], parts[j]) end
        end
    elseif name == "random-halves" then
        local a, b = split(v, n // 2)
        cut(g, a, b)
    elseif name == "random-node" then
        local a, b = split(v, 1)
        cut(g, a, b)
    elseif name == "minority-third" then
        local a, b = split(v, math.max(1, n // 3))
        cut(g, a, b)
    elseif name == "bridge" then
        if n < 3 then raise(who .. ": bridge needs 3 VMs or more, got " .. n) end
        -- two halves that cannot hear each other, and one VM in the middle that hears both
        local half = (n - 1) // 2
        local a, b = {}, {}
        for i = 1, half do a[#a + 1] = v[i] end
        for i = half + 2, n do b[#b + 1] = v[i] end
        cut(g, a, b)
    elseif name == "majorities-ring" then
        if n < 3 then raise(who .. ": majorities-ring needs 3 VMs or more, got " .. n) end
        -- on a ring, each VM hears the majority nearest it: every one sees a majority, no two
        -- the same
        local m = n // 2 + 1
        local back = (m - 1) // 2
        for i = 1, n do
            local hears = {}
            for k = -back, m - 1 - back do hears[v[(i - 1 + k) % n + 1]] = true end
            for _, y in ipairs(v) do
                if not hears[y] then g[v[i]] = g[v[i]] or {}; table.insert(g[v[i]], y) end
            end
        end
    end
    return g
end

local function describe(g, vms)
    local parts = {}
    for _, x in ipairs(vms) do
        if g[x] and #g[x] > 0 then
            local names = {}
            for _, y in ipairs(g[x]) do names[#names + 1] = y:name() end
            table.sort(names)
            parts[#parts + 1] = x:name() .. " ignores " .. table.concat(names, " ")
        end
    end
    return table.concat(parts, "; ")
end

-- bridge:grudge(grudge | preset, opts?): frames to each VM from the VMs it holds a grudge
-- against are dropped. grudge: {[vm] = {vm, ...}}; preset: one of presets over opts.vms (default
-- every VM on the bridge). Returns the impairment, with .grudge (vm -> list) and .text; a
-- bridge.grudge event says who ignores whom.
function Bridge:grudge(spec, opts)
    local who = "bridge " .. net[self].name .. ": grudge"
    opts = opts or {}
    if type(opts) ~= "table" then raise(who .. ": options table expected, got " .. show(opts)) end
    for k in pairs(opts) do
        if k ~= "vms" and k ~= "primaries" then
            raise(who .. ": unknown option " .. show(k) .. P.suggest(tostring(k), { "vms", "primaries" }))
        end
    end
    local vms = opts.vms
    if vms == nil then
        vms = {}
        for vm in pairs(net[self].links) do vms[#vms + 1] = vm end
        table.sort(vms, function(a, b) return a:name() < b:name() end)
    end
    local g, label
    if type(spec) == "string" then
        local known = false
        for _, p in ipairs(presets) do known = known or p == spec end
        if not known then
            raise(who .. ": no preset '" .. spec .. "' (" .. table.concat(presets, ", ") .. ")" ..
                  P.suggest(spec, presets))
        end
        if #vms < 2 then raise(who .. ": " .. spec .. " needs 2 VMs or more, got " .. #vms) end
        net[self].grudges = (net[self].grudges or 0) + 1
        local draw = P.stream("grudge", net[self].name .. "#" .. net[self].grudges)
        g, label = preset_grudge(spec, vms, draw, who, opts), spec
    elseif type(spec) == "table" then
        g, label = spec, "grudge"
    else
        raise(who .. ": a grudge table or a preset name expected, got " .. show(spec))
    end
    local rules = {}
    for victim, enemies in pairs(g) do
        local to = tap_of(self, victim, "grudge")
        for _, enemy in ipairs(enemies) do
            rules[#rules + 1] = string.format('    iifname "%s" oifname "%s" drop', tap_of(self, enemy, "grudge"), to)
        end
    end
    if #rules == 0 then rules[1] = "    # nobody holds a grudge" end
    local text = describe(g, vms)
    local h = impair(self, "grudge", rules)
    internal.event("bridge.grudge", { bridge = net[self].name, preset = label, grudge = text })
    h.grudge, h.text, h.preset = g, text, type(spec) == "string" and spec or nil
    return h
end
