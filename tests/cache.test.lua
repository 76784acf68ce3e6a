-- The cache's entries in use and its size: an entry a running provium uses (a fixture it
-- restored, the image it boots) is kept by `cache clear` and by trimming; a run's start trims
-- the cache to $PROVIUM_CACHE_MAX, least recently used first; `cache trim` does it at once.
-- Each test drives a second provium on a cache of its own (XDG_CACHE_HOME).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

local function cmd(dir, args)
    return st.sh("XDG_CACHE_HOME=" .. dir .. "/cache " .. provium.executable .. " " .. args)
end

-- A test file that restores fixture `name`, and with hold, waits for dir/go once it has.
local function fixture_file(dir, file, name, hold)
    st.write(dir .. "/" .. file .. ".test.lua", string.format([[
test("restores %s", function(t)
    local vm = provium:vm_fixture(%q, function(vm) vm:write_file("/root/made", "%s") end)
    t:eq(vm:read_file("/root/made"), "%s")
    if %s then
        io.open(%q, "w"):close()
        for _ = 1, 600 do
            if io.open(%q) then return end
            os.execute("sleep 0.1")
        end
    end
end)
]], name, name, name, name, tostring(hold), dir .. "/ready", dir .. "/go"))
end

local function run(dir, file, env)
    return st.run(dir .. "/" .. file .. ".test.lua", "--progress never --events " .. dir .. "/" .. file .. ".mp",
                  "XDG_CACHE_HOME=" .. dir .. "/cache " .. (env or ""))
end

local function entries(dir, area)
    return st.sh("cd " .. dir .. "/cache/provium/" .. area .. " 2>/dev/null && ls -d *-* 2>/dev/null | " ..
                 "grep -v '\\.' | sed 's/-[0-9a-f]*$//' | sort | tr '\\n' ' ' || true")
end

test("an entry a running provium uses is kept by cache clear and cache trim, and goes once that run ends", function(t)
    local dir = st.tmpdir("cache-inuse")
    fixture_file(dir, "holder", "held", true)
    st.sh(string.format("(XDG_CACHE_HOME=%s/cache %s --accel tcg --progress never %s/holder.test.lua > %s/out 2>&1; " ..
                        "echo $? > %s/done) > /dev/null 2>&1 &", dir, provium.executable, dir, dir, dir))
    st.at_file_end(function() st.write(dir .. "/go", "") end)
    for _ = 1, 1200 do
        if st.read(dir .. "/ready") or st.read(dir .. "/done") then break end
        st.sh("sleep 0.1")
    end
    t:ok(st.read(dir .. "/ready"), "the holder restored its fixture: " .. (st.read(dir .. "/out") or ""))
    t:eq(entries(dir, "fixtures"), "held ")
    local out, code = cmd(dir, "cache clear fixtures")
    t:eq(code, 0, out)
    t:match(out, "skipped fixture held%-%x+: in use by a running provium\n")
    t:contains(out, "removed 0 fixtures and 0 images (0.0M); skipped 1 being built or in use")
    t:eq(entries(dir, "fixtures"), "held ", "still there")
    out, code = cmd(dir, "cache trim 0")
    t:eq(code, 0, out)
    t:match(out, "kept fixture held%-%x+ %([%d.]+M%): in use by a running provium\n")
    t:match(out, "kept image default%-%x+ %([%d.]+M%): in use by a running provium\n")
    t:eq(entries(dir, "fixtures"), "held ", "still there")
    st.write(dir .. "/go", "")
    for _ = 1, 600 do
        if st.read(dir .. "/done") then break end
        st.sh("sleep 0.1")
    end
    t:eq(st.read(dir .. "/done"), "0\n", st.read(dir .. "/out"))
    out, code = cmd(dir, "cache trim 0")
    t:eq(code, 0, out)
    t:match(out, "removed fixture held%-%x+ %([%d.]+M, last used %d+s ago%)")
    t:match(out, "removed image default%-%x+ ")
    t:match(out, "removed 2 entries; the cache holds 0%.0M of 0%.0M in ")
    t:eq(entries(dir, "fixtures") .. entries(dir, "images"), "", "the run ended: both went")
    t:eq(st.sh("ls -a " .. dir .. "/cache/provium/fixtures | grep -c 'use$' || true"), "0\n", "no use file left")
end)

test("a run's start trims the cache to $PROVIUM_CACHE_MAX, least recently used first", function(t)
    local dir = st.tmpdir("cache-trim")
    fixture_file(dir, "old", "old", false)
    fixture_file(dir, "new", "new", false)
    st.write(dir .. "/none.test.lua", 'test("boots nothing", function() end)\n')
    local out, code = run(dir, "old")
    t:eq(code, 0, out)
    out, code = run(dir, "new")
    t:eq(code, 0, out)
    t:eq(entries(dir, "fixtures"), "new old ")
    -- old was last used two days ago; the bound is just under what the cache holds
    local use = st.sh("ls " .. dir .. "/cache/provium/fixtures/old-*.use"):gsub("%s+$", "")
    st.sh("touch -d '-2 days' " .. use)
    local ls = cmd(dir, "cache ls")
    local total = tonumber(ls:match("\ntotal ([%d.]+)M of [%d.]+M %(%$PROVIUM_CACHE_MAX%)"))
    t:ok(total, ls)
    local max = math.floor(total) - 1
    out, code = st.run(dir .. "/none.test.lua", "--progress never --events " .. dir .. "/none.mp",
                       "XDG_CACHE_HOME=" .. dir .. "/cache PROVIUM_CACHE_MAX=" .. max)
    t:eq(code, 0, out)
    t:match(out, "provium: cache: removed fixture old%-%x+ %([%d.]+M, last used 2d ago%): the cache holds " ..
                 "more than %$PROVIUM_CACHE_MAX %(" .. max .. "%.0M%)")
    t:eq(entries(dir, "fixtures"), "new ", "only the least recently used went")
    t:eq(entries(dir, "images"), "default ", "the image the run boots stays")
    t:eq(st.count_events(dir .. "/none.mp", "cache.evict"), 1)
    -- a bound under what the run itself uses: the rest goes, not the image it resolved
    out, code = st.run(dir .. "/none.test.lua", "--progress never", "XDG_CACHE_HOME=" .. dir .. "/cache PROVIUM_CACHE_MAX=1")
    t:eq(code, 0, out)
    t:match(out, "provium: cache: removed fixture new%-%x+ ")
    t:eq(entries(dir, "fixtures"), "", "the rest went")
    t:eq(entries(dir, "images"), "default ", "not the image this run resolved and boots")
    -- and a bound that is not a size stops the run before it starts
    out, code = st.run(dir .. "/none.test.lua", "--progress never", "XDG_CACHE_HOME=" .. dir .. "/cache PROVIUM_CACHE_MAX=lots")
    t:eq(code, 2, out)
    t:contains(out, "provium: PROVIUM_CACHE_MAX: expected MiB or a size like \"20G\", got 'lots'")
    out, code = cmd(dir, "cache trim lots")
    t:eq(code, 2, out)
    t:contains(out, "provium: cache trim: expected MiB or a size like \"20G\", got 'lots'")
end)
