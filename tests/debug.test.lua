-- provium debug (and --pdb): a Lua prompt at provium.breakpoint() and at a failure, in the
-- test's scope, with guest operations working from it; driven through a PTY by
-- tests/lib/ptydrive.py.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local P = provium.executable

local function drive(steps, cmd)
    local args = {}
    for _, s in ipairs(steps) do args[#args + 1] = "'" .. s:gsub("'", "'\\''") .. "'" end
    return (st.sh("python3 " .. here .. "/lib/ptydrive.py " .. table.concat(args, " ") .. " -- " .. cmd))
end

test("a breakpoint and a failure: locals, a guest command at the prompt, continue", function(t)
    local dir = st.workdir("debug_me")
    local out = drive({
        "expect:breakpoint at ", "expect:in scope: answer, t, vm", "expect:provium> ",
        "send:answer * 2\\r", "expect:82", "expect:provium> ",
        "send:continue\\r",
        "expect:stopped at a failure: ", "expect:the deliberate failure", "expect:provium> ",
        "send:vm:run('cat /tmp/seen').stdout\\r", "expect:from-the-test", "expect:provium> ",
        "send:n = 0\\r", "expect:provium> ",
        "send:for i = 1, 3 do\\r", "expect:>> ", "send:n = n + i end\\r", "expect:provium> ",
        "send:n\\r", "expect:6\\r\\n", "expect:provium> ",
        "send:where\\r", "expect:debug_me.test.lua:7", "expect:provium> ",
        "send:nosuch()\\r", "expect:attempt to call a nil value", "expect:provium> ",
        "send:\\x04",
    }, P .. " debug --accel tcg " .. dir)
    t:match(out, "FAIL[^\n]*stops twice")
    t:match(out, "PASS[^\n]*runs after the prompt", "the run goes on after the prompt")
    t:match(out, "1 passed, 1 failed, 0 skipped")
    t:match(out, "ptydrive: exit 1\n")
end)

test("without provium debug a breakpoint does nothing and no prompt opens", function(t)
    local dir = st.workdir("debug_me")
    local out, code = st.run(dir, "--progress never </dev/null")
    t:eq(code, 1, out)
    t:ok(not out:find("provium>", 1, true), out)
    t:match(out, "1 passed, 1 failed, 0 skipped")
end)

test("--pdb is provium debug's option of provium run", function(t)
    local dir = st.workdir("debug_me")
    local out = drive({ "expect:breakpoint at ", "expect:provium> ", "send:c\\r",
                        "expect:stopped at a failure", "expect:provium> ", "send:continue\\r" },
                      P .. " run --pdb --accel tcg " .. dir)
    t:match(out, "1 passed, 1 failed, 0 skipped")
end)
