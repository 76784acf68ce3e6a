-- What CI engines hold on to: JUnit and TAP reports, shards, provium list, Bazel's files
-- (undeclared outputs, the premature-exit file) and the exit status of a run whose host could
-- not start any VM. The engines themselves run where they are installed (Bazel: last test).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local st = dofile(here .. "/lib/selftest.lua")(here)
local sh, workdir, qemus = st.sh, st.workdir, st.qemus

-- tests/fixtures/outcomes.lua, its VM renamed: runner.test.lua looks for its own "mid" QEMU
-- while this file may run beside it.
local function outcomes(...)
    local dir = workdir("outcomes", ...)
    sh("sed -i 's/provium:vm(\"mid\")/provium:vm(\"ci-mid\")/' " .. dir .. "/outcomes.test.lua")
    return dir
end

local write, read = st.write, st.read

-- A Python one-liner with a real XML parser: each testcase as "suite|name|outcome|message|out".
local JUNIT_DUMP = [[python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
print("suites", root.get("tests"), root.get("failures"), root.get("skipped"))
for s in root.iter("testsuite"):
    print("suite", s.get("name").rsplit("/", 1)[-1], s.get("tests"), s.get("failures"), s.get("skipped"))
    for c in s.iter("testcase"):
        f, k, o = c.find("failure"), c.find("skipped"), c.find("system-out")
        what = "fail" if f is not None else "skip" if k is not None else "pass"
        msg = (f if f is not None else k).get("message") if what != "pass" else ""
        float(c.get("time"))
        print("case", c.get("name"), what, msg, (o.text if o is not None else "").strip())
' ]]

test("--junit and XML_OUTPUT_FILE write a JUnit report a real XML parser reads back", function(t)
    local dir = outcomes("syntax")
    local f = assert(io.open(dir .. "/odd.test.lua", "w"))
    f:write('test("a <name> & \\"quotes\\"", function(t) t:fail("bad \\1 byte & <tag>\\n' ..
            '--- last console lines ---\\nthe console\'s tail") end)\n')
    f:close()
    local out, code = st.run(dir, "--junit " .. dir .. "/report.xml", "XML_OUTPUT_FILE=" .. dir .. "/bazel.xml")
    t:eq(code, 1, out)
    for _, report in ipairs({ "report.xml", "bazel.xml" }) do
        local dump = sh(JUNIT_DUMP .. dir .. "/" .. report)
        t:match(dump, "^suites 7 4 1\n", report .. "\n" .. dump)
        for _, want in ipairs({
            "suite outcomes.test.lua 5 2 1\n", "suite syntax.test.lua 1 1 0\n",
            "case passes pass  \n", "case is skipped skip no reason at all \n",
            "case fails on an assertion fail ", "outcomes.test.lua:3: expected \"expected\", got \"actual\" \n",
            "case (file) fail ", "syntax.test.lua:3:",
            "case a <name> & \"quotes\" fail ", "bad \xef\xbf\xbd byte & <tag> the console's tail\n",
        }) do t:contains(dump, want, report) end
    end
    sh("rm -rf " .. dir)
end)

-- Ten files without VMs: which of them a run with these arguments and environment ran.
local function shard_run(dir, args, env)
    local clean = "env -u TEST_TOTAL_SHARDS -u TEST_SHARD_INDEX -u CI_NODE_INDEX -u CI_NODE_TOTAL " ..
                  "-u JOB_COMPLETION_INDEX "
    local out, code = st.run(dir, args, clean .. (env or ""))
    local ran = {}
    for name in out:gmatch("PASS  [^\n]*/(f%d+)%.test%.lua") do ran[#ran + 1] = name end
    table.sort(ran)
    return table.concat(ran, " "), code, out
end

test("--shard K/N and the CI engines' variables split the files: every file once, shards alike", function(t)
    local dir = st.tmpdir("shards")
    for i = 1, 10 do
        local f = assert(io.open(string.format("%s/f%02d.test.lua", dir, i), "w"))
        f:write('test("runs", function(t) t:ok(true) end)\n')
        f:close()
    end
    local seen, shards = {}, {}
    for k = 1, 3 do
        local ran, code, out = shard_run(dir, "--shard " .. k .. "/3")
        t:eq(code, 0, out)
        t:match(out, "shard " .. k .. "/3 %(from %-%-shard%): %d+ of 10 files")
        shards[k] = ran
        local n = 0
        for name in ran:gmatch("%S+") do
            t:ok(not seen[name], name .. " in two shards")
            seen[name] = true
            n = n + 1
        end
        t:ok(n == 3 or n == 4, "shard " .. k .. " has " .. n .. " files: " .. ran)
    end
    for i = 1, 10 do t:ok(seen[string.format("f%02d", i)], "file " .. i .. " in a shard") end
    t:eq(shard_run(dir, "--shard 2/3"), shards[2], "the same shard again")
    -- the engines' own variables, no flag: Bazel (0-based, and it touches the status file),
    -- GitLab (1-based), a Kubernetes Indexed Job (0-based, with the total passed)
    t:eq(shard_run(dir, "", "TEST_TOTAL_SHARDS=3 TEST_SHARD_INDEX=1 TEST_SHARD_STATUS_FILE=" ..
                   dir .. "/status"), shards[2], "Bazel")
    t:ok(io.open(dir .. "/status"), "Bazel's TEST_SHARD_STATUS_FILE touched")
    t:eq(shard_run(dir, "", "CI_NODE_INDEX=3 CI_NODE_TOTAL=3"), shards[3], "GitLab")
    t:eq(shard_run(dir, "--shard-total 3", "JOB_COMPLETION_INDEX=0"), shards[1], "Kubernetes")
    for _, bad in ipairs({ { "--shard 4/3" }, { "--shard 0/3" }, { "--shard x" },
                           { "", "CI_NODE_INDEX=0 CI_NODE_TOTAL=3" },
                           { "", "TEST_TOTAL_SHARDS=3 TEST_SHARD_INDEX=3" },
                           { "--shard-total 3" } }) do
        local _, code, out = shard_run(dir, bad[1], bad[2])
        t:eq(code, 2, table.concat(bad, " ") .. ": " .. out)
        t:match(out, "provium: [^\n]*shard", table.concat(bad, " "))
    end
end)

test("--tap prints TAP version 14 that a TAP harness (perl's prove) reads", function(t)
    if sh("command -v prove >/dev/null && echo yes") ~= "yes\n" then
        t:skip("perl's prove is not installed (Debian package perl)")
    end
    local dir = outcomes()
    local f = assert(io.open(dir .. "/hash.test.lua", "w"))
    f:write('test("a # in its name", function(t) t:fail("two\\nlines") end)\n')
    f:close()
    local tap, code = sh(string.format("%s --accel tcg --tap %s > %s/raw 2>/dev/null; c=$?; cat %s/raw; (exit $c)",
                                       provium.executable, dir, dir, dir))
    t:eq(code, 1, tap)
    t:match(tap, "^TAP version 14\n")
    t:match(tap, "\nnot ok 1 %- [^\n]*hash.test.lua: a \\# in its name\n  %-%-%-\n  message: |\n    [^\n]*two\n    lines\n  %.%.%.\n")
    t:match(tap, "\nok %d %- [^\n]*outcomes.test.lua: is skipped # SKIP no reason at all\n")
    t:match(tap, "\n1%.%.6\n# 2 passed, 3 failed, 1 skipped\n$")
    -- prove knows TAP 13, of which these lines are the same
    local file = dir .. "/out.tap"
    local out = assert(io.open(file, "w"))
    out:write((tap:gsub("^TAP version 14", "TAP version 13")))
    out:close()
    local report = sh("prove --exec cat " .. file)
    t:match(report, "Tests: 6 Failed: 3%)")
    t:match(report, "Failed tests:%s+1, 3, 5")
    t:ok(not report:find("Parse errors", 1, true), report)
    sh("rm -rf " .. dir)
end)

---------------------------------------------------------------------------------------------
-- provium list

-- Three files: one that boots and prepares a VM at its top level (nothing may boot), one with
-- generated test names and no claim, one that does not parse.
local function list_dir()
    local dir = st.tmpdir("list")
    write(dir .. "/top.test.lua", string.format([[
provium:claim({ memory = "512M", cpus = 2 })
local vm = provium:vm("listed"):boot()
vm:write_file("/root/x", "y")
local f = assert(io.open(%q, "w"))
f:write(tostring(vm), " ", tostring(vm:run("true").stdout))
f:close()
test("first", function(t) t:ok(true) end)
test("second", function(t) t:ok(true) end)
]], dir .. "/marker"))
    write(dir .. "/plain.test.lua", 'for i = 1, 3 do test("gen " .. i, function(t) end) end\n')
    write(dir .. "/broken.test.lua", 'test("x", function(t) end\n')
    return dir
end

-- The JSON of provium list, as Python's json module reads it, one line per file and test.
local LIST_DUMP = [[python3 -c '
import json, sys
doc = json.load(sys.stdin)
print("tests", doc["tests"])
for f in doc["files"]:
    c = f["claim"]
    print("file", f["file"].rsplit("/", 1)[-1], c["memory_mb"], c["cpus"], c["declared"], f["error"] is not None)
    for t in f["tests"]:
        assert t["id"] == f["file"] + ": " + t["name"], t
        print("test", t["name"], t["line"])
']]

test("provium list --json: files, tests with their lines, claims; nothing boots", function(t)
    local dir = list_dir()
    local cmd = string.format("%s list --json --default-claim 768M,1 %s", provium.executable, dir)
    local out, code = sh(cmd .. " 2>/dev/null | " .. LIST_DUMP)
    t:eq(code, 0, out)
    t:eq(out, table.concat({
        "tests 5",
        "file broken.test.lua 0 0 False True",
        "file plain.test.lua 768 1 False False",
        "test gen 1 1", "test gen 2 1", "test gen 3 1",
        "file top.test.lua 512 2 True False",
        "test first 7", "test second 8", "" }, "\n"))
    local _, status = sh(cmd .. " >/dev/null")
    t:eq(status, 1, "a file that cannot be listed fails the listing")
    t:eq(read(dir .. "/marker"), "(not made: provium list) (not made: provium list)",
         "the top level ran on stand-ins")
    t:eq(qemus("listed"), "", "no QEMU")
    -- -k and --shard select as provium run does
    out = sh(string.format("%s list --json -k 'top.test.lua: sec' %s 2>/dev/null | %s",
                           provium.executable, dir, LIST_DUMP))
    t:match(out, "^tests 1\n", out)
    t:contains(out, "test second 8\n")
    local union = {}
    for k = 1, 2 do
        out = sh(string.format("%s list --json --shard %d/2 %s 2>/dev/null | %s",
                               provium.executable, k, dir, LIST_DUMP))
        for name in out:gmatch("file (%S+)") do
            t:ok(not union[name], name .. " in both shards")
            union[name] = true
        end
    end
    t:ok(union["top.test.lua"] and union["plain.test.lua"] and union["broken.test.lua"], "every file in a shard")
end)

test("provium list prints a line per test for a person, and rejects run's options", function(t)
    local dir = list_dir()
    os.remove(dir .. "/broken.test.lua")
    local out, code = sh(provium.executable .. " list " .. dir)
    t:eq(code, 0, out)
    t:match(out, "/plain%.test%.lua  claim 1024 MiB, 1 CPU %(the default%)\n      1  gen 1\n")
    t:match(out, "/top%.test%.lua  claim 512 MiB, 2 CPUs\n      7  first\n      8  second\n")
    t:match(out, "\n5 tests in 2 files\n$")
    for _, bad in ipairs({ "-j 2", "--junit x.xml", "--tap", "--events e.mp" }) do
        out, code = sh(provium.executable .. " list " .. bad .. " " .. dir)
        t:eq(code, 2, bad)
        t:match(out, "provium: %-%-?[%a]+ is for provium run, not provium list\n", bad)
    end
    out, code = st.run(dir, "--json")
    t:eq(code, 2)
    t:contains(out, "--json is for provium list")
end)

---------------------------------------------------------------------------------------------
-- Bazel's files, and the host's failures

test("TEST_PREMATURE_EXIT_FILE exists while the run does, and stays when it dies", function(t)
    local dir = st.tmpdir("premature")
    local marker = dir .. "/premature"
    write(dir .. "/sees.test.lua", string.format(
        'test("sees it", function(t) t:ok(io.open(%q), "there during the run") end)\n', marker))
    local out, code = st.run(dir, "", "TEST_PREMATURE_EXIT_FILE=" .. marker)
    t:eq(code, 0, out)
    t:eq(read(marker), nil, "removed when the run ended")
    -- a dispatcher killed mid-run leaves it: that is how Bazel knows
    os.remove(dir .. "/sees.test.lua")
    sh("cp " .. here .. "/fixtures/busy.lua " .. dir .. "/busy.test.lua")
    out, code = sh(string.format(
        -- the killed dispatcher cannot remove its run directory: it is made in dir
        "mkdir %s/run; TEST_PREMATURE_EXIT_FILE=%s PROVIUM_RUN_DIR=%s/run %s --accel tcg --test-timeout 60 %s & pid=$!; " ..
        "for i in $(seq 1 100); do [ -e %s ] && break; sleep 0.1; done; sleep 0.5; " ..
        "kill -KILL $pid; wait $pid", dir, marker, dir, provium.executable, dir, marker))
    t:eq(code, 137, out)
    t:eq(read(marker), "", "still there after the kill")
    local left
    for _ = 1, 50 do
        left = sh("pgrep -f '__run-file [^ ]*/busy[.]test[.]lua' || true")
        if left == "" then break end
        sh("sleep 0.1")
    end
    t:eq(left, "", "its runner died with it")
end)

test("--artifacts and TEST_UNDECLARED_OUTPUTS_DIR keep the events and a failed test's consoles and captures", function(t)
    local dir = st.tmpdir("artifacts")
    write(dir .. "/art.test.lua", [[
test("fails with a VM on a bridge", function(t)
    local lan = provium:bridge("lan")
    local vm = provium:vm("artvm")
    lan:attach(vm)
    vm:boot()
    local cap = lan:capture()
    vm:run("ping -c 2 -W 1 10.77.1.1 || true")
    local h = provium.history("h")
    h:invoke(0, "read"):ok(1)
    t:artifact(os.getenv("ART_DIR") .. "/history.edn") -- written after it is named: read at the end
    h:write_edn(os.getenv("ART_DIR") .. "/history.edn")
    t:artifact(os.getenv("ART_DIR") .. "/never-written.log")
    t:fail("on purpose")
end)
test("passes", function(t) t:artifact(os.getenv("ART_DIR") .. "/history.edn") end)
]])
    local out, code = st.run(dir, "", "ART_DIR=" .. dir .. " TEST_UNDECLARED_OUTPUTS_DIR=" .. dir .. "/undeclared")
    t:eq(code, 1, out)
    local saved = dir .. "/undeclared/" .. (dir .. "/art.test.lua"):gsub("[^%w._-]", "_") ..
                  "/01-fails_with_a_VM_on_a_bridge"
    t:contains(read(saved .. "/console-artvm.log") or "", "provium-agent: ready", "the console log")
    local pcap = read(saved .. "/capture-lan-1.pcap") or ""
    t:ok(#pcap > 24, "the capture has packets after its header: " .. #pcap .. " bytes")
    t:ok(pcap:sub(1, 4) == "\x4d\x3c\xb2\xa1" or pcap:sub(1, 4) == "\xd4\xc3\xb2\xa1",
         "a pcap file (its magic number)")
    t:match(read(saved .. "/history.edn") or "", "^{:index 0, :type :invoke, :f :read, ", "the file t:artifact named")
    t:match(out, "provium: artifacts: [^\n]*/never%-written%.log: No such file or directory\n", "a named file that is not there is said")
    t:eq(sh("ls " .. dir .. "/undeclared/*/ | wc -l"), "1\n", "nothing for the test that passed")
    t:eq(st.count_events(dir .. "/undeclared/events.msgpack", "test.artifacts"), 1)
    t:eq(st.count_events(dir .. "/undeclared/events.msgpack", "test.end"), 2, "the run's events")
    -- --artifacts names the directory itself, and makes it
    out, code = st.run(dir, "--artifacts " .. dir .. "/a/b -k passes", "ART_DIR=" .. dir)
    t:eq(code, 0, out)
    t:ok(read(dir .. "/a/b/events.msgpack"), "events in the directory --artifacts made")
    t:error(function() t:artifact(42) end, "bad argument #1 to 'artifact' %(a host file's path expected, got 42%)")
end)

-- A run whose host cannot give what VMs need: exit status 3, and which thing it was.
test("a run that could start no VM for want of QEMU, the image or a network namespace exits 3 and says which", function(t)
    local dir = st.tmpdir("noinfra")
    write(dir .. "/vm.test.lua", 'test("boots", function(t) provium:vm("noinfra"):boot() end)\n' ..
                                 'test("plain", function(t) t:ok(true) end)\n')
    local out, code = st.run(dir, "", "PROVIUM_QEMU=/nonexistent/qemu")
    t:eq(code, 3, out)
    t:match(out, "provium: no VM could start: QEMU is missing %([^\n]*exec /nonexistent/qemu: " ..
                 "No such file or directory%); exit status 3: the host, not the tests\n")
    t:match(out, "\n1 passed, 1 failed, 0 skipped\n", "the tests are still reported")
    local cache = st.tmpdir("nocache")
    out, code = st.run(dir, "", "XDG_CACHE_HOME=" .. cache .. " PROVIUM_SOURCE_DIR=/nonexistent")
    t:eq(code, 3, out)
    t:match(out, "provium: no VM could start: the default image is missing %(image default: ")
    write(dir .. "/vm.test.lua", 'test("bridge", function(t) provium:bridge("lan") end)\n')
    out, code = st.run(dir, "", "setpriv --bounding-set=-sys_admin")
    t:eq(code, 3, out)
    t:match(out, "provium: no VM could start: a network namespace is missing %(bridge lan: no " ..
                 "private network namespace for this file %(Operation not permitted")
    -- a test that fails by itself, with the host as broken, is a test failure
    write(dir .. "/vm.test.lua", 'test("fails", function(t) t:fail("by itself") end)\n')
    out, code = st.run(dir, "", "PROVIUM_QEMU=/nonexistent/qemu")
    t:eq(code, 1, out)
end)

---------------------------------------------------------------------------------------------
-- a real engine

-- Bazel 4 (Debian's bazel-bootstrap) with examples/bazel, the workspace docs/ci.md shows: an
-- sh_test with shard_count = 3 over five files, one of them booting a VM.
test("bazel test with 3 shards runs every test exactly once and reads provium's JUnit", function(t)
    if sh("command -v bazel >/dev/null && echo yes") ~= "yes\n" then
        t:skip("Bazel is not installed (Debian: bazel-bootstrap, bazel-rules-java, bazel-platforms)")
    end
    for _, dir in ipairs({ "/usr/share/bazel/rules/java", "/usr/share/bazel/tools/platforms" }) do
        if not io.open(dir .. "/WORKSPACE") then
            t:skip(dir .. " is missing (Debian: bazel-rules-java, bazel-platforms)")
        end
    end
    local top = st.tmpdir("bazel")
    local ws, suite, root = top .. "/ws", top .. "/suite", top .. "/root"
    sh(string.format("cp -a %s/../examples/bazel %s && mkdir %s", here, ws, suite))
    for _, name in ipairs({ "a", "b", "c", "d", "e" }) do
        local vm = name == "c" and 'local vm = provium:vm("bzl"):boot(); t:eq(vm:run("echo hi").stdout, "hi\\n")' or ""
        write(string.format("%s/%s.test.lua", suite, name), string.format(
            'test("%s one", function(t) %s end)\ntest("%s two", function(t) t:ok(true) end)\n',
            name, vm, name))
    end
    local cache = os.getenv("XDG_CACHE_HOME") or (os.getenv("HOME") .. "/.cache")
    local bazel = string.format("cd %s && bazel --output_user_root=%s --max_idle_secs=300 " ..
                                "--host_jvm_args=-XX:-UsePerfData", ws, root)
    st.at_file_end(function() sh(bazel .. " shutdown; rm -rf " .. root) end)
    local out, code = sh(string.format(
        "%s test //:suite --sandbox_writable_path=%s --test_env=PROVIUM=%s " ..
        "--test_env=PROVIUM_SUITE=%s --test_env=XDG_CACHE_HOME=%s --test_env=PATH",
        bazel, cache, provium.executable, suite, cache))
    t:eq(code, 0, out)
    t:match(out, "//:suite +PASSED in [%d.]+s\n +Stats over 3 runs")
    local logs = sh(bazel .. " info bazel-testlogs 2>/dev/null"):gsub("%s+$", "")
    local seen, runs = {}, 0
    for k = 1, 3 do
        local dir = string.format("%s/suite/shard_%d_of_3", logs, k)
        local log = read(dir .. "/test.log") or ""
        t:match(log, "provium: shard " .. k .. "/3 %(from Bazel%)", "shard " .. k .. "'s log")
        for name in log:gmatch("PASS  [^\n]*/suite/%a%.test%.lua: (%a %a+) %(") do
            t:ok(not seen[name], name .. " ran twice")
            seen[name] = true
            runs = runs + 1
        end
        t:match(read(dir .. "/test.xml") or "", "^<%?xml[^\n]*\n<testsuites name=\"provium\"",
                "shard " .. k .. "'s test.xml is provium's JUnit report")
        local zipped = sh("python3 -c 'import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist())' " ..
                          dir .. "/test.outputs/outputs.zip")
        t:contains(zipped, "events.msgpack", "the events in the undeclared outputs")
    end
    t:eq(runs, 10, "every test once")
end)
