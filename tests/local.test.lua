-- --vmm local: the image's agent as PID 1 of namespaces on the host (docs/local.md). What it
-- shares with a QEMU VM runs in the rest of the suite under `make check`'s local pass; here is
-- what is its own: the sandbox, what it leaves behind, its refusals, and how it is chosen.
provium:claim({ memory = "1G" })
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local sh = st.sh

local UNAVAILABLE = "not available under --vmm local (needs a guest kernel)"
local ROOT_OUTSIDE = "1073741824" -- the VM's root on the host (IMAGE_TREE_ID_BASE)

local function local_vm(name) return provium:vm(name, { vmm = "local" }):boot() end

-- The host side of a process inside, found by a marker in its command line: its PID.
local function host_pid(marker)
    local out = sh("pgrep -f '" .. marker:sub(1, 1) .. "[" .. marker:sub(2, 2) .. "]" .. marker:sub(3) .. "' | head -1")
    return tonumber(out:match("%d+"))
end

-- The same once it has started (a run_async just made), or nil after 2.5 s.
local function started_pid(marker)
    for _ = 1, 50 do
        local pid = host_pid(marker)
        if pid then return pid end
        sh("sleep 0.05")
    end
end

-- Where cgroup v2 is mounted, and the cgroup (below it) that host process pid is in.
local function cgroup_of(pid)
    local mnt = sh("awk '$9 == \"cgroup2\" {print $5; exit}' /proc/self/mountinfo"):gsub("%s+$", "")
    return mnt, (sh("awk -F: '$1 == 0 {print $3}' /proc/" .. pid .. "/cgroup"):gsub("%s+$", ""))
end

test("a local VM is the image's agent as PID 1 of its own namespaces", function(t)
    local vm = local_vm("ns")
    t:eq(vm:vmm(), "local")
    t:eq(vm:read_file("/proc/1/comm"), "init\n")
    t:eq(vm:run("cat /proc/1/cmdline | tr '\\0' ' '"):assert_ok().stdout:match("^(%S+)"), "/init")
    local procs = vm:run("ls -d /proc/[0-9]* | wc -l"):assert_ok().stdout
    t:ok(tonumber(procs) < 10, "its PID namespace holds only its own processes: " .. procs)
    t:eq(vm:run("id -u"):assert_ok().stdout, "0\n")
    t:match(vm:read_file("/proc/self/uid_map"), "^%s*0%s+" .. ROOT_OUTSIDE .. "%s+65536")
    t:eq(vm:run("ls /sys/class/net"):assert_ok().stdout, "lo\n", "a network namespace of its own")
    for _, ns in ipairs({ "mnt", "pid", "net", "uts", "ipc", "cgroup", "user" }) do
        local inside = vm:run("readlink /proc/1/ns/" .. ns):assert_ok().stdout
        t:ne(inside, sh("readlink /proc/self/ns/" .. ns), ns .. " namespace")
    end
end)

test("a local VM's keeper is provium-vm, which loads none of provium's libraries; without it beside provium, provium __local-vm is", function(t)
    local vm = local_vm("keeper")
    local keeper = sh("pgrep -f '[_]_local-vm .*/keeper ' | head -1"):match("%d+")
    t:ok(keeper, "the keeper is there")
    local exe = sh("readlink /proc/" .. keeper .. "/exe"):gsub("%s+$", "")
    t:eq(exe, (provium.executable:gsub("/provium$", "/provium-vm")))
    -- none of provium's own libraries (a sanitizer build adds only its runtimes)
    t:eq(sh("ldd " .. exe .. " | grep -c -e nftables -e lua -e libuv -e jansson -e msgpack -e archive || true"),
         "0\n", "none of provium's libraries")
    vm:kill()
    -- a provium alone in its directory starts its local VMs as `provium __local-vm`
    local dir = st.tmpdir("local-alone")
    sh("cp " .. provium.executable .. " " .. dir .. "/provium")
    st.write(dir .. "/alone.test.lua", [[
test("alone", function(t)
    local vm = provium:vm("alone", { vmm = "local" }):boot()
    t:eq(vm:run("echo up"):assert_ok().stdout, "up\n")
end)
]])
    local out, code = sh(dir .. "/provium --accel tcg --progress never --events " .. dir .. "/ev.mp " .. dir .. "/alone.test.lua")
    t:eq(code, 0, out)
    local spawn = sh(dir .. "/provium events " .. dir .. "/ev.mp --json --type vm.spawn")
    t:contains(spawn, '"argv":["/proc/self/exe","__local-vm",', "spawned as that provium itself")
end)

test("what a test does inside leaves the host untouched", function(t)
    local vm = local_vm("wreck")
    -- its root is nobody outside: what the host's root owns stays out of its reach
    local ps = vm:run_async({ "/bin/busybox", "sleep", "4242" })
    local pid = started_pid("sleep 4242")
    t:ok(pid, "the sleep is a host process")
    t:eq(sh("stat -c %u /proc/" .. pid), ROOT_OUTSIDE .. "\n", "its owner on the host")
    ps:kill()
    local before = sh("sha256sum /etc/passwd /bin/sh; ls /bin | wc -l")
    vm:write_file("/etc/passwd", "mallory::0:0::/:/bin/sh\n")
    t:eq(vm:read_file("/etc/passwd"), "mallory::0:0::/:/bin/sh\n", "the VM's own /etc/passwd changed")
    vm:run("rm -rf /bin /sbin /usr /lib 2>/dev/null; true")
    t:error(function() vm:run("echo gone") end, "exec /bin/sh: No such file or directory")
    t:eq(sh("sha256sum /etc/passwd /bin/sh; ls /bin | wc -l"), before, "the host's are not")
end)

test("the host's kernel settings and devices are out of reach", function(t)
    local vm = local_vm("kernel")
    local r = vm:run("echo 1 > /proc/sys/vm/drop_caches")
    t:ne(r.code, 0, "/proc/sys is read-only: " .. r.stderr)
    r = vm:run("echo 1 > /proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward")
    t:eq(r:assert_ok().stdout, "1\n", "but its network namespace's part is its own")
    t:eq(sh("cat /proc/sys/net/ipv4/ip_forward"), "0\n", "and the runner's stays as it was")
    t:ne(vm:run("mknod /tmp/sda b 8 0").code, 0, "no device nodes")
    t:ne(vm:run("echo x > /sys/kernel/uevent_helper").code, 0, "/sys is read-only")
    t:eq(vm:run("ls /dev | tr '\\n' ' '"):assert_ok().stdout,
         "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ")
end)

test("pause freezes every process of the VM in its cgroup; resume thaws them", function(t)
    local vm = local_vm("frozen")
    local p = vm:run_async({ "/bin/busybox", "sleep", "4343" })
    local pid = started_pid("sleep 4343")
    t:ok(pid, "the sleep is a host process")
    local mnt, cg = cgroup_of(pid)
    t:match(cg, "/provium%-vm%-%d+%-%d+$")
    local events = mnt .. cg .. "/cgroup.events"
    vm:pause()
    t:contains(sh("cat " .. events), "frozen 1")
    t:eq(vm:state(), "paused")
    vm:resume()
    t:contains(sh("cat " .. events), "frozen 0")
    t:eq(vm:run("echo back"):assert_ok().stdout, "back\n")
    p:kill()
end)

test("a process started inside cannot outlive the VM, and shutdown ends it cleanly", function(t)
    local vm = local_vm("outlive")
    vm:run_async({ "/bin/busybox", "sleep", "4444" })
    vm:run("(/bin/busybox sleep 4445 &) ; true"):assert_ok() -- an orphan, reparented to PID 1
    sh("sleep 0.2")
    t:ok(host_pid("sleep 4444") and host_pid("sleep 4445"), "both sleeps run")
    vm:kill()
    vm:wait_exit(10)
    t:eq(host_pid("sleep 4444"), nil, "killed with the VM")
    t:eq(host_pid("sleep 4445"), nil, "the orphan too")
    local calm = local_vm("calm")
    calm:shutdown({ timeout = 10 })
    t:eq(calm:state(), "exited")
end)

test("a QEMU VM and a local VM on one bridge talk, and a partition cuts them", function(t)
    local lan = provium:bridge("mix")
    local q = provium:vm("q", { vmm = "qemu" }):boot()
    local l = local_vm("l")
    lan:attach({ q, l })
    t:eq(q:vmm(), "qemu")
    l:run("ping -c 1 -W 2 q.mix"):assert_ok()
    q:run("ping -c 1 -W 2 l.mix"):assert_ok()
    local cut = lan:partition({ q }, { l })
    t:ne(l:run("ping -c 1 -W 1 q.mix").code, 0, "the partition holds for the local VM's veth")
    cut:undo()
    l:run("ping -c 1 -W 2 q.mix"):assert_ok()
end)

-- An inner run of one file under --vmm local: its output and exit status.
local function inner(name, body, flags)
    local dir = st.tmpdir("local-" .. name)
    st.write(dir .. "/" .. name .. ".test.lua", body)
    local out, code = st.run(dir, (flags or "--vmm local") .. " --progress never --events " .. dir .. "/ev.mp")
    return out, code, dir
end

test("a call that needs a guest kernel says which, and its test is reported as skipped", function(t)
    local out, code = inner("refused", [[
local vm
local function v() vm = vm or provium:vm("r"):boot(); return vm end
test("snapshot", function() v():snapshot() end)
test("console", function() v():console() end)
test("clock", function() v():clock():set(0) end)
test("power", function() v():power_button() end)
test("disk", function() v():attach_disk(provium:disk("d", { size = "1M" })) end)
test("option", function() provium:vm("o"):boot({ initial_time = "2030-01-01T00:00:00" }) end)
test("works", function(t) t:eq(v():run("echo ok").stdout, "ok\n") end)
]])
    t:eq(code, 0, out)
    for call, what in pairs({ snapshot = "snapshot", console = "console", clock = "clock:set",
                              power = "power_button", disk = "attach a disk",
                              option = "boot option initial_time" }) do
        t:match(out, "SKIP  [^\n]*refused%.test%.lua: " .. call .. " %([%d.]+s%): [^\n]*refused%.test%.lua:%d+: vm %a: " ..
                what:gsub("%p", "%%%0") .. ": " .. UNAVAILABLE:gsub("%p", "%%%0"))
    end
    t:contains(out, "PASS  ")
    t:contains(out, "1 passed, 0 failed, 6 skipped")
end)

test("--vmm chooses the run's default, provium:vmm the file's, {vmm = } one VM's", function(t)
    local out, code, dir = inner("choose", [[
test("defaults", function(t)
    t:eq(provium:vmm(), "local")
    t:eq(provium:vm("a"):boot():vmm(), "local")
    t:eq(provium:vm("b", { vmm = "qemu" }):vmm(), "qemu")
    provium:vmm("qemu")
    t:eq(provium:vm("c"):vmm(), "qemu")
    t:error(function() provium:vm("d", { vmm = "kvm" }) end, 'vmm must be "qemu" or "local", got "kvm"')
    t:error(function() provium:vm("e", { vm = "local" }) end, "unknown option 'vm' %(vmm%)")
    t:error(function() provium:vmm("xen") end, 'provium:vmm: vmm must be "qemu" or "local"')
end)
]])
    t:eq(code, 0, out)
    t:contains(out, "1 passed, 0 failed, 0 skipped")
    local spawn = sh(provium.executable .. " events " .. dir .. "/ev.mp --type vm.spawn")
    t:match(spawn, " vm%.spawn [^\n]* vm=a vmm=local pid=%d+ accel=%a+ image=default argv=")
    out, code = st.run(dir, "--vmm xen")
    t:eq(code, 2, out)
    t:contains(out, "provium: --vmm must be qemu or local, not 'xen'")
end)

test("a runner killed with SIGKILL leaves no process, namespace, veth, mount or cgroup", function(t)
    local dir = st.tmpdir("local-kill")
    st.write(dir .. "/victim.test.lua", string.format([[
test("waits to be killed", function()
    local lan = provium:bridge("kil")
    local a, b = provium:vm("a"):boot(), provium:vm("b"):boot()
    lan:attach({ a, b })
    a:run_async({ "/bin/busybox", "sleep", "4646" })
    b:run("(/bin/busybox sleep 4647 &); true")
    io.open("%s/ready", "w"):close()
    a:run("sleep 600")
end)
]], dir))
    sh(string.format("(%s --accel tcg --vmm local --progress never %s > %s/out 2>&1; echo $? > %s/done) > /dev/null 2>&1 &",
                     provium.executable, dir, dir, dir))
    for _ = 1, 200 do
        if st.read(dir .. "/ready") then break end
        sh("sleep 0.05")
    end
    t:ok(st.read(dir .. "/ready"), "the inner test got going: " .. (st.read(dir .. "/out") or ""))
    local runner = tonumber(sh("pgrep -f '[_]_run-file " .. dir .. "/victim' | head -1"):match("%d+"))
    t:ok(runner, "the runner is there")
    local mnt, cg = cgroup_of(runner)
    cg = cg:gsub("/$", "")
    t:ne(sh("ls -d " .. mnt .. cg .. "/provium-vm-" .. runner .. "-* 2>/dev/null"), "", "its VMs' cgroups")
    -- its run directory (the VMs' sockets and mount points) and its network namespace (the veths)
    local run_dir = sh("tr '\\0' '\\n' < /proc/" .. runner .. "/cmdline | sed -n 4p"):gsub("%s+$", "")
    t:match(run_dir, "^/.*/provium%-%w+/%d+$")
    local netns = sh("readlink /proc/" .. runner .. "/ns/net"):gsub("%s+$", "")
    t:match(netns, "^net:%[%d+%]$")
    t:ne(netns, sh("readlink /proc/self/ns/net"):gsub("%s+$", ""), "a network namespace of its own")
    t:ne(sh("grep -l " .. run_dir .. " /proc/[0-9]*/mountinfo 2>/dev/null || true"), "", "its VMs' mounts")
    sh("kill -9 " .. runner)
    for _ = 1, 200 do
        if st.read(dir .. "/done") then break end
        sh("sleep 0.05")
    end
    t:ok(st.read(dir .. "/done"), "the run ended")
    t:contains(st.read(dir .. "/out"), "file runner was killed by signal 9")
    t:eq(host_pid("sleep 4646"), nil, "no process of a VM")
    t:eq(host_pid("sleep 4647"), nil, "no orphan either")
    t:eq(sh("pgrep -f '[_]_local-vm' -a | grep " .. dir .. " || true"), "", "no sandbox")
    t:eq(sh("ls -d " .. mnt .. cg .. "/provium-vm-" .. runner .. "-* 2>/dev/null || true"), "", "no cgroup")
    t:eq(sh("grep -l " .. run_dir .. " /proc/[0-9]*/mountinfo 2>/dev/null || true"), "", "no mount")
    t:eq(sh("for p in /proc/[0-9]*; do readlink $p/ns/net; done 2>/dev/null | grep -cxF '" .. netns ..
            "' || true"), "0\n", "no process in its network namespace: it is gone, with its veths")
    t:eq(sh("test -e " .. run_dir .. " || echo gone"), "gone\n", "its run directory")
end)

test("as an ordinary user: root inside is that user, and what needs root says so", function(t)
    if sh("id -u") ~= "0\n" then t:skip("this test makes its user with setpriv, as root") end
    local user = 65534 -- nobody
    local dir = st.tmpdir("local-user")
    -- the user's own cache, with root's default image in it (the same key on this host)
    local img = sh(provium.executable .. " image build default | tail -n1"):match("^default %x+ (%S+)")
    t:ok(img, "the default image")
    sh(string.format("mkdir -p %s/cache/provium/images && cp -a %s %s/cache/provium/images/ && " ..
                     "rm -rf %s/cache/provium/images/*/tree && chown -R %d:%d %s && chmod 0755 %s",
                     dir, img, dir, dir, user, user, dir, dir))
    st.write(dir .. "/user.test.lua", [[
test("inside", function(t)
    local vm = provium:vm("u"):boot()
    t:eq(vm:run("id -u"):assert_ok().stdout, "0\n")
    t:match(vm:read_file("/proc/self/uid_map"), "^%s*0%s+65534%s+1%s*$")
    vm:write_file("/etc/motd", "mine\n")
    t:eq(vm:read_file("/etc/motd"), "mine\n")
    vm:run_async({ "/bin/busybox", "sleep", "4747" })
    io.open(os.getenv("MARK"), "w"):close()
    provium:parallel(function() vm:run("sleep 0.5") end)
end)
test("pause", function(t) provium:vm("p"):boot():pause() end)
test("network", function(t) provium:bridge("u") end)
]])
    sh("chown " .. user .. " " .. dir .. "/user.test.lua")
    local out, code = sh(string.format("cd %s && setpriv --reuid=%d --regid=%d --clear-groups " ..
        "env HOME=%s XDG_CACHE_HOME=%s/cache MARK=%s/mark %s --accel tcg --vmm local --progress never user.test.lua",
        dir, user, user, dir, dir, dir, provium.executable))
    t:contains(out, "PASS  user.test.lua: inside", out)
    t:match(out, "SKIP  user.test.lua: pause [^\n]*vm p: pause: " .. UNAVAILABLE:gsub("%p", "%%%0") ..
            ": no cgroup v2 this process may write")
    t:match(out, "FAIL  user.test.lua: network [^\n]*\n[^\n]*bridge u: no private network namespace")
    t:eq(code, 1, out)
    t:ok(st.read(dir .. "/mark"), "the test ran as the user inside")
    t:eq(host_pid("sleep 4747"), nil, "and left nothing running")
end)
