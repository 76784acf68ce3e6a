-- Snapshots and fixtures: prepare a guest once, then start every test from that state.

-- Built the first time any test asks for it, then restored from the cache (~/.cache/provium).
local function with_service_data(vm)
    vm:run("mkdir -p /srv/app && echo 'greeting=hello' > /srv/app/config"):assert_ok()
end

test("a fixture starts from the prepared state", function(t)
    local vm = provium:vm_fixture("demo-app", with_service_data)
    t:eq(vm:read_file("/srv/app/config"), "greeting=hello\n")
end)

test("time travel within a test: snapshot, break things, restore", function(t)
    local vm = provium:vm_fixture("demo-app", with_service_data)
    local before = vm:snapshot("before the mess")
    vm:run("rm -rf /srv/app"):assert_ok()
    t:error(function() vm:read_file("/srv/app/config") end, "ENOENT")
    vm:restore(before)
    t:eq(vm:read_file("/srv/app/config"), "greeting=hello\n")
end)
