-- selftest.lua: helpers for tests that drive a second provium the way a user does.
-- local st = dofile(here .. "/lib/selftest.lua")(here)
return function(here)
    local st = {}

    -- Runs a shell command; returns its output (stdout and stderr) and exit status.
    function st.sh(cmd)
        local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
        local out = p:read("a")
        p:close()
        local code = tonumber(out:match("exit=(%d+)\n$"))
        return out:gsub("exit=%d+\n$", ""), code
    end

    -- Writes data to path (made or emptied), and reads a file whole (nil when it is not there).
    function st.write(path, data)
        local f = assert(io.open(path, "wb"))
        f:write(data)
        f:close()
    end

    function st.read(path)
        local f = io.open(path, "rb")
        if not f then return nil end
        local data = f:read("a")
        f:close()
        return data
    end

    -- Runs fn when the file's Lua state closes, after the last test that ran, whichever tests
    -- ran and in whatever order (its finaliser: st stays reachable while a test uses it).
    local at_end = {}
    function st.at_file_end(fn)
        at_end[#at_end + 1] = setmetatable({}, { __gc = fn })
    end

    -- A fresh directory /tmp/provium-<what>-XXXXXX, removed at the end of the file.
    function st.tmpdir(what)
        local dir = st.sh("mktemp -d /tmp/provium-" .. what .. "-XXXXXX"):gsub("%s+$", "")
        st.at_file_end(function() st.sh("rm -rf " .. dir) end)
        return dir
    end

    -- Copies files of tests/fixtures into a fresh directory as *.test.lua and returns it; the
    -- directory is removed at the end of the file.
    -- "name" copies name.lua as name.test.lua; "name:as" copies it as as.test.lua.
    function st.workdir(...)
        local dir = st.sh("mktemp -d /tmp/provium-selftest-XXXXXX"):gsub("%s+$", "")
        st.at_file_end(function() st.sh("rm -rf " .. dir) end)
        for _, spec in ipairs({ ... }) do
            local name, as = spec:match("^([^:]+):?(.*)$")
            st.sh(string.format("cp %s/fixtures/%s.lua %s/%s.test.lua", here, name, dir,
                                as ~= "" and as or name))
        end
        return dir
    end

    -- Runs provium on dir (or a file) with extra options and an optional environment prefix.
    function st.run(dir, extra, env)
        return st.sh(string.format("%s %s --accel tcg %s %s", env or "", provium.executable,
                                   extra or "", dir))
    end

    -- QEMU processes whose -name is provium-<name> ("" when none).
    function st.qemus(name)
        -- [x]yz keeps pgrep from matching the shell that runs it
        return (st.sh("pgrep -f 'provium-[" .. name:sub(1, 1) .. "]" .. name:sub(2) .. "' || true"))
    end

    -- How many times an event type occurs in a msgpack events file.
    function st.count_events(path, ty)
        local f = assert(io.open(path, "rb"))
        local data = f:read("a")
        f:close()
        local _, n = data:gsub(ty:gsub("%p", "%%%0"), "")
        return n
    end

    return st
end
