-- busy.lua: op latency on the main connection while workers are busy, for bench/run (figure 6
-- of docs/performance.md). In each of the tests "idle", "1 busy" and "4 busy", the main
-- connection does BENCH_BUSY_OPS x (vm:stat + vm:read_file of 4 KiB), while 0, 1 or 4 workers
-- (each in its own provium:parallel branch, on its own port and agent thread) loop
-- read_file 4 KiB + run("true") until the main loop is done. bench/bench.py takes the `op`
-- events of vm "busy" (the main connection; workers' ops are labelled "busy/workerN") per test.
local ops = tonumber(os.getenv("BENCH_BUSY_OPS") or "") or 100
local vm

test("boot", function(t)
    vm = provium:vm("busy"):boot({ workers = 4 })
    vm:run("head -c 4096 /dev/urandom > /tmp/f4k"):assert_ok()
    for _ = 1, 20 do
        vm:stat("/tmp/f4k")
        vm:read_file("/tmp/f4k")
    end
end)

local workers = {}

local function measure(t, nbusy)
    while #workers < nbusy do workers[#workers + 1] = vm:spawn_worker() end
    local done, loops = false, 0
    local branches = {
        function()
            for _ = 1, ops do
                t:eq(vm:stat("/tmp/f4k").size, 4096)
                if #vm:read_file("/tmp/f4k") ~= 4096 then t:fail("short read") end
            end
            done = true
        end,
    }
    for i = 1, nbusy do
        local w = workers[i]
        branches[#branches + 1] = function()
            while not done do
                if #w:read_file("/tmp/f4k") ~= 4096 then t:fail("worker: short read") end
                w:run("true"):assert_ok()
                loops = loops + 1
            end
        end
    end
    provium:parallel(table.unpack(branches))
    if nbusy > 0 then t:ok(loops > 0, "the workers ran") end
end

test("idle", function(t) measure(t, 0) end)
test("1 busy", function(t) measure(t, 1) end)
test("4 busy", function(t) measure(t, 4) end)
