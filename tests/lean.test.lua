-- The lean kernel (a recipe's `kernel "lean"`, scripts/imagelib/lean.py): built once from
-- Debian's linux-source-6.1 into the cache (about five minutes here the first time), no
-- modules, and what the suite's guests use built in. images/lean.lua, images/lean-disk.lua.
provium:claim({ memory = "1024M" })

local lean = provium:vm("lean", "lean")

local function booted(t)
    t:needs_kernel(lean, "the lean kernel")
    if lean:state() == "defined" then lean:boot() end
    return lean
end

test("kernel \"lean\": Linux built from Debian's source boots, with no modules, and the agent serves", function(t)
    local vm = booted(t)
    local release = vm:run("uname -r"):assert_ok().stdout
    t:match(release, "^6%.1%.%d+%-provium%-lean\n$")
    t:error(function() vm:stat("/proc/modules") end, "ENOENT", "no module support: no /proc/modules")
    t:error(function() vm:stat("/lib/modules") end, "ENOENT", "no cloud kernel's modules in the initrd")
    vm:write_file("/tmp/x", "lean")
    t:eq(vm:read_file("/tmp/x"), "lean")
    t:eq(vm:run("echo $((6 * 7))"):assert_ok().stdout, "42\n")
end)

test("netem on the lean kernel: built in, 100 ms each way on lo", function(t)
    local vm = booted(t)
    vm:run("ip link set lo up"):assert_ok()
    t:eq(vm:_netem("lo", 100, 0), true)
    local r = vm:run("ping -c 3 -i 0.2 127.0.0.1"):assert_ok()
    local mn = tonumber(r.stdout:match("min/avg/max = ([%d.]+)/"))
    t:ok(mn and mn >= 200, "RTT >= 200 ms with netem: " .. r.stdout)
    t:eq(vm:_netem_clear("lo"), true)
end)

test("netem on what the lean kernel receives: IFB, ingress, matchall and mirred built in", function(t)
    local vm = booted(t)
    vm:run("ip link set lo up"):assert_ok()
    -- on lo every packet is received once: the request and the reply each wait 100 ms
    t:eq(vm:_netem("lo", 100, 0, { direction = "in" }), true)
    local r = vm:run("ping -c 3 -i 0.2 127.0.0.1"):assert_ok()
    local mn = tonumber(r.stdout:match("min/avg/max = ([%d.]+)/"))
    t:ok(mn and mn >= 200, "RTT >= 200 ms with netem on lo's receive side: " .. r.stdout)
    t:eq(vm:_netem_clear("lo"), true)
    t:error(function() vm:stat("/sys/class/net/ifb-lo") end, "ENOENT", "clear removes the IFB")
    r = vm:run("ping -c 3 -i 0.2 127.0.0.1"):assert_ok()
    mn = tonumber(r.stdout:match("min/avg/max = ([%d.]+)/"))
    t:ok(mn and mn < 100, "no delay after clear: " .. r.stdout)
end)

test("a disk hot-plugged into a lean VM: virtio-blk, ACPI hot-plug and ext4 built in", function(t)
    local vm = booted(t)
    local d = provium:disk("leandisk", { size = "32M" })
    vm:attach_disk(d)
    local dev = d:guest_path()
    vm:run("mkfs.ext4 -q " .. dev .. " && mkdir -p /mnt/d && mount " .. dev .. " /mnt/d"):assert_ok()
    vm:write_file("/mnt/d/f", "on ext4")
    vm:run("umount /mnt/d && mount " .. dev .. " /mnt/d"):assert_ok()
    t:eq(vm:read_file("/mnt/d/f"), "on ext4")
    vm:run("umount /mnt/d"):assert_ok()
    vm:detach_disk(d)
end)

test("two lean VMs on a bridge reach each other", function(t)
    local vm = booted(t)
    local peer = provium:vm("leanpeer", "lean")
    local lan = provium:bridge("leanlan")
    lan:attach({ vm, peer })
    peer:boot()
    peer:run("ping -c 1 -W 10 lean.leanlan"):assert_ok()
    peer:kill()
end)

test("pack \"disk\" with the lean kernel: the root disk mounts and holds the packages", function(t)
    local vm = provium:vm("leanroot", "lean-disk")
    t:needs_kernel(vm, "the lean kernel")
    vm:boot()
    t:match(vm:run("uname -r"):assert_ok().stdout, "%-provium%-lean\n$")
    t:eq(vm:run("hello"):assert_ok().stdout, "Hello, world!\n")
    t:contains(vm:read_file("/proc/mounts"), "overlay / overlay")
    vm:kill()
end)
