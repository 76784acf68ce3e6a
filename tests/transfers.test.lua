-- Big files both ways, through memory and through host files.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local booted = dofile(here .. "/lib/shared.lua").vm("xfer", { memory = "1G" })

test("boot", function(t) t:eq(booted():state(), "running") end)

local function host_md5(data)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
    local sum = io.popen("md5sum < " .. path .. " | cut -c1-32"):read("a")
    os.remove(path)
    return sum
end

test("256 MiB each way through Lua strings", function(t)
    local vm = booted()
    local data = string.rep("0123456789abcdef", 16 * 1024 * 1024)
    t:eq(vm:write_file("/tmp/big", data), #data)
    t:eq(vm:stat("/tmp/big").size, #data)
    t:eq(vm:run("md5sum < /tmp/big | cut -c1-32").stdout, host_md5(data))
    local back = vm:read_file("/tmp/big")
    t:eq(#back, #data)
    t:ok(back == data, "identical")
end)

test("256 MiB to and from a host file", function(t)
    local vm = booted()
    if vm:run("test -f /tmp/big").code ~= 0 then -- left by the test above, unless run alone
        vm:write_file("/tmp/big", string.rep("0123456789abcdef", 16 * 1024 * 1024))
    end
    local host = os.tmpname()
    t:eq(vm:read_file("/tmp/big", { to = host }), 268435456)
    vm:run("rm /tmp/big"):assert_ok() -- /tmp is a tmpfs of half the guest's RAM
    t:eq(vm:write_file("/tmp/big2", { from = host }), 268435456)
    t:eq(vm:run("md5sum < /tmp/big2 | cut -c1-32").stdout,
        io.popen("md5sum < " .. host .. " | cut -c1-32"):read("a"))
    os.remove(host)
    vm:run("rm /tmp/big2")
end)

test("host-side errors name the host file", function(t)
    local vm = booted()
    t:error(function() vm:write_file("/tmp/x", { from = "/no/such/host/file" }) end,
        "host file /no/such/host/file")
    t:error(function() vm:read_file("/etc/passwd", { to = "/no/such/dir/out" }) end,
        "host file /no/such/dir/out")
    t:error(function() vm:write_file("/tmp/x", "data", { from = "/etc/passwd" }) end, "not both")
end)

test("a guest-side error mid-upload ends it at once, and the connection stays usable", function(t)
    local vm = booted()
    vm:run("mkdir -p /mnt/small && mount -t tmpfs -o size=1m tmpfs /mnt/small"):assert_ok()
    local data = string.rep("z", 8 * 1024 * 1024)
    t:error(function() vm:write_file("/mnt/small/f", data, { timeout = 30 }) end, "ENOSPC")
    t:eq(vm:run("echo usable").stdout, "usable\n")
end)
