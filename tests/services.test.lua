-- Starting a service in the guest and waiting until it is ready.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local booted = dofile(here .. "/lib/shared.lua").vm("svc")

test("wait_for_port returns once something listens, and the service answers", function(t)
    local vm = booted()
    local server = vm:run_async("sleep 1; echo served | nc -l -p 7777")
    vm:wait_for_port(7777, 20)
    t:eq(vm:run("nc 127.0.0.1 7777 </dev/null"):assert_ok().stdout, "served\n")
    server:wait(10)
end)

test("wait_for_file returns once the file appears", function(t)
    local vm = booted()
    vm:run_async("sleep 1; echo up > /run/ready")
    vm:wait_for_file("/run/ready", 20)
    t:eq(vm:read_file("/run/ready"), "up\n")
end)

test("a probe that times out says what it waited for", function(t)
    local vm = booted()
    t:error(function() vm:wait_for_port(7999, 1) end, "vm svc: wait_for_port 7999: not ready after 1 s")
    t:error(function() vm:wait_for_file("/no/such/file", 1) end,
            "vm svc: wait_for_file /no/such/file: not ready after 1 s")
    t:error(function() vm:wait_for_port(70000) end, "TCP port 1%-65535 expected")
end)
