-- Driving a guest while things happen in it: a background service, its log, concurrency.

test("a background process, its output as a stream, and a clean stop", function(t)
    local vm = provium:vm("svc"):boot()
    -- a tiny "service": prints a line per request it reads on stdin
    local p = vm:run_async("while read req; do echo \"handled $req\"; done")
    p:write("one\n")
    t:eq(p:stdout():expect("handled one\n", 10), "handled one\n")
    p:write("two\n")
    p:stdout():expect("handled two", 10)
    p:close_stdin()
    p:wait(10):assert_ok()
end)

test("tail a log while a worker writes to it", function(t)
    local vm = provium:vm("logs"):boot()
    vm:mkdir("/var/log", { parents = true })
    vm:write_file("/var/log/app.log", "")
    local log = vm:tail("/var/log/app.log")
    local w = vm:spawn_worker()
    provium:parallel(
        function() w:run("for i in 1 2 3; do echo event $i >> /var/log/app.log; sleep 0.2; done") end,
        function() log:expect("event 3", 30) end)
    log:close()
end)

test("time travel: the guest's clock jumps a day", function(t)
    local vm = provium:vm("clock"):boot({ initial_time = "2030-01-01T00:00:00" })
    t:eq(vm:run("date -u +%F").stdout, "2030-01-01\n")
    vm:clock():advance(24 * 3600)
    t:eq(vm:run("date -u +%F").stdout, "2030-01-02\n")
end)
