-- boot.lua: one cold boot, for bench/run (figure 1 of docs/performance.md). The figure is
-- the vm.boot event's duration_ns: from the vm:boot() call to the agent's hello reply.
-- bench/run runs this file once per boot (a fresh provium each time), so every boot is cold
-- and no idle VM is left running beside the next measurement.
-- With BENCH_IMAGE set, it boots that image instead of the default one (bench/image.py, and
-- the kernel "lean" boots); with BENCH_BOOT_HOTPLUG=0, it boots with hotplug = false.
-- With BENCH_BOOT_CLOCK set, it also writes there the guest's CLOCK_MONOTONIC right after
-- the boot ("now at N nsecs" of /proc/timer_list): where the time went, guest versus host.
test("boot to agent-ready", function(t)
    local vm = provium:vm("bench", os.getenv("BENCH_IMAGE")):boot({ hotplug = os.getenv("BENCH_BOOT_HOTPLUG") ~= "0" })
    local out = os.getenv("BENCH_BOOT_CLOCK")
    if out then
        local now = vm:read_file("/proc/timer_list"):match("now at (%d+) nsecs")
        local f = assert(io.open(out, "w"))
        f:write(now or "", "\n")
        f:close()
    end
    t:eq(vm:state(), "running")
end)
