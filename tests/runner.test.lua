-- The runner itself, driven as a user drives it: a second provium on fixture files.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local st = dofile(here .. "/lib/selftest.lua")(here)
local sh, workdir, qemus = st.sh, st.workdir, st.qemus

local function provium_run(dir, extra)
    return st.run(dir, extra)
end

test("each outcome is reported with its location, and the summary counts them", function(t)
    local dir = workdir("outcomes", "syntax")
    local out, code = provium_run(dir, "--events " .. dir .. "/events.mp")
    t:eq(code, 1, "exit status when something failed")
    t:match(out, "PASS  [^\n]*outcomes.test.lua: passes %(")
    t:match(out, "FAIL  [^\n]*outcomes.test.lua: fails on an assertion")
    t:match(out, "outcomes.test.lua:3: expected \"expected\", got \"actual\"")
    t:match(out, "SKIP  [^\n]*outcomes.test.lua: is skipped %([%d.]+s%): no reason at all")
    t:match(out, "FAIL  [^\n]*outcomes.test.lua: errors mid%-test")
    t:match(out, "outcomes.test.lua:8: boom after a boot")
    t:match(out, "PASS  [^\n]*still runs after the error")
    t:match(out, "FAIL  [^\n]*syntax.test.lua: %(file%)")
    t:match(out, "syntax.test.lua:3:")
    t:match(out, "\n2 passed, 3 failed, 1 skipped\n$")
    -- the events file holds msgpack maps; spot-check that the types are there
    local ev = io.open(dir .. "/events.mp", "rb"):read("a")
    for _, ty in ipairs({ "file.start", "test.start", "test.end", "vm.spawn", "vm.boot", "op", "vm.exit", "file.end" }) do
        t:contains(ev, ty, "event type " .. ty)
    end
    sh("rm -rf " .. dir)
    t:eq(qemus("mid"), "", "no QEMU left behind")
end)

test("a guest kernel panic fails the test at once with the console tail", function(t)
    local dir = workdir("panic")
    local t0 = os.time()
    local out, code = provium_run(dir)
    t:eq(code, 1)
    t:match(out, "FAIL  [^\n]*the guest kernel panics")
    t:contains(out, "guest kernel panic")
    t:contains(out, "last console lines")
    t:contains(out, "sysrq")
    t:match(out, "PASS  [^\n]*the next test runs, and the dead VM.s worker gives a clear error")
    t:ok(os.time() - t0 < 120, "reported well before the 300 s operation timeout")
    sh("rm -rf " .. dir)
end)

test("Ctrl-C stops a run and leaves no QEMU, socket or run directory behind", function(t)
    local dir = workdir("sleeper")
    sh("mkdir " .. dir .. "/tmp")
    local out, code = sh(string.format(
        "PROVIUM_RUN_DIR=%s/tmp %s --accel tcg %s & pid=$!; " ..
        "for i in $(seq 1 600); do pgrep -f provium-[s]leeper >/dev/null && break; sleep 0.1; done; " ..
        "sleep 4; ls -A %s/tmp > %s/during.txt; kill -INT $pid; wait $pid",
        dir, provium.executable, dir, dir, dir))
    t:eq(code, 130, "exit status after SIGINT\n" .. out)
    t:match(out, "interrupted")
    t:eq(qemus("sleeper"), "", "QEMU killed")
    t:match(io.open(dir .. "/during.txt"):read("a"), "^provium%-", "the run directory existed")
    t:eq(sh("ls -A " .. dir .. "/tmp"), "", "run directory removed")
    sh("rm -rf " .. dir)
end)

test("Ctrl-C at a terminal (the whole process group) interrupts the test, not its QEMU", function(t)
    local dir = workdir("sleeper")
    sh("mkdir " .. dir .. "/tmp")
    -- setsid: provium leads a process group of its own, as a shell's foreground job does
    local function run(signals)
        return sh(string.format(
            "PROVIUM_RUN_DIR=%s/tmp setsid %s --accel tcg --progress never --test-timeout 60 %s & pid=$!; " ..
            "for i in $(seq 1 600); do pgrep -f provium-[s]leeper >/dev/null && break; sleep 0.1; done; " ..
            "sleep 2; %s; wait $pid",
            dir, provium.executable, dir, signals))
    end
    local out, code = run("kill -INT -$pid")
    t:eq(code, 130, out)
    -- the runner interrupts it (SIGTERM from the dispatcher); its QEMU did not die under it
    t:match(out, "sleeper%.test%.lua: boots and waits %([%d.]+s%)\n%s+interrupted by Terminated\n")
    t:eq(out:find("QEMU", 1, true), nil, "QEMU did not die under the test: " .. out)
    t:eq(qemus("sleeper"), "", "QEMU stopped")
    t:eq(sh("ls -A " .. dir .. "/tmp"), "", "run directory removed")
    sh("rm -rf " .. dir)
end)

-- Starts provium on dir in the background (its run directories under dir/tmp), runs signals
-- (a shell command; $pid is provium's) once `ready` exists in dir, then waits for provium.
local function run_and_signal(dir, signals)
    sh("mkdir -p " .. dir .. "/tmp")
    return sh(string.format(
        "PROVIUM_RUN_DIR=%s/tmp %s --accel tcg --progress never %s > %s/out 2>&1 & pid=$!; " ..
        "for i in $(seq 1 1200); do test -e %s/ready && break; sleep 0.1; done; %s; wait $pid; " ..
        "echo status $?", dir, provium.executable, dir, dir, dir, signals))
end

-- A fresh directory holding waits.test.lua: one test that boots VM vm_name, says it is ready
-- (dir/ready), and waits in the guest for ten minutes.
local function waiting_file(what, vm_name)
    local dir = st.tmpdir(what)
    st.write(dir .. "/waits.test.lua", string.format([[
test("boots and waits", function()
    local vm = provium:vm("%s"):boot()
    io.open("%s/ready", "w"):close()
    vm:run("sleep 600", { timeout = 900 })
end)
]], vm_name, dir))
    return dir
end

test("Ctrl-C twice stops at once a file blocked in a host call, and what it started", function(t)
    local dir = st.tmpdir("twice")
    st.write(dir .. "/blocked.test.lua", string.format([[
test("blocks in a host call", function()
    provium:vm("blocker"):boot()
    io.open("%s/ready", "w"):close()
    os.execute("sleep 4611")
end)
]], dir))
    local t0 = os.time()
    -- the first Ctrl-C waits for the file (blocked for 4611 s); the second does not
    local out = run_and_signal(dir, "kill -INT $pid; sleep 1; ls -A " .. dir .. "/tmp > " ..
                                    dir .. "/during; kill -INT $pid")
    local report = st.read(dir .. "/out")
    t:contains(out, "status 130", report)
    t:ok(os.time() - t0 < 120, "stopped at once, not after the host call")
    t:match(st.read(dir .. "/during"), "^provium%-", "still running after the first")
    t:contains(report, "provium: second Interrupt: stopping now")
    t:contains(report, "blocked.test.lua: (file)")
    t:contains(report, "stopped at once by the run's second interrupt")
    t:eq(qemus("blocker"), "", "its QEMU")
    t:eq(sh("pgrep -f '[s]leep 4611' || true"), "", "the host process the test started")
    t:eq(sh("ls -A " .. dir .. "/tmp"), "", "its run directory")
end)

test("SIGTERM stops a run as Ctrl-C does: the test interrupted, its VM stopped, status 130", function(t)
    local dir = waiting_file("term", "termed")
    local out = run_and_signal(dir, "kill -TERM $pid")
    local report = st.read(dir .. "/out")
    t:contains(out, "status 130", report)
    t:contains(report, "provium: Terminated: finishing the running files")
    t:match(report, "waits%.test%.lua: boots and waits %([%d.]+s%)\n%s+interrupted by Terminated\n")
    t:eq(qemus("termed"), "", "its QEMU")
    t:eq(sh("ls -A " .. dir .. "/tmp"), "", "its run directory")
end)

test("a dispatcher killed with SIGKILL: its runner and QEMU end, and the next run sweeps its directory", function(t)
    local dir = waiting_file("orphan", "orphaned")
    local out = run_and_signal(dir, "kill -KILL $pid")
    t:contains(out, "status 137")
    -- the runner is told (SIGTERM, its parent-death signal) and stops its VM
    for _ = 1, 300 do
        if qemus("orphaned") == "" and sh("pgrep -f '[_]_run-file " .. dir .. "' || true") == "" then break end
        sh("sleep 0.1")
    end
    t:eq(qemus("orphaned"), "", "its QEMU")
    t:eq(sh("pgrep -f '[_]_run-file " .. dir .. "' || true"), "", "its runner")
    local left = sh("ls -A " .. dir .. "/tmp")
    t:match(left, "^provium%-%w+\n$", "its run directory, which only it removes")
    -- beside it, a live run's (its lock held) and one being made (no lock yet): both stay
    sh("mkdir " .. dir .. "/tmp/provium-live01 " .. dir .. "/tmp/provium-fresh1")
    sh("touch " .. dir .. "/tmp/provium-live01/lock")
    sh("(flock -s " .. dir .. "/tmp/provium-live01/lock sleep 30 > /dev/null 2>&1 &); sleep 0.2")
    sh("mkdir " .. dir .. "/next")
    st.write(dir .. "/next/ok.test.lua", 'test("ok", function(t) t:ok(true) end)')
    local out2, code2 = sh(string.format("PROVIUM_RUN_DIR=%s/tmp %s --accel tcg --progress never %s/next",
                                         dir, provium.executable, dir))
    t:eq(code2, 0, out2)
    t:eq(sh("ls -A " .. dir .. "/tmp"), "provium-fresh1\nprovium-live01\n", "the dead run's is gone")
    sh("pkill -f '[f]lock -s " .. dir .. "' || true")
end)

test("a test spinning in Lua is stopped at its timeout, with its location", function(t)
    local dir = workdir("busy")
    local out, code = provium_run(dir, "--test-timeout 2")
    t:eq(code, 1)
    t:match(out, "busy.test.lua:4: test timed out after 2.0 s")
    t:match(out, "PASS  [^\n]*the next test still runs")
    sh("rm -rf " .. dir)
end)

test("a failure with a huge message is still reported, its message cut", function(t)
    local dir = workdir("huge")
    local out, code = provium_run(dir)
    t:eq(code, 1)
    t:match(out, "FAIL  [^\n]*huge.test.lua: fails with a 5 MiB message")
    t:contains(out, "[...]")
    t:ok(#out < 1024 * 1024, "the message was cut, output is " .. #out .. " bytes")
    t:match(out, "\n1 passed, 1 failed, 0 skipped\n$")
    sh("rm -rf " .. dir)
end)

test("a guest's escape sequences reach the terminal visibly, not obeyed", function(t)
    local dir = st.tmpdir("escapes")
    st.write(dir .. "/esc.test.lua", [[
test("fails with a guest's stderr", function()
    provium:vm("esc", { vmm = "local" }):boot():run([=[printf 'x\033[2J\033]0;owned\007\302\233y' >&2; exit 1]=]):assert_ok()
end)
test("skips\027[31m", function(t) t:skip("\027[1A up") end)
]])
    local out, code = st.run(dir, "--progress never")
    t:eq(code, 1, out)
    t:eq(out:find("\27", 1, true), nil, "no ESC byte reaches the output")
    t:eq(out:find("\7", 1, true), nil, "nor BEL")
    t:eq(out:find("\194\155", 1, true), nil, "nor a C1 CSI")
    t:contains(out, [[x\x1b[2J\x1b]0;owned\x07\u009by]])
    t:contains(out, [[esc.test.lua: skips\x1b[31m (]])
    t:contains(out, [[: \x1b[1A up]])
    t:match(out, "failed:\n  [^\n]*esc%.test%.lua: fails with a guest's stderr\n")
end)

test("bad command lines get a clear error and status 2", function(t)
    local out, code = sh(provium.executable .. " /no/such/path")
    t:eq(code, 2)
    t:contains(out, "/no/such/path: No such file or directory")
    out, code = sh(provium.executable .. " --accel warp " .. here .. "/fixtures")
    t:eq(code, 2)
    t:contains(out, "--accel must be auto, kvm or tcg")
    out, code = sh(provium.executable .. " --jobs 0 x")
    t:eq(code, 2)
    t:contains(out, "--jobs")
    out, code = sh(provium.executable .. " x -k")
    t:eq(code, 2)
    t:contains(out, "requires an argument -- 'k'")
end)

test("-k runs only the tests whose \"FILE: name\" contains a pattern, as plain text, and counts only them", function(t)
    local dir = workdir("selection", "outcomes")
    local out, code = provium_run(dir, "--events " .. dir .. "/events.mp" ..
        " -k '100% [pattern]' -k 'outcomes.test.lua: is skipped'")
    t:eq(code, 0, out)
    t:match(out, "PASS  [^\n]*selection.test.lua: a name with 100%% %[pattern%] characters %(")
    t:match(out, "SKIP  [^\n]*outcomes.test.lua: is skipped %(")
    for _, other in ipairs({ "a second test", "boots a VM", "passes (", "fails on", "errors mid", "still runs" }) do
        t:ok(not out:find(other, 1, true), "not run: " .. other .. "\n" .. out)
    end
    t:match(out, "\n1 passed, 0 failed, 1 skipped\n$")
    t:eq(st.count_events(dir .. "/events.mp", "vm.spawn"), 0, "no VM: the tests that boot one did not run")
    sh("rm -rf " .. dir)
end)

-- The files of tests/ keep what their tests share in helpers the tests call (tests/lib/shared.lua),
-- not in a first test or at their top level; reset.test.lua alone boots at its top level.
local restructured = { "boot", "capture", "exec", "files", "handles", "image_cache", "layer0",
                       "netem", "network", "process", "recipes", "services", "snapshot",
                       "transfers", "uplink" }

test("a file none of whose tests -k selects boots no VM", function(t)
    local dir = workdir("selection")
    local files = { dir }
    for _, f in ipairs(restructured) do files[#files + 1] = here .. "/" .. f .. ".test.lua" end
    local out, code = provium_run(table.concat(files, " "),
        "-j 2 --events " .. dir .. "/events.mp -k '100% [pattern]'")
    t:eq(code, 0, out)
    t:match(out, "\n1 passed, 0 failed, 0 skipped\n$")
    t:eq(st.count_events(dir .. "/events.mp", "file.end"), #restructured + 1, "every file ran its top level")
    t:eq(st.count_events(dir .. "/events.mp", "vm.spawn"), 0, "and started no VM")
    sh("rm -rf " .. dir)
end)

test("-k that matches no test anywhere is an error naming the patterns", function(t)
    local dir = workdir("selection")
    local out, code = provium_run(dir, "-k nothing-here -k 'nor here'")
    t:eq(code, 1, out)
    t:contains(out, "provium: no test matches -k 'nothing-here' -k 'nor here'\n")
    t:match(out, "\n0 passed, 0 failed, 0 skipped\n$")
    sh("rm -rf " .. dir)
end)

-- A later test of most of those files, run alone: one of each file whose tests used what an
-- earlier one left, and of the files issue 12 names; recipes, services and snapshot share
-- their VMs as exec does (shared.vm). One boot a file (two for network).
local alone = {
    { "boot", "bad boot options are named" },
    { "capture", "a bad filter, an unknown interface, an unwritable path: clear errors" },
    { "exec", "bad arguments name the method and the argument" },
    { "files", "stat tells types apart and can skip symlinks" },
    { "handles", "errors carry the errno name" },
    { "image_cache", "image ls lists the recipe's entries and image rm removes them" },
    { "layer0", "bad input is named" },
    { "netem", "clear brings the RTT back down, and clearing again is fine" },
    { "network", "bad input gets clear errors" },
    { "process", "the stream interface: next, read_until, expect, drain, eof, close" },
    { "transfers", "a guest-side error mid-upload ends it at once, and the connection stays usable" },
    { "uplink", "uplink:remove() deletes it now; the bridge can have a new one" },
}

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

test("a later test of each restructured file runs alone with -k, and passes", function(t)
    local files, ks = {}, {}
    for _, c in ipairs(alone) do
        files[#files + 1] = here .. "/" .. c[1] .. ".test.lua"
        ks[#ks + 1] = "-k " .. quote(c[1] .. ".test.lua: " .. c[2])
    end
    local out, code = provium_run(table.concat(files, " "), "-j 2 " .. table.concat(ks, " "))
    t:eq(code, 0, out)
    for _, c in ipairs(alone) do
        t:contains(out, "PASS  " .. here .. "/" .. c[1] .. ".test.lua: " .. c[2] .. " (")
    end
    t:match(out, "\n" .. #alone .. " passed, 0 failed, 0 skipped\n$")
end)

test("provium events FILE --json prints every event as a JSON object a JSON parser reads", function(t)
    local dir = workdir()
    local f = assert(io.open(dir .. "/evjson.test.lua", "w"))
    f:write('test("boots", function(t) provium:vm("evjson"):boot():run("true") end)\n')
    f:close()
    local out, code = provium_run(dir, "--events " .. dir .. "/events.mp")
    t:eq(code, 0, out)
    out, code = sh(string.format("%s events %s/events.mp --json > %s/events.json",
                                 provium.executable, dir, dir))
    t:eq(code, 0, out)
    -- Python's json module reads each line; it prints what the boot's events say
    out, code = sh(string.format([[python3 -c '
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
assert all(e["v"] == 1 and isinstance(e["ts"], int) for e in evs), evs
sp = [e for e in evs if e["type"] == "vm.spawn"][0]
b = [e for e in evs if e["type"] == "vm.boot"][0]
print(sp["vm"], sp["image"], isinstance(sp["pid"], int), sp["argv"][sp["argv"].index("-append") + 1] != "")
print(b["vm"], b["ok"], b["duration_ns"] > 0, repr(b["error"]))
print(" ".join(e["type"] for e in evs if e["type"] in ("file.start", "test.end", "file.end")))
' %s/events.json]], dir))
    t:eq(code, 0, out)
    t:eq(out, "evjson default True True\nevjson True True ''\nfile.start test.end file.end\n")
    -- without --json: a line per event
    out, code = sh(string.format("%s events %s/events.mp", provium.executable, dir))
    t:eq(code, 0, out)
    t:match(out, "\n%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z vm%.boot file=[^ ]*/evjson%.test%.lua test=.- vm=evjson image=default ok=true duration_ns=%d+ error=\"\"\n")
    -- a file cut inside an event: the events before it, then an error naming file and offset
    sh(string.format("head -c $(($(stat -c %%s %s/events.mp) - 3)) %s/events.mp > %s/cut.mp", dir, dir, dir))
    out, code = sh(string.format("%s events %s/cut.mp --json", provium.executable, dir))
    t:eq(code, 1, out)
    t:match(out, "provium events: [^\n]*/cut%.mp: offset %d+: the file ends inside an event")
    t:contains(out, '"type":"test.end"', "the events before the cut are printed")
    sh("rm -rf " .. dir)
end)

test("a failure stays on one screen: the call, the VM, the cause, the console's telling lines", function(t)
    local dir = workdir("panic")
    local out = provium_run(dir, "--progress never -k 'kernel panics'")
    local msg = out:match("FAIL  [^\n]*the guest kernel panics[^\n]*\n(.-)\n%S")
    t:ok(msg, out)
    t:match(msg, "panic%.test%.lua:6: vm panics: exec echo c > /proc/sysrq%-trigger: the VM died")
    t:match(msg, "%-%-%- last console lines %-%-%-\n%s*%[[ %d.]+%] Kernel panic %- not syncing: sysrq triggered crash\n%s*%[%.%.%.%]\n")
    t:ok(not msg:find("\\x0d", 1, true), "no carriage returns shown: " .. msg)
    local _, lines = msg:gsub("\n", "")
    t:ok(lines < 22, "at most a screen: " .. lines .. " lines")
    t:match(out, "to look inside its VMs: provium %-%-keep%-on%-failure %-k 'the guest kernel panics' [^\n]*panic%.test%.lua, then provium shell")
    out = provium_run(dir, "--progress never --keep-on-failure -k 'kernel panics'")
    t:ok(not out:find("to look inside its VMs", 1, true), "no hint when the VMs are kept already")
end)

test("a failed command says what was expected on its first line, then the output's tails", function(t)
    local dir = st.tmpdir("one-screen")
    st.write(dir .. "/cmd.test.lua", 'test("x", function(t)\n  provium:vm("c"):boot():run("echo out; echo err >&2; exit 3"):assert_ok()\nend)\n')
    local out = provium_run(dir, "--progress never")
    t:match(out, 'cmd%.test%.lua:2: vm c: command "echo out; echo err >&2; exit 3" exited with code 3 %(expected exit code 0%)\n' ..
                 '%s*%-%-%- stdout %(last lines%) %-%-%-\n%s*out\n%s*%-%-%- stderr %(last lines%) %-%-%-\n%s*err\n')
end)
