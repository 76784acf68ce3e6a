-- transfer.lua: big transfers, for bench/run (figures 4 and 5 of docs/performance.md).
-- Throughput: the `op` events' duration_ns of BENCH_XFER_REPS write_file and read_file calls
-- of 64 MiB through Lua strings (after one warm-up of each), in the tests "write_file 64 MiB"
-- and "read_file 64 MiB". And 256 MiB each way, through host files ({from=host}, {to=host})
-- right after the boot, and through Lua strings at the end, with the peak RSS (VmHWM) of this
-- process (the `provium __run-file` child that runs the file) and of the agent (PID 1 in the
-- guest) after each: VmHWM only grows, so the host-file figures come first. BENCH_XFER_OUT receives
-- key=value lines (kB) for bench/bench.py.
local reps = tonumber(os.getenv("BENCH_XFER_REPS") or "") or 5
local big = (tonumber(os.getenv("BENCH_XFER_BIG_MIB") or "") or 256) * 1048576
local out = os.getenv("BENCH_XFER_OUT")
local vm
local notes = {}

local function hwm(status) return tonumber(status:match("VmHWM:%s*(%d+) kB")) end
local function note(key)
    local f = assert(io.open("/proc/self/status"))
    notes[#notes + 1] = string.format("runner_%s_kb=%d", key, hwm(f:read("a")))
    f:close()
    notes[#notes + 1] = string.format("agent_%s_kb=%d", key, hwm(vm:read_file("/proc/1/status")))
end

test("boot", function(t)
    vm = provium:vm("xfer"):boot({ memory = "1G" }) -- /tmp is a tmpfs of half the RAM
    note("boot")
end)

test("256 MiB through host files", function(t)
    local src, dst = os.tmpname(), os.tmpname()
    -- made by the shell, so this process never holds the data
    assert(os.execute(string.format("(yes 0123456789abcde | head -c %d > %s) 2>/dev/null", big, src)))
    t:eq(vm:write_file("/tmp/big", { from = src }), big)
    t:eq(vm:read_file("/tmp/big", { to = dst }), big)
    t:eq(io.popen("cmp " .. src .. " " .. dst .. " && echo same"):read("a"), "same\n")
    os.remove(src)
    os.remove(dst)
    vm:run("rm /tmp/big"):assert_ok()
    note("files")
end)

local data64

test("warm-up", function(t)
    data64 = string.rep("0123456789abcdef", 4 * 1048576)
    t:eq(vm:write_file("/tmp/f64", data64), #data64)
    t:eq(#vm:read_file("/tmp/f64"), #data64)
end)

test("write_file 64 MiB", function(t)
    for _ = 1, reps do t:eq(vm:write_file("/tmp/f64", data64), #data64) end
end)

-- where write_file's time goes: the same bytes into /dev/null (the port and the agent, no file),
-- and the guest's own write of 64 MiB into its tmpfs (dd from /dev/zero, its exec duration)
test("write_file 64 MiB into /dev/null", function(t)
    for _ = 1, reps do t:eq(vm:write_file("/dev/null", data64), #data64) end
end)

test("the guest's own tmpfs write, 64 MiB", function(t)
    local ms = {}
    for i = 1, reps do
        local r = vm:run("dd if=/dev/zero of=/tmp/dd64 bs=256k count=256 2>/dev/null && rm /tmp/dd64"):assert_ok()
        ms[i] = string.format("%.3f", r.duration * 1e3)
    end
    notes[#notes + 1] = "dd_tmpfs_64m_ms=" .. table.concat(ms, ",")
end)

test("read_file 64 MiB", function(t)
    for _ = 1, reps do
        local d = vm:read_file("/tmp/f64")
        if #d ~= #data64 then t:fail("read " .. #d .. " bytes") end
    end
    vm:run("rm /tmp/f64"):assert_ok()
    data64 = nil
    collectgarbage()
    note("64m")
end)

test("256 MiB through Lua strings", function(t)
    local data = string.rep("0123456789abcdef", big // 16)
    t:eq(vm:write_file("/tmp/big", data), big)
    local back = vm:read_file("/tmp/big")
    t:ok(back == data, "identical")
    data, back = nil, nil
    collectgarbage()
    vm:run("rm /tmp/big"):assert_ok()
    note("strings")
    if out then assert(io.open(out, "w")):write(table.concat(notes, "\n"), "\n"):close() end
end)
