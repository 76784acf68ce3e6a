-- local.lua: a VM's start and its round trips, for bench/local.py (docs/performance.md, "Local
-- VMs"); run once under --vmm local and once under --vmm qemu. The figures come from the
-- events: vm.boot's duration_ns (the boot call to the agent's answer) and the `op` events'
-- duration_ns of the measured read_file and exec calls, after the warm-up ones.
local starts = tonumber(os.getenv("BENCH_STARTS") or "") or 20
local reads = tonumber(os.getenv("BENCH_READS") or "") or 200
local runs = tonumber(os.getenv("BENCH_RUNS") or "") or 100
local warm = tonumber(os.getenv("BENCH_WARMUP") or "") or 20
local vm

test("starts", function(t)
    for i = 1, starts do
        local s = provium:vm("start" .. i):boot()
        s:kill()
        s:wait_exit(30)
    end
end)

test("boot", function(t)
    vm = provium:vm("rt"):boot()
    vm:run("head -c 4096 /dev/urandom > /tmp/f4k"):assert_ok()
    for _ = 1, warm do
        t:eq(#vm:read_file("/tmp/f4k"), 4096)
        vm:run("true"):assert_ok()
    end
end)

test("read_file 4 KiB", function(t)
    for _ = 1, reads do
        if #vm:read_file("/tmp/f4k") ~= 4096 then t:fail("short read") end
    end
end)

test("run true", function(t)
    for _ = 1, runs do
        if vm:run("true").code ~= 0 then t:fail("true failed") end
    end
end)
