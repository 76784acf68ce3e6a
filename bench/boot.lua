-- boot.lua: one cold boot, for bench/run (figure 1 of docs/performance.md). The figure is
-- the vm.boot event's duration_ns: from the vm:boot() call to the agent's hello reply.
-- bench/run runs this file once per boot (a fresh provium each time), so every boot is cold
-- and no idle VM is left running beside the next measurement.
test("boot to agent-ready", function(t)
    local vm = provium:vm("bench"):boot()
    t:eq(vm:state(), "running")
end)
