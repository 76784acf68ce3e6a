-- provium init: a starter project that runs as it is, and nothing overwritten.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local P = provium.executable

test("provium init writes a starter project, and provium tests/ passes in it", function(t)
    local dir = st.tmpdir("init") .. "/project"
    local out, code = st.sh(P .. " init " .. dir)
    t:eq(code, 0, out)
    for _, f in ipairs({ "tests/example.test.lua", "tests/images/hello.lua", "ci/github-actions.yml",
                         ".luarc.json" }) do
        t:ok(st.read(dir .. "/" .. f), f .. " was written")
    end
    local luarc = st.read(dir .. "/.luarc.json")
    local lib = luarc:match('"workspace.library": %["([^"]+)"%]')
    t:ok(lib and st.read(lib .. "/provium.lua"), "the types it points LuaLS at: " .. tostring(lib))
    out, code = st.sh(P .. " check " .. dir .. "/tests")
    t:eq(code, 0, out)
    out, code = st.sh("cd " .. dir .. " && " .. P .. " --accel tcg --progress never tests/")
    t:eq(code, 0, out)
    t:match(out, "3 passed, 0 failed, 0 skipped\n$")
end)

test("provium init writes over nothing", function(t)
    local dir = st.tmpdir("init-again")
    st.sh("mkdir -p " .. dir .. "/tests && echo mine > " .. dir .. "/tests/mine.test.lua")
    local out, code = st.sh(P .. " init " .. dir)
    t:eq(code, 1, out)
    t:match(out, "tests exists already")
    t:eq(st.read(dir .. "/tests/mine.test.lua"), "mine\n")
    t:ok(not st.read(dir .. "/.luarc.json"), "nothing else was written")
end)
