-- One root seed: --seed N (drawn when not given), said at the start and the end and as a
-- run.seed event; provium.seed() and provium.random() and bridges' drop patterns derive from
-- it by stable names. No VM boots here (bridges live in the runner's namespace), but in the
-- runs of the guests' /dev/hwrng test.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local expected = dofile(here .. "/lib/hwrng.lua")
local P = provium.executable

-- Runs the fixture (in dir, made once per test: seeds derive from the file's path as the run
-- names it) with extra options; returns what it wrote, its drop pattern, the output, the
-- status and the events as JSON.
local function run(dir, extra)
    os.remove(dir .. "/out.txt")
    local out, code = st.run(dir, "--progress never --events " .. dir .. "/run.mp " .. extra,
                             "OUT=" .. dir .. "/out.txt")
    local events = st.sh(P .. " events " .. dir .. "/run.mp --json")
    return st.read(dir .. "/out.txt") or "", events:match('"pattern":"(%x+)"'), out, code, events
end

test("the same seed makes the same choices; another seed, other ones", function(t)
    local dir = st.workdir("seeded")
    local a, pa, out = run(dir, "--seed 42")
    local b, pb = run(dir, "--seed 42")
    local c, pc = run(dir, "--seed 43")
    t:ok(pa, "a drop pattern in the events:\n" .. out)
    t:eq(b, a, "provium.seed() and provium.random(), seed 42 twice")
    t:eq(pb, pa, "bridge lan's drop pattern, seed 42 twice")
    t:ne(c, a, "seed 43")
    t:ne(pc, pa, "seed 43's drop pattern")
    t:match(a, "^file %d+\ndraws %d+ %d+ 0%.%d+ [1-6]\ndrops %d+\n$")
end)

test("a VM without rng_seed reads a stream of the run's seed: booted or a fixture's clone", function(t)
    local dir = st.workdir("hwrng_derived")
    local function hwrng(seed)
        local a, _, out, code, events = run(dir, "--seed " .. seed)
        t:eq(code, 0, out)
        local seeds = {} -- by VM name, the last vm.hwrng event's (a fixture's builder comes before its clone)
        for line in events:gmatch("[^\n]+") do
            if line:find('"type":"vm.hwrng"', 1, true) then
                t:match(line, '"derived":true', "no rng_seed given: a derived seed")
                seeds[line:match('"vm":"([^"]+)"')] = math.tointeger(tonumber(line:match('"seed":(%d+)')))
            end
        end
        return a, seeds, out
    end
    local a, seeds, out = hwrng(42)
    t:match(a, "^booted (%x+)\nclone (%x+)\n$", out)
    t:ok(seeds.booted and seeds.hwrng_derived, "vm.hwrng events for the booted VM and the clone\n" .. out)
    local booted, clone = a:match("^booted (%x+)\nclone (%x+)\n$")
    t:eq(booted, expected(seeds.booted, 64), "the booted VM reads its derived seed's stream")
    t:eq(clone, expected(seeds.hwrng_derived, 64), "the clone reads its own derived seed's stream")
    t:ne(clone, booted, "two VMs, two streams")
    local b, seeds_b = hwrng(42)
    t:eq(b, a, "seed 42 twice: the same bytes")
    t:eq(seeds_b.booted, seeds.booted)
    local c = hwrng(43)
    t:ne(c:match("booted (%x+)"), booted, "seed 43: other bytes")
    t:ne(c:match("clone (%x+)"), clone, "seed 43: the clone's too")
end)

test("--check-determinism compares a disk's fault draws; a disk seeded by the host is caught", function(t)
    local dir = st.workdir("disk_draws")
    local out, code = st.run(dir, "--check-determinism --seed 9 --progress never")
    t:eq(code, 0, out)
    t:match(out, "%-%-check%-determinism: the two runs made the same %d+ choices")
    out, code = st.run(dir, "--check-determinism --seed 9 --progress never", "UNSEEDED=1")
    t:eq(code, 1, out)
    t:match(out, "choice %d+ differs:\n  first run: +[^\n]*disk_draws%.test%.lua: [^\n]*\tdisk flaky first %x+\n")
end)

test("a test's draws are its own: -k and other tests change nothing", function(t)
    local dir = st.workdir("seeded")
    local whole = run(dir, "--seed 7")
    local alone = run(dir, "--seed 7 -k \"a bridge's drops\"")
    t:eq(alone:match("drops %d+"), whole:match("drops %d+"))
    t:ne(whole:match("draws (%d+)"), whole:match("file (%d+)"), "a test's seed is not the file's")
end)

test("the seed is said at the start, at the end and as a run.seed event; one is drawn when none is given", function(t)
    local dir = st.workdir("seeded")
    local _, _, out, code, events = run(dir, "--seed 123456789")
    t:eq(code, 0, out)
    t:match(out, "provium: seed 123456789 %(%-%-seed 123456789 makes the same choices again%)\n")
    t:match(out, "\nseed: 123456789 [^\n]*\n2 passed, 0 failed, 0 skipped\n$")
    t:match(events, '"type":"run.seed"[^}]*"seed":123456789')
    local _, _, one = run(dir, "")
    local _, _, two = run(dir, "")
    local s1, s2 = one:match("provium: seed (%d+)"), two:match("provium: seed (%d+)")
    t:ok(s1 and s2 and s1 ~= s2, "two runs without --seed draw two seeds: " .. tostring(s1) .. ", " .. tostring(s2))
end)

test("bad seeds are refused, naming the option", function(t)
    for _, bad in ipairs({ "-1", "x", "9223372036854775808", "" }) do
        local out, code = st.sh(P .. " --seed '" .. bad .. "' " .. here .. "/fixtures")
        t:eq(code, 2, out)
        t:match(out, "%-%-seed: expected an integer from 0 to 2%^63%-1, got '" .. bad:gsub("%p", "%%%0") .. "'")
    end
end)

test("--check-determinism: one seed, the same choices twice; a choice of the host's is caught", function(t)
    local dir = st.workdir("seeded")
    local out, code = st.run(dir, "--check-determinism --seed 5 --progress never", "OUT=" .. dir .. "/out.txt")
    t:eq(code, 0, out)
    t:match(out, "%-%-check%-determinism: the run twice with seed 5\n")
    t:match(out, "%-%-check%-determinism: the two runs made the same (%d+) choices")
    local n = tonumber(out:match("the same (%d+) choices"))
    t:ok(n >= 2, "provium.random's draws and the drop pattern: " .. tostring(n))
    local bad = st.workdir("unseeded")
    local same = 0
    for _ = 1, 3 do -- two /dev/urandom bytes agree mod 50 once in 50
        out, code = st.run(bad, "--check-determinism --progress never")
        if code == 0 then same = same + 1 else break end
    end
    t:eq(code, 1, out)
    t:match(out, "%-%-check%-determinism: choice 1 differs:\n  first run: +[^\n]*unseeded%.test%.lua: draws as often[^\n]*provium%.random %d+ draws")
    t:ok(same < 3)
end)
