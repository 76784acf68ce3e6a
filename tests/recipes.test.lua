-- Image recipes: tests/images/redis.lua adds Debian's redis-server to the default image. The
-- server runs in one VM, the client in another, over a bridge.
provium:claim({ memory = "1536M" }) -- the server, the client and the recipe checks' VMs
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local shared = dofile(here .. "/lib/shared.lua")

local lan = provium:bridge("lan")
local server = provium:vm("server", "redis")
local client = provium:vm("client", "redis")
lan:attach({ server, client })
-- Both booted at once, by whichever test needs them first.
local booted = shared.once(function()
    provium:parallel(function() server:boot() end, function() client:boot() end)
end)

test("the recipe's packages, files, users and /etc basics are in the guest", function(t)
    booted()
    t:match(server:run("redis-server --version"):assert_ok().stdout, "Redis server v=7")
    t:match(server:read_file("/etc/redis/provium.conf"), "\nbind 0.0.0.0\n")
    t:eq(server:read_file("/etc/motd"), "Provium's redis image\n")
    t:match(server:read_file("/etc/passwd"), "\nredis:x:%d+:%d+:[^:]*:/var/lib/redis:/bin/false\n")
    t:eq(server:run("stat -c '%U %a' /var/lib/redis"):assert_ok().stdout, "redis 750\n")
    t:eq(server:run("hostname"):assert_ok().stdout, "redis\n")
    t:match(server:read_file("/etc/hosts"), "127.0.0.1%s+localhost")
    t:match(server:run("grep -c ' /run tmpfs' /proc/mounts"):assert_ok().stdout, "1")
end)

test("redis-server starts, is waited for, and answers a client on another VM", function(t)
    booted()
    local redis = server:run_async("redis-server /etc/redis/provium.conf")
    server:wait_for_port(6379, 30)
    t:eq(client:run("redis-cli -h server.lan ping"):assert_ok().stdout, "PONG\n")
    client:run("redis-cli -h server.lan set greeting hello"):assert_ok()
    t:eq(client:run("redis-cli -h server.lan get greeting"):assert_ok().stdout, "hello\n")
    t:eq(server:run("redis-cli incr visits"):assert_ok().stdout, "1\n")
    t:eq(client:run("redis-cli -h server.lan incr visits"):assert_ok().stdout, "2\n")
    redis:signal("TERM")
    t:eq(redis:wait(10).code, 0)
end)

test("the guest's root is writable without touching the image", function(t)
    booted()
    server:write_file("/usr/share/provium-test", "written\n")
    t:eq(server:read_file("/usr/share/provium-test"), "written\n")
    t:eq(client:run("test -e /usr/share/provium-test").code, 1, "the other VM does not see it")
end)

-- A fixture of a root-disk image: the clones come back with the disk attached and the service
-- running, each with its own writable layer.
local function with_redis(vm)
    vm:run_async("redis-server /etc/redis/provium.conf")
    vm:wait_for_port(6379, 30)
    vm:run("redis-cli set from fixture"):assert_ok()
end

test("a fixture of the image restores with its service running, clones independent", function(t)
    local a = provium:vm_fixture("redis-up", with_redis, { image = "redis" })
    local b = provium:vm_fixture("redis-up", with_redis, { image = "redis" })
    t:eq(a:run("redis-cli get from"):assert_ok().stdout, "fixture\n")
    b:run("redis-cli set from b"):assert_ok()
    b:write_file("/etc/motd", "b's\n")
    t:eq(a:run("redis-cli get from"):assert_ok().stdout, "fixture\n")
    t:eq(a:read_file("/etc/motd"), "Provium's redis image\n")
    t:match("\n" .. a:read_file("/proc/mounts"), "\noverlay / overlay ")
end)
