-- provium.reset_between_tests: every VM of the file is put back to its state at the start of
-- the file before each test. Its VM boots at the top level on purpose, the one file in tests/
-- that does: the VMs running when the first test starts are what every test is reset to, so
-- this file boots it even when -k selects none of its tests.
provium.reset_between_tests = true
local vm = provium:vm("reset"):boot()
vm:write_file("/root/at-start", "yes")

test("a test changes the guest", function(t)
    t:eq(vm:read_file("/root/at-start"), "yes")
    vm:write_file("/root/at-start", "changed")
    vm:write_file("/root/from-test-1", "x")
end)

test("the next test sees the state of the file's start", function(t)
    t:eq(vm:read_file("/root/at-start"), "yes")
    t:error(function() vm:read_file("/root/from-test-1") end, "ENOENT")
end)

local extra
test("a VM made by a test ...", function(t)
    extra = provium:vm("reset-extra"):boot()
end)

test("... is stopped before the next", function(t)
    t:eq(vm:run("echo fine").stdout, "fine\n")
    if not extra then t:skip("what it checks happens after the test above, which did not run") end
    t:eq(extra:state(), "exited")
end)
