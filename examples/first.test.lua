-- A first Provium file: boot a real VM, run commands in it, and check what happened.
-- Run it with `make demo`, or `build/provium examples/`.

test("a guest boots and runs a command", function(t)
    local vm = provium:vm("a"):boot()
    local r = vm:run("uname -sr")
    r:assert_ok()
    t:match(r.stdout, "^Linux ")
end)

test("files go in and come back out", function(t)
    local vm = provium:vm("b"):boot()
    vm:mkdir("/srv/app", { parents = true })
    vm:write_file("/srv/app/config.ini", "[server]\nport = 8080\n")
    local r = vm:run("grep -c port /srv/app/config.ini"):assert_ok()
    t:eq(r.stdout, "1\n")
    t:eq(vm:stat("/srv/app/config.ini").size, 21)
end)

test("failures say what went wrong", function(t)
    local vm = provium:vm("c"):boot()
    local r = vm:run("ls /does-not-exist")
    r:assert_fail()
    t:contains(r.stderr, "No such file or directory")
    t:error(function() vm:read_file("/does-not-exist") end, "ENOENT")
end)
