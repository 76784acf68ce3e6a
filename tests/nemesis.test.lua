-- provium:nemesis: a seeded schedule of faults beside the workload, with a quiet period and a
-- healed end; every fault in the event log; the same seed, the same faults in the same order.
provium:claim({ memory = "3G" })
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

local lan, vms
local function cluster()
    if vms then return end
    lan = provium:bridge("lan")
    vms = {}
    for i = 1, 3 do vms[i] = provium:vm("m" .. i):boot({ memory = "256M" }) end
    lan:attach(vms)
end

-- Whether every VM reaches every other, and none is paused.
local function all_healed(t)
    for _, a in ipairs(vms) do
        for _, b in ipairs(vms) do
            if a ~= b then a:run("ping -c 1 -W 2 " .. b:name() .. ".lan"):assert_ok() end
        end
    end
end

test("a quiet period heals everything and holds faults off; stop ends it healed", function(t)
    cluster()
    local nem = provium:nemesis({ vms = vms, bridge = lan, faults = { "partition", "pause" }, interval = 0.5,
                                  duration = 0.4 })
    for _ = 1, 6 do vms[1]:run("sleep 0.5") end
    local applied = 0
    for _, r in ipairs(nem:schedule()) do if r.action == "apply" then applied = applied + 1 end end
    t:ok(applied >= 1, "faults came in 3 s: " .. applied)
    local before = #nem:schedule()
    nem:quiet(2)
    local healed_at = #nem:schedule()
    all_healed(t) -- within the quiet period: nothing cut, nothing paused
    for i = healed_at + 1, #nem:schedule() do
        t:ne(nem:schedule()[i].action, "apply", "no fault during the quiet period")
    end
    for _ = 1, 6 do vms[1]:run("sleep 0.5") end -- the quiet period ends; faults come again
    local later = 0
    for i = healed_at + 1, #nem:schedule() do if nem:schedule()[i].action == "apply" then later = later + 1 end end
    t:ok(later >= 1, "faults after the quiet period: " .. later)
    nem:stop()
    local log = nem:schedule()
    local open = {}
    for _, r in ipairs(log) do open[r.fault .. r.targets] = (open[r.fault .. r.targets] or 0) + (r.action == "apply" and 1 or -1) end
    for k, n in pairs(open) do t:eq(n, 0, "applied and healed as often: " .. k) end
    all_healed(t)
    t:ok(before <= healed_at)
end)

test("the same seed makes the same schedule; every fault is an event", function(t)
    local dir = st.workdir("nemesis_schedule") -- one path: seeds derive from the file's name
    local function schedule(seed)
        local out, code = st.run(dir, "--progress never --seed " .. seed .. " --events " .. dir .. "/run.mp",
                                 "OUT=" .. dir .. "/out.txt")
        t:eq(code, 0, out)
        local events = st.sh(provium.executable .. " events " .. dir .. "/run.mp --json")
        local _, applies = events:gsub('"type":"nemesis.fault"[^}]*"action":"apply"', "")
        local _, heals = events:gsub('"type":"nemesis.fault"[^}]*"action":"heal"', "")
        return st.read(dir .. "/out.txt"), applies, heals
    end
    local a, na, ha = schedule(11)
    local b = schedule(11)
    local c = schedule(12)
    local la, lb, lc = {}, {}, {}
    for l in a:gmatch("[^\n]+") do la[#la + 1] = l end
    for l in b:gmatch("[^\n]+") do lb[#lb + 1] = l end
    for l in c:gmatch("[^\n]+") do lc[#lc + 1] = l end
    local n = math.min(#la, #lb)
    t:ok(n >= 3, "several faults in each run: " .. #la .. ", " .. #lb)
    for i = 1, n do t:eq(lb[i], la[i], "fault " .. i .. " with seed 11, twice") end
    local differs = false
    for i = 1, math.min(n, #lc) do differs = differs or lc[i] ~= la[i] end
    t:ok(differs, "seed 12 draws another schedule:\n" .. a .. "--\n" .. c)
    t:eq(na, #la, "a nemesis.fault apply event for each")
    t:eq(ha, na, "and a heal for each")
end)

test("bad options are refused, naming them", function(t)
    cluster()
    t:error(function() provium:nemesis({ vms = vms, bridge = lan, faults = { "partiton" } }) end,
            "no fault \"partiton\".*did you mean 'partition'")
    t:error(function() provium:nemesis({ vms = vms, faults = { "partition" } }) end, "need a bridge")
    t:error(function() provium:nemesis({ vms = vms, faults = { "kill" } }) end, "fault kill needs process")
    t:error(function() provium:nemesis({ vms = vms, bridge = lan, faults = { "pause" }, interval = 0 }) end,
            "interval must be seconds above 0")
    t:error(function() provium:nemesis({ vms = vms, faults = { "pause" }, intervall = 1 }) end,
            "unknown option \"intervall\".*did you mean 'interval'")
    t:error(function() provium:nemesis({ faults = { "pause" } }) end, "vms must be a non%-empty list")
    t:error(function() provium:nemesis({ vms = vms, bridge = lan, faults = { "partition" }, partitions = { "primaries" } }) end,
            "partitions preset primaries needs primaries =")
end)

test("--check-determinism compares the two runs' nemesis schedules", function(t)
    local dir = st.workdir("nemesis_schedule")
    local out, code = st.run(dir, "--check-determinism --seed 21 --progress never", "OUT=" .. dir .. "/out.txt")
    t:eq(code, 0, out)
    local n = tonumber(out:match("the two runs made the same (%d+) choices"))
    t:ok(n and n >= 3, "the faults both runs reached, and their grudges: " .. tostring(n) .. "\n" .. out)
end)
