-- Fixtures: VM states built once into the on-disk cache and restored for every test (and every
-- later file) that asks. Runs of a second provium use a cache of their own (XDG_CACHE_HOME).
provium:claim({ memory = "3G" }) -- builders, clones and the spares started ahead of them
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

local function cache_env(dir) return "XDG_CACHE_HOME=" .. dir .. "/cache" end

local function user_cache()
    return (os.getenv("XDG_CACHE_HOME") or (os.getenv("HOME") .. "/.cache")) .. "/provium/fixtures"
end

test("a fixture is built once and reused by two files running at once, and by later runs", function(t)
    local dir = st.workdir("fixture_user:one", "fixture_user:two")
    local out, code = st.run(dir, "-j 2 --events " .. dir .. "/ev1.mp", cache_env(dir))
    t:eq(code, 0, out)
    t:match(out, "\n2 passed, 0 failed, 0 skipped\n$")
    t:eq(st.count_events(dir .. "/ev1.mp", "fixture.miss"), 1, "one file built it")
    t:eq(st.count_events(dir .. "/ev1.mp", "fixture.build"), 1)
    t:eq(st.count_events(dir .. "/ev1.mp", "fixture.hit"), 1, "the other waited and reused it")
    out, code = st.run(dir .. "/one.test.lua", "--events " .. dir .. "/ev2.mp", cache_env(dir))
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/ev2.mp", "fixture.miss"), 0, "a later run reuses it")
    t:eq(st.count_events(dir .. "/ev2.mp", "fixture.hit"), 1)
    local ls = st.sh(cache_env(dir) .. " " .. provium.executable .. " cache ls")
    t:match(ls, "fixture +shared ")
    local clear = st.sh(cache_env(dir) .. " " .. provium.executable .. " cache clear fixtures")
    t:contains(clear, "removed fixture shared-")
    t:eq(st.sh("ls " .. dir .. "/cache/provium/fixtures"), "", "nothing left after clear")
    st.sh("rm -rf " .. dir)
end)

local function setup(vm)
    vm:write_file("/root/marker", "built")
    vm:run("mkdir -p /srv/data && echo 42 > /srv/data/answer"):assert_ok()
end

test("the restored VM holds the setup's changes and the host's time; clones are independent", function(t)
    local a = provium:vm_fixture("selftest-state", setup)
    local b = provium:vm_fixture("selftest-state", setup)
    t:eq(a:read_file("/root/marker"), "built")
    t:eq(b:read_file("/srv/data/answer"), "42\n")
    t:ok(a:name() ~= b:name(), "two VMs: " .. a:name() .. ", " .. b:name())
    a:write_file("/root/marker", "changed in a")
    t:eq(b:read_file("/root/marker"), "built", "a clone's change stays in that clone")
    local now = tonumber(a:run("date +%s").stdout)
    t:ok(math.abs(now - os.time()) <= 5, "guest clock " .. now .. " vs host " .. os.time())
end)

test("a fixture clone can be snapshotted and restored like any VM", function(t)
    local vm = provium:vm_fixture("selftest-state", setup)
    local first = vm:snapshot("clone") -- its RAM maps the fixture's: the stream carries it
    vm:write_file("/root/marker", "changed")
    vm:restore(first)
    t:eq(vm:read_file("/root/marker"), "built")
    local second = vm:snapshot("own RAM now")
    vm:run("rm -rf /srv/data"):assert_ok()
    vm:restore(second)
    t:eq(vm:read_file("/srv/data/answer"), "42\n")
end)

test("a setup function that fails is reported with its location, and nothing is cached", function(t)
    local err = t:error(function()
        provium:vm_fixture("selftest-bad", function(vm)
            vm:run("false"):assert_ok()
        end)
    end)
    t:match(err, "fixture selftest%-bad: setup failed: [^\n]*fixture%.test%.lua:%d+: vm selftest%-bad: command \"false\" exited with code 1")
    t:eq(st.sh("ls " .. user_cache() .. " | grep selftest-bad || true"), "", "no entry")
    t:eq(st.qemus("selftest-bad"), "", "the builder VM is gone")
end)

test("a corrupt, truncated or edited entry is detected, rebuilt and never restored", function(t)
    local dir = st.workdir("fixture_user:one")
    local out, code = st.run(dir, "", cache_env(dir))
    t:eq(code, 0, out)
    local entry = st.sh("ls -d " .. dir .. "/cache/provium/fixtures/shared-*/"):gsub("%s+$", "")
    -- a byte changed in the middle of the saved device state
    st.sh("printf 'X' | dd of=" .. entry .. "/shared.state bs=1 seek=4096 conv=notrunc")
    out, code = st.run(dir, "--events " .. dir .. "/ev.mp", cache_env(dir))
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/ev.mp", "fixture.hit"), 0, "the corrupt entry was not used")
    t:eq(st.count_events(dir .. "/ev.mp", "fixture.build"), 1, "it was rebuilt")
    t:contains(io.open(dir .. "/ev.mp", "rb"):read("a"), "shared.state", "the miss says why")
    -- guest RAM: a page the guest wrote, overwritten
    st.sh("dd if=/dev/urandom of=" .. entry .. "/shared.ram bs=4096 count=1 seek=256 conv=notrunc")
    out, code = st.run(dir, "--events " .. dir .. "/ev2.mp", cache_env(dir))
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/ev2.mp", "fixture.hit"), 0)
    t:eq(st.count_events(dir .. "/ev2.mp", "fixture.build"), 1)
    -- the device state cut short, as a full disk or a crash leaves it
    st.sh("truncate -s -4096 " .. entry .. "/shared.state")
    out, code = st.run(dir, "--events " .. dir .. "/ev3.mp", cache_env(dir))
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/ev3.mp", "fixture.hit"), 0, "the truncated entry was not used")
    t:eq(st.count_events(dir .. "/ev3.mp", "fixture.build"), 1)
    t:match(st.read(dir .. "/ev3.mp"), "shared%.state is %d+ bytes, meta%.json says %d+")
    -- a VM's configuration edited in meta.json, which the files' hashes do not cover
    st.sh("sed -i 's/\"memory_mb\": [0-9]*/\"memory_mb\": 4096/' " .. entry .. "/meta.json")
    t:contains(st.read(entry .. "/meta.json"), '"memory_mb": 4096')
    out, code = st.run(dir, "--events " .. dir .. "/ev4.mp", cache_env(dir))
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/ev4.mp", "fixture.hit"), 0, "the edited entry was not used")
    t:eq(st.count_events(dir .. "/ev4.mp", "fixture.build"), 1)
    t:contains(st.read(dir .. "/ev4.mp"), "vm shared: config XXH3 is ")
    st.sh("rm -rf " .. dir)
end)

test("a changed setup function rebuilds the fixture, an unchanged one does not", function(t)
    local dir = st.workdir("fixture_user:one")
    local function builds()
        local ev = dir .. "/ev.mp"
        os.remove(ev)
        local out, code = st.run(dir, "--events " .. ev, cache_env(dir))
        t:eq(code, 0, out)
        return st.count_events(ev, "fixture.build")
    end
    t:eq(builds(), 1, "first run")
    t:eq(builds(), 0, "same source")
    st.sh("sed -i 's|the setup function|the setup function, changed|g' " .. dir .. "/one.test.lua")
    t:eq(builds(), 1, "changed source")
    st.sh("rm -rf " .. dir)
end)

test("the next clone of a fixture adopts a QEMU started ahead, and none is left behind", function(t)
    local dir = st.workdir("fixture_twice")
    st.sh("mkdir " .. dir .. "/run")
    local out, code = st.run(dir, "--events " .. dir .. "/ev.mp",
                             cache_env(dir) .. " PROVIUM_RUN_DIR=" .. dir .. "/run")
    t:eq(code, 0, out)
    t:match(out, "\n2 passed, 0 failed, 0 skipped\n$")
    t:ok(st.count_events(dir .. "/ev.mp", "spare-1") > 0, "a spare QEMU was started")
    t:eq(st.count_events(dir .. "/ev.mp", "vm.restore"), 2)
    t:eq(st.sh("pgrep -f '" .. dir .. "/[r]un' || true"), "", "no QEMU left after the run")
    t:eq(st.sh("ls -A " .. dir .. "/run"), "", "no run directory left")
    st.sh("rm -rf " .. dir)
end)

-- Runs fixture_warm with env; returns its output and its vm.restore events' spare fields
-- (in order), and the spare QEMUs started between the first restore and the second test.
local function warm_run(t, dir, env)
    local ev = dir .. "/ev.mp"
    os.remove(ev)
    local out, code = st.run(dir, "--events " .. ev, cache_env(dir) .. " PROVIUM_RUN_DIR=" ..
                             dir .. "/run " .. env)
    t:eq(code, 0, out)
    t:match(out, "\n3 passed, 0 failed, 0 skipped\n$")
    local json = st.sh(provium.executable .. " events " .. ev .. " --json")
    local spares, after_first, first_done = {}, 0, false
    for line in json:gmatch("[^\n]+") do
        local ty = line:match('"type":"([^"]+)"')
        if ty == "vm.restore" then
            spares[#spares + 1] = line:match('"spare":"([^"]*)"') or "?"
            first_done = true
        elseif ty == "vm.spawn" and first_done and #spares == 1 and line:find('"vm":"spare%-') then
            after_first = after_first + 1
        end
    end
    t:eq(st.sh("pgrep -f '" .. dir .. "/[r]un' || true"), "", "no QEMU left after the run")
    t:eq(st.sh("ls -A " .. dir .. "/run"), "", "no run directory left")
    return spares, after_first
end

test("the next clone resumes a spare kept loaded and stopped; its state and clock are its own", function(t)
    local dir = st.workdir("fixture_warm")
    st.sh("mkdir " .. dir .. "/run")
    local spares, started = warm_run(t, dir, "")
    t:eq(table.concat(spares, ","), ",warm,warm", "the first clone restores cold, the next two warm")
    t:eq(started, 1, "one spare by default")
    st.sh("rm -rf " .. dir)
end)

test("a fixture's pool option sets how many spares wait; pool = 0 keeps none", function(t)
    local dir = st.workdir("fixture_warm")
    st.sh("mkdir " .. dir .. "/run")
    local spares, started = warm_run(t, dir, "WARM_POOL=2")
    t:eq(started, 2, "two spares after the first restore")
    t:eq(table.concat(spares, ","), ",warm,warm")
    spares, started = warm_run(t, dir, "WARM_POOL=0")
    t:eq(started, 0, "no spare")
    t:eq(table.concat(spares, ","), ",,", "every clone restores cold")
    st.sh("rm -rf " .. dir)
end)

test("a clone asked for during its spare's warm-up command adopts the spare without waiting for it", function(t)
    local dir = st.workdir("fixture_slow_warmup")
    st.sh("mkdir " .. dir .. "/run")
    local ev = dir .. "/ev.mp"
    local out, code = st.run(dir, "--events " .. ev, cache_env(dir) .. " PROVIUM_RUN_DIR=" .. dir .. "/run")
    t:eq(code, 0, out)
    t:match(out, "\n2 passed, 0 failed, 0 skipped\n$")
    local restores = {}
    for line in st.sh(provium.executable .. " events " .. ev .. " --json"):gmatch("[^\n]+") do
        if line:find('"type":"vm.restore"', 1, true) then restores[#restores + 1] = line end
    end
    t:eq(#restores, 2)
    t:contains(restores[2], '"spare":"loading"', "adopted while its warm-up ran")
    local ns = tonumber(restores[2]:match('"duration_ns":(%d+)'))
    t:ok(ns < 3e9, "the restore did not wait for the 5 s warm-up: " .. ns / 1e6 .. " ms")
    t:eq(st.sh("pgrep -f '" .. dir .. "/[r]un' || true"), "", "no QEMU left after the run")
    st.sh("rm -rf " .. dir)
end)

test("a spare that dies is only a missing spare: the next clone restores without it", function(t)
    local dir = st.workdir("fixture_warm")
    st.sh("mkdir " .. dir .. "/run")
    local spares = warm_run(t, dir, "WARM_KILL=" .. dir)
    t:eq(spares[2], "", "the second clone found no live spare")
    t:eq(spares[3], "warm", "the third found the one started after the second")
    st.sh("rm -rf " .. dir)
end)

test("a cache directory that cannot be written is a clear error", function(t)
    local dir = st.workdir("fixture_user:one")
    st.sh("touch " .. dir .. "/file")
    local out, code = st.run(dir, "", "XDG_CACHE_HOME=" .. dir .. "/file/cache")
    t:eq(code, 1, out)
    t:match(out, "fixture shared: [^\n]*" .. dir:gsub("%p", "%%%0") .. "/file/cache[^\n]*Not a directory")
    st.sh("rm -rf " .. dir)
end)

test("a cache directory another user owns, or others may write, is refused with the reason", function(t)
    if st.sh("id -u") ~= "0\n" then t:skip("this test gives a directory to another user, as root") end
    local dir = st.workdir("fixture_user:one")
    st.sh("mkdir -p " .. dir .. "/theirs/provium " .. dir .. "/open/provium && chown 65534 " ..
          dir .. "/theirs/provium && chmod 0777 " .. dir .. "/open/provium")
    local quoted = dir:gsub("%p", "%%%0")
    local out, code = st.run(dir, "", "XDG_CACHE_HOME=" .. dir .. "/theirs")
    t:eq(code, 1, out)
    t:match(out, "cache directory " .. quoted ..
            "/theirs/provium: owned by uid 65534, not by this user %(uid 0%)")
    out, code = st.sh("XDG_CACHE_HOME=" .. dir .. "/open " .. provium.executable .. " cache ls 2>&1")
    t:eq(code, 1, out)
    t:match(out, "cache directory " .. quoted .. "/open/provium: writable by others %(mode 777; chmod go%-w%)")
    t:eq(st.sh("ls -A " .. dir .. "/theirs/provium " .. dir .. "/open/provium"),
         dir .. "/open/provium:\n\n" .. dir .. "/theirs/provium:\n", "nothing was written into either")
    st.sh("rm -rf " .. dir)
end)

test("a lab fixture saves and restores several VMs together", function(t)
    local lab = provium:lab_fixture("selftest-lab", function(lab)
        local a = lab:vm("a"):boot()
        local b = lab:vm("b"):boot({ memory = "128M" })
        a:write_file("/root/who", "a")
        b:write_file("/root/who", "b")
    end)
    t:eq(lab.a:read_file("/root/who"), "a")
    t:eq(lab.b:read_file("/root/who"), "b")
    t:needs_kernel(lab.b, "its own memory size")
    local mem = tonumber(lab.b:read_file("/proc/meminfo"):match("MemTotal:%s+(%d+)"))
    t:ok(mem < 131072, "b has its own memory size: " .. mem .. " kB")
end)

test("a lab fixture saves its bridge: the VMs come back attached and talking", function(t)
    local lab = provium:lab_fixture("selftest-netlab", function(lab)
        local net = lab:bridge("fxlan")
        local a = lab:vm("na"):boot()
        local b = lab:vm("nb"):boot()
        net:attach({ a, b })
        a:run("ping -c 1 -W 2 nb.fxlan"):assert_ok()
    end)
    local a, b, net = lab.na, lab.nb, lab.fxlan
    a:run("ping -c 1 -W 2 nb.fxlan"):assert_ok()
    t:match(a:ip(net), "^10%.77%.%d+%.10$")
    t:eq(b:ip(net), a:ip(net):gsub("10$", "11"))
    local cut = net:partition({ a }, { b })
    t:ne(a:run("ping -c 1 -W 1 nb.fxlan").code, 0, "impairments work on the restored bridge")
    cut:undo()
    b:run("ping -c 1 -W 2 na.fxlan"):assert_ok()
end)

test("a lab VM on a bridge the lab did not make is a clear error", function(t)
    local outside = provium:bridge("outside")
    t:error(function()
        provium:lab_fixture("selftest-badnet", function(lab)
            outside:attach(lab:vm("bn"):boot())
        end)
    end, "fixture selftest%-badnet: setup failed: vm bn is on bridge outside, which the lab did not make %(use lab:bridge%)")
end)

test("bad arguments get clear errors", function(t)
    t:error(function() provium:vm_fixture("no spaces", function() end) end,
            "bad argument #1 to 'vm_fixture' %(fixture name")
    t:error(function() provium:vm_fixture("x", "not a function") end,
            "bad argument #2 to 'vm_fixture' %(setup function expected, got string%)")
    t:error(function() provium:vm_fixture("x", function() end, { pool = 9 }) end,
            "bad option 'pool' to 'vm_fixture' %(spares kept for the next clones: an integer " ..
            "0%-8 expected, got 9%)")
    t:error(function() provium:vm_fixture("x", function() end, { pool = "two" }) end,
            "bad option 'pool' to 'vm_fixture' %(.*got \"two\"%)")
    t:error(function() provium:lab_fixture("y", function() end) end,
            "fixture y: setup failed: the setup function made no VM")
end)
