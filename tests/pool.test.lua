-- The resource pool, driven as a user drives it: a second provium on files with claims,
-- judged from its pool.* events (their timestamps), not from wall time.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local sh = st.sh

-- Writes n files named prefix1..n: each claims memory, then holds its grant a moment.
local function claiming_files(dir, prefix, n, memory, body)
    for i = 1, n do
        local f = assert(io.open(string.format("%s/%s%d.test.lua", dir, prefix, i), "w"))
        f:write(string.format('provium:claim({ memory = %q, cpus = 1 })\n', memory))
        f:write(body or 'test("holds its grant", function(t) os.execute("sleep 0.4") end)\n')
        f:close()
    end
end

-- The run's events as JSON lines, through provium events.
local function events(path)
    local out = sh(provium.executable .. " events " .. path .. " --json")
    local list = {}
    for line in out:gmatch("[^\n]+") do
        local ty = line:match('"type":"([^"]+)"')
        local file = line:match('"file":"[^"]*/([^"/]+)%.test%.lua"')
        local ts = tonumber(line:match('"ts":(%d+)'))
        list[#list + 1] = { type = ty, file = file, ts = ts, line = line }
    end
    return list
end

-- The most files that held a grant at the same moment, from pool.grant / pool.release.
local function most_at_once(list)
    local held, most = 0, 0
    for _, e in ipairs(list) do
        if e.type == "pool.grant" then held = held + 1 end
        if e.type == "pool.release" then held = held - 1 end
        most = math.max(most, held)
    end
    return most
end

-- Writes the lines to path.
local function write_lines(path, ...)
    local f = assert(io.open(path, "w"))
    f:write(table.concat({ ... }, "\n"), "\n")
    f:close()
end

local function run(dir, args)
    return st.run(dir, "--events " .. dir .. "/ev.mp " .. args)
end

test("files of 60 % of the budget run one at a time, files of 25 % four at once", function(t)
    local dir = st.tmpdir("pool-pack")
    claiming_files(dir, "big", 3, "600M")
    local out, code = run(dir, "-j 8 --memory 1000M --cpus 8")
    t:eq(code, 0, out)
    t:match(out, "provium: pool: 1000 MiB %(%-%-memory%), 8 CPUs %(%-%-cpus%); up to 8 files at once %(%-j%)")
    t:eq(most_at_once(events(dir .. "/ev.mp")), 1, "60 % files overlap\n" .. out)
    sh("rm -f " .. dir .. "/*.test.lua")
    claiming_files(dir, "small", 6, "250M")
    out, code = run(dir, "-j 8 --memory 1000M --cpus 8")
    t:eq(code, 0, out)
    t:eq(most_at_once(events(dir .. "/ev.mp")), 4, "25 % files at once\n" .. out)
    -- and -j bounds them below what memory allows
    out, code = run(dir, "-j 2 --memory 1000M --cpus 8")
    t:eq(code, 0, out)
    t:eq(most_at_once(events(dir .. "/ev.mp")), 2, "-j 2\n" .. out)
end)

test("a big claim is not starved by a stream of small ones", function(t)
    local dir = st.tmpdir("pool-starve")
    -- a1 asks first and runs; b1 (800 of 1000) asks next and waits for it; then eight small
    -- ones ask, which may only backfill the 200 MiB b1 will not use
    claiming_files(dir, "a", 1, "400M", 'test("first", function(t) os.execute("sleep 1.5") end)\n')
    claiming_files(dir, "b", 1, "800M", 'os.execute("sleep 0.3")\ntest("big", function(t) end)\n')
    claiming_files(dir, "c", 8, "100M", 'os.execute("sleep 0.6")\n' ..
                                       'test("small", function(t) os.execute("sleep 1") end)\n')
    local out, code = run(dir, "-j 16 --memory 1000M --cpus 16")
    t:eq(code, 0, out)
    local waiting, backfill, most, order = false, {}, 0, {}
    local released_a, granted_b
    for _, e in ipairs(events(dir .. "/ev.mp")) do
        local mb = tonumber(e.line:match('"memory_mb":(%d+)') or "0")
        if e.type == "pool.wait" and e.file == "b1" then waiting = true end
        if e.type == "pool.grant" then
            order[#order + 1] = e.file
            if e.file == "b1" then waiting, granted_b = false, e.ts
            elseif waiting then backfill[e.file] = mb end
        end
        if e.type == "pool.release" then
            if e.file == "a1" then released_a = e.ts end
            backfill[e.file] = nil
        end
        local sum = 0
        for _, v in pairs(backfill) do sum = sum + v end
        most = math.max(most, sum)
    end
    t:ok(granted_b and released_a, "b1 and a1 ran\n" .. out)
    t:eq(order[1], "a1", table.concat(order, " "))
    t:ok(most <= 200, "backfill while b1 waited stayed within 200 MiB: " .. most)
    t:ok(most > 0, "small files did backfill")
    t:ok(granted_b - released_a < 0.5e9, "b1 started when a1 ended")
    t:ok(order[#order] ~= "b1", "small files came after the big one: " .. table.concat(order, " "))
end)

test("a claim larger than the budget fails its file at once with both figures; the rest run", function(t)
    local dir = st.tmpdir("pool-over")
    claiming_files(dir, "huge", 1, "2G")
    claiming_files(dir, "fine", 1, "100M")
    local out, code = run(dir, "--memory 1000M --cpus 2")
    t:eq(code, 1, out)
    t:match(out, "FAIL  [^\n]*huge1.test.lua: %(file%)")
    t:contains(out, "the file's claim, 2048 MiB and 1 CPUs, is larger than the whole budget, 1000 MiB and 2 CPUs")
    t:match(out, "PASS  [^\n]*fine1.test.lua: holds its grant")
    t:match(out, "\n1 passed, 1 failed, 0 skipped\n$")
end)

test("a VM that would take its file past its claim fails at its vm:boot line", function(t)
    local dir = st.tmpdir("pool-vm")
    write_lines(dir .. "/over.test.lua", 'provium:claim({ memory = "300M" })',
                'test("two VMs in 300M", function(t)', '    provium:vm("one"):boot()',
                '    provium:vm("two"):boot()', 'end)')
    local out, code = run(dir, "")
    t:eq(code, 1, out)
    t:match(out, "over.test.lua:4: vm two: boot: it needs 256 MiB, and the file's claim is 300 MiB, " ..
                 "of which its QEMUs %(VMs, spares, fixture builders%) use 256 MiB already")
    t:eq(st.qemus("one"), "", "no QEMU left behind")
end)

test("bad claims are clear errors at the file's line", function(t)
    local dir = st.tmpdir("pool-bad")
    local cases = {
        { 'provium:claim({ memory = "lots" })', "option 'memory' must be MiB" },
        { 'provium:claim({ memory = "1G" })\nprovium:claim({ memory = "2G" })', "has claimed once already" },
        { 'provium:claim({ cpus = 0 })', "option 'cpus' must be 1..1024" },
        { 'provium:claim({ disks = 1 })', "unknown option 'disks'" },
        { 'provium:claim("1G")', "table expected" },
        { 'test("x", function(t) provium:claim({ memory = "1G" }) end)', "only at the file's top level" },
    }
    for i, c in ipairs(cases) do
        write_lines(string.format("%s/bad%d.test.lua", dir, i), c[1], 'test("after", function(t) end)')
        local out = st.run(dir .. "/bad" .. i .. ".test.lua", "")
        t:match(out, "bad" .. i .. "%.test%.lua:%d+: [^\n]*" .. c[2]:gsub("%p", "%%%0"), c[1] .. "\n" .. out)
    end
    local out, code = st.run(dir, "--memory lots")
    t:eq(code, 2, out)
    t:contains(out, "--memory: expected MiB")
    out, code = st.run(dir, "--default-claim 1G,x")
    t:eq(code, 2, out)
end)

test("what a test starts reads /dev/null on stdin, not the pool's pipe", function(t)
    local dir = st.tmpdir("pool-stdin")
    write_lines(dir .. "/stdin.test.lua", 'test("cat ends at once", function(t)',
                '    local p = io.popen("timeout 5 cat; echo status=$?")',
                '    t:eq(p:read("a"), "status=0\\n")', '    p:close()', 'end)')
    local out, code = st.run(dir, "")
    t:eq(code, 0, out)
    t:match(out, "\n1 passed, 0 failed, 0 skipped\n$")
end)
