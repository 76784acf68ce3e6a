-- test.lua: test(name, fn) registers a test; the handle t skips and asserts; run_test runs one.
local P = ...
local provium, internal = P.provium, P.internal
local show, fail, raise, vm_state = P.show, P.fail, P.raise, P.vm_state

internal.tests = {}
local names = {}

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
-- the test handle t: skipping and assertions (each failure shows expected and actual)

local function deep_eq(a, b)
    if a == b then return true end
    if type(a) ~= "table" or type(b) ~= "table" then return false end
    for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end

local T = {}
P.api.T = T
T.__index = T
local Skip = {}
Skip.__tostring = function(s) return "skipped: " .. s.reason end

function T:skip(reason)
    error(setmetatable({ reason = tostring(reason or "skipped") }, Skip), 0)
end

-- t:needs_kernel(vm, what): what the test checks next is the guest kernel's own (its memory
-- size, its modules): on a local VM the test is skipped, saying so.
function T:needs_kernel(vm, what)
    if vm:vmm() == "local" then
        local where = debug.getinfo(2, "Sl")
        self:skip(string.format("%s:%d: vm %s: %s: %s", where.short_src, where.currentline,
                                vm:name(), tostring(what), internal.local_unavailable))
    end
end

function T:fail(msg) fail(tostring(msg or "failed"), nil) end

-- t:artifact(path): a host file (a history, a service's log) kept with the test's consoles
-- and captures if it fails and the run keeps artifacts (--artifacts; docs/ci.md). Read when
-- the test ends, so it may be written after this call. Returns path.
function T:artifact(path)
    if type(path) ~= "string" or path == "" or path:find("\0", 1, true) then
        error("bad argument #1 to 'artifact' (a host file's path expected, got " .. show(path) .. ")", 2)
    end
    local list = internal.test_artifacts
    if #list >= 64 then error("t:artifact: at most 64 files a test, got another: " .. path, 2) end
    list[#list + 1] = path
    return path
end

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
local file_started = false
local function reset_vms()
    for _, vm in ipairs(internal.vm_list) do
        if vm:vmm() == "local" then
            raise("vm " .. vm:name() .. ": a file-start snapshot: " .. internal.local_unavailable)
        end
    end
    if not file_started then
        file_started = true
        for _, vm in ipairs(internal.vm_list) do
            if vm:state() == "running" then vm_state(vm).file_start = vm:snapshot("file start") end
        end
        return
    end
    for _, vm in ipairs(internal.vm_list) do
        local snap = vm_state(vm).file_start
        if snap then
            vm:restore(snap)
        elseif vm:state() == "running" or vm:state() == "paused" then
            vm:kill()
            vm:wait_exit(30)
        end
    end
end

-- What other parts of the prelude do after each test, whatever its outcome (disk.lua reports
-- its faults' hits).
P.after_test = {}

-- A call that needs a guest kernel, on a local VM, skips the test: one suite runs under both
-- VMMs, and its skips say what needs a VM.
local function failed(err)
    if err:find(internal.local_unavailable, 1, true) then return "skip", err end
    if err == "not enough memory" and internal.lua_memory_mb > 0 then
        -- Lua's own message, with no place: the test ran out in its own code
        err = string.format("not enough memory (a test file's Lua may use %d MiB: $PROVIUM_LUA_MEMORY)",
                            internal.lua_memory_mb)
    end
    return "fail", err
end

function internal.run_test(entry)
    local t = setmetatable({ name = entry.name }, T)
    internal.test_artifacts = {}
    P.current_test = entry.name -- provium.seed() and provium.random() are the test's own
    if provium.reset_between_tests then
        local ok, err = pcall(reset_vms)
        if not ok then return failed("reset_between_tests: " .. tostring(err)) end
    end
    local ok, err, stop
    if internal.debugging() then -- provium debug: a prompt at the failure, its VMs still up
        ok, err = xpcall(entry.fn, function(e)
            stop = P.capture_failure(e, getmetatable(e) == Skip)
            return e
        end, t)
        if stop then P.repl(stop.scope, stop.banner, stop.where) end
    else
        ok, err = pcall(entry.fn, t)
    end
    for _, hook in ipairs(P.after_test) do pcall(hook) end
    P.current_test = nil
    if ok then return "pass" end
    if getmetatable(err) == Skip then return "skip", err.reason end
    if type(err) ~= "string" then err = show(err) end
    return failed(P.explain_missing_method(err))
end
