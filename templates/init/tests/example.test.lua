-- example.test.lua: a first Provium test. `provium tests/` runs it; `provium help api` has the
-- whole Lua API, and `provium check tests/` finds mistakes without booting anything.
test("a VM boots and runs a command", function(t)
    local vm = provium:vm("web"):boot()
    local r = vm:run("uname -s"):assert_ok()
    t:eq(r.stdout, "Linux\n")
end)

test("a VM of this project's own image (tests/images/hello.lua)", function(t)
    local vm = provium:vm("hello", "hello"):boot()
    t:eq(vm:read_file("/etc/motd"), "hello from a Provium recipe\n")
    t:eq(vm:run("hostname").stdout, "hello\n")
end)

test("two VMs on a bridge", function(t)
    local lan = provium:bridge("lan")
    local a, b = provium:vm("a"):boot(), provium:vm("b"):boot()
    lan:attach({ a, b })
    a:run("ping -c 1 -W 2 b.lan"):assert_ok()
end)
