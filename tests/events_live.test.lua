-- The run's events, live: --events unix:PATH for any number of clients, and provium events
-- reading a socket or a growing file, with --type.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local sh = st.sh

local write, read = st.write, st.read

-- A client in Python: connects to sock, writes "connected" to ready, keeps every byte in out.
-- With stuck, it reads nothing (the run must not wait for it).
local function client(sock, out, ready, stuck)
    return string.format([[python3 -c '
import socket, sys, time
for i in range(200):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[1]); break
    except OSError as e:
        s.close(); time.sleep(0.02)
open(sys.argv[3], "w").write("connected")
data = b""
if sys.argv[4] == "stuck":
    time.sleep(60)
while True:
    b = s.recv(65536)
    if not b: break
    data += b
open(sys.argv[2], "wb").write(data)
' %s %s %s %s > /dev/null 2>&1 & ]], sock, out, ready, stuck and "stuck" or "reads")
end

-- The inner file: waits until go exists, then boots a VM and makes n ops (quick syscalls).
local function inner(dir, n)
    write(dir .. "/live.test.lua", string.format([[
test("waits for the clients", function(t)
    io.open(%q, "w"):close() -- the run's first events are out: the clients may come
    for _ = 1, 400 do
        if io.open(%q) then return end
        os.execute("sleep 0.05")
    end
    t:fail("no go")
end)
test("works", function(t)
    local vm = provium:vm("live"):boot()
    for _ = 1, %d do vm:syscall("getpid") end
end)
]], dir .. "/waiting", dir .. "/go", n))
end

local function wait_file(path)
    for _ = 1, 200 do
        if read(path) then return true end
        sh("sleep 0.05")
    end
    return false
end

test("two clients of one socket get the same stream, the file's too; the socket goes", function(t)
    local dir = st.tmpdir("evlive")
    inner(dir, 5)
    local sock = dir .. "/ev.sock"
    sh(string.format("%s --accel tcg --events unix:%s --events %s/ev.mp %s/live.test.lua > %s/out 2>&1 &",
                     provium.executable, sock, dir, dir, dir))
    for _ = 1, 200 do
        if sh("test -S " .. sock .. " && echo yes") == "yes\n" then break end
        sh("sleep 0.02")
    end
    t:eq(sh("stat -c %a " .. sock), "600\n", "the socket is 0600")
    t:ok(wait_file(dir .. "/waiting"), "the inner test started")
    sh(client(sock, dir .. "/a.mp", dir .. "/a.ready"))
    sh(client(sock, dir .. "/b.mp", dir .. "/b.ready"))
    t:ok(wait_file(dir .. "/a.ready") and wait_file(dir .. "/b.ready"), "both connected")
    sh("sleep 0.3; touch " .. dir .. "/go")
    t:ok(wait_file(dir .. "/a.mp") and wait_file(dir .. "/b.mp"), "both streams ended with the run")
    local a, b, file = read(dir .. "/a.mp"), read(dir .. "/b.mp"), read(dir .. "/ev.mp")
    t:contains(read(dir .. "/out"), "2 passed, 0 failed, 0 skipped")
    t:ok(#a > 1000, "a got the run's events: " .. #a .. " bytes")
    t:eq(a, b, "the two clients' streams")
    t:eq(file:sub(-#a), a, "the same bytes as the file's end: the client's stream is the run's from its connection on")
    t:ok(#file > #a, "the file has the events from before the clients connected")
    -- provium events reads a saved stream like a file of the run's
    local ev = sh(provium.executable .. " events " .. dir .. "/a.mp --type vm.boot --type 'file.*'")
    t:match(ev, "^[^\n]* vm%.boot file=[^ ]*/live%.test%.lua test=works vm=live [^\n]*\n[^\n]* file%.end [^\n]*\n$")
    t:eq(sh("test -e " .. sock .. " || echo gone"), "gone\n", "the socket is removed")
end)

test("a client that does not read is dropped, said by an event, and does not hold the run up", function(t)
    local dir = st.tmpdir("evstuck")
    inner(dir, 3000)
    local function run(with_client)
        local sock = dir .. "/s.sock"
        os.remove(dir .. "/go")
        os.remove(dir .. "/ev.mp")
        sh(string.format("PROVIUM_EVENTS_QUEUE=8192 %s --accel tcg --events unix:%s --events %s/ev.mp %s/live.test.lua > %s/out 2>&1 & echo $! > %s/pid",
                         provium.executable, sock, dir, dir, dir, dir))
        if with_client then
            sh(client(sock, dir .. "/stuck.mp", dir .. "/stuck.ready", true))
            wait_file(dir .. "/stuck.ready")
        end
        local start = tonumber((sh("date +%s.%N")))
        sh("touch " .. dir .. "/go")
        sh("while kill -0 $(cat " .. dir .. "/pid) 2>/dev/null; do sleep 0.05; done")
        return tonumber((sh("date +%s.%N"))) - start, read(dir .. "/out"), read(dir .. "/ev.mp")
    end
    local alone = run(false)
    local stuck, out, events = run(true)
    t:contains(out, "2 passed, 0 failed, 0 skipped")
    t:contains(events, "events.client_dropped", "the drop is an event")
    -- the bound: a stuck client costs the run at most what it would take anyway plus 2 s (the
    -- drain's wait, if it had not been dropped before; here it is, so nothing)
    -- (3.8-4.8 s both ways on a quiet machine; the bound allows for a loaded one)
    t:ok(stuck < alone * 2 + 5, string.format("with a stuck client %.1f s, without %.1f s", stuck, alone))
    sh("pkill -f 'python3 -c.*" .. dir .. "/s.sock' || true")
end)

test("a burst of ops: each op event arrives, in its order, inside its test", function(t)
    -- a runner holds op events a moment to write them together (src/cli/event_pipe.c)
    local dir = st.tmpdir("evburst")
    inner(dir, 2000)
    sh("touch " .. dir .. "/go")
    local out = sh(string.format("%s --accel tcg --events %s/ev.mp %s/live.test.lua 2>&1",
                                 provium.executable, dir, dir))
    t:contains(out, "2 passed, 0 failed, 0 skipped")
    local lines = sh(provium.executable .. " events " .. dir .. "/ev.mp --type op --type 'test.*' --type 'file.*'")
    local last, syscalls, inside = nil, 0, true
    local state = "before"
    for line in lines:gmatch("[^\n]+") do
        local ty = line:match("^%S+ (%S+)")
        if ty == "test.start" and line:find("test=works", 1, true) then state = "in"
        elseif ty == "test.end" and line:find("test=works", 1, true) then state = "after"
        elseif ty == "op" and line:find("op=syscall", 1, true) then
            syscalls = syscalls + 1
            if state ~= "in" or not line:find("test=works", 1, true) then inside = false end
        end
        if ty ~= "op" then last = ty end
    end
    t:eq(syscalls, 2000, "every syscall's op event")
    t:ok(inside, "each between its test's start and end, and named for it")
    t:eq(last, "file.end", "file.end is last: nothing held was written after it")
end)

test("after Ctrl-C the socket is gone too", function(t)
    local dir = st.tmpdir("evint")
    -- its VM renamed: runner.test.lua looks for its own "sleeper" QEMU beside this file
    sh("sed 's/provium:vm(\"sleeper\")/provium:vm(\"ev-sleeper\")/' " .. here ..
       "/fixtures/sleeper.lua > " .. dir .. "/sleeper.test.lua")
    local sock = dir .. "/ev.sock"
    local out, code = sh(string.format(
        "%s --accel tcg --events unix:%s %s & pid=$!; " ..
        "for i in $(seq 1 600); do pgrep -f provium-ev-[s]leeper >/dev/null && break; sleep 0.1; done; " ..
        "test -S %s && echo listening; kill -INT $pid; wait $pid",
        provium.executable, sock, dir, sock))
    t:eq(code, 130, out)
    t:contains(out, "listening")
    t:eq(sh("test -e " .. sock .. " || echo gone"), "gone\n")
end)

test("provium events --follow prints a growing file's events as they come; bad input is named", function(t)
    local dir = st.tmpdir("evfollow")
    inner(dir, 3)
    sh("touch " .. dir .. "/go")
    sh(string.format("(timeout 30 %s events %s/ev.mp --follow --type file.end > %s/followed 2>&1 &) ; sleep 0.3",
                     provium.executable, dir, dir))
    local out, code = st.run(dir .. "/live.test.lua", "--events " .. dir .. "/ev.mp")
    t:eq(code, 0, out)
    local seen = ""
    for _ = 1, 40 do
        seen = read(dir .. "/followed") or ""
        if seen:find("file.end", 1, true) then break end
        sh("sleep 0.1")
    end
    t:match(seen, "^[^\n]* file%.end file=[^\n]*live%.test%.lua test=\"%(file%)\" passed=2")
    sh("pkill -f 'events " .. dir .. "/ev.mp --follow' || true")
    out, code = sh(provium.executable .. " events unix:" .. dir .. "/nobody.sock")
    t:eq(code, 1)
    t:contains(out, "provium events: unix:" .. dir .. "/nobody.sock: No such file or directory")
    out, code = sh(provium.executable .. " events " .. dir .. "/ev.mp --type")
    t:eq(code, 2)
    t:contains(out, "--type: a type (or a glob: vm.*) expected")
    out, code = st.run(dir, "--events unix:" .. dir .. "/go")
    t:eq(code, 2, out)
    t:contains(out, "--events unix:" .. dir .. "/go: a file that is not a socket is there")
end)
