-- The fault matrix: what breaks under a run (a wedged QEMU, a hostile guest...) ends in a
-- report naming the object, the operation and the cause, and leaves nothing behind. Each case
-- runs a second provium on a file of its own, so that its faults stay its own.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

-- Runs body as the one file of an inner run, with env before the command; its output, status.
local function inner(name, body, env)
    local dir = st.tmpdir("faults-" .. name)
    st.write(dir .. "/" .. name .. ".test.lua", body)
    return st.run(dir, "--progress never", env)
end

test("a QEMU stopped under a QMP command fails it, saying QEMU did not answer, and is cleaned up", function(t)
    local out, code = inner("wedged", [[
test("pause a stopped QEMU", function(t)
    local vm = provium:vm("wedged"):boot()
    os.execute("pkill -STOP -f 'provium-[w]edged'")
    local t0 = os.time()
    t:error(function() vm:pause() end,
            "vm wedged: pause: QEMU did not answer QMP in time: it is stopped or wedged")
    t:ok(os.time() - t0 < 10, "within the QMP timeout, not the test's")
    t:error(function() vm:run("true", { timeout = 1 }) end, "vm wedged: exec true: no reply from the agent 5.0 s after its own 1.0 s timeout: the agent or the guest is hung")
    os.execute("pkill -CONT -f 'provium-[w]edged'")
end)
]], "PROVIUM_QMP_TIMEOUT=1000")
    t:eq(code, 0, out)
    t:contains(out, "1 passed, 0 failed, 0 skipped")
    t:eq(st.qemus("wedged"), "", "no QEMU left behind")
end)

test("a guest that floods output fills no memory: run fails past 64 MiB, an unread stream ends", function(t)
    local vm = provium:vm("flood", { vmm = "local" }):boot() -- the same host code, sooner
    t:error(function() vm:run("head -c 70000000 /dev/zero") end,
            "vm flood: exec head %-c 70000000 /dev/zero: its stdout passed 64 MiB, more than a run keeps")
    t:eq(vm:run("echo still here"):assert_ok().stdout, "still here\n")
    local p = vm:run_async("head -c 70000000 /dev/zero; echo done >&2")
    local r = p:wait(60)
    t:ok(#r.stdout <= 64 * 1024 * 1024, "what was kept: " .. #r.stdout)
    t:error(function() p:stdout():next() end, "more than 64 MiB came that nobody read: the rest was dropped")
end)

test("a result past the file's Lua ceiling ($PROVIUM_LUA_MEMORY) fails its test at its line, saying so; the next test runs", function(t)
    local out, code = inner("luaheap", [[
test("a result too large for the file's Lua", function(t)
    local vm = provium:vm("heap", { vmm = "local" }):boot()
    vm:run("head -c 40000000 /dev/zero")
end)
test("its own code past the ceiling", function(t)
    local s = string.rep("x", 40000000)
end)
test("the next test runs", function(t)
    t:eq(provium:vm("after", { vmm = "local" }):boot():run("echo up"):assert_ok().stdout, "up\n")
end)
]], "PROVIUM_LUA_MEMORY=16")
    t:eq(code, 1, out)
    t:contains(out, "luaheap.test.lua:3: vm heap: exec head -c 40000000 /dev/zero: not enough memory " ..
               "(a test file's Lua may use 16 MiB: $PROVIUM_LUA_MEMORY)")
    t:match(out, "FAIL  [^\n]*its own code past the ceiling[^\n]*\n[^\n]*not enough memory %(a test file's Lua may use 16 MiB")
    t:match(out, "PASS  [^\n]*the next test runs")
    t:contains(out, "1 passed, 2 failed, 0 skipped")
    t:eq(st.sh("pgrep -af '[_]_local-vm' | grep -F faults-luaheap || true"), "", "no local VM left")
end)

test("a PROVIUM_LUA_MEMORY that is not a size is refused before anything runs", function(t)
    local out, code = inner("luabad", 'test("never", function() error("ran") end)', "PROVIUM_LUA_MEMORY=lots")
    t:eq(code, 2, out)
    t:contains(out, "provium: PROVIUM_LUA_MEMORY: expected MiB or a size like \"8G\" (at least 16M), got 'lots'")
    t:eq(out:find("ran", 1, true), nil, "no test ran")
end)

test("QEMU runs under a seccomp filter (-sandbox) and with no capabilities: what escapes into it cannot exec, fork or use root's powers", function(t)
    local lan = provium:bridge("confined")
    local vm = provium:vm("confined", { vmm = "qemu" })
    lan:attach(vm) -- its TAP: attached to without CAP_NET_ADMIN, as its owner
    vm:boot()
    local pid = tonumber(st.qemus("confined"):match("%d+"))
    t:ok(pid, "its QEMU")
    local status = st.read("/proc/" .. pid .. "/status")
    t:match(status, "\nSeccomp:%s+2\n", "filter mode")
    t:match(st.read("/proc/" .. pid .. "/cmdline"), "%-sandbox%z[^%z]*spawn=deny")
    for _, set in ipairs({ "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" }) do
        t:match(status, "\n" .. set .. ":%s+0000000000000000\n", set)
    end
    t:match(status, "\nNoNewPrivs:%s+1\n")
    t:eq(vm:run("echo fine"):assert_ok().stdout, "fine\n")
    t:match(vm:run("ip -o addr show"):assert_ok().stdout, "inet ", "its network card works")
end)

test("a FIFO or a symlink in a fixture's cache entry is a miss and a rebuild, never a hang", function(t)
    local dir = st.workdir("fixture_user:one")
    st.at_file_end(function() st.sh("rm -rf " .. dir) end)
    local env = "XDG_CACHE_HOME=" .. dir .. "/cache"
    local out, code = st.run(dir, "--progress never", env)
    t:eq(code, 0, out)
    local meta = st.sh("ls -d " .. dir .. "/cache/provium/fixtures/*/meta.json"):gsub("%s+$", "")
    t:match(meta, "/meta%.json$")
    for _, make in ipairs({ "mkfifo " .. meta, "ln -s /etc/passwd " .. meta }) do
        st.sh("rm -f " .. meta .. " && " .. make)
        out, code = st.run(dir, "--progress never --events " .. dir .. "/ev.mp", env .. " timeout 120")
        t:eq(code, 0, make .. ": " .. out)
        t:eq(st.count_events(dir .. "/ev.mp", "fixture.build"), 1, make .. ": rebuilt")
        meta = st.sh("ls -d " .. dir .. "/cache/provium/fixtures/*/meta.json"):gsub("%s+$", "")
        t:eq(st.sh("test -f " .. meta .. " && test ! -L " .. meta .. " && echo regular"), "regular\n")
    end
end)

test("make check's leak check names what a run left behind, and is silent when nothing is", function(t)
    local dir = st.tmpdir("leaks")
    local check = here .. "/../scripts/check-leaks"
    local _, code = st.sh(check .. " snapshot " .. dir .. "/before.json")
    t:eq(code, 0)
    local shm = st.sh("mktemp -d /dev/shm/provium-XXXXXX"):gsub("%s+$", "")
    st.sh("ip link add pvleak0 type bridge")
    local out, code2 = st.sh(check .. " compare " .. dir .. "/before.json")
    st.sh("rmdir " .. shm .. "; ip link del pvleak0")
    -- other files run meanwhile (-j): what they start may be named too, so only ours is asserted
    t:eq(code2, 1, out)
    t:match(out, "the run left %d+ thing%(s%) behind")
    t:contains(out, "run or temporary directory " .. shm)
    t:contains(out, "network link pvleak0 in the host's namespace")
    local clean, code3 = st.sh(check .. " compare " .. dir .. "/before.json")
    t:eq(clean:find(shm, 1, true), nil, "removed: not named")
    t:eq(clean:find("pvleak0", 1, true), nil)
    if code3 == 0 then t:eq(clean, "", "silent when nothing is left") end
end)

test("a QEMU killed under a command fails its test at once, naming the signal; the next test runs", function(t)
    local out, code = inner("qkill", [[
test("QEMU killed mid-command", function(t)
    local vm = provium:vm("qkilled"):boot()
    os.execute("(sleep 1; pkill -KILL -f 'provium-[q]killed') > /dev/null 2>&1 &")
    vm:run("sleep 60")
end)
test("the next VM boots", function(t)
    t:eq(provium:vm("after"):boot():run("echo up"):assert_ok().stdout, "up\n")
end)
]])
    t:eq(code, 1, out)
    t:match(out, "FAIL  [^\n]*QEMU killed mid%-command %(([%d.]+)s%)\n")
    t:ok(tonumber(out:match("QEMU killed mid%-command %(([%d.]+)s%)")) < 30, "at once, not after the command")
    t:contains(out, "vm qkilled: exec sleep 60: the VM died\n")
    t:contains(out, "vm qkilled: QEMU was killed by signal 9")
    t:contains(out, "--- last console lines ---")
    t:match(out, "PASS  [^\n]*the next VM boots")
    t:contains(out, "1 passed, 1 failed, 0 skipped")
    t:eq(st.qemus("qkilled"), "", "no QEMU left")
end)

test("the guest cannot kill or stop its agent: PID 1 ignores SIGKILL, SIGSTOP and SIGTERM", function(t)
    local vm = provium:vm("pid1", { vmm = "qemu" }):boot()
    local r = vm:run("kill -KILL 1; kill -STOP 1; kill -TERM 1; echo sent")
    t:eq(r:assert_ok().stdout, "sent\n")
    t:eq(vm:run("echo still here"):assert_ok().stdout, "still here\n")
end)

test("an agent frozen inside the guest (cgroup freezer): a command says so, and the file ends cleanly", function(t)
    local out, code = inner("frozen", [[
test("freeze the agent", function(t)
    local vm = provium:vm("frozen"):boot()
    vm:run("mount -t cgroup2 none /sys/fs/cgroup && mkdir /sys/fs/cgroup/ice && " ..
           "echo 1 > /sys/fs/cgroup/ice/cgroup.procs"):assert_ok()
    vm:run("(sleep 0.5; echo 1 > /sys/fs/cgroup/ice/cgroup.freeze) > /dev/null 2>&1 &"):assert_ok()
    os.execute("sleep 1.5")
    t:error(function() vm:run("echo hi", { timeout = 1 }) end,
            "vm frozen: exec echo hi: no reply from the agent 5.0 s after its own 1.0 s timeout: " ..
            "the agent or the guest is hung")
end)
]])
    t:eq(code, 0, out)
    t:contains(out, "1 passed, 0 failed, 0 skipped")
    t:eq(st.qemus("frozen"), "", "no QEMU left behind")
end)

test("a hung agent fails an operation without an agent-side timeout within two heartbeats; a long command is not hung", function(t)
    local out, code = inner("heartbeat", [[
test("a command quiet for five heartbeats", function(t)
    local vm = provium:vm("beating"):boot()
    t:eq(vm:run("sleep 5; echo done"):assert_ok().stdout, "done\n", "answered, not declared hung")
end)
test("write_file to a frozen agent", function(t)
    local vm = provium:vm("frozenfile"):boot()
    vm:run("mount -t cgroup2 none /sys/fs/cgroup && mkdir /sys/fs/cgroup/ice && " ..
           "echo 1 > /sys/fs/cgroup/ice/cgroup.procs"):assert_ok()
    vm:run("(sleep 0.5; echo 1 > /sys/fs/cgroup/ice/cgroup.freeze) > /dev/null 2>&1 &"):assert_ok()
    os.execute("sleep 1.5")
    local t0 = os.time()
    t:error(function() vm:write_file("/root/x", "y", { timeout = 120 }) end,
            "vm frozenfile: write_file /root/x: no frame from the agent for 2.0 s, not even an answer to " ..
            "its heartbeat: the agent or the guest is hung")
    t:ok(os.time() - t0 < 30, "within its heartbeats, not its 120 s timeout")
end)
]], "PROVIUM_AGENT_HEARTBEAT=1000")
    t:eq(code, 0, out)
    t:contains(out, "2 passed, 0 failed, 0 skipped")
    t:eq(st.qemus("frozenfile"), "", "no QEMU left behind")
end)

-- A tmpfs of size MiB for an inner run's RAM files, unmounted at the end of the file.
local function small_run_dir(name, size)
    local dir = st.tmpdir(name)
    st.sh(string.format("mount -t tmpfs -o size=%dm provium-%s %s", size, name, dir))
    st.at_file_end(function() st.sh("umount -l " .. dir) end)
    return dir
end

test("a run directory too small for a VM's RAM: its boot is refused, naming both sizes", function(t)
    local dir = small_run_dir("ramfull", 128)
    local out, code = inner("ramfull", [[
test("boots a 256 MiB VM", function(t) provium:vm("roomless"):boot({ memory = 256 }) end)
]], "PROVIUM_RUN_DIR=" .. dir)
    t:eq(code, 1, out)
    t:match(out, "vm roomless: boot: its RAM file needs 256 MiB, and the file system of " ..
                 dir:gsub("%p", "%%%0") .. "/[^ ]+ has 12%d MiB free")
    t:eq(st.qemus("roomless"), "", "no QEMU")
    t:eq(st.sh("ls -A " .. dir), "", "nothing left in it")
end)

test("a RAM file whose file system fills up under the guest: QEMU's SIGBUS is reported as that", function(t)
    local dir = small_run_dir("ramsigbus", 300)
    local out, code = inner("ramsigbus", string.format([[
test("fills the host's side", function(t)
    local vm = provium:vm("squeezed"):boot({ memory = 256 })
    os.execute("dd if=/dev/zero of=%s/filler bs=1M count=300 2>/dev/null")
    vm:run("dd if=/dev/zero of=/tmp/big bs=1M count=200", { timeout = 120 })
end)
]], dir), "PROVIUM_RUN_DIR=" .. dir)
    st.sh("rm -f " .. dir .. "/filler")
    t:eq(code, 1, out)
    t:contains(out, "vm squeezed: QEMU was killed by signal 7 (SIGBUS: most often its RAM file could not grow; the file system of ")
    t:match(out, "has %d MiB free%)")
    t:eq(st.qemus("squeezed"), "", "no QEMU")
    t:eq(st.sh("ls -A " .. dir), "", "nothing left in it")
end)

test("a QEMU stopped during a fixture's save: the save fails saying so, and leaves no staging", function(t)
    local dir = st.tmpdir("fxsave") -- not named like the VM: pkill -f below matches that name
    local out, code = inner("wedgesave", [[
test("saves a fixture", function(t)
    local ok, err = pcall(provium.vm_fixture, provium, "wedgesave", function(vm)
        vm:write_file("/root/x", "y")
        os.execute("pkill -STOP -f 'provium-[w]edgesave'")
    end)
    os.execute("pkill -CONT -f 'provium-[w]edgesave'")
    t:ok(not ok, "the save failed")
    print("SAVE ERROR: " .. tostring(err))
end)
]], "XDG_CACHE_HOME=" .. dir .. "/cache PROVIUM_QMP_TIMEOUT=1000")
    t:eq(code, 0, out)
    t:match(out, "SAVE ERROR: [^\n]*wedgesave[^\n]*QEMU did not answer QMP in time")
    t:eq(st.sh("ls -A " .. dir .. "/cache/provium/fixtures 2>/dev/null | grep tmp || true"), "",
         "no staging directory")
    t:eq(st.qemus("wedgesave"), "", "no QEMU")
end)

test("a cache too full for a fixture's RAM: its build is refused, naming both sizes; no staging is left", function(t)
    local cache = small_run_dir("fxfull", 200) -- building the default image takes about 130 MiB of it
    local out, code = inner("fxfull", [[
test("builds a fixture", function(t)
    local ok, err = pcall(provium.vm_fixture, provium, "crowded", function(vm) vm:write_file("/root/x", "y") end,
                          { memory = 256 })
    t:ok(not ok, "the fixture could not be built")
    print("FIXTURE ERROR: " .. tostring(err))
end)
]], "XDG_CACHE_HOME=" .. cache)
    t:eq(code, 0, out)
    t:match(out, "FIXTURE ERROR: [^\n]*vm crowded: boot: its RAM file needs 256 MiB, and the file system of " ..
                 "[^ ]+ has %d+ MiB free %(a fixture being built keeps it in the cache%)")
    t:eq(st.sh("ls -A " .. cache .. "/provium/fixtures 2>/dev/null | grep tmp || true"), "", "no staging directory")
    t:eq(st.qemus("crowded"), "", "no QEMU")
end)

test("a cache that fills while a fixture's state is written: the save fails with ENOSPC, and leaves no staging", function(t)
    local cache = small_run_dir("fxstate", 600) -- the default image (about 130 MiB), then the RAM
    local out, code = inner("fxstate", string.format([[
test("builds a fixture", function(t)
    local ok, err = pcall(provium.vm_fixture, provium, "stateless", function(vm)
        vm:write_file("/root/x", "y")
        -- all but 64 KiB (a few pages the idle guest may still touch): the state does not fit
        os.execute("n=$(df --output=avail -B 64K %s | tail -1); dd if=/dev/zero of=%s/filler bs=64K count=$((n - 1)) 2>/dev/null")
    end, { memory = 256 })
    os.remove("%s/filler")
    t:ok(not ok, "the fixture could not be saved")
    print("FIXTURE ERROR: " .. tostring(err))
end)
]], cache, cache, cache), "XDG_CACHE_HOME=" .. cache)
    t:eq(code, 0, out)
    t:match(out:match("FIXTURE ERROR: ([^\n]*)") or out, "fixture stateless: saving its VMs failed: vm stateless: " ..
            "snapshot: writing [^\n]*/stateless%.state: No space left on device")
    t:eq(st.sh("ls -A " .. cache .. "/provium/fixtures 2>/dev/null || true"), "", "no staging directory, no entry")
    t:eq(st.qemus("stateless"), "", "no QEMU")
end)

-- The agent's fd for its main connection (virtio port provium.0: /dev/vport0p1): a syscall
-- the agent makes itself can write there what a hostile agent would.
local function agent_port_fd(vm)
    local out = vm:run("for f in /proc/1/fd/*; do echo ${f##*/} $(readlink $f); done"):assert_ok().stdout
    return tonumber(out:match("(%d+) /dev/vport0p1\n"))
end

test("a frame over 4 MiB from the guest's agent closes that connection at once, and later calls say why", function(t)
    local vm = provium:vm("bigframe", { vmm = "qemu" }):boot()
    local fd = agent_port_fd(vm)
    t:ok(fd, "the agent's port")
    -- a length prefix of 16 MiB, then nothing
    t:error(function() vm:syscall("write", fd, provium.buffer("\255\255\255\0"), 4) end,
            "vm bigframe: syscall write: the agent sent a frame over 4 MiB: its connection was closed")
    t:error(function() vm:run("echo still") end,
            "vm bigframe: exec echo still: its agent connection is closed: the agent sent a frame over 4 MiB")
end)

test("a flood of tiny frames from the guest's agent is read in linear time, and the connection goes on", function(t)
    local vm = provium:vm("tinyframes", { vmm = "qemu" }):boot()
    local fd = agent_port_fd(vm)
    -- chunks for a request id that is not in flight: read and dropped. 32-byte frames, in writes
    -- of 32 KiB (what a virtio port takes at once), so that no reply is spliced into one
    local body = "\x83\xa2id\x01\xa5chunk\xa6stdout\xa4data\xc4\x03abc"
    local frame = string.pack("<I4", #body) .. body
    t:eq(#frame, 32)
    local block = provium.buffer(string.rep(frame, 32768 // #frame))
    local cpu0 = os.clock()
    for _ = 1, 64 do t:eq(vm:syscall("write", fd, block, #block), #block) end
    t:eq(vm:run("echo after"):assert_ok().stdout, "after\n", "65536 frames later")
    -- linear: a few hundredths of a second of this runner's CPU (the decoder that moved its
    -- buffer after every frame took minutes for as many)
    local cpu = os.clock() - cpu0
    print(string.format("65536 tiny frames: %.3f s of the runner's CPU", cpu))
    t:ok(cpu < 3, string.format("%.3f s of CPU", cpu))
end)
