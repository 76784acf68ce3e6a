-- A real service in the guest: the image comes from the recipe examples/images/kv.lua.
local vm = provium:vm("kv", "kv"):boot()

test("a service from Debian's packages starts and answers", function(t)
    vm:run_async({ "redis-server", "--port", "6379", "--save", "", "--protected-mode", "no" })
    vm:wait_for_port(6379, 30)
    t:eq(vm:run("redis-cli set hello world"):assert_ok().stdout, "OK\n")
    t:eq(vm:run("redis-cli get hello"):assert_ok().stdout, "world\n")
    t:eq(vm:run("hostname"):assert_ok().stdout, "kv\n")
end)
