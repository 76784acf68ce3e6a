-- A real database's history judged: four client processes on two VMs read and write one Redis
-- key while a seeded nemesis of partitions cuts the three VMs apart and heals them. Operations
-- that time out are indeterminate (info). Redis on one node is linearizable: the checker must
-- say so of what really happened.
provium:claim({ memory = "2G" })

test("a Redis register under partitions: the history is judged linearizable", function(t)
    local lan = provium:bridge("lan")
    local server = provium:vm("server", "redis"):boot()
    local c1 = provium:vm("c1", "redis"):boot()
    local c2 = provium:vm("c2", "redis"):boot()
    lan:attach({ server, c1, c2 })
    server:run_async("redis-server /etc/redis/provium.conf")
    server:wait_for_port(6379, 30)
    local h = provium.history("redis")
    local count = { ok = 0, fail = 0, info = 0 }

    local function client(vm, process, n)
        return function()
            for i = 1, n do
                local write = provium.random() < 0.5
                local value = process * 1000 + i
                local cmd = write and ("set r " .. value) or "get r"
                local status = h:call(process, write and "write" or "read", write and value or nil, function()
                    local r = vm:run("timeout 2 redis-cli -h server.lan " .. cmd, { timeout = 10 })
                    if r.code ~= 0 then return "info" end -- timed out or cut off: it may have happened
                    if write then return r.stdout == "OK\n" and "ok" or "info" end
                    local v = r.stdout:match("^(%d*)\n$")
                    if not v then return "info" end
                    return "ok", tonumber(v) -- "" when the key was never written: nil
                end)
                count[status] = count[status] + 1
            end
        end
    end

    -- a seeded nemesis of partitions over the three VMs, its faults in the history too
    local nem = provium:nemesis({ vms = { server, c1, c2 }, bridge = lan, faults = { "partition" },
                                  interval = 1.5, duration = 1.5, history = h })
    provium:parallel(client(c1, 1, 25), client(c1, 2, 25), client(c2, 3, 25), client(c2, 4, 25))
    nem:stop()
    local r = h:check({ model = "register" })
    t:ok(r.ok, r.message)
    t:eq(count.ok + count.info + count.fail, 100)
    t:ok(count.ok >= 50, string.format("most operations completed: %d ok, %d info", count.ok, count.info))
    local cuts = 0
    for _, r in ipairs(nem:schedule()) do if r.action == "apply" then cuts = cuts + 1 end end
    t:ok(cuts >= 1, "the nemesis partitioned: " .. cuts)
end)
