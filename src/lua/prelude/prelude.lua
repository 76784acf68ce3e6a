-- prelude.lua: the test-facing Lua API, built on the C primitives of lua_vm.c.
-- Loaded once per file runner with (provium, internal, VM methods). docs/api.md describes it.
local P = ...
local provium, internal, VM, Worker, Stream, Process, File = P.provium, P.internal, P.VM, P.Worker, P.Stream, P.Process, P.File

internal.tests = {}
local names = {}

---------------------------------------------------------------------------------------------
-- test registration

function test(name, fn)
    if type(name) ~= "string" or name == "" then
        error("bad argument #1 to 'test' (non-empty test name expected, got " .. type(name) .. ")", 2)
    end
    if type(fn) ~= "function" then
        error("bad argument #2 to 'test' (function expected, got " .. type(fn) .. ")", 2)
    end
    if names[name] then
        error("test '" .. name .. "' is defined twice in this file", 2)
    end
    names[name] = true
    local info = debug.getinfo(2, "Sl")
    internal.tests[#internal.tests + 1] = { name = name, fn = fn, line = info.currentline }
end

---------------------------------------------------------------------------------------------
-- values in messages

local function show(v)
    if type(v) == "string" then
        if #v > 400 then v = v:sub(1, 200) .. "..." .. v:sub(-200) end
        return string.format("%q", v)
    elseif type(v) == "table" then
        local mt = getmetatable(v)
        if mt and mt.__tostring then return tostring(v) end
        local parts, n = {}, 0
        for k, x in pairs(v) do
            n = n + 1
            if n > 10 then parts[#parts + 1] = "..."; break end
            parts[#parts + 1] = (type(k) == "string" and k or "[" .. tostring(k) .. "]") .. "=" ..
                (type(x) == "table" and tostring(x) or show(x))
        end
        return "{" .. table.concat(parts, ", ") .. "}"
    end
    return tostring(v)
end

local function deep_eq(a, b)
    if a == b then return true end
    if type(a) ~= "table" or type(b) ~= "table" then return false end
    for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end

local function tail(s, lines)
    s = s or ""
    local out = {}
    for line in s:gmatch("[^\n]*") do out[#out + 1] = line end
    while #out > 0 and out[#out] == "" do out[#out] = nil end
    local from = math.max(1, #out - lines + 1)
    return table.concat(out, "\n", from)
end

---------------------------------------------------------------------------------------------
-- the test handle t: skipping and assertions (each failure shows expected and actual)

local T = {}
T.__index = T
local Skip = {}
Skip.__tostring = function(s) return "skipped: " .. s.reason end

-- Raises msg at the first caller outside this prelude: the test's own file and line, even
-- through wrappers and tail calls.
local function raise(msg)
    local level = 2
    while true do
        local info = debug.getinfo(level, "S")
        if not info then return error(msg, 0) end
        if info.source:sub(1, 9) ~= "=prelude/" and info.what ~= "C" then return error(msg, level) end
        level = level + 1
    end
end
internal.raise = raise

local function fail(msg, extra)
    if extra then msg = extra .. ": " .. msg end
    raise(msg)
end

function T:skip(reason)
    error(setmetatable({ reason = tostring(reason or "skipped") }, Skip), 0)
end

function T:fail(msg) fail(tostring(msg or "failed"), nil) end

function T:ok(v, msg)
    if not v then fail("expected a true value, got " .. show(v), msg) end
    return v
end

function T:eq(actual, expected, msg)
    if not deep_eq(actual, expected) then
        fail("expected " .. show(expected) .. ", got " .. show(actual), msg)
    end
end

function T:ne(actual, unexpected, msg)
    if deep_eq(actual, unexpected) then
        fail("expected a value other than " .. show(unexpected), msg)
    end
end

function T:contains(haystack, needle, msg)
    local found = false
    if type(haystack) == "string" then
        found = haystack:find(needle, 1, true) ~= nil
    elseif type(haystack) == "table" then
        for _, v in pairs(haystack) do if deep_eq(v, needle) then found = true; break end end
    else
        fail("contains: expected a string or table to search, got " .. type(haystack), msg)
    end
    if not found then fail("expected " .. show(haystack) .. " to contain " .. show(needle), msg) end
end

function T:match(s, pattern, msg)
    if type(s) ~= "string" or not s:match(pattern) then
        fail("expected " .. show(s) .. " to match pattern " .. show(pattern), msg)
    end
end

-- t:error(fn, pattern?) expects fn to raise; returns the error message.
function T:error(fn, pattern, msg)
    local ok, err = pcall(fn)
    if ok then fail("expected an error, but the function returned normally", msg) end
    local s = tostring(err)
    if pattern and not s:find(pattern) then
        fail("expected an error matching " .. show(pattern) .. ", got " .. show(s), msg)
    end
    return s
end

-- provium.reset_between_tests: the VMs running when the first test starts are snapshotted then,
-- and restored to it before every later test; VMs made by a test are stopped after it.
local file_start
local function reset_vms()
    if not file_start then
        file_start = {}
        for _, vm in ipairs(internal.vm_list) do
            if vm:state() == "running" then file_start[vm] = vm:snapshot("file start") end
        end
        return
    end
    for _, vm in ipairs(internal.vm_list) do
        local snap = file_start[vm]
        if snap then
            vm:restore(snap)
        elseif vm:state() == "running" or vm:state() == "paused" then
            vm:kill()
            vm:wait_exit(30)
        end
    end
end

function internal.run_test(entry)
    local t = setmetatable({ name = entry.name }, T)
    if provium.reset_between_tests then
        local ok, err = pcall(reset_vms)
        if not ok then return "fail", "reset_between_tests: " .. tostring(err) end
    end
    local ok, err = pcall(entry.fn, t)
    if ok then return "pass" end
    if getmetatable(err) == Skip then return "skip", err.reason end
    if type(err) ~= "string" then err = show(err) end
    return "fail", err
end

---------------------------------------------------------------------------------------------
-- command results

local Result = {}
Result.__index = Result
Result.__tostring = function(r)
    return string.format("Result(%s: code=%s)", r.cmd, tostring(r.code or ("signal " .. tostring(r.signal))))
end

local function describe(r)
    local how
    if r.timed_out then how = "timed out"
    elseif r.signal then how = "was killed by signal " .. r.signal
    else how = "exited with code " .. tostring(r.code) end
    local s = string.format("vm %s: command %q %s", r.vm, r.cmd, how)
    if r.stdout ~= "" then s = s .. "\n--- stdout (last lines) ---\n" .. tail(r.stdout, 10) end
    if r.stderr ~= "" then s = s .. "\n--- stderr (last lines) ---\n" .. tail(r.stderr, 10) end
    return s
end

function Result:ok() return self.code == 0 and not self.timed_out end

function Result:assert_ok(msg)
    if not self:ok() then fail(describe(self) .. " (expected exit code 0)", msg) end
    return self
end

function Result:assert_fail(msg)
    if self:ok() then fail(describe(self) .. " (expected a failure)", msg) end
    return self
end

---------------------------------------------------------------------------------------------
-- VM: public methods over the C primitives; errors point at the caller's line

-- Calls a C primitive of VM; an argument error is re-raised under the public method's name
-- (arguments counted as in a method call), a failed operation at the test's line.
local function call(name, prim, self, ...)
    local res = table.pack(pcall(prim, self, ...))
    if not res[1] then
        local msg = tostring(res[2]):gsub("^prelude/[%w_]+%.lua:%d+: ", "")
        msg = msg:gsub("bad argument #(%d+) to '[^']*'", function(n)
            return "bad argument #" .. (tonumber(n) - 1) .. " to '" .. name .. "'"
        end)
        raise(msg)
    end
    if res[2] == nil then raise(res[3]) end
    return table.unpack(res, 2, res.n)
end

function VM:boot(opts)
    local ram = internal.fixture_ram[self]
    if ram then -- a fixture's builder: its RAM goes straight into the cache entry
        local o = {}
        for k, v in pairs(opts or {}) do o[k] = v end
        o._ram = ram
        opts = o
    end
    call("boot", self._boot, self, internal.images[self], opts)
    if internal.configure_links then internal.configure_links(self) end
    return self
end
internal.fixture_ram = setmetatable({}, { __mode = "k" })

function VM:run(cmd, opts)
    return setmetatable(call("run", self._exec, self, cmd, opts), Result)
end

-- vm:read_file(path, opts?) -> the contents; with opts.to = host_path, writes them there
-- instead and returns the byte count.
function VM:read_file(path, opts) return call("read_file", self._read_file, self, path, opts) end

-- vm:write_file(path, data, opts?) or vm:write_file(path, {from = host_path, ...}): creates or
-- truncates path with mode opts.mode (default 0644, exact); returns the bytes written.
function VM:write_file(path, data, opts)
    if type(opts) == "number" then opts = { mode = opts } end
    if type(data) == "table" and opts == nil then data, opts = nil, data end
    return call("write_file", self._write_file, self, path, data, opts)
end

function VM:stat(path, opts) return call("stat", self._stat, self, path, opts) end

function VM:mkdir(path, opts)
    if opts == true then opts = { parents = true } end
    call("mkdir", self._mkdir, self, path, opts)
end

-- vm:spawn_worker() opens another agent connection: a Worker has the guest-operation methods
-- of a VM, and its requests run concurrently with the VM's and other workers'.
function VM:spawn_worker(opts)
    return call("spawn_worker", self._spawn_worker, self, opts)
end

---------------------------------------------------------------------------------------------
-- streams: one interface for process output, tails, and later console and capture

local function deadline(timeout)
    if timeout == nil then return nil end
    if type(timeout) ~= "number" or timeout < 0 then
        raise("stream: timeout must be a number of seconds >= 0, got " .. show(timeout))
    end
    return internal.now() + timeout
end

local function remaining(dl)
    if not dl then return nil end
    return math.max(0, dl - internal.now())
end

-- stream:next(timeout?) -> the next bytes available, or nil at the end; raises on timeout.
function Stream:next(timeout)
    local dl = deadline(timeout)
    while true do
        local s = self:_peek()
        if #s > 0 then
            self:_consume(#s)
            return s
        end
        local ended, err = self:_ended()
        if ended then
            if err then raise(self:name() .. ": " .. err) end
            return nil
        end
        if not self:_wait(remaining(dl)) then
            raise(self:name() .. ": nothing arrived within " .. timeout .. " s")
        end
    end
end

-- stream:read_until(pattern, timeout?) -> the text up to and including the first match of
-- the Lua pattern (what follows stays for the next read), or nil, "timeout" | "eof".
function Stream:read_until(pattern, timeout)
    if type(pattern) ~= "string" then
        raise("bad argument #1 to 'read_until' (pattern string expected, got " .. type(pattern) .. ")")
    end
    local dl = deadline(timeout)
    while true do
        local s = self:_peek()
        local _, j = s:find(pattern)
        if j then
            self:_consume(j)
            return s:sub(1, j)
        end
        if self:_ended() then return nil, "eof" end
        if not self:_wait(remaining(dl), #s) then return nil, "timeout" end
    end
end

-- stream:expect(pattern, timeout?) is read_until that fails the test, showing what came.
function Stream:expect(pattern, timeout)
    local got, why = self:read_until(pattern, timeout)
    if got then return got end
    local seen = self:_peek()
    local _, err = self:_ended()
    raise(string.format("%s: expected %s %s; %s", self:name(), show(pattern),
        why == "eof" and "before the end of the stream" or ("within " .. tostring(timeout) .. " s"),
        #seen > 0 and ("got " .. show(tail(seen, 10))) or "got nothing") .. (err and (" (" .. err .. ")") or ""))
end

-- stream:drain() -> everything buffered now, without waiting.
function Stream:drain()
    local s = self:_peek()
    self:_consume(#s)
    return s
end

-- stream:eof() -> true once the stream has ended and every byte was read.
function Stream:eof()
    return (self:_ended()) and #self:_peek() == 0
end

---------------------------------------------------------------------------------------------
-- lifecycle and console

function VM:pause() call("pause", self._pause, self) end
function VM:resume() call("resume", self._resume, self) end
function VM:reset() call("reset", self._reset, self) end

-- vm:wait_exit(timeout?): waits until QEMU has exited; raises if it is still running then.
function VM:wait_exit(timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
        raise("bad argument #1 to 'wait_exit' (seconds >= 0 expected, got " .. show(timeout) .. ")")
    end
    local ok, err = pcall(self._wait_exit, self, timeout)
    if not ok then raise((tostring(err):gsub("^prelude/[%w_]+%.lua:%d+: ", ""))) end
    if self:state() ~= "exited" then
        raise(string.format("vm %s: still running after %s s", self:name(), tostring(timeout)))
    end
end

-- vm:power_button(): the ACPI power button; the guest shuts down cleanly (wait_exit to wait).
function VM:power_button() call("power_button", self._power_button, self) end

-- vm:shutdown(opts?): a clean poweroff through the agent, and waits for QEMU to exit.
function VM:shutdown(opts)
    call("shutdown", self._poweroff, self, opts)
    self:wait_exit(opts and opts.timeout or 60)
end

-- vm:snapshot(name?) saves the VM (device state, and RAM as a sparse copy); vm:restore(snap)
-- puts the VM back to it: a new QEMU loads the state with the RAM mapped copy-on-write.
local Snapshot = {}
Snapshot.__index = Snapshot
Snapshot.__tostring = function(s) return "Snapshot(" .. s.vm_name .. ", " .. s.name .. ")" end
internal.Snapshot = Snapshot

function VM:snapshot(name)
    if name ~= nil and type(name) ~= "string" then
        raise("bad argument #1 to 'snapshot' (snapshot name expected, got " .. type(name) .. ")")
    end
    local id = call("snapshot", self._snapshot, self)
    return setmetatable({ vm = self, vm_name = self:name(), id = id,
                          name = name or ("snapshot " .. id) }, Snapshot)
end

function VM:restore(snap)
    if getmetatable(snap) ~= Snapshot then
        raise("bad argument #1 to 'restore' (Snapshot from vm:snapshot() expected, got " ..
              show(snap) .. ")")
    end
    if snap.vm ~= self then
        raise(string.format("vm %s: restore: snapshot '%s' was taken of vm %s, not of vm %s",
                            self:name(), snap.name, snap.vm_name, self:name()))
    end
    call("restore", self._restore, self, snap.id, snap.name)
end

local console_of = setmetatable({}, { __mode = "k" })
local vm_console = VM.console
function VM:console()
    local s = vm_console(self)
    console_of[s] = self
    return s
end

-- console:write(input): types into the serial console.
function Stream:write(data)
    local vm = console_of[self]
    if not vm then raise("stream: write is only for a VM's console") end
    call("write", vm._console_write, vm, data)
end

---------------------------------------------------------------------------------------------
-- the guest's clock: CLOCK_REALTIME moves; CLOCK_MONOTONIC and CLOCK_BOOTTIME never jump

local Clock = {}
Clock.__index = Clock
Clock.__tostring = function(c) return "Clock(" .. c.vm:name() .. ")" end

function VM:clock() return setmetatable({ vm = self }, Clock) end

local function clock_call(c, what, ...)
    local ret, err = c.vm:syscall(...)
    if ret ~= 0 then raise(string.format("vm %s: clock:%s: %s", c.vm:name(), what, tostring(err))) end
end

-- clock:now() -> the guest's wall-clock time, seconds since the epoch (with fractions)
function Clock:now()
    local ts = provium.buffer(16)
    clock_call(self, "now", "clock_gettime", 0, ts)
    return ts:uint(0, 8) + ts:uint(8, 8) / 1e9
end

-- A struct timespec for t seconds, as a buffer.
local function timespec(t)
    local sec = math.floor(t)
    return provium.buffer(string.pack("<i8i8", sec, math.floor((t - sec) * 1e9)))
end

-- clock:set(time): sets the guest's wall clock (seconds since the epoch)
function Clock:set(time)
    if type(time) ~= "number" or time < 0 then
        raise("bad argument #1 to 'set' (seconds since the epoch expected, got " .. show(time) .. ")")
    end
    clock_call(self, "set", "clock_settime", 0, timespec(time))
end

-- clock:advance(seconds): moves the guest's wall clock forward (or back, if negative)
function Clock:advance(seconds)
    if type(seconds) ~= "number" then
        raise("bad argument #1 to 'advance' (seconds expected, got " .. show(seconds) .. ")")
    end
    self:set(self:now() + seconds)
end

-- clock:sleep(seconds): waits that long in guest time (the guest's CLOCK_MONOTONIC)
function Clock:sleep(seconds)
    if type(seconds) ~= "number" or seconds < 0 then
        raise("bad argument #1 to 'sleep' (seconds >= 0 expected, got " .. show(seconds) .. ")")
    end
    clock_call(self, "sleep", "clock_nanosleep", 1, 0, timespec(seconds), 0)
end

---------------------------------------------------------------------------------------------
-- asynchronous processes

function VM:run_async(cmd, opts)
    local p = call("run_async", self._run_async, self, cmd, opts)
    p:_wait_started()
    local st = p:_state()
    if not st.started then raise(st.error) end
    return p
end

function Process:pid() return self:_state().pid end

function Process:running() return not self:_state().done end

-- process:wait(timeout?) -> a Result (what stdout/stderr still hold unread, the exit status);
-- raises if it does not exit in time (the process keeps running).
function Process:wait(timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
        raise("bad argument #1 to 'wait' (seconds >= 0 expected, got " .. show(timeout) .. ")")
    end
    if not self:_wait_exit(timeout) then
        raise(string.format("%s: still running after %s s", tostring(self), tostring(timeout)))
    end
    local st = self:_state()
    if st.error then raise(st.error) end
    local r = { code = st.code, signal = st.signal, timed_out = st.timed_out,
                duration = st.duration, cmd = st.cmd, vm = st.vm,
                stdout = self:stdout():drain(), stderr = self:stderr():drain() }
    return setmetatable(r, Result)
end

function Process:write(data) call("write", self._write, self, data) end
function Process:close_stdin() call("close_stdin", self._close_stdin, self) end
function Process:signal(sig, opts)
    call("signal", self._signal, self, sig, not (opts and opts.group == false))
end
function Process:kill() self:signal("KILL") end

---------------------------------------------------------------------------------------------
-- file handles: POSIX semantics, errors carry the errno name

-- vm:open(path, mode?, opts?): mode as fopen ("r", "r+", "w", "w+", "a", "a+", "wx", "w+x");
-- opts.perm sets the permission bits of a created file (default 0644).
function VM:open(path, mode, opts) return call("open", self._open, self, path, mode, opts) end

-- vm:tail(path): a stream of what is appended to path from now on.
function VM:tail(path) return call("tail", self._tail, self, path) end

function File:read(n, opts) return call("read", self._read, self, n, opts) end
function File:write(data, opts) return call("write", self._write, self, data, opts) end
function File:seek(whence, offset, opts) return call("seek", self._seek, self, whence, offset, opts) end
function File:tell() return call("tell", self._seek, self, "cur", 0) end
function File:close() call("close", self._close, self) end
function File:tail() return call("tail", self._tail, self) end

---------------------------------------------------------------------------------------------
-- layer 0: syscalls and ioctls straight into the guest kernel

-- vm:syscall(name | number, args...) -> ret, errno name (nil on success), errno number.
-- Arguments: integers (registers), strings (passed NUL-terminated, read-only) and
-- provium.buffer values (in and out: updated in place after the call).
function VM:syscall(nr, ...) return call("syscall", self._syscall, self, nr, ...) end

-- vm:ioctl(path | file, request, arg) -> ret, errno name, errno number; arg as for syscall.
function VM:ioctl(target, request, arg) return call("ioctl", self._ioctl, self, target, request, arg) end

for _, name in ipairs({ "run", "read_file", "write_file", "stat", "mkdir", "run_async", "open", "tail",
                        "syscall", "ioctl" }) do
    Worker[name] = VM[name]
end

---------------------------------------------------------------------------------------------
-- the provium object

internal.images = setmetatable({}, { __mode = "k" })

-- provium:parallel(fn, ...) runs the functions at once, each in its own coroutine, and returns
-- when all have. The first error fails the call with that branch's own message and location;
-- the other branches are stopped (their guest operations cancelled).
function provium:parallel(...)
    if self ~= provium then error("provium:parallel must be called with ':'", 2) end
    for i = 1, select("#", ...) do
        local f = select(i, ...)
        if type(f) ~= "function" then
            error("bad argument #" .. i .. " to 'parallel' (function expected, got " .. type(f) .. ")", 2)
        end
    end
    local ok, err = internal.parallel(...)
    if not ok then error(err, 0) end
end

function provium:vm(name, image)
    if self ~= provium then error("provium:vm must be called with ':'", 2) end
    if type(name) ~= "string" then
        error("bad argument #1 to 'vm' (VM name expected, got " .. type(name) .. ")", 2)
    end
    if image ~= nil and type(image) ~= "string" then
        error("bad argument #2 to 'vm' (image name expected, got " .. type(image) .. ")", 2)
    end
    local ok, vm = pcall(internal.vm_new, name)
    if not ok then error(vm, 2) end
    internal.images[vm] = image or "default"
    internal.vm_list[#internal.vm_list + 1] = vm
    return vm
end
internal.vm_list = {}

---------------------------------------------------------------------------------------------
-- fixtures: VM states built once, cached on disk, restored for every test that asks

-- The text of fn (its lines in its file) and the values of its plain upvalues: a change to
-- either changes the fixture's key.
local function function_source(fn)
    local info = debug.getinfo(fn, "S")
    local text = info.source
    if text:sub(1, 1) == "@" then
        local lines, n = {}, 0
        local f = io.open(text:sub(2), "r")
        if f then
            for line in f:lines() do
                n = n + 1
                if n > info.lastlinedefined then break end
                if n >= info.linedefined then lines[#lines + 1] = line end
            end
            f:close()
        end
        text = table.concat(lines, "\n")
    end
    local ups = {}
    for i = 1, 255 do
        local name, v = debug.getupvalue(fn, i)
        if not name then break end
        local ty = type(v)
        if ty == "string" or ty == "number" or ty == "boolean" then
            ups[#ups + 1] = name .. "=" .. ty .. ":" .. tostring(v)
        end
    end
    return text .. "\0" .. table.concat(ups, "\0")
end

-- Options as text with sorted keys; the boot timeout does not shape the VM.
local function canonical(v, top)
    if type(v) ~= "table" then return type(v) .. ":" .. tostring(v) end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
        if not (top and k == "timeout") then
            parts[#parts + 1] = tostring(k) .. "=" .. canonical(v[k])
        end
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

-- The builder's view of a lab: lab:vm(name, image) makes a VM whose RAM lives in the cache.
local Lab = {}
Lab.__index = Lab

-- lab:bridge(name): a bridge saved with the lab; its VMs come back attached to it.
function Lab:bridge(name)
    local ok, b = pcall(provium.bridge, provium, name)
    if not ok then raise(string.format("fixture %s: %s", self.name, b)) end
    self.bridges[#self.bridges + 1] = b
    return b
end

function Lab:vm(name, image)
    if self.vms[name] then
        raise(string.format("fixture %s: the lab has a VM named '%s' already", self.name, name))
    end
    local ok, vm = pcall(provium.vm, provium, name, image)
    if not ok then raise(string.format("fixture %s: %s", self.name, vm)) end
    internal.fixture_ram[vm] = self.build:ram_path(name)
    self.vms[name] = vm
    self.order[#self.order + 1] = name
    return vm
end

local function save_lab(lab)
    if #lab.order == 0 then error("the setup function made no VM", 0) end
    for _, name in ipairs(lab.order) do
        local vm = lab.vms[name]
        if vm:state() ~= "running" then
            error(string.format("vm %s is %s when the setup function returns; a fixture saves " ..
                                "running VMs", name, vm:state()), 0)
        end
    end
    for _, name in ipairs(lab.order) do
        local vm = lab.vms[name]
        local net_info = internal.net_save_info(vm, lab.bridges)
        local saved, err = vm:_save(lab.build:state_path(name))
        if not saved then error(err, 0) end
        lab.build:add_vm(name, vm:_config_json(net_info))
    end
end

-- Runs setup(lab) on fresh VMs, saves them into the build's staging directory and commits it.
-- A failure caches nothing and names the fixture and the failure's own location.
local function build_fixture(name, build, setup)
    local lab = setmetatable({ name = name, build = build, vms = {}, order = {}, bridges = {} }, Lab)
    local ok, err = pcall(setup, lab)
    if ok then ok, err = pcall(save_lab, lab) end
    for _, vmname in ipairs(lab.order) do internal.vm_release(lab.vms[vmname]) end
    for _, b in ipairs(lab.bridges) do internal.net_forget_bridge(b) end
    if not ok then
        err = type(err) == "string" and err or show(err)
        build:abort(err)
        raise(string.format("fixture %s: setup failed: %s", name, err))
    end
    local entry, cerr = build:commit()
    if not entry then raise(cerr) end
    return entry
end

-- The cache entry for key: found, built here, or built by another file runner meanwhile.
local function image_key(image, opts)
    local key, err = internal.image_key(image, opts)
    if not key then error(err, 0) end
    return key
end

-- A saved VM's image must still be the image of that name. A lab's key cannot hold its images
-- (its setup names them), so every hit is checked: when one changed since (an edited recipe,
-- a new agent), that entry is passed over for one keyed by the images' current keys as well.
-- Returns that extra key material, or nil when the entry is current.
local function changed_images(entry)
    local current, changed = {}, false
    for _, saved in ipairs(entry.vms) do
        local image = saved.config:match('"image":%s*"([^"]*)"') or "default"
        local saved_key = saved.config:match('"image_key":%s*"(%x+)"')
        local opts = { kernel = saved.config:match('"kernel":%s*"([^"]*)"'),
                       initrd = saved.config:match('"initrd":%s*"([^"]*)"') }
        local key = image_key(image, opts)
        current[#current + 1] = saved.name .. "=" .. image .. "=" .. key
        if saved_key and saved_key ~= key then changed = true end
    end
    return changed and table.concat(current, ",") or nil
end

local function fixture_entry(name, key, setup)
    local passed_over = 0
    while true do
        local status, a = internal.fixture_open(name, key)
        if status == nil then raise(a) end
        if status == "build" then return build_fixture(name, a, setup) end
        if status == "hit" then
            local ok, changed = pcall(changed_images, a)
            if not ok then raise(string.format("fixture %s: %s", name, changed)) end
            if not changed then return a end
            passed_over = passed_over + 1
            if passed_over > 4 then
                raise(string.format("fixture %s: its images keep changing while it is restored", name))
            end
            key = internal.fixture_key(key .. "\0images\0" .. changed)
        else
            internal.sleep(0.05) -- "busy": another runner is building it
        end
    end
end

local function free_vm_name(name)
    for i = 1, 100 do
        local candidate = i == 1 and name or (name .. "-" .. i)
        local ok, vm = pcall(internal.vm_new, candidate)
        if ok then return vm, candidate end
    end
    raise("fixture: no free VM name for " .. name)
end

-- New VMs loading the entry's saved states (RAM mapped copy-on-write from the cache). Guest
-- clocks are set to the host's time (vm.c), unless the fixture was booted with initial_time.
local function restore_fixture(name, entry, timeout)
    local vms, bridges_made = {}, {}
    for _, saved in ipairs(entry.vms) do
        local vm, vmname = free_vm_name(saved.name)
        internal.images[vm] = "default"
        internal.vm_list[#internal.vm_list + 1] = vm
        local net_info = saved.config:match('"net":%s*"([^"]*)"')
        if net_info and net_info ~= "" then
            local ok, err = pcall(internal.net_restore, vm, net_info, bridges_made)
            if not ok then raise(string.format("fixture %s: vm %s: %s", name, vmname, err)) end
        end
        local ok, err = vm:_boot_saved(saved.state, saved.ram, saved.config, timeout)
        if not ok then raise(string.format("fixture %s: restoring vm %s: %s", name, vmname, err)) end
        vms[saved.name] = vm
    end
    for bname, b in pairs(bridges_made) do vms[bname] = b end
    return vms
end

-- The key over what shapes the fixture; a failure (the image cannot be built, say) is raised
-- at the caller's line.
local function fixture_key(name, parts)
    local ok, res = pcall(parts)
    if not ok then
        raise(string.format("fixture %s: %s", name, (tostring(res):gsub("^prelude/[%w_]+%.lua:%d+: ", ""))))
    end
    return internal.fixture_key(table.concat(res, "\0"))
end

local function check_fixture_args(self, what, name, setup, opts)
    if self ~= provium then error("provium:" .. what .. " must be called with ':'", 3) end
    if type(name) ~= "string" or not name:match("^[%w_-]+$") or #name > 32 then
        error("bad argument #1 to '" .. what .. "' (fixture name of 1-32 characters A-Z a-z " ..
              "0-9 - _ expected, got " .. show(name) .. ")", 3)
    end
    if type(setup) ~= "function" then
        error("bad argument #2 to '" .. what .. "' (setup function expected, got " ..
              type(setup) .. ")", 3)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad argument #3 to '" .. what .. "' (options table expected, got " ..
              type(opts) .. ")", 3)
    end
end

-- provium:vm_fixture(name, setup, opts?) -> a running VM restored from the fixture, which is
-- built first (boot with opts, then setup(vm)) when the cache has no entry for its key.
function provium:vm_fixture(name, setup, opts)
    check_fixture_args(self, "vm_fixture", name, setup, opts)
    local boot_opts, image = {}, "default"
    for k, v in pairs(opts or {}) do
        if k == "image" then image = v else boot_opts[k] = v end
    end
    local key = fixture_key(name, function()
        return { "vm", name, function_source(setup), canonical(boot_opts, true), image,
                 image_key(image, boot_opts), internal.qemu_version(), internal.accel() }
    end)
    local entry = fixture_entry(name, key, function(lab)
        setup(lab:vm(name, image):boot(boot_opts))
    end)
    return restore_fixture(name, entry, boot_opts.timeout)[name]
end

-- provium:lab_fixture(name, setup) -> {vm name = VM}: setup(lab) makes and prepares several
-- VMs with lab:vm(name, image):boot(opts); all of them are saved and restored together.
function provium:lab_fixture(name, setup)
    check_fixture_args(self, "lab_fixture", name, setup, nil)
    local key = fixture_key(name, function()
        return { "lab", name, function_source(setup), image_key("default"),
                 internal.qemu_version(), internal.accel() }
    end)
    return restore_fixture(name, fixture_entry(name, key, setup))
end

---------------------------------------------------------------------------------------------
-- networks: bridges in the file's own network namespace, VMs on them, impairments

local Bridge = internal.Bridge
local bridges = {}        -- name -> Bridge
local net = setmetatable({}, { __mode = "k" }) -- Bridge -> {name, index, links = {vm -> link}, order}
local links_of = setmetatable({}, { __mode = "k" }) -- VM -> list of links (all bridges)
local ntaps = 0
local index_used = {}     -- subnet index -> bridge name


-- provium:bridge(name) -> a new Linux bridge, subnet 10.77.<n>.0/24 (n: bridges made so far).
function provium:bridge(name, opts)
    if self ~= provium then error("provium:bridge must be called with ':'", 2) end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad argument #2 to 'bridge' (options table expected, got " .. type(opts) .. ")", 2)
    end
    local seed = opts and opts.rng_seed
    if seed ~= nil and math.type(seed) ~= "integer" then
        error("bad argument #2 to 'bridge' (rng_seed must be an integer, got " .. show(seed) .. ")", 2)
    end
    if type(name) ~= "string" or not name:match("^[a-z0-9_]+$") or #name > 12 then
        error("bad argument #1 to 'bridge' (bridge name of 1-12 characters a-z 0-9 _ expected, got " ..
              show(name) .. ")", 2)
    end
    if bridges[name] then raise("bridge " .. name .. ": a bridge of that name exists in this file") end
    local index = opts and opts._index
    if not index then
        index = 1
        while index_used[index] do index = index + 1 end
    elseif index_used[index] then
        raise(string.format("bridge %s: subnet 10.77.%d.0/24 is taken by bridge %s in this file",
                            name, index, index_used[index]))
    end
    if index > 250 then raise("bridge " .. name .. ": at most 250 bridges per file") end
    local b, err = internal.bridge_new(name, string.format("10.77.%d.1/24", index))
    if not b then raise(err) end
    bridges[name] = b
    index_used[index] = name
    if not seed then -- the same choices every run unless asked otherwise
        seed = 0
        for i = 1, #name do seed = seed * 31 + name:byte(i) end
    end
    net[b] = { name = name, index = index, links = {}, order = {}, next_host = 10, seed = seed }
    return b
end

local function hosts_file(vm)
    local lines = { "127.0.0.1 localhost" }
    for _, link in ipairs(links_of[vm] or {}) do
        for _, other in ipairs(net[link.bridge].order) do
            lines[#lines + 1] = other.ip .. " " .. other.vm:name() .. "." .. net[link.bridge].name
        end
    end
    return table.concat(lines, "\n") .. "\n"
end

-- In the guest: find the card by its MAC (a hot-plugged one takes a moment to appear), give it
-- its address, bring it up; with an uplink on the bridge, a default route through the gateway.
local function configure_link(vm, link)
    local up = net[link.bridge].uplink
    local route = up and (" && ip route replace default via " .. up.gateway .. " dev $dev") or ""
    local script = string.format([[
ip link set lo up
dev=
for i in $(seq 1 200); do
  for d in /sys/class/net/*; do
    [ "$(cat $d/address 2>/dev/null)" = "%s" ] && dev=${d##*/}
  done
  [ -n "$dev" ] && break
  sleep 0.05
done
[ -n "$dev" ] || { echo "no network interface with MAC %s appeared" >&2; exit 1; }
ip addr add %s/24 dev $dev && ip link set $dev up%s && echo $dev
]], link.mac, link.mac, link.ip, route)
    local r = vm:run(script, { timeout = 30 })
    if not r:ok() then
        raise(string.format("bridge %s: attach: configuring vm %s: %s", net[link.bridge].name,
                            vm:name(), r.stderr ~= "" and r.stderr or r.stdout))
    end
    link.dev = r.stdout:match("(%S+)%s*$")
    link.configured = true
end

local function refresh_hosts(b)
    for _, link in ipairs(net[b].order) do
        if link.configured and link.vm:state() == "running" then
            link.vm:write_file("/etc/hosts", hosts_file(link.vm))
        end
    end
end

-- After a boot: configure the cards attached before it.
function internal.configure_links(vm)
    local touched = {}
    for _, link in ipairs(links_of[vm] or {}) do
        if not link.configured then
            configure_link(vm, link)
            touched[link.bridge] = true
        end
    end
    for b in pairs(touched) do refresh_hosts(b) end
end

function internal.is_vm(v)
    local mt = type(v) == "userdata" and getmetatable(v)
    return mt and mt.__index == VM or false
end

local function check_bridge_alive(b, what)
    if b:_gone() then raise(string.format("bridge %s: %s: the bridge is gone", b:name(), what)) end
end

-- bridge:attach(vm or {vm, ...}): a virtio-net card for each on a TAP port of the bridge, its
-- address (10.77.<n>.<10+k> in attach order) configured in the guest, and every VM on the
-- bridge able to resolve every other as <vm>.<bridge>. Works before and after boot.
function Bridge:attach(vms)
    local st = net[self]
    check_bridge_alive(self, "attach")
    if internal.is_vm(vms) then vms = { vms } end
    if type(vms) ~= "table" then
        raise("bridge " .. st.name .. ": attach: a VM or a list of VMs expected, got " .. type(vms))
    end
    for i, vm in ipairs(vms) do
        if not internal.is_vm(vm) then
            raise(string.format("bridge %s: attach: item %d is not a VM (%s)", st.name, i, show(vm)))
        end
        if st.links[vm] then
            raise(string.format("bridge %s: attach: vm %s is attached already", st.name, vm:name()))
        end
    end
    for _, vm in ipairs(vms) do
        local host = st.next_host
        if host > 254 then raise("bridge " .. st.name .. ": attach: the subnet is full") end
        st.next_host = host + 1
        ntaps = ntaps + 1
        local link = {
            bridge = self, vm = vm, tap = string.format("pvt%d", ntaps),
            ip = string.format("10.77.%d.%d", st.index, host),
            mac = string.format("52:54:00:77:%02x:%02x", st.index, host),
        }
        local ok, err = self:_add_tap(link.tap)
        if not ok then raise(err) end
        call("attach", vm._add_nic, vm, link.tap, link.mac)
        st.links[vm] = link
        st.order[#st.order + 1] = link
        links_of[vm] = links_of[vm] or {}
        table.insert(links_of[vm], link)
        if vm:state() == "running" then configure_link(vm, link) end
    end
    refresh_hosts(self)
    return self
end

function VM:ip(bridge)
    local st = net[bridge]
    if not st then raise("vm " .. self:name() .. ": ip: a Bridge expected, got " .. show(bridge)) end
    local link = st.links[self]
    if not link then raise(string.format("vm %s: ip: not attached to bridge %s", self:name(), st.name)) end
    return link.ip
end

-- Impairments: each returns a handle whose :undo() removes it; bridge:heal() removes them all.
local Impairment = {}
Impairment.__index = Impairment
Impairment.__tostring = function(i) return "Impairment(" .. net[i.bridge].name .. ", " .. i.kind .. ")" end

-- An impairment is undone by its own function (netem in the guest, a bandwidth limit) or, for
-- the nftables ones, by its rule's id on the bridge.
function Impairment:undo()
    if self.undone then return end
    if self.undo_fn then
        self.undo_fn()
    else
        local ok, err = self.bridge:_unimpair(self.id)
        if not ok then raise(err) end
    end
    self.undone = true
end

local function tap_of(b, vm, what)
    local link = internal.is_vm(vm) and net[b].links[vm]
    if not link then
        raise(string.format("bridge %s: %s: %s is not attached to this bridge", net[b].name, what,
                            internal.is_vm(vm) and ("vm " .. vm:name()) or show(vm)))
    end
    return link.tap
end

local function impair(b, kind, rules)
    check_bridge_alive(b, kind)
    local id, err = b:_impair(kind, table.concat(rules, "\n") .. "\n")
    if not id then raise(err) end
    return setmetatable({ bridge = b, id = id, kind = kind }, Impairment)
end

local function side(b, list, what)
    if internal.is_vm(list) then list = { list } end
    if type(list) ~= "table" or #list == 0 then
        raise(string.format("bridge %s: %s: a VM or a non-empty list of VMs expected, got %s",
                            net[b].name, what, show(list)))
    end
    local taps = {}
    for _, vm in ipairs(list) do taps[#taps + 1] = tap_of(b, vm, what) end
    return taps
end

-- bridge:partition(a, b, opts?): no frames between the VMs of side a and those of side b;
-- opts.oneway: only from a to b.
function Bridge:partition(a, b, opts)
    local from, to = side(self, a, "partition"), side(self, b, "partition")
    local oneway = type(opts) == "table" and opts.oneway
    local rules = {}
    for _, x in ipairs(from) do
        for _, y in ipairs(to) do
            rules[#rules + 1] = string.format('    iifname "%s" oifname "%s" drop', x, y)
            if not oneway then
                rules[#rules + 1] = string.format('    iifname "%s" oifname "%s" drop', y, x)
            end
        end
    end
    return impair(self, oneway and "partition (one-way)" or "partition", rules)
end

-- bridge:isolate(vm): nothing in or out of vm's port.
function Bridge:isolate(vm)
    local tap = tap_of(self, vm, "isolate")
    return impair(self, "isolate", {
        string.format('    iifname "%s" drop', tap), string.format('    oifname "%s" drop', tap),
    })
end

-- bridge:heal(): every impairment of the bridge and its links goes (rules, latency, caps).
function Bridge:heal()
    check_bridge_alive(self, "heal")
    local ok, err = self:_unimpair(0)
    if not ok then raise(err) end
    local queued = net[self].queued or {}
    net[self].queued = {}
    for _, h in ipairs(queued) do
        if not h.undone then h:undo() end
    end
end

-- bridge:uplink() -> Uplink {host_ip, gateway, runner_ip, host_netns}: NAT from the bridge's
-- guests to the host's network namespace through a veth pair. A server the host runs at host_ip
-- is reachable from every guest on the bridge (each gets a default route via gateway,
-- 10.77.<n>.1; guests attached later too); it sees them coming from runner_ip. host_netns names
-- the host's namespace for `nsenter --net=` (a host-side server started from a test). Nothing
-- is routed beyond host_ip. Calling it again returns the same uplink; it goes with
-- uplink:remove(), bridge:remove(), or the file.
local Uplink = {}
Uplink.__index = Uplink
Uplink.__tostring = function(u) return "Uplink(" .. net[u.bridge].name .. ", " .. u.host_ip .. ")" end

function Bridge:uplink()
    local st = net[self]
    check_bridge_alive(self, "uplink")
    if st.uplink then return st.uplink end
    local gateway = string.format("10.77.%d.1", st.index)
    local h, err = internal.uplink_new(self:ifname(), gateway)
    if not h then raise(err) end
    local up = setmetatable({ bridge = self, handle = h, gateway = gateway, host_ip = h:host_ip(),
                              runner_ip = h:runner_ip(), host_netns = h:host_netns() }, Uplink)
    st.uplink = up
    for _, link in ipairs(st.order) do
        if link.configured and link.vm:state() == "running" then
            local r = link.vm:run(string.format("ip route replace default via %s dev %s", gateway,
                                                link.dev), { timeout = 30 })
            if not r:ok() then
                raise(string.format("bridge %s: uplink: route in vm %s: %s", st.name,
                                    link.vm:name(), r.stderr ~= "" and r.stderr or r.stdout))
            end
        end
    end
    return up
end

-- uplink:remove(): deletes the veth pair and its NAT rule now (the guests' routes stay).
function Uplink:remove()
    self.handle:_remove()
    if net[self.bridge].uplink == self then net[self.bridge].uplink = nil end
end

-- bridge:remove(): deletes the bridge now (its ports and uplink too); it is also gone when the
-- file ends.
function Bridge:remove()
    if net[self].uplink then net[self].uplink:remove() end
    self:_remove()
end

-- Links: bridge:link(vm) is vm's port, with the same impairments applied to it alone.
local Link = {}
Link.__index = Link
Link.__tostring = function(l) return "Link(" .. net[l.bridge].name .. ", " .. l.vm:name() .. ")" end

function Bridge:link(vm)
    local link = internal.is_vm(vm) and net[self].links[vm]
    if not link then
        raise(string.format("bridge %s: link: %s is not attached to this bridge", net[self].name,
                            internal.is_vm(vm) and ("vm " .. vm:name()) or show(vm)))
    end
    return setmetatable({ bridge = self, vm = vm, state = link }, Link)
end

function Link:isolate() return self.bridge:isolate(self.vm) end

-- The links an impairment applies to: one, or every link of the bridge.
local function targets(self)
    if getmetatable(self) == Link then return self.bridge, { self.state } end
    return self, net[self].order
end

-- A handle for an impairment outside nftables (latency, bandwidth): heal() undoes it too.
local function handle(b, kind, undo)
    local h = setmetatable({ bridge = b, kind = kind, undo_fn = undo }, Impairment)
    local st = net[b]
    st.queued = st.queued or {}
    st.queued[#st.queued + 1] = h
    return h
end


-- add_latency(ms, jitter?): frames a VM sends are delayed by ms (+/- jitter) on its side of
-- the link (netem in the guest: the host kernel here has no sch_netem). On a link, the round
-- trip to that VM rises by ms; on the whole bridge, by 2 ms between any two VMs.
local function add_latency(self, ms, jitter)
    local b, links = targets(self)
    check_bridge_alive(b, "add_latency")
    local who = "bridge " .. net[b].name .. ": add_latency"
    if type(ms) ~= "number" or ms < 0 then raise(who .. ": milliseconds must be a number >= 0, got " .. show(ms)) end
    jitter = jitter or 0
    if type(jitter) ~= "number" or jitter < 0 then raise(who .. ": jitter must be a number >= 0, got " .. show(jitter)) end
    local done = {}
    for _, link in ipairs(links) do
        if not link.dev or link.vm:state() ~= "running" then
            raise(string.format("%s: vm %s is not up on the bridge (%s)", who, link.vm:name(), link.vm:state()))
        end
        local ok, err = link.vm:_netem(link.dev, ms, jitter)
        if not ok then raise(who .. ": " .. err) end
        done[#done + 1] = link
        internal.event("bridge.latency", { bridge = net[b].name, vm = link.vm:name(), ms = ms,
                                           jitter_ms = jitter, where = "guest" })
    end
    return handle(b, "latency", function()
        for _, link in ipairs(done) do
            if link.vm:state() == "running" then
                local ok, err = link.vm:_netem_clear(link.dev)
                if not ok then raise(err) end
            end
        end
    end)
end

-- A seeded pattern: which of every 1000 IPv4 frames are dropped (each with probability p).
local function drop_pattern(seed, p)
    local x = seed ~ 0x2545F4914F6CDD1D
    if x == 0 then x = 1 end
    local picks = {}
    for i = 0, 999 do
        x = x ~ (x << 13)
        x = x ~ (x >> 7)
        x = x ~ (x << 17)
        if ((x >> 11) / 9007199254740992.0) < p then picks[#picks + 1] = i end
    end
    return picks
end

-- drop_rate(p): each IPv4 frame crossing the bridge (or to or from the link's VM) is dropped
-- with probability p; the choices come from the bridge's rng_seed, so a run repeats exactly.
local function drop_rate(self, p)
    local b, links = targets(self)
    local who = "bridge " .. net[b].name .. ": drop_rate"
    if type(p) ~= "number" or p < 0 or p > 1 then
        raise(who .. ": probability must be between 0 and 1, got " .. show(p))
    end
    local st = net[b]
    local seed = st.seed + (getmetatable(self) == Link and self.state.mac:byte(-1) or 0)
    local picks = drop_pattern(seed, p)
    local rules = {}
    if #picks > 0 then
        local set = "{ " .. table.concat(picks, ", ") .. " }"
        if getmetatable(self) == Link then
            for _, dir in ipairs({ "iifname", "oifname" }) do
                rules[#rules + 1] = string.format('    %s "%s" ether type ip numgen inc mod 1000 %s drop',
                                                  dir, links[1].tap, set)
            end
        else
            rules[#rules + 1] = "    ether type ip numgen inc mod 1000 " .. set .. " drop"
        end
    else
        rules[#rules + 1] = "    # drop_rate 0"
    end
    local h = impair(b, "drop_rate", rules)
    internal.event("bridge.drop_rate", { bridge = st.name, p = p, dropped_per_1000 = #picks,
                                         vm = getmetatable(self) == Link and self.vm:name() or "" })
    return h
end

local rate_units = { bit = 1, kbit = 1e3, mbit = 1e6, gbit = 1e9, bps = 8, kbps = 8e3, mbps = 8e6, gbps = 8e9 }

-- bandwidth_limit(rate): a tbf cap on the port's way into its VM (on the whole bridge: every
-- port, so every flow across it). rate: bits/s, or "10mbit", "500kbit", "1mbps" (bytes).
local function bandwidth_limit(self, rate)
    local b, links = targets(self)
    check_bridge_alive(b, "bandwidth_limit")
    local who = "bridge " .. net[b].name .. ": bandwidth_limit"
    local bits
    if type(rate) == "number" then bits = rate
    elseif type(rate) == "string" then
        local n, unit = rate:match("^%s*([%d.]+)%s*(%a*)%s*$")
        n, unit = tonumber(n), (unit or ""):lower()
        if n and rate_units[unit ~= "" and unit or "bit"] then bits = n * rate_units[unit ~= "" and unit or "bit"] end
    end
    if not bits or bits <= 0 then
        raise(who .. ": rate must be positive, like 10000000 (bits/s) or \"10mbit\", got " .. show(rate))
    end
    local bytes = math.floor(bits / 8)
    local tap = getmetatable(self) == Link and links[1].tap or nil
    local ok, err = b:_set_rate(tap, bytes)
    if not ok then raise(err) end
    internal.event("bridge.bandwidth", { bridge = net[b].name, bytes_per_s = bytes,
                                         vm = getmetatable(self) == Link and self.vm:name() or "" })
    return handle(b, "bandwidth_limit", function()
        local ok2, err2 = b:_set_rate(tap, 0)
        if not ok2 then raise(err2) end
    end)
end

Bridge.add_latency, Link.add_latency = add_latency, add_latency
Bridge.drop_rate, Link.drop_rate = drop_rate, drop_rate
Bridge.bandwidth_limit, Link.bandwidth_limit = bandwidth_limit, bandwidth_limit

-- bridge:capture(filter?, opts?): packets crossing the bridge (BPF filter, tcpdump syntax) into
-- a pcap file, and a stream of them. opts.path keeps the file; by default it is in the file's
-- run directory and goes with it.
local ncaptures = 0
function Bridge:capture(filter, opts)
    check_bridge_alive(self, "capture")
    local who = "bridge " .. net[self].name .. ": capture"
    if filter ~= nil and type(filter) ~= "string" then raise(who .. ": filter must be a string, got " .. show(filter)) end
    if opts ~= nil and type(opts) ~= "table" then raise(who .. ": options table expected, got " .. show(opts)) end
    ncaptures = ncaptures + 1
    local path = opts and opts.path or
        string.format("%s/capture-%s-%d.pcap", internal.run_dir(), net[self].name, ncaptures)
    local c, err = internal.capture_open(self:ifname(), filter, path)
    if not c then raise(who .. ": " .. err) end
    return c
end

---------------------------------------------------------------------------------------------
-- readiness probes for services started with vm:run_async

local function wait_in_guest(vm, what, object, test, timeout)
    timeout = timeout or 30
    if type(timeout) ~= "number" or timeout <= 0 then
        raise(string.format("vm %s: %s: timeout must be a positive number of seconds, got %s",
                            vm:name(), what, show(timeout)))
    end
    local script = string.format([[
end=$(( $(date +%%s) + %d ))
until %s; do
  [ $(date +%%s) -ge $end ] && exit 1
  sleep 0.05
done]], math.ceil(timeout), test)
    local r = vm:run(script, { env = { P = tostring(object) }, timeout = timeout + 10 })
    if not r:ok() then
        raise(string.format("vm %s: %s %s: not ready after %g s", vm:name(), what,
                            tostring(object), timeout))
    end
end

-- vm:wait_for_file(path, timeout?): until path exists in the guest (default 30 s).
function VM:wait_for_file(path, timeout)
    if type(path) ~= "string" or path == "" then
        raise("bad argument #1 to 'wait_for_file' (path expected, got " .. show(path) .. ")")
    end
    wait_in_guest(self, "wait_for_file", path, '[ -e "$P" ]', timeout)
end

-- vm:wait_for_port(port, timeout?): until something in the guest listens on TCP port.
function VM:wait_for_port(port, timeout)
    if math.type(port) ~= "integer" or port < 1 or port > 65535 then
        raise("bad argument #1 to 'wait_for_port' (TCP port 1-65535 expected, got " .. show(port) .. ")")
    end
    local hex = string.format("%04X", port)
    wait_in_guest(self, "wait_for_port", port,
                  "grep -q ':" .. hex .. " [0-9A-F:]* 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null",
                  timeout)
end

---------------------------------------------------------------------------------------------
-- networks in fixtures: a lab's bridges are saved with it; its VMs come back attached

-- "bridge,index,host,mac,ip,dev;..." for each of vm's cards (all on bridges of the lab).
function internal.net_save_info(vm, lab_bridges)
    local mine = {}
    for _, b in ipairs(lab_bridges) do mine[b] = true end
    local parts = {}
    for _, link in ipairs(links_of[vm] or {}) do
        if not mine[link.bridge] then
            error(string.format("vm %s is on bridge %s, which the lab did not make (use lab:bridge)",
                                vm:name(), net[link.bridge].name), 0)
        end
        local st = net[link.bridge]
        parts[#parts + 1] = table.concat({ st.name, st.index, link.ip:match("(%d+)$"), link.mac,
                                           link.ip, link.dev or "" }, ",")
    end
    return table.concat(parts, ";")
end

-- The builder's bridges go once the lab is saved: the restored lab gets its own.
function internal.net_forget_bridge(b)
    local st = net[b]
    if not st then return end
    b:_remove()
    bridges[st.name] = nil
    index_used[st.index] = nil
end

-- Before a saved VM is loaded: its cards back on bridges of the same names and subnets (made
-- here once per restore), with the addresses its guest already has.
function internal.net_restore(vm, info, made)
    for card in info:gmatch("[^;]+") do
        local bname, index, host, mac, ip, dev = card:match("^([^,]+),(%d+),(%d+),([^,]+),([^,]+),([^,]*)$")
        if not bname then error("bad saved network card: " .. card, 0) end
        local b = made[bname]
        if not b then
            b = provium:bridge(bname, { _index = tonumber(index) })
            made[bname] = b
        end
        local st = net[b]
        ntaps = ntaps + 1
        local link = { bridge = b, vm = vm, tap = string.format("pvt%d", ntaps), ip = ip, mac = mac,
                       dev = dev ~= "" and dev or nil, configured = true }
        local ok, err = b:_add_tap(link.tap)
        if not ok then error(err, 0) end
        local added, nerr = vm:_add_nic(link.tap, mac)
        if not added then error(nerr, 0) end
        st.links[vm] = link
        st.order[#st.order + 1] = link
        st.next_host = math.max(st.next_host, tonumber(host) + 1)
        links_of[vm] = links_of[vm] or {}
        table.insert(links_of[vm], link)
    end
end
