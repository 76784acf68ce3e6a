-- vm:clock() and the determinism boot options.
provium:claim({ memory = "2G" }) -- six VMs beside each other at the most
test("clock:advance is visible to date in the guest", function(t)
    local vm = provium:vm("clock"):boot()
    local c = vm:clock()
    local before = tonumber(vm:run("date +%s").stdout)
    t:ok(math.abs(c:now() - before) < 5, "now() agrees with date")
    c:advance(86400)
    local after = tonumber(vm:run("date +%s").stdout)
    t:ok(after - before >= 86400 and after - before < 86400 + 10,
        "date moved by a day: " .. (after - before))
    c:set(2000000000)
    t:eq(vm:run("date -u +%Y-%m-%d").stdout, "2033-05-18\n")
    local up0 = tonumber(vm:read_file("/proc/uptime"):match("^(%S+)"))
    c:sleep(0.5)
    local up1 = tonumber(vm:read_file("/proc/uptime"):match("^(%S+)"))
    -- in centiseconds, as /proc/uptime counts: 12.34 - 11.84 is 0.4999... in floating point
    local moved = math.floor((up1 - up0) * 100 + 0.5)
    t:ok(moved >= 50, "slept 0.5 s of guest time, uptime moved " .. moved .. " cs")
    t:error(function() c:set(-1) end, "bad argument #1 to 'set'")
end)

test("initial_time sets the guest's clock at power-on", function(t)
    local vm = provium:vm("t2030"):boot({ initial_time = "2030-01-01T00:00:00" })
    t:eq(vm:run("date -u +%Y").stdout, "2030\n")
    local e = provium:vm("epoch"):boot({ initial_time = 1900000000 })
    t:eq(e:run("date -u +%Y-%m").stdout, "2030-03\n")
    t:error(function() provium:vm("bad"):boot({ initial_time = "soon" }) end, "initial_time")
end)

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
-- rng_seed: /dev/hwrng is the seed's stream (docs/api.md), the same in every boot whenever it
-- is read, beside a busy VM.
local expected = dofile(here .. "/lib/hwrng.lua")

test("rng_seed makes /dev/hwrng the seed's own stream, whenever and wherever it is read", function(t)
    local busy = provium:vm("busy"):boot()
    busy:run_async("while :; do :; done")
    local read = "head -c 4096 /dev/hwrng | od -An -v -tx1 | tr -d ' \\n'"
    local function hwrng(name, seed, delay)
        local vm = provium:vm(name):boot({ rng_seed = seed })
        if delay then vm:run("sleep " .. delay) end
        local first = vm:run(read):assert_ok().stdout
        local second = vm:run(read):assert_ok().stdout
        vm:kill()
        return first, second
    end
    local a1, a2 = hwrng("seed0", 42)
    t:eq(#a1, 8192, "4 KiB read")
    t:eq(a1, expected(42, 4096), "xoshiro256** of SplitMix64(42)")
    t:eq(a2, expected(42, 8192):sub(8193), "a second read goes on where the first stopped")
    for i = 1, 5 do
        local b1, b2 = hwrng("seed" .. i, 42, i == 5 and 3 or nil)
        t:eq(b1, a1, "boot " .. i .. ": the same first bytes")
        t:eq(b2, a2, "boot " .. i .. ": the same next bytes")
    end
    local c1 = hwrng("seed43", 43)
    t:ne(c1, a1, "another seed, another stream")
    t:eq(c1, expected(43, 4096))
    t:error(function() provium:vm("badseed"):boot({ rng_seed = -1 }) end, "rng_seed")
end)

test("a snapshot carries the stream's position", function(t)
    local vm = provium:vm("seedsnap"):boot({ rng_seed = 7 })
    -- dd asks for exactly 64 bytes (head may read ahead, and what it reads is consumed)
    local read = "dd if=/dev/hwrng bs=64 count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'"
    t:eq(vm:run(read).stdout, expected(7, 64))
    local snap = vm:snapshot("after 64 bytes")
    local next1 = vm:run(read).stdout
    vm:restore(snap)
    t:eq(vm:run(read).stdout, next1, "after the restore, the same next bytes")
    t:eq(next1, expected(7, 128):sub(129))
end)

-- Host seconds, with fractions.
local function host_now()
    local p = io.popen("date +%s.%N")
    local v = tonumber(p:read("a"))
    p:close()
    return v
end

test("clock:skew makes CLOCK_MONOTONIC and CLOCK_REALTIME run fast or slow against the host", function(t)
    local vm = provium:vm("skewed"):boot()
    local function mono()
        local ts = provium.buffer(16)
        vm:syscall("clock_gettime", 1, ts)
        return ts:uint(0, 8) + ts:uint(8, 8) / 1e9
    end
    -- how fast the guest's clocks ran over 3 s of the host's
    local function rates(ppm)
        vm:clock():skew(ppm)
        local g0, w0, h0 = mono(), vm:clock():now(), host_now()
        os.execute("sleep 3")
        local g1, w1, h1 = mono(), vm:clock():now(), host_now()
        return (g1 - g0) / (h1 - h0), (w1 - w0) / (h1 - h0)
    end
    for _, ppm in ipairs({ 50000, -50000, 0 }) do
        local m, w = rates(ppm)
        local want = 1 + ppm / 1e6
        -- the reads themselves take a few ms of the 3 s: a tolerance of 1.5%
        t:ok(math.abs(m - want) < 0.015, string.format("skew %d ppm: CLOCK_MONOTONIC ran at %.4f", ppm, m))
        t:ok(math.abs(w - want) < 0.015, string.format("skew %d ppm: CLOCK_REALTIME ran at %.4f", ppm, w))
    end
    t:error(function() vm:clock():skew(200000) end, "parts per million from %-100000 to 100000")
    t:error(function() vm:clock():skew("fast") end, "parts per million")
end)
