-- provium check: a test file's mistakes found without running it, and the same "did you mean"
-- when a test makes them at run time. No VM boots here.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local dir = st.tmpdir("check")

local function check(name, body)
    local path = dir .. "/" .. name .. ".test.lua"
    st.write(path, body)
    return st.sh(provium.executable .. " check " .. path)
end

test("a clean file: exit 0, nothing reported", function(t)
    local out, code = check("clean", 'test("x", function(t)\n  local vm = provium:vm("a"):boot({ memory = "512M" })\n' ..
                                    '  t:eq(vm:run("true").code, 0)\n  local s = ("ab"):upper()\nend)\n')
    t:eq(code, 0, out)
    t:match(out, "provium check: 1 file, 0 problems\n$")
end)

test("a syntax error is named with its line", function(t)
    local out, code = check("syntax", 'test("x", function(t)\n  local x = = 1\nend)\n')
    t:eq(code, 1, out)
    t:match(out, "syntax%.test%.lua:2: unexpected symbol near '='")
end)

test("a method Provium does not have, with the nearest one", function(t)
    local out, code = check("method", 'test("x", function(t)\n  local vm = provium:vm("a")\n  vm:rn("true")\n' ..
                                      '  provium:brdige("lan")\nend)\n')
    t:eq(code, 1, out)
    t:match(out, "method%.test%.lua:3: no method 'rn' in Provium's API %(did you mean 'run'%?%)")
    t:match(out, "method%.test%.lua:4: no method 'brdige' in Provium's API %(did you mean 'bridge'%?%)")
    t:match(out, "2 problems")
end)

test("methods the file defines itself, strings' and files' are not mistakes", function(t)
    local out, code = check("own", 'local obj = {}\nfunction obj:frobnicate() return 1 end\n' ..
                                   'local o = { wiggle = function() end }\n' ..
                                   'test("x", function(t)\n  obj:frobnicate()\n  o:wiggle()\n' ..
                                   '  local f = io.open("/dev/null"); f:read("a"); f:close()\n' ..
                                   '  -- vm:notamethod() in a comment\n  local s = "vm:nope()"\nend)\n')
    t:eq(code, 0, out)
end)

test("an unknown vm:boot option, with the nearest one", function(t)
    local out, code = check("boot", 'test("x", function(t)\n  provium:vm("a"):boot({ memroy = "1G", cpus = 2 })\nend)\n')
    t:eq(code, 1, out)
    t:match(out, "boot%.test%.lua:2: vm:boot has no option 'memroy' %(did you mean 'memory'%?%)")
    t:ok(not out:find("'cpus'"), "cpus is an option")
end)

test("a global that is neither Lua's nor Provium's (luacheck)", function(t)
    local out, code = check("global", 'test("x", function(t)\n  undefined_helper()\n  leaked = 1\nend)\n')
    t:eq(code, 1, out)
    t:match(out, "global%.test%.lua:2:3: %(W113%) accessing undefined variable 'undefined_helper'")
    t:match(out, "global%.test%.lua:3:3: %(W111%) setting non%-standard global variable 'leaked'")
end)

test("the suite's own tests/ and examples/ are clean", function(t)
    local out, code = st.sh(provium.executable .. " check " .. here .. " " .. here .. "/../examples")
    t:eq(code, 0, out)
    t:match(out, "0 problems\n$")
end)

test("a path that does not exist, and no path: exit 2", function(t)
    local out, code = st.sh(provium.executable .. " check " .. dir .. "/no-such-dir")
    t:eq(code, 2, out)
    t:match(out, "no%-such%-dir")
    local _, code2 = st.sh(provium.executable .. " check")
    t:eq(code2, 2)
end)

test("at run time: a missing method and an unknown boot option say the nearest name", function(t)
    local path = dir .. "/runtime.test.lua"
    st.write(path, 'test("m", function(t) provium:vm("a"):rn("true") end)\n' ..
                   'test("b", function(t) provium:vm("b"):boot({ memroy = "512M" }) end)\n')
    local out = st.sh(provium.executable .. " --accel tcg " .. path)
    t:match(out, "runtime%.test%.lua:1: attempt to call a nil value %(method 'rn'%): no method 'rn' in " ..
                 "Provium's API %(did you mean 'run'%?%)")
    t:match(out, "runtime%.test%.lua:2: vm b: boot: unknown option 'memroy' %(did you mean 'memory'%?%) %(vm:boot takes ")
    t:match(out, "0 passed, 2 failed, 0 skipped")
end)
