-- vm:boot and the console: images, options, failures.
provium:claim({ memory = "1536M" }) -- each test's VMs, alive until the file ends
local vm_a = provium:vm("a") -- booted by the first test; its name is taken for the last one

test("two VMs boot and each has its own guest", function(t)
    local a = vm_a:boot()
    local b = provium:vm("b"):boot({ memory = "320M" })
    a:write_file("/tmp/who", "a")
    t:error(function() b:read_file("/tmp/who") end, "ENOENT")
    t:needs_kernel(b, "its own memory size")
    local mem = tonumber(b:run("awk '/MemTotal/ {print $2}' /proc/meminfo"):assert_ok().stdout)
    t:ok(mem > 256 * 1024 and mem <= 320 * 1024, "b has about 320 MiB, MemTotal " .. mem .. " kB")
end)

test("the boot log holds the kernel's messages and the agent's ready line", function(t)
    -- the default command line is quiet; append raises the log level again
    local vm = provium:vm("logs"):boot({ append = "loglevel=7" })
    local log = vm:boot_log()
    t:contains(log, "Linux version")
    t:contains(log, "provium-agent")
    t:contains(vm:console_tail(5), "provium-agent")
    t:eq(vm:run("uname -s").stdout, "Linux\n")
end)

test("the agent runs as PID 1 and the guest has its mounts", function(t)
    local vm = provium:vm("init"):boot()
    t:eq(vm:read_file("/proc/1/comm"), "init\n")
    local mounts = vm:read_file("/proc/mounts")
    for _, m in ipairs({ " /proc proc", " /sys sysfs", " /tmp tmpfs" }) do
        t:contains(mounts, m)
    end
    t:needs_kernel(vm, "devtmpfs and the virtio modules")
    t:contains(mounts, " /dev devtmpfs")
    t:contains(vm:read_file("/proc/modules"), "virtio_console")
end)

test("an unknown image is a clear error", function(t)
    local vm = provium:vm("noimage", "no-such-image")
    t:error(function() vm:boot() end, "no%-such%-image")
end)

test("a kernel that does not exist is a clear error", function(t)
    local vm = provium:vm("nokernel")
    t:error(function() vm:boot({ kernel = "/no/such/vmlinux" }) end, "/no/such/vmlinux")
end)

test("a guest that never starts its agent times out with the console tail", function(t)
    local vm = provium:vm("noagent")
    local msg = t:error(function()
        vm:boot({ append = "rdinit=/bin/sleep-forever-missing", timeout = 20 })
    end)
    t:contains(msg, "last console lines")
end)

test("bad boot options are named", function(t)
    t:error(function() provium:vm("opt1"):boot({ memory = "lots" }) end, "memory")
    t:error(function() provium:vm("opt2"):boot({ cpus = 0 }) end, "cpus")
    t:error(function() provium:vm("a") end, "already exists")
    t:error(function() provium:vm("bad name!") end, "must be 1%-32 characters")
    t:error(function() provium:vm("x"):boot() ; provium:vm("x") end, "already exists")
end)
