-- A real replicated database's history judged: a three-node etcd cluster (Raft) on one bridge,
-- six client processes, two on each node through its own member, writing unique values to one
-- key and reading it, while a seeded nemesis of partitions cuts the nodes apart and heals them.
-- etcd's puts and its default (quorum) gets are linearizable, so the checker must say so of
-- what really happened; a command that errors or times out is indeterminate (info). The
-- history is also written as EDN and JSON, as Jepsen's tools read it.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

-- three VMs of 512 MiB: etcd preallocates its write-ahead log, 64 MiB a segment and the next
-- one made ahead (123 MiB in all), in the guest's writable layer, a tmpfs of half its RAM; at
-- the default 256 MiB a member now and then stopped on "no space left on device" when the
-- second segment filled it before the database's first commit
provium:claim({ memory = "2G" })

local NODES = 3
local CLIENTS_PER_NODE = 2
local OPS = 25 -- per client: 150 in all

-- etcdctl through the member on vm itself: loopback, which no partition cuts; the command
-- gives up after 2 s (a minority member cannot commit a put nor serve a quorum read).
local function etcdctl(vm, ...)
    local argv = { "etcdctl", "--endpoints=http://127.0.0.1:2379", "--dial-timeout=2s", "--command-timeout=2s", ... }
    return vm:run(argv, { env = { ETCDCTL_API = "3" }, timeout = 10 })
end

-- Polls fn() until it is true, half a second apart (a sleep in vm); false after seconds.
local function within(vm, seconds, fn)
    local deadline = os.time() + seconds
    repeat
        if fn() then return true end
        vm:run("sleep 0.5")
    until os.time() > deadline
    return false
end

-- A put of key through every member of vms commits within seconds, else the test fails with
-- what it means (why) and the member's log.
local function commits_everywhere(t, vms, key, seconds, why)
    for _, vm in ipairs(vms) do
        local last
        local up = within(vm, seconds, function()
            last = etcdctl(vm, "put", key, vm:name())
            return last.code == 0
        end)
        if not up then
            t:fail(string.format("%s: %s: %s; its log ends:\n%s", vm:name(), why, last.stderr,
                                 vm:run("tail -20 /tmp/etcd.log").stdout))
        end
    end
end

test("an etcd register under partitions: the history is judged linearizable", function(t)
    local lan = provium:bridge("lan")
    local vms = {}
    for i = 1, NODES do vms[i] = provium:vm("n" .. i, "etcd"):boot({ memory = 512 }) end
    lan:attach(vms)

    -- one static cluster, each member's data in the guest's RAM (its overlay's tmpfs); Raft's
    -- timings 2.5 times etcd's defaults (100 ms, 1 s), for guests under TCG on a loaded host;
    -- --pre-vote (etcd 3.5's default), so that a member cut off does not raise its term
    -- meanwhile and depose the leader when it comes back
    local peers = {}
    for i, vm in ipairs(vms) do peers[i] = string.format("n%d=http://%s:2380", i, vm:ip(lan)) end
    for i, vm in ipairs(vms) do
        local ip = vm:ip(lan)
        vm:run_async(table.concat({
            "etcd --name n" .. i, "--data-dir /var/lib/etcd/n" .. i,
            "--listen-peer-urls http://" .. ip .. ":2380", "--initial-advertise-peer-urls http://" .. ip .. ":2380",
            "--listen-client-urls http://127.0.0.1:2379,http://" .. ip .. ":2379",
            "--advertise-client-urls http://" .. ip .. ":2379",
            "--initial-cluster " .. table.concat(peers, ","), "--initial-cluster-state new",
            "--initial-cluster-token provium", "--heartbeat-interval 250 --election-timeout 2500 --pre-vote",
            "> /tmp/etcd.log 2>&1",
        }, " "))
    end
    for _, vm in ipairs(vms) do
        local ok, err = pcall(vm.wait_for_port, vm, 2379, 60)
        if not ok then
            t:fail(string.format("%s\n%s's etcd log ends:\n%s", err, vm:name(), vm:run("tail -20 /tmp/etcd.log; ps").stdout))
        end
    end
    -- a leader: a put through every member commits (a key of its own: r is never written
    -- before the history starts, so it begins absent, nil)
    commits_everywhere(t, vms, "ready", 60, "no leader after 60 s")

    local h = provium.history("etcd")
    local count = { ok = 0, fail = 0, info = 0 }
    local why = {} -- etcdctl's errors, counted: what made operations info
    local function client(vm, process, n)
        return function()
            for i = 1, n do
                local write = provium.random() < 0.5
                local value = process * 1000 + i
                local status = h:call(process, write and "write" or "read", write and value or nil, function()
                    local r = write and etcdctl(vm, "put", "r", tostring(value)) or etcdctl(vm, "get", "r", "--print-value-only")
                    if r.code ~= 0 then -- timed out, cut off, no leader: it may have happened
                        local e = r.stderr:match("Error: ([^\n]*)") or ("exit " .. r.code)
                        why[e] = (why[e] or 0) + 1
                        return "info"
                    end
                    if write then return r.stdout == "OK\n" and "ok" or "info" end
                    local v = r.stdout:match("^(%d*)\n?$")
                    if not v then return "info" end
                    return "ok", tonumber(v) -- "" while the key was never written: nil
                end)
                count[status] = count[status] + 1
            end
        end
    end

    local nem = provium:nemesis({ vms = vms, bridge = lan, faults = { "partition" },
                                  interval = 2, duration = 3, history = h })
    local clients = {}
    for i, vm in ipairs(vms) do
        for k = 1, CLIENTS_PER_NODE do
            local process = (i - 1) * CLIENTS_PER_NODE + k
            clients[#clients + 1] = client(vm, process, OPS)
        end
    end
    provium:parallel(table.unpack(clients))
    nem:stop()

    -- healed, the cluster serves again: a put through every member within 30 s, then one last
    -- read of r through each, in the history too (after every write: they must agree)
    local t0 = os.time()
    commits_everywhere(t, vms, "healed", 30, "no put committed 30 s after the nemesis stopped")
    local healed_in = os.time() - t0
    local finals = 0
    for i, vm in ipairs(vms) do
        local status = h:call((i - 1) * CLIENTS_PER_NODE + 1, "read", nil, function()
            local r = etcdctl(vm, "get", "r", "--print-value-only")
            local v = r.code == 0 and r.stdout:match("^(%d*)\n?$")
            if not v then return "info" end
            return "ok", tonumber(v)
        end)
        if status == "ok" then finals = finals + 1 end
    end

    local dir = st.tmpdir("etcd") -- removed at the file's end
    h:write_edn(t:artifact(dir .. "/history.edn")):write_json(t:artifact(dir .. "/history.json"))
    local records = h:events()
    local r = h:check({ model = "register" })
    local reasons = {}
    for e, n in pairs(why) do reasons[#reasons + 1] = string.format("%dx %s", n, e) end
    table.sort(reasons)
    local summary = string.format("%d ok, %d info, %d fail of %d%s", count.ok, count.info, count.fail,
                                  NODES * CLIENTS_PER_NODE * OPS,
                                  #reasons > 0 and "; info for: " .. table.concat(reasons, ", ") or "")
    t:ok(r.ok, string.format("%s (%s)", r.message, summary))
    t:eq(count.ok + count.info + count.fail, NODES * CLIENTS_PER_NODE * OPS)
    t:eq(finals, NODES, "the last read through every member completed, " .. healed_in .. " s after the nemesis stopped")

    -- the nemesis cut the cluster, and operations ran while it did: the history's nemesis
    -- records bracket each partition, and client completions between them count
    local cuts, cut, during = 0, false, { ok = 0, info = 0 }
    for _, e in ipairs(records) do
        if e.process == "nemesis" then -- each fault an invoke and its info, at once
            if e.type == "invoke" and e.f == "start-partition" then cuts, cut = cuts + 1, true end
            if e.type == "invoke" and e.f == "stop-partition" then cut = false end
        elseif cut and e.type ~= "invoke" then
            during[e.type] = (during[e.type] or 0) + 1
        end
    end
    local applied = 0
    for _, s in ipairs(nem:schedule()) do if s.action == "apply" then applied = applied + 1 end end
    t:eq(cuts, applied, "every partition the nemesis applied is in the history")
    t:ok(cuts >= 1, "the nemesis partitioned: " .. cuts)
    t:ok(during.ok + during.info >= 5, string.format("operations completed while a partition was in force: %d ok, %d info",
                                                     during.ok, during.info))
    -- most completed: a put or a quorum read through a member that is cut off from the
    -- majority waits out its 2 s; the others commit
    t:ok(count.ok >= NODES * CLIENTS_PER_NODE * OPS // 2, "most operations completed: " .. summary)

    -- the EDN file: one map a line, one line a record, each with :type :f :value :process
    local lines, invokes = 0, 0
    for line in st.read(dir .. "/history.edn"):gmatch("[^\n]+") do
        lines = lines + 1
        t:match(line, "^{:index %d+, :type :%a+, :f :[%w%-]+, :value .*, :process :?%w+, :time %d+}$")
        if line:match(":type :invoke,") then invokes = invokes + 1 end
    end
    t:eq(lines, #records, "history.edn: a line for each record")
    t:eq(invokes * 2, #records, "history.edn: every operation invoked and completed")
    -- and Clojure's own EDN reader, as Jepsen's tools read it, finds each operation well formed
    local clj, code = st.sh("clojure " .. here .. "/lib/read_history.clj " .. dir .. "/history.edn 2>&1")
    t:eq(code, 0, "clojure read history.edn: " .. clj)
    local _, read = clj:gsub("\n", "")
    t:eq(read, #records, "Clojure read every record")
    t:eq(st.sh("python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' " .. dir .. "/history.json"),
         #records .. "\n", "history.json: a JSON array of every record")
    print(string.format("etcd: %s; %d partitions, %d ok and %d info completed during them; healed in %d s",
                        summary, cuts, during.ok, during.info, healed_in))
end)
