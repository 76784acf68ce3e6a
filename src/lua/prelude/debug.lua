-- debug.lua: provium debug's prompt. At a failed test (or at provium.breakpoint()) the run
-- stops in a Lua REPL that sees what the test saw: the failing function's locals and upvalues,
-- then the file's globals. Guest operations work there as in the test (the prompt runs in the
-- test's own task); `continue` (or Ctrl-D) goes on.
local P = ...
local provium, internal = P.provium, P.internal
local show = P.show

-- The nearest frame at or above level (of the caller of this function) that belongs to a
-- test file: not C, not the prelude. Returns its level, as the caller counts, and its info.
local function test_frame(level)
    for l = level + 1, 200 do
        local info = debug.getinfo(l, "Slf")
        if not info then return nil end
        if info.what ~= "C" and not info.source:find("^=prelude/") then return l - 1, info end
    end
end

-- What the function running at level (as the caller counts) sees: its locals (the innermost
-- of a name wins), then its upvalues; then the globals.
local function scope_at(level, info)
    local scope = {}
    for i = 1, 250 do
        local name, value = debug.getlocal(level + 1, i)
        if not name then break end
        if not name:find("^%(") then scope[name] = value end
    end
    for i = 1, 250 do
        local name, value = debug.getupvalue(info.func, i)
        if not name then break end
        if name ~= "_ENV" and scope[name] == nil then scope[name] = value end
    end
    return setmetatable(scope, { __index = _G })
end

local function names_of(scope)
    local names = {}
    for k in pairs(scope) do names[#names + 1] = tostring(k) end
    table.sort(names)
    return table.concat(names, ", ")
end

-- The stack from level (as the caller counts) down to the test's own frames: what the
-- prelude does around a test is not the person's.
local function traceback_at(level)
    local lines = {}
    for line in debug.traceback("", level + 1):gmatch("[^\n]+") do
        if line:find("prelude/") or line:find("%[C%]: in function 'xpcall'") then break end
        lines[#lines + 1] = line
    end
    return table.concat(lines, "\n")
end

local function say(...)
    io.stderr:write(...)
    io.stderr:flush()
end

-- Compiles an input: as an expression whose values are printed, else as statements. Returns
-- the function, or nil and the error, which ends in "<eof>" when more lines would complete it.
local function compile(src, scope)
    local f = load("return " .. src, "=prompt", "t", scope)
    if f then return f end
    return load(src, "=prompt", "t", scope)
end

local function evaluate(f)
    local res = table.pack(pcall(f))
    if not res[1] then return say(tostring(res[2]), "\n") end
    local out = {}
    for i = 2, res.n do out[#out + 1] = show(res[i]) end
    if #out > 0 then say(table.concat(out, "\t"), "\n") end
end

local HELP = "  an expression prints its value; statements run (vm:run(...) works here)\n" ..
             "  where: the stack at the stop   continue (or Ctrl-D): go on\n"

-- The REPL, until continue or the end of input.
function P.repl(scope, banner, where)
    say("\nprovium debug: ", banner, "\n  in scope: ", names_of(scope), "\n", HELP)
    local pending
    while true do
        local line = internal.read_line(pending and ">> " or "provium> ")
        if line == nil then say("\n") return end
        local src = pending and (pending .. "\n" .. line) or line
        if not pending and (line == "continue" or line == "c") then return end
        if not pending and line == "where" then
            say(where or "", "\n")
        elseif not pending and line == "help" then
            say(HELP)
        elseif src:find("%S") then
            local f, err = compile(src, scope)
            pending = not f and err:find("<eof>$") and src or nil
            if not pending then
                internal.add_history(src)
                if f then evaluate(f) else say(err, "\n") end
            end
        end
    end
end

-- For xpcall in run_test: at a failure, while its stack is still there, what the failing test
-- function saw; the prompt opens once the stack has unwound (P.repl, in the test's task).
function P.capture_failure(err, is_skip)
    if is_skip then return nil end
    local level, info = test_frame(2)
    if not level then return nil end
    local msg = type(err) == "string" and err or show(err)
    return { scope = scope_at(level, info), banner = "stopped at a failure: " .. msg,
             where = traceback_at(level) }
end

function provium.breakpoint()
    if not internal.debugging() then return end
    local level, info = test_frame(1)
    if not level then return end
    P.repl(scope_at(level, info), "breakpoint at " .. info.short_src .. ":" .. info.currentline,
           traceback_at(level))
end
