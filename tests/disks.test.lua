-- Disks: files of the runner served to the guest's virtio-blk over NBD, read and written from
-- the host, failed and slowed at run time, and losing their unflushed writes with their VM.
-- provium-diskio (tools/diskio.c) does the guest's O_DIRECT and O_DSYNC I/O precisely.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
-- Beside provium, or in build/ for a build without the guest's programs (make check-asan's).
local DISKIO = provium.executable:gsub("provium$", "provium-diskio")
if not io.open(DISKIO) then DISKIO = here .. "/../build/provium-diskio" end

provium:claim({ memory = "1536M" }) -- three VMs at the most

-- The VMs of earlier tests go when a test makes its own, so that the claim holds.
local live = {}
local function new_vm(name, image)
    for _, vm in ipairs(live) do vm:kill() end
    live = {}
    local vm = provium:vm(name, image)
    live[1] = vm
    return vm
end

local n = 0
-- A VM of image "disks" (e2fsprogs) with diskio in /bin, and a new disk of size attached before
-- it boots.
local function vm_with_disk(size, disk_opts)
    n = n + 1
    local opts = disk_opts or {}
    opts.size = opts.size or size or "64M"
    local d = provium:disk("d" .. n, opts)
    local vm = new_vm("dk" .. n, "disks")
    vm:attach_disk(d)
    vm:boot()
    vm:write_file("/bin/diskio", { from = DISKIO, mode = "0755" })
    return vm, d, d:guest_path()
end

local function diskio(vm, args)
    return vm:run("diskio " .. args)
end

test("a disk attached before boot: found by its serial; sectors go from guest to host and back", function(t)
    local vm, d, dev = vm_with_disk("16M")
    t:match(dev, "^/dev/vd[a-z]$")
    t:eq(vm:run("cat /sys/block/" .. dev:sub(6) .. "/serial").stdout, d:name())
    t:eq(vm:run("blockdev --getsize64 " .. dev).stdout, tostring(16 * 1024 * 1024) .. "\n")
    t:eq(d:size(), 16 * 1024 * 1024)
    t:eq(d:sector_size(), 512)
    diskio(vm, "write " .. dev .. " 8 from-the-guest direct"):assert_ok()
    local s = d:read_sectors(8, 1)
    t:eq(#s, 512)
    t:eq(s:sub(1, 14), "from-the-guest")
    t:eq(s:sub(15), ("\0"):rep(498), "the rest of the sector")
    d:write_sectors(100, ("from-the-host"):rep(1) .. ("\0"):rep(512 - 13))
    t:eq(diskio(vm, "read " .. dev .. " 100 1"):assert_ok().stdout, "from-the-host\n")
    t:eq(d:read_sectors(0, 2), ("\0"):rep(1024), "a new disk reads as zeros")
end)

test("hot-plug and detach on a running VM; several disks per VM", function(t)
    local vm = new_vm("hot", "disks"):boot()
    vm:write_file("/bin/diskio", { from = DISKIO, mode = "0755" })
    local a, b = provium:disk("hot_a", { size = "8M" }), provium:disk("hot_b", { size = "4M" })
    vm:attach_disk(a)
    vm:attach_disk(b)
    local pa, pb = a:guest_path(), b:guest_path()
    t:ne(pa, pb)
    diskio(vm, "write " .. pb .. " 0 bee direct"):assert_ok()
    t:eq(b:read_sectors(0, 1):sub(1, 3), "bee")
    vm:detach_disk(a)
    t:error(function() a:guest_path(vm) end, "disk hot_a: guest_path: vm hot has no disk of that serial")
    t:eq(vm:run("cat /sys/block/*/serial").stdout, "hot_b", "b stays")
    vm:attach_disk(a)
    t:match(a:guest_path(), "^/dev/vd")
    vm:detach_disk(b)
    local other = provium:vm("hot2", "disks"):boot()
    live[2] = other
    other:attach_disk(b) -- detached, it can go to another VM
    t:eq(other:run("cat /sys/block/*/serial").stdout, "hot_b")
end)

-- provium.bydevice: a driver loads only for a device of its own, at boot or hot-plugged
test("a VM without a disk or card loads neither driver; a hot-plugged disk loads virtio_blk", function(t)
    local vm = new_vm("bare", "disks"):boot()
    t:needs_kernel(vm, "the guest's modules")
    local function loaded(name)
        return ("\n" .. vm:read_file("/proc/modules")):find("\n" .. name .. " ", 1, true) ~= nil
    end
    vm:run("sleep 3") -- the background loads are done by then (MODULES_DEFER_MS is 2 s)
    t:ok(loaded("virtio_console"), "virtio_console loaded")
    t:ok(loaded("button"), "button loaded")
    t:ok(not loaded("virtio_blk"), "no disk: no virtio_blk")
    t:ok(not loaded("virtio_net"), "no card: no virtio_net")
    local d = provium:disk("late_blk", { size = "4M" })
    vm:attach_disk(d)
    t:match(d:guest_path(), "^/dev/vd")
    t:ok(loaded("virtio_blk"), "virtio_blk loaded once the disk came")
    t:eq(vm:run("cat /sys/block/*/serial").stdout, "late_blk")
    t:ok(not loaded("virtio_net"), "still no virtio_net")
end)

test("hotplug = false: a disk and a card given before boot work; after boot none is plugged or unplugged", function(t)
    local d, late = provium:disk("fixed", { size = "4M" }), provium:disk("late", { size = "4M" })
    local lan = provium:bridge("fixed")
    local vm, peer = new_vm("fixed", "disks"), provium:vm("fixedpeer")
    live[2] = peer
    vm:attach_disk(d)
    lan:attach({ vm, peer })
    vm:boot({ hotplug = false })
    peer:boot()
    t:contains(vm:read_file("/proc/cmdline"), " acpi=noirq")
    t:eq(vm:run("cat /sys/block/*/serial").stdout, "fixed", "the disk given before boot")
    vm:run("ping -c 1 -W 10 fixedpeer.fixed"):assert_ok() -- and its card
    local why = "the VM was booted with hotplug = false %(no PCI hot%-plug, acpi=noirq%): " ..
                "attach it before vm:boot%(%)"
    t:error(function() vm:attach_disk(late) end, "vm fixed: attach_disk late: " .. why)
    t:error(function() vm:detach_disk(d) end, "vm fixed: detach_disk fixed: " .. why)
    t:eq(vm:run("cat /sys/block/*/serial").stdout, "fixed", "still attached")
    local other = provium:bridge("fixed2")
    t:error(function() other:attach(vm) end, "vm fixed: attach: " .. why)
    t:error(function() provium:vm("fixedbad"):boot({ hotplug = "no" }) end,
            "option 'hotplug' must be a boolean, got string")
end)

test("ext4: a read fault on one file's blocks fails that file with EIO, another reads fine", function(t)
    local vm, d, dev = vm_with_disk("64M")
    vm:run(string.format("mkfs.ext4 -q -F %s && mkdir -p /mnt/x && mount %s /mnt/x && " ..
                         "head -c 65536 /dev/urandom > /mnt/x/bad && head -c 65536 /dev/urandom > /mnt/x/good && " ..
                         "sync && umount /mnt/x && mount %s /mnt/x", dev, dev, dev)):assert_ok()
    -- filefrag -v: "   0:        0..      15:      34816..     34831:     16:" (4 KiB blocks)
    local ext = vm:run("filefrag -v -b4096 /mnt/x/bad"):assert_ok().stdout
    local first, last = ext:match("\n%s+0:%s+%d+%.%.%s*%d+:%s+(%d+)%.%.%s*(%d+):")
    t:ok(first, "the file's extent in\n" .. ext)
    local f = d:eio_read({ lba = tonumber(first) * 8, count = (tonumber(last) - tonumber(first) + 1) * 8 })
    local bad = vm:run("cat /mnt/x/bad > /dev/null")
    t:ne(bad.code, 0)
    t:contains(bad.stderr, "Input/output error")
    t:eq(vm:run("cat /mnt/x/good | wc -c").stdout, "65536\n", "the other file reads")
    t:ok(f:hits() >= 1, "hits: " .. f:hits())
    t:contains(vm:run("dmesg"):assert_ok().stdout, "I/O error, dev " .. dev:sub(6))
    f:undo()
    t:eq(vm:run("cat /mnt/x/bad | wc -c").stdout, "65536\n", "undone: it reads again")
end)

test("a write fault makes ext4 abort its journal and remount read-only", function(t)
    local vm, d, dev = vm_with_disk("64M")
    vm:run(string.format("mkfs.ext4 -q -F %s && mkdir -p /mnt/w && mount -o errors=remount-ro %s /mnt/w",
                         dev, dev)):assert_ok()
    local f = d:eio_write()
    vm:run("echo data > /mnt/w/file; sync; sync")
    local log = ""
    for _ = 1, 50 do -- the journal aborts in its own thread; the next change sees it
        vm:run("touch /mnt/w/again")
        log = vm:run("dmesg"):assert_ok().stdout
        if log:find("Remounting filesystem read-only", 1, true) then break end
        vm:run("sleep 0.2")
    end
    t:match(log, "Aborting journal on device " .. dev:sub(6))
    t:match(log, "EXT4%-fs %(" .. dev:sub(6) .. "%): Remounting filesystem read%-only")
    t:contains(vm:run("touch /mnt/w/after").stderr, "Read-only file system", "read-only now")
    t:ok(f:hits() > 0)
end)

test("slow{ms = 50} shows in the guest's measured latency, and goes with undo", function(t)
    local vm, d, dev = vm_with_disk("16M")
    local function mean_us() return tonumber(diskio(vm, "lat-read " .. dev .. " 0 10"):assert_ok().stdout:match("^us ([%d.]+)")) end
    local plain = mean_us()
    local s = d:slow({ ms = 50, ops = "read" })
    local slow = mean_us()
    t:ok(slow >= 50000 and slow < 50000 + plain + 40000, string.format("slow %.0f us (plain %.0f)", slow, plain))
    t:eq(s:hits(), 10)
    diskio(vm, "write " .. dev .. " 0 x direct"):assert_ok() -- ops = "read": writes are not slowed
    t:eq(s:hits(), 10)
    s:undo()
    t:ok(mean_us() < 50000, "back to normal")
    local j = d:slow({ ms = 10, jitter_ms = 20 })
    local r = diskio(vm, "lat-read " .. dev .. " 0 10"):assert_ok().stdout
    local mean, lo, hi = r:match("^us ([%d.]+) ([%d.]+) ([%d.]+)")
    -- jitter only adds; the guest's clock (TCG) may run a little behind the host's sleep
    t:ok(tonumber(lo) >= 9500 and tonumber(hi) >= tonumber(lo), r)
    j:undo()
end)

-- Reads sectors lba, lba + 1, ... one at a time (O_DIRECT): "o" for each that worked, "x" else.
local function pattern(vm, dev, count)
    local script = string.format(
        "for i in $(seq 0 %d); do diskio read %s $i 1 >/dev/null 2>&1 && printf o || printf x; done",
        count - 1, dev)
    return vm:run(script).stdout
end

test("times = 3 fails exactly three requests; errno is what the fault says", function(t)
    local vm, d, dev = vm_with_disk("16M")
    local f = d:eio_read({ times = 3, errno = "ENOSPC" })
    t:eq(pattern(vm, dev, 6), "xxxooo")
    t:eq(f:hits(), 3)
    local w = d:eio_write({ lba = 40, count = 1 })
    t:ne(diskio(vm, "write " .. dev .. " 40 x direct").code, 0)
    diskio(vm, "write " .. dev .. " 41 y direct"):assert_ok()
    w:undo()
    diskio(vm, "write " .. dev .. " 40 x direct"):assert_ok()
end)

test("the same probability and seed fail the same requests twice", function(t)
    local vm = new_vm("prob", "disks"):boot()
    vm:write_file("/bin/diskio", { from = DISKIO, mode = "0755" })
    local seen = {}
    for i, seed in ipairs({ 7, 7, 8 }) do
        local d = provium:disk("p" .. i, { size = "1M", rng_seed = seed })
        vm:attach_disk(d)
        d:eio_read({ probability = 0.5 })
        seen[i] = pattern(vm, d:guest_path(), 24)
    end
    t:eq(seen[1], seen[2], "seed 7 twice")
    t:ok(seen[1]:find("x") and seen[1]:find("o"), "some fail, some do not: " .. seen[1])
    t:ne(seen[3], seen[1], "seed 8")
end)

test("power loss drops unsynced writes and keeps synced ones (O_DSYNC, fsync, a later flush)", function(t)
    local vm, d, dev = vm_with_disk("16M")
    d:power_loss_mode(true)
    diskio(vm, "write " .. dev .. " 40 before-the-flush direct"):assert_ok()
    diskio(vm, "write " .. dev .. " 30 fsync fsync"):assert_ok() -- its flush keeps 40 too
    diskio(vm, "write " .. dev .. " 20 dsync direct dsync"):assert_ok() -- a flush too (virtio-blk has no FUA)
    diskio(vm, "write " .. dev .. " 10 unsynced direct"):assert_ok()
    diskio(vm, "write " .. dev .. " 50 unsynced-too direct"):assert_ok()
    t:eq(d:read_sectors(10, 1):sub(1, 8), "unsynced", "the host sees it before the loss")
    vm:kill()
    for lba, text in pairs({ [20] = "dsync", [30] = "fsync", [40] = "before-the-flush" }) do
        t:eq(d:read_sectors(lba, 1):sub(1, #text), text, "kept: " .. text)
    end
    t:eq(d:read_sectors(10, 1), ("\0"):rep(512), "dropped")
    t:eq(d:read_sectors(50, 1), ("\0"):rep(512), "dropped too")
    t:eq(d:last_power_loss(), { dropped = 2, kept = 0 })
end)

test("a partial power loss drops a seeded share of the unsynced writes", function(t)
    local function survivors(seed)
        local vm, d, dev = vm_with_disk("4M", { rng_seed = seed })
        d:power_loss_mode(true, { drop = 0.5 })
        for lba = 1, 16 do diskio(vm, string.format("write %s %d w%d direct", dev, lba, lba)):assert_ok() end
        vm:kill()
        local kept = ""
        for lba = 1, 16 do kept = kept .. (d:read_sectors(lba, 1):byte(1) == 0 and "-" or "k") end
        return kept, d:last_power_loss()
    end
    local a, la = survivors(3)
    local b, lb = survivors(3)
    t:eq(a, b, "the same seed drops the same writes")
    t:ok(a:find("k") and a:find("-"), "some kept, some dropped: " .. a)
    t:eq(la.dropped + la.kept, 16)
    t:eq(la, lb)
end)

test("from: a raw image is used copy-on-write and never modified; a disk copies another", function(t)
    local dir = st.tmpdir("diskfrom")
    local img = dir .. "/base.img"
    st.sh("dd if=/dev/zero of=" .. img .. " bs=1M count=2 2>/dev/null && printf base-data | dd of=" .. img .. " conv=notrunc 2>/dev/null")
    local before = st.sh("md5sum < " .. img)
    local vm = new_vm("from", "disks"):boot()
    vm:write_file("/bin/diskio", { from = DISKIO, mode = "0755" })
    local d = provium:disk("from_img", { from = img })
    t:eq(d:size(), 2 * 1024 * 1024)
    vm:attach_disk(d)
    local dev = d:guest_path()
    t:eq(diskio(vm, "read " .. dev .. " 0 1").stdout, "base-data\n")
    diskio(vm, "write " .. dev .. " 0 changed direct"):assert_ok()
    t:eq(diskio(vm, "read " .. dev .. " 0 1").stdout, "changed\n")
    t:eq(st.sh("md5sum < " .. img), before, "the image is untouched")
    local copy = provium:disk("copy", { from = d })
    t:eq(copy:read_sectors(0, 1):sub(1, 7), "changed")
    diskio(vm, "write " .. dev .. " 0 later direct"):assert_ok()
    t:eq(copy:read_sectors(0, 1):sub(1, 7), "changed", "a copy of that moment")
end)

test("a snapshot keeps its disks' bytes: a restore brings them back, after a kill too", function(t)
    local vm, d, dev = vm_with_disk("8M")
    diskio(vm, "write " .. dev .. " 0 at-the-snapshot direct"):assert_ok()
    local snap = vm:snapshot()
    diskio(vm, "write " .. dev .. " 0 after-it direct"):assert_ok()
    diskio(vm, "write " .. dev .. " 9 after-it-too direct"):assert_ok()
    vm:restore(snap)
    t:eq(diskio(vm, "read " .. dev .. " 0 1").stdout, "at-the-snapshot\n", "the guest reads the snapshot's")
    t:eq(d:read_sectors(9, 1), ("\0"):rep(512), "and the host")
    diskio(vm, "write " .. dev .. " 0 second-life direct"):assert_ok()
    vm:kill()
    vm:restore(snap)
    t:eq(diskio(vm, "read " .. dev .. " 0 1").stdout, "at-the-snapshot\n", "again, from an exited VM")
end)

test("a fixture carries its disks: each clone gets a copy-on-write disk of its own", function(t)
    new_vm("fx_unused") -- the earlier tests' VMs go
    local function clone()
        return provium:vm_fixture("disk-fixture", function(vm)
            local d = provium:disk("fxdata", { size = "8M" })
            vm:attach_disk(d)
            vm:write_file("/bin/diskio", { from = DISKIO, mode = "0755" })
            vm:run("diskio write " .. d:guest_path() .. " 0 prepared direct"):assert_ok()
        end)
    end
    local a, b = clone(), clone()
    live[#live + 1], live[#live + 2] = a, b
    local da, db = a:disk("fxdata"), b:disk("fxdata")
    t:eq(diskio(a, "read " .. da:guest_path() .. " 0 1").stdout, "prepared\n")
    t:eq(diskio(b, "read " .. db:guest_path() .. " 0 1").stdout, "prepared\n")
    diskio(a, "write " .. da:guest_path() .. " 0 only-in-a direct"):assert_ok()
    t:eq(diskio(b, "read " .. db:guest_path() .. " 0 1").stdout, "prepared\n", "b does not see a's write")
    t:eq(da:read_sectors(0, 1):sub(1, 9), "only-in-a")
    t:eq(db:read_sectors(0, 1):sub(1, 8), "prepared")
    t:error(function() a:disk("nope") end, ": disk: no disk \"nope\" is attached")
end)

-- docs/api.md's example, as it is there
test("the example of docs/api.md: ext4, a read fault, a power loss, the disk on another VM", function(t)
    new_vm("example_unused")
    local d = provium:disk("data", { size = "64M" })
    local vm = provium:vm("db", "disks")
    live[1] = vm
    vm:attach_disk(d)
    vm:boot()
    local dev = d:guest_path()
    vm:run("mkfs.ext4 -q " .. dev .. " && mkdir /mnt/d && mount " .. dev .. " /mnt/d"):assert_ok()
    vm:run("head -c 65536 /dev/urandom > /mnt/d/some-file && sync && echo 3 > /proc/sys/vm/drop_caches"):assert_ok()
    local first = vm:run("filefrag -v -b512 /mnt/d/some-file"):assert_ok().stdout:match("\n%s+0:%s+%d+%.%.%s*%d+:%s+(%d+)%.%.")
    local f = d:eio_read({ lba = tonumber(first), count = 8 })
    t:ne(vm:run("cat /mnt/d/some-file").code, 0)
    t:ok(f:hits() > 0)
    f:undo()

    d:power_loss_mode(true)
    vm:run("echo kept > /mnt/d/a && sync && echo maybe > /mnt/d/b"):assert_ok()
    vm:kill()
    t:eq(d:last_power_loss().kept, 0)

    vm:detach_disk(d)
    local after = provium:vm("check", "disks")
    live[2] = after
    after:attach_disk(d)
    after:boot()
    local again = d:guest_path()
    after:run("mkdir /mnt/d && mount " .. again .. " /mnt/d"):assert_ok()
    t:eq(after:run("cat /mnt/d/a").stdout, "kept\n")
end)

test("bad input gets clear errors", function(t)
    t:error(function() provium:disk("neg", { size = -1 }) end, "disk neg: size must be like")
    t:error(function() provium:disk("none") end, "disk none: give a size")
    t:error(function() provium:disk("bad name!", { size = "1M" }) end, "a disk's name is 1 to 20 of")
    t:error(function() provium:disk("provium-x", { size = "1M" }) end, "not starting with \"provium\"")
    t:error(function() provium:disk("opt", { size = "1M", sise = 1 }) end, "unknown option \"sise\"")
    t:error(function() provium:disk("q", { from = "/nonexistent.img" }) end, "disk q: from /nonexistent.img: No such file")
    local d = provium:disk("bad", { size = "1M" })
    t:error(function() provium:disk("bad", { size = "1M" }) end, "disk bad: a disk of that name exists")
    t:error(function() d:read_sectors(2048, 1) end, "disk bad: read_sectors: sectors 2048..2049 are not on the disk")
    t:error(function() d:read_sectors(-1, 1) end, "lba must be >= 0")
    t:error(function() d:write_sectors(0, "short") end, "5 bytes is not a whole number of 512.byte sectors")
    t:error(function() d:eio_read({ errno = "EWHAT" }) end, "errno must be one of EIO, ENOSPC")
    t:error(function() d:eio_read({ lba = 4000 }) end, "eio_read: sectors 4000..4001 are not on the disk")
    t:error(function() d:eio_write({ probability = 2 }) end, "probability must be a number in")
    t:error(function() d:slow({ ops = "sideways", ms = 1 }) end, "ops must be \"read\", \"write\" or \"all\"")
    t:error(function() d:slow({}) end, "slow: ms is required")
    t:error(function() d:power_loss_mode(true, { drop = 0 }) end, "drop must be a number in")
    local a, b = provium:vm("twice_a"), provium:vm("twice_b")
    a:attach_disk(d)
    t:error(function() b:attach_disk(d) end, "vm twice_b: attach_disk bad: the disk is attached to vm twice_a")
    t:error(function() b:detach_disk(d) end, "vm twice_b: detach_disk bad: the disk is not attached to it")
    t:error(function() a:attach_disk("d") end, "vm twice_a: attach_disk: a disk expected")
    a:detach_disk(d)
    b:attach_disk(d)
end)

test("events: disk.create, attach, fault, fault_hit, heal, detach and power_loss", function(t)
    local dir = st.tmpdir("diskev")
    local f = assert(io.open(dir .. "/ev.test.lua", "w"))
    f:write(string.format([[
test("events", function(t)
    local d = provium:disk("ev", { size = "1M" })
    local vm = provium:vm("ev")
    vm:attach_disk(d)
    vm:boot()
    vm:write_file("/bin/diskio", { from = %q, mode = "0755" })
    local f = d:eio_read({ times = 1 })
    vm:run("diskio read " .. d:guest_path() .. " 0 1")
    d:heal()
    d:slow({ ms = 1 }) -- in effect to the file's end: its hits after the test and at the end
    vm:run("diskio read " .. d:guest_path() .. " 0 1")
    d:power_loss_mode(true)
    vm:run("diskio write " .. d:guest_path() .. " 1 x direct")
    vm:kill()
end)
]], DISKIO))
    f:close()
    local out, code = st.run(dir, "--events " .. dir .. "/ev.mp")
    t:eq(code, 0, out)
    local lines = st.sh(provium.executable .. " events " .. dir .. "/ev.mp | grep ' disk\\.'")
    for _, want in ipairs({
        "disk%.create file=%S+ test=events disk=ev size=1048576 from=\"\" path=[^\n]*/disk%-ev%.img\n",
        "disk%.attach file=%S+ test=events disk=ev vm=ev hot=false plain=false\n",
        "disk%.fault file=%S+ test=events disk=ev fault=1 kind=eio_read lba=0 count=0 errno=EIO times=1 probability=1 ms=0 jitter_ms=0\n",
        "disk%.fault_hit file=%S+ test=events disk=ev fault=1 kind=eio_read hits=1\n",
        "disk%.heal file=%S+ test=events disk=ev fault=0 ended=1\n",
        "disk%.power_loss file=%S+ test=events disk=ev vm=ev pending=1 dropped=1 kept=0 error=\"\"\n" }) do
        t:match(lines, want)
    end
    local _, slow_reports = lines:gsub("disk%.fault_hit file=%S+ test=%S+ disk=ev fault=2 kind=slow hits=%d+\n", "")
    t:eq(slow_reports, 2, "after the test and at the file's end\n" .. lines)
end)

test("nothing is left behind when the file ends, nor when its runner is killed", function(t)
    local dir = st.tmpdir("diskleft")
    st.sh("mkdir " .. dir .. "/run")
    local f = assert(io.open(dir .. "/left.test.lua", "w"))
    f:write([[
test("ends", function(t)
    local d = provium:disk("left", { size = "8M" })
    provium:vm("leftvm"):attach_disk(d)
end)
test("dies", function(t)
    local d = provium:disk("left2", { size = "8M" })
    local vm = provium:vm("leftvm2")
    vm:attach_disk(d)
    vm:boot()
    local pid = io.open("/proc/self/stat"):read("n")
    os.execute("kill -KILL " .. pid)
end)
]])
    f:close()
    local out, code = st.run(dir .. "/left.test.lua", "", "PROVIUM_RUN_DIR=" .. dir .. "/run")
    t:eq(code, 1, out)
    t:contains(out, "file runner was killed by signal 9")
    t:eq(st.sh("ls -A " .. dir .. "/run"), "", "no run directory, image or socket left")
    for _ = 1, 50 do
        if st.qemus("leftvm2") == "" then break end
        st.sh("sleep 0.1")
    end
    t:eq(st.qemus("leftvm2"), "", "no QEMU left")
end)
