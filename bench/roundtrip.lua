-- roundtrip.lua: round trips through the agent, for bench/run (figures 2 and 3 of
-- docs/performance.md). The figures are the `op` events' duration_ns (host side, from the
-- call into the primitive to the reply); bench/run takes the last BENCH_READS read_file
-- ops and the last BENCH_RUNS exec ops, after the warm-up ones. Each measured loop is a test
-- of its own, so its test.end duration_ns / count is the mean as a Lua caller sees it.
local reads = tonumber(os.getenv("BENCH_READS") or "") or 200
local runs = tonumber(os.getenv("BENCH_RUNS") or "") or 100
local warm = tonumber(os.getenv("BENCH_WARMUP") or "") or 20
local guest_out = os.getenv("BENCH_GUEST_DURATIONS") -- r.duration of each measured run
local floor_bin = os.getenv("BENCH_GUEST_FLOOR") -- bench/guest-floor.c, built static
local floor_out = os.getenv("BENCH_INVM_FLOOR") -- its fork+exec times, run in this same VM
local vm

test("boot", function(t)
    vm = provium:vm("rt"):boot()
    vm:run("head -c 4096 /dev/urandom > /tmp/f4k"):assert_ok()
end)

test("warm-up", function(t)
    for _ = 1, warm do
        t:eq(#vm:read_file("/tmp/f4k"), 4096)
        vm:run("true"):assert_ok()
    end
end)

test("read_file 4 KiB", function(t)
    for _ = 1, reads do
        local d = vm:read_file("/tmp/f4k")
        if #d ~= 4096 then t:fail("read " .. #d .. " bytes") end
    end
end)

test("run true", function(t)
    local durations = {}
    for i = 1, runs do
        local r = vm:run("true")
        if r.code ~= 0 then t:fail("true exited " .. tostring(r.code)) end
        durations[i] = string.format("%.9f", r.duration)
    end
    if guest_out then assert(io.open(guest_out, "w")):write(table.concat(durations, "\n"), "\n"):close() end
end)

-- the guest's own fork+exec+wait of `sh -c true`, in this VM (its agent idle meanwhile): the
-- floor of vm:run("true") with the VM's environment held equal
test("fork+exec floor in this VM", function(t)
    if not (floor_bin and floor_out) then return t:skip("BENCH_GUEST_FLOOR and BENCH_INVM_FLOOR not set") end
    local f = assert(io.open(floor_bin, "rb"))
    vm:write_file("/tmp/guest-floor", f:read("a"), { mode = tonumber("755", 8) })
    f:close()
    local r = vm:run(string.format("/tmp/guest-floor forkexec %d /bin/sh -c true", runs)):assert_ok()
    local ns = r.stdout:match("^FLOOR%-FORKEXEC ([%d ]+)")
    t:ok(ns, "guest-floor printed its times: " .. r.stdout:sub(1, 80))
    assert(io.open(floor_out, "w")):write(ns:gsub(" ", "\n"), "\n"):close()
end)
