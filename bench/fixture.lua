-- fixture.lua: fixtures and snapshots, for bench/run (figures 8-11 of docs/performance.md).
-- bench/bench.py reads the figures from the --events file and from BENCH_FX_OUT:
-- 8.  cold boot to agent-ready (vm.boot of the "cold boot N" tests) beside the restore of a
--     fixture to agent-ready (vm.restore of the "fixture restore N" tests; the fixture is built,
--     and restored once untimed, in the "build" test first). The two alternate, and each clone
--     runs `sleep 1` before it is stopped, as a test would use its VM for a while. Then the
--     same number of restores back to back ("back-to-back restore N": each clone only reads a
--     file and is stopped), the worst case for anything prepared between restores, and again
--     with the fixture's `pool` option ("pooled restore N", BENCH_FX_POOL spares). Each
--     test.end also gives the whole Lua call (provium:vm_fixture includes the key, the cache
--     lookup and the check of the entry's files). The first command of each clone and of each
--     cold-booted VM (`vm:run("true")`, the op events of "fixture use N" and "cold use N").
-- 9.  vm:snapshot() of each cold-booted VM (vm.snapshot events of the "cold use N" tests)
--     beside the fixture build's save (the vm.snapshot event of the "build" test).
-- 10. the copying restore: vm:restore of a snapshot taken of a fixture clone (its RAM is a
--     private mapping, so the snapshot carries all of it in the migration stream), beside 8.
-- 11. memory: BENCH_FX_CLONES clones of the fixture running at once, each after a command,
--     beside BENCH_FX_COLD cold-booted VMs that ran the same setup and command; BENCH_FX_OUT
--     receives one line per QEMU: "kind - pid Field=kB ..." (see record below).
-- BENCH_FX_NAME is the fixture's name: bench.py makes it unique per run (and clears it from
-- the cache afterwards), so a run always builds its own fixture.
local name = os.getenv("BENCH_FX_NAME") or "benchfx"
local boots = tonumber(os.getenv("BENCH_FX_BOOTS") or "") or 5
local restores = tonumber(os.getenv("BENCH_FX_RESTORES") or "") or 9
local copies = tonumber(os.getenv("BENCH_FX_COPIES") or "") or 5
local nclones = tonumber(os.getenv("BENCH_FX_CLONES") or "") or 8
local ncold = tonumber(os.getenv("BENCH_FX_COLD") or "") or 2
local pool = tonumber(os.getenv("BENCH_FX_POOL") or "") or 4
local out = os.getenv("BENCH_FX_OUT")
-- The clones and cold VMs alive at once (figure 11), the builder, and the spares started ahead.
provium:claim({ memory = 256 * (nclones + ncold + 3 + pool) })

-- The fixture's state: a marker and 16 MiB of data in the guest's rootfs (initramfs, i.e.
-- RAM), standing for what a real setup installs.
local function setup(vm)
    vm:write_file("/root/fixture", "bench\n")
    vm:run("mkdir -p /srv && dd if=/dev/urandom of=/srv/data bs=1M count=16 2>/dev/null")
        :assert_ok()
end

local function stop(vm)
    vm:kill()
    vm:wait_exit(30)
end

-- The QEMUs this process started (the VMs' QEMUs are children of the file's runner; a QEMU's
-- -name may not be its VM's: a restore can adopt a QEMU started ahead of time).
local function qemu_children()
    local me = assert(io.open("/proc/self/stat")):read("a"):match("^(%d+)")
    local ls = assert(io.popen("ls /proc"))
    local pids = {}
    for d in ls:lines() do
        local f = d:match("^%d+$") and io.open("/proc/" .. d .. "/stat")
        if f then
            local comm, ppid = (f:read("a") or ""):match("^%d+ %((.*)%) %S+ (%d+)")
            f:close()
            if ppid == me and comm and comm:find("qemu", 1, true) then pids[#pids + 1] = tonumber(d) end
        end
    end
    ls:close()
    table.sort(pids)
    return pids
end

-- A QEMU's memory: its smaps_rollup fields (kB), then ram_*: the same sums over the guest
-- RAM's mapping alone (the file QEMU got as guest RAM: <run dir>/<vm>/ram of a cold-booted VM,
-- "ram", or the fixture's <vm>.ram of a clone, "fixture"); returns the fields as "Key=kB"
-- strings, which file, and the mapping's Rss.
local lines = {} -- for BENCH_FX_OUT: "kind - pid Key=kB ..."
local function smaps(pid)
    local f = io.open("/proc/" .. pid .. "/smaps_rollup")
    if not f then return nil end -- it exited meanwhile
    local fields = {}
    for k, v in f:read("a"):gmatch("\n([%w_]+):%s+(%d+) kB") do fields[#fields + 1] = k .. "=" .. v end
    f:close()
    local keys = { "Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty" }
    local ram, in_ram, file = {}, false, "none"
    for _, k in ipairs(keys) do ram[k] = 0 end
    for line in io.lines("/proc/" .. pid .. "/smaps") do
        local path = line:match("^%x+%-%x+ %S+ %x+ %x+:%x+ %d+%s*(.*)$")
        if path then
            in_ram = path:match("/ram$") ~= nil or path:match("%.ram$") ~= nil
            if in_ram then file = path:match("/ram$") and "ram" or "fixture" end
        elseif in_ram then
            local k, v = line:match("^([%w_]+):%s+(%d+) kB")
            if k and ram[k] then ram[k] = ram[k] + tonumber(v) end
        end
    end
    for _, k in ipairs(keys) do fields[#fields + 1] = "ram_" .. k .. "=" .. ram[k] end
    return fields, file, ram.Rss
end

-- Records every QEMU of this runner: a VM of `kind` when its guest RAM is a `file` mapping
-- with more than 4 MiB resident (each VM has just read 16 MiB of it), else a "spare" (a QEMU
-- started ahead for the next restore, whose guest has not run: "spare_<kind>"). The clones ask
-- for no spares (pool = 0), so those left from earlier restores are adopted first, and no warm
-- one (whose guest ran until its agent answered) is left to count. Returns how many of `kind`
-- it found.
local function record(kind, file)
    local n = 0
    for _, pid in ipairs(qemu_children()) do
        local fields, f, rss = smaps(pid)
        if fields then
            local k = (f == file and rss > 4096) and kind or "spare_" .. kind
            if k == kind then n = n + 1 end
            lines[#lines + 1] = string.format("%s - %d %s", k, pid, table.concat(fields, " "))
        end
    end
    return n
end

test("build", function(t)
    local vm = provium:vm_fixture(name, setup) -- builds it, then its first (untimed) restore
    t:eq(vm:read_file("/root/fixture"), "bench\n")
    stop(vm)
end)

-- 8 and 9: cold boots (each snapshotted once) and fixture restores, alternating
local cold, restored = {}, {}
for i = 1, math.max(boots, restores) do
    local function boot_one()
        test("cold boot " .. i, function(t)
            cold[i] = provium:vm(name .. "-cold" .. i):boot()
        end)
        test("cold use " .. i, function(t)
            cold[i]:run("true"):assert_ok()
            t:ok(cold[i]:snapshot("cold " .. i))
            stop(cold[i])
        end)
    end
    local function restore_one()
        test("fixture restore " .. i, function(t)
            restored[i] = provium:vm_fixture(name, setup)
        end)
        test("fixture use " .. i, function(t)
            restored[i]:run("true"):assert_ok() -- a clone's first command, beside a cold VM's
            t:eq(restored[i]:read_file("/root/fixture"), "bench\n")
            restored[i]:run("sleep 1"):assert_ok()
            stop(restored[i])
        end)
    end
    local first, second = boot_one, restore_one
    if i % 2 == 0 then first, second = restore_one, boot_one end
    if first == boot_one and i <= boots or first == restore_one and i <= restores then first() end
    if second == boot_one and i <= boots or second == restore_one and i <= restores then second() end
end

local back = {}
for i = 1, restores do
    test("back-to-back restore " .. i, function(t)
        back[i] = provium:vm_fixture(name, setup)
    end)
    test("back-to-back use " .. i, function(t)
        t:eq(back[i]:read_file("/root/fixture"), "bench\n")
        stop(back[i])
    end)
end

-- 8 again: back to back with a pool of spares (the fixture's `pool` option, BENCH_FX_POOL)
local pooled = {}
for i = 1, restores do
    test("pooled restore " .. i, function(t)
        pooled[i] = provium:vm_fixture(name, setup, { pool = pool })
    end)
    test("pooled use " .. i, function(t)
        t:eq(pooled[i]:read_file("/root/fixture"), "bench\n")
        stop(pooled[i])
    end)
end

-- 10: a snapshot of a clone carries its RAM in the stream; restoring it copies all of it. A
-- failed restore is recorded (BENCH_FX_OUT: "copying_error ...") and ends this part, so the
-- other figures are still measured.
local clone, copying, copy_failed
test("copying snapshot", function(t)
    clone = provium:vm_fixture(name, setup)
    clone:run("true"):assert_ok()
    copying = clone:snapshot("copying")
end)
for i = 1, copies do
    test("copying restore " .. i, function(t)
        if copy_failed then return t:skip("an earlier copying restore failed") end
        local ok, err = pcall(clone.restore, clone, copying)
        if not ok then copy_failed = tostring(err) end
    end)
    test("copying use " .. i, function(t)
        if copy_failed then return t:skip("the copying restore failed") end
        t:eq(clone:read_file("/root/fixture"), "bench\n")
    end)
end
test("copying done", function(t)
    if copy_failed then
        lines[#lines + 1] = "copying_error " .. copy_failed:gsub("%s+", " ")
        pcall(clone.kill, clone)
        return
    end
    stop(clone)
end)

-- 11: memory of VMs running at once, each after the same command
local function check_data(t, vm)
    local r = vm:run("md5sum /srv/data")
    r:assert_ok()
    return r.stdout:match("^(%x+)")
end

test("memory: cold-booted VMs", function(t)
    local vms = {}
    for i = 1, ncold do
        vms[i] = provium:vm(name .. "-mem" .. i):boot()
        setup(vms[i])
    end
    for i = 1, ncold do t:ok(check_data(t, vms[i])) end
    t:eq(record("cold", "ram"), ncold, "the cold-booted VMs' QEMUs")
    for i = 1, ncold do stop(vms[i]) end
end)

test("memory: fixture clones", function(t)
    local vms, sum = {}, nil
    for i = 1, nclones do vms[i] = provium:vm_fixture(name, setup, { pool = 0 }) end
    for i = 1, nclones do
        local s = check_data(t, vms[i])
        sum = sum or s
        t:eq(s, sum, "every clone has the fixture's data")
    end
    t:eq(record("clone", "fixture"), nclones, "the clones' QEMUs")
    if out then
        local f = assert(io.open(out, "w"))
        f:write(table.concat(lines, "\n"), "\n")
        f:close()
    end
    for i = 1, nclones do stop(vms[i]) end
end)
