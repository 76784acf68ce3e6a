-- provium replay: a deliberately buggy service (tests/fixtures/buggy_kv.lua: a primary that
-- acknowledges before it replicates) is caught by the linearizability checker under a seeded
-- nemesis, and its failing run is replayed with its seed: the same faults in the same order.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local P = provium.executable

test("the buggy service is caught, and its failing seed replayed with the same faults", function(t)
    local dir = st.workdir("buggy_kv")
    local out, code = st.run(dir, "--progress never --events " .. dir .. "/run.mp")
    t:eq(code, 1, out)
    t:match(out, "not linearizable %(register%)")
    t:match(out, "<%- no order places it")
    local seed = out:match("provium: seed (%d+)")
    out, code = st.sh(P .. " replay " .. dir .. "/run.mp --accel tcg --progress never")
    t:match(out, "provium replay: 1 failed test of [^\n]*run%.mp, with seed " .. seed .. "\n")
    t:match(out, "provium: seed " .. seed .. " ")
    t:match(out, "the nemesis made the same faults in the same order")
    -- whether it fails again is the guest's timing too: said, either way
    t:match(out, "provium replay: it (%a+)")
    t:ok(code == 0 or code == 1, out)
end)

test("replay refuses what it cannot replay, naming it", function(t)
    local out, code = st.sh(P .. " replay /no/such/events.mp")
    t:eq(code, 2, out)
    t:match(out, "/no/such/events%.mp")
    local dir = st.tmpdir("replay")
    st.write(dir .. "/ok.test.lua", 'test("ok", function(t) end)\n')
    st.run(dir, "--progress never --events " .. dir .. "/run.mp")
    out, code = st.sh(P .. " replay " .. dir .. "/run.mp")
    t:eq(code, 0, out)
    t:match(out, "no test failed in [^\n]*: nothing to replay")
    out, code = st.sh(P .. " replay")
    t:eq(code, 2, out)
    t:match(out, "usage: provium replay EVENTS_FILE")
end)
