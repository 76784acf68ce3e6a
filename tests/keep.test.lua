-- --keep-on-failure, provium ls, provium shell (a PTY in the guest, driven through a PTY here
-- by tests/lib/ptydrive.py), provium stop, and provium shell --image. Each test starts and
-- stops its own kept run, so any of them runs alone.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local P = provium.executable

local function pat(s) return (s:gsub("%p", "%%%0")) end

-- Runs the fixture under --keep-on-failure, then body(out, id) with the run's output and the
-- kept run's name; the kept run is stopped after the body, whatever it did (and at the end of
-- the file, should the test be cut short).
local function with_kept(t, body)
    local dir = st.workdir("kept_lan")
    local out, code = st.run(dir, "--keep-on-failure --progress never")
    t:eq(code, 1, out)
    local id = out:match("as run (kept_lan%-%d+):")
    t:ok(id, "the run names the kept run:\n" .. out)
    st.at_file_end(function() st.sh(P .. " stop " .. id .. " 2>/dev/null") end)
    local ok, err = pcall(body, out, id)
    st.sh(P .. " stop " .. id .. " 2>/dev/null")
    if not ok then error(err, 0) end
end

-- Runs cmd on a PTY through the steps of tests/lib/ptydrive.py; returns what it printed.
local function drive(steps, cmd)
    local args = {}
    for _, s in ipairs(steps) do args[#args + 1] = "'" .. s:gsub("'", "'\\''") .. "'" end
    return (st.sh("python3 " .. here .. "/lib/ptydrive.py " .. table.concat(args, " ") .. " -- " .. cmd))
end

-- Whether a process runs (a zombie does not: an orphan waits there for whoever adopted it).
local function alive(pid)
    return st.sh("ps -o stat= -p " .. pid .. " | grep -qv Z && echo alive || echo gone") == "alive\n"
end

test("a failed file's VMs stay up, the run says how to reach them, the rest is skipped", function(t)
    with_kept(t, function(out, id)
        t:match(out, "FAIL  [^\n]*fails with two VMs on a bridge")
        t:match(out, "SKIP  [^\n]*after the failure[^\n]*%-%-keep%-on%-failure")
        t:match(out, "provium shell " .. pat(id) .. " a ")
        t:match(out, "provium stop " .. pat(id))
        t:match(out, "0 passed, 1 failed, 1 skipped\n$")
        t:match(st.sh(P .. " ls"), pat(id) .. "%s+%d+%s+a b%s+[^\n]*kept_lan%.test%.lua: fails with two VMs")
        local json = st.sh(P .. " ls --json")
        t:match(json, '"run":"' .. pat(id) .. '"')
        t:match(json, '"vms":"a b"')
        local pid = json:match('"run":"' .. pat(id) .. '"[^}]*"pid":(%d+)')
        t:ok(pid and alive(pid), "the keeper runs after the run ended: " .. json)
    end)
end)

test("provium shell: a command's output, the bridge, Ctrl-C, a resize, and exit", function(t)
    with_kept(t, function(_, id)
        local out = drive({
            "expect:a# ", "send:cat /tmp/marker\\r", "expect:left-by-the-test",
            "expect:a# ", "send:ping -c 1 -W 5 b.lan >/dev/null && echo peer-$((40+2))\\r", "expect:peer-42",
            "expect:a# ", "send:sleep 300\\r", "sleep:1", "send:\\x03",
            "expect:a# ", "send:echo status-$?\\r", "expect:status-130",
            "expect:a# ", "resize:33,101", "sleep:0.5", "send:stty size\\r", "expect:33 101",
            "expect:a# ", "send:exit 7\\r",
        }, P .. " shell " .. id .. " a")
        t:match(out, "ptydrive: exit 7\n", "the shell's exit status is provium shell's")
        -- Ctrl-C ended the sleep in the guest, and a second shell finds the VM as it was
        out = drive({ "expect:a# ", "send:pgrep -x sleep || echo none-left\\r", "expect:none-left",
                      "expect:a# ", "send:exit\\r" }, P .. " shell " .. id .. " a")
        t:match(out, "ptydrive: exit 0\n")
    end)
end)

test("provium shell and stop refuse what is not there, naming it", function(t)
    with_kept(t, function(_, id)
        local out, code = st.sh(P .. " shell " .. id .. " nosuchvm </dev/null")
        t:eq(code, 2, out)
        t:match(out, "no VM 'nosuchvm' in kept run " .. pat(id) .. " %(its VMs: a b%)")
        out, code = st.sh(P .. " shell nosuchrun a </dev/null")
        t:eq(code, 2, out)
        t:match(out, "no kept run 'nosuchrun' %(provium ls lists them%)")
        out, code = st.sh(P .. " stop nosuchrun")
        t:eq(code, 2, out)
        t:match(out, "no kept run 'nosuchrun'")
    end)
end)

test("provium stop ends the run: its QEMUs, its directory, its entry in provium ls", function(t)
    with_kept(t, function(_, id)
        local pid = st.sh(P .. " ls --json"):match('"run":"' .. pat(id) .. '"[^}]*"pid":(%d+)')
        t:ok(pid, "provium ls --json gives the keeper's pid")
        local qemus = st.sh("pgrep -P " .. pid .. " qemu")
        t:eq(select(2, qemus:gsub("%d+", "")), 2, "the keeper's two QEMUs: " .. qemus)
        local out, code = st.sh(P .. " stop " .. id)
        t:eq(code, 0, out)
        t:match(out, "stopped " .. pat(id))
        for q in qemus:gmatch("%d+") do t:ok(not alive(q), "QEMU " .. q .. " is gone") end
        t:ok(not alive(pid), "the keeper is gone")
        t:ok(not st.sh(P .. " ls"):find(id, 1, true), "provium ls no longer lists it")
        t:eq(st.sh("ls -d /dev/shm/provium-kept/" .. id .. " 2>/dev/null || true"), "", "its directory is gone")
    end)
end)

test("a run that passes keeps nothing", function(t)
    local dir = st.tmpdir("keep-pass")
    st.write(dir .. "/passes.test.lua", 'test("ok", function(t) provium:vm("p"):boot() end)\n')
    local out, code = st.run(dir, "--keep-on-failure --progress never")
    t:eq(code, 0, out)
    t:ok(not out:find("kept", 1, true), out)
    t:ok(not st.sh(P .. " ls"):find("passes", 1, true), "provium ls lists no run of it")
end)

test("provium shell --image boots a fresh VM and stops it when the shell ends", function(t)
    local out = drive({ "expect:default# ", "send:cat /proc/cmdline\\r", "expect:console=",
                        "expect:default# ", "send:exit 4\\r" }, P .. " shell --image default --accel tcg")
    t:match(out, "ptydrive: exit 4\n")
    t:ok(not st.sh(P .. " ls"):find("shell", 1, true), "nothing kept after the shell")
    out = st.sh(P .. " shell --image no-such-image --accel tcg </dev/null")
    t:match(out, "could not boot a VM of image no%-such%-image")
end)
