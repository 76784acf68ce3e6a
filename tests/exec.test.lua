-- vm:run: commands, their results, and every way a command can end.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local booted = dofile(here .. "/lib/shared.lua").vm("exec")

test("boot", function(t)
    t:eq(booted():state(), "running")
end)

test("a shell command returns stdout, stderr and code", function(t)
    local vm = booted()
    local r = vm:run("echo out; echo err >&2; exit 3")
    t:eq(r.stdout, "out\n")
    t:eq(r.stderr, "err\n")
    t:eq(r.code, 3)
    t:ok(r.duration >= 0 and r.duration < 30, "duration in seconds")
    r:assert_fail()
end)

test("assert_ok fails with the command, code and output tail", function(t)
    local vm = booted()
    local r = vm:run("echo some-output; false")
    local msg = t:error(function() r:assert_ok() end)
    t:contains(msg, "exec.test.lua:")
    t:contains(msg, '"echo some-output; false"')
    t:contains(msg, "exited with code 1")
    t:contains(msg, "some-output")
    t:error(function() vm:run("true"):assert_fail() end, "expected a failure")
end)

test("argv runs without a shell", function(t)
    local vm = booted()
    local r = vm:run({ "echo", "a  b", "$HOME" }):assert_ok()
    t:eq(r.stdout, "a  b $HOME\n")
end)

test("commands run at nice 0; the agent's threads run ahead of them", function(t)
    local vm = booted()
    -- field 19 of /proc/PID/stat is the nice value
    local function nice(stat) return stat:gsub("^.-%) ", ""):match("^" .. ("%S+ "):rep(16) .. "(%S+)") end
    t:eq(nice(vm:run("cat /proc/self/stat"):assert_ok().stdout), "0", "through the shell")
    t:eq(nice(vm:run({ "cat", "/proc/self/stat" }):assert_ok().stdout), "0", "as argv")
    t:needs_kernel(vm, "the agent's threads are a guest's PID 1")
    local tids, seen = vm:run("ls /proc/1/task"):assert_ok().stdout, 0
    for tid in tids:gmatch("%d+") do
        if nice(vm:read_file("/proc/1/task/" .. tid .. "/stat")) == "-5" then seen = seen + 1 end
    end
    t:ok(seen >= 1, "a connection thread of the agent at nice -5 (threads: " .. tids:gsub("\n", " ") .. ")")
end)

test("command not found: 127 through the shell, ENOENT as argv", function(t)
    local vm = booted()
    local r = vm:run("no-such-command-xyz")
    t:eq(r.code, 127)
    t:match(r.stderr, "not found")
    t:error(function() vm:run({ "/no/such/binary" }) end, "exec /no/such/binary: ENOENT")
    t:eq(vm:run("echo after"):assert_ok().stdout, "after\n", "the connection after a failed exec")
end)

test("env, cwd and stdin", function(t)
    local vm = booted()
    local r = vm:run("echo $GREETING; pwd; cat", { env = { GREETING = "hi" }, cwd = "/tmp", stdin = "from-stdin" })
    r:assert_ok()
    t:eq(r.stdout, "hi\n/tmp\nfrom-stdin")
    t:error(function() vm:run("true", { cwd = "/no/such/dir" }) end, "ENOENT %(chdir /no/such/dir:")
end)

test("a timeout kills the command and the connection stays usable", function(t)
    local vm = booted()
    local r = vm:run("echo started; sleep 30", { timeout = 0.5 })
    t:ok(r.timed_out, "timed_out")
    t:eq(r.stdout, "started\n")
    t:ok(r.duration < 10, "killed promptly, took " .. r.duration)
    t:error(function() r:assert_ok() end, "timed out")
    t:eq(vm:run("echo still-here").stdout, "still-here\n")
end)

test("a command killed by a signal reports it", function(t)
    local vm = booted()
    local r = vm:run("kill -TERM $$")
    t:eq(r.signal, 15)
    t:eq(r.code, nil)
    t:error(function() r:assert_ok() end, "signal 15")
end)

test("10 MiB of output arrives whole", function(t)
    local vm = booted()
    local r = vm:run("head -c 10485760 /dev/zero | tr '\\0' x"):assert_ok()
    t:eq(#r.stdout, 10485760)
    t:eq(r.stdout:sub(1, 4), "xxxx")
    t:ok(not r.stdout:find("[^x]"), "only x bytes")
end)

test("binary output is not mangled", function(t)
    local vm = booted()
    local r = vm:run("printf '\\000\\001\\377'"):assert_ok()
    t:eq(r.stdout, "\0\1\255")
end)

test("bad arguments name the method and the argument", function(t)
    local vm = booted()
    t:error(function() vm:run(42) end, "bad argument #1 to 'run'")
    t:error(function() vm:run({}) end, "argv must not be empty")
    t:error(function() vm:run("true", "nope") end, "bad argument #2 to 'run'")
    t:error(function() vm:run("true", { timeout = -1 }) end, "timeout")
    -- a NUL byte would cut the string short in the guest: "rm -rf /tmp/x\0y" is not "rm -rf /tmp/x"
    t:error(function() vm:run("echo a\0b") end, "bad argument #1 to 'run' %(a NUL byte in the command%)")
    t:error(function() vm:run({ "echo", "a\0b" }) end, "a NUL byte in an argv string")
    t:error(function() vm:run("true", { env = { X = "a\0b" } }) end, "option 'env': a NUL byte in X")
    t:error(function() vm:run("true", { cwd = "/\0tmp" }) end, "option 'cwd': a NUL byte")
    t:error(function() vm:read_file("/etc/hostname\0x") end, "bad argument #1 to 'read_file' %(a NUL byte")
    t:error(function() vm:write_file("/tmp/a\0b", "x") end, "a NUL byte in the string")
    t:error(function() vm:stat("/\0") end, "a NUL byte in the string")
    t:error(function() vm:open("/tmp\0x") end, "a NUL byte in the string")
end)

test("a timeout that is NaN, infinite, negative or huge is an error; one under 1 ms is not none", function(t)
    local vm = booted()
    local rule = "option 'timeout' must be a number of seconds from 0 %(none%) to 1000000, got "
    for _, bad in ipairs({ { 0 / 0, "%-?nan" }, { math.huge, "inf" }, { -0.5, "%-0%.5" }, { 1e7, "1e%+07" } }) do
        t:error(function() vm:run("true", { timeout = bad[1] }) end, rule .. bad[2])
        t:error(function() vm:read_file("/etc/hostname", { timeout = bad[1] }) end, rule .. bad[2])
    end
    t:eq(vm:run("sleep 5", { timeout = 0.0001 }).timed_out, true, "1 ms, not none")
    local p = vm:run_async("sleep 5")
    t:error(function() p:wait(0 / 0) end, "bad argument #1 to 'wait' %(seconds from 0 to 1e6 expected")
    t:error(function() p:stdout():next(math.huge) end, "timeout must be a number of seconds from 0 to 1e6")
    p:kill()
end)
