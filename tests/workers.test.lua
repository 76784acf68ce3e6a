-- vm:spawn_worker and provium:parallel: concurrency inside one test.
provium:claim({ memory = "2G" }) -- six VMs at the most
test("VMs boot concurrently", function(t)
    local a, b = provium:vm("pa"), provium:vm("pb")
    provium:parallel(function() a:boot() end, function() b:boot() end)
    t:eq(a:state(), "running")
    t:eq(b:state(), "running")
end)

test("a worker blocked on an empty FIFO does not delay another worker", function(t)
    local vm = provium:vm("w"):boot()
    local w1, w2 = vm:spawn_worker(), vm:spawn_worker()
    t:eq(tostring(w1), "Worker(w/1)")
    vm:run("mkfifo /tmp/fifo"):assert_ok()
    local order = {}
    provium:parallel(
        function()
            t:eq(w1:run("cat /tmp/fifo", { timeout = 60 }).stdout, "unblocked\n")
            order[#order + 1] = "reader"
        end,
        function()
            w2:stat("/")
            w2:write_file("/tmp/x", "y")
            order[#order + 1] = "other worker"
            vm:run("echo unblocked > /tmp/fifo")
        end)
    t:eq(order, { "other worker", "reader" })
end)

test("workers have the guest-operation API", function(t)
    local vm = provium:vm("api"):boot({ workers = 2 })
    local w = vm:spawn_worker()
    w:write_file("/tmp/f", "from worker")
    t:eq(vm:read_file("/tmp/f"), "from worker")
    t:eq(w:run("echo hi").stdout, "hi\n")
    local p = w:run_async("echo async")
    t:eq(p:wait(10).stdout, "async\n")
    t:eq(w:stat("/tmp/f").size, 11)
    vm:spawn_worker()
    t:error(function() vm:spawn_worker() end, "all worker ports are in use")
end)

test("an error in one branch fails parallel with its message, and stops the others", function(t)
    local vm = provium:vm("par"):boot()
    local msg = t:error(function()
        provium:parallel(
            function() vm:run("sleep 30; touch /tmp/not-reached") end,
            function() vm:run("true"); error("branch two broke") end)
    end)
    t:match(msg, "workers.test.lua:%d+: branch two broke")
    t:eq(vm:run("echo usable").stdout, "usable\n")
    t:error(function() vm:stat("/tmp/not-reached") end, "ENOENT")
    t:error(function() provium:parallel(1) end, "bad argument #1 to 'parallel'")
end)

-- White-box on purpose: what leaked was a registry reference to the Worker, which nothing
-- else shows (issue 12).
test("a spawn_worker abandoned by a failing sibling does not keep its Worker", function(t)
    local vm = provium:vm("abandon"):boot({ workers = 2 })
    local reg = debug.getregistry()
    local worker_mt = reg["provium.Worker"]
    local function held()
        collectgarbage()
        local n = 0
        for _, v in pairs(reg) do
            if type(v) == "userdata" and getmetatable(v) == worker_mt then n = n + 1 end
        end
        return n
    end
    local before = held()
    t:error(function()
        provium:parallel(function() vm:spawn_worker() end,
            function() error("the sibling fails") end)
    end, "the sibling fails")
    vm:run("sleep 1") -- the abandoned worker's port answers meanwhile
    t:eq(held(), before, "the registry holds no Worker for the abandoned call")
end)
