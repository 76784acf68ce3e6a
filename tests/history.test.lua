-- provium.history(): operations recorded as Jepsen does, written as JSON and EDN, and the
-- linearizability checker on known-good and known-bad histories (hand-written, and generated
-- from a sequential register at random points of random intervals). No VM boots here;
-- tests/history_redis.test.lua judges a real database's.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

test("a read concurrent with a write may see either value; a later read only the new one", function(t)
    local h = provium.history("reg")
    h:invoke(1, "write", 0):ok()
    local w = h:invoke(1, "write", 1)
    h:invoke(2, "read"):ok(0) -- concurrent with the write: the old value is allowed
    h:invoke(3, "read"):ok(1) -- so is the new one
    w:ok()
    h:invoke(2, "read"):ok(1)
    t:ok(h:assert_linearizable().ok)
end)

test("a stale read after a write completed is not linearizable, and the window shows why", function(t)
    local h = provium.history("reg")
    h:invoke(1, "write", 1):ok()
    h:invoke(1, "write", 2):ok()
    h:invoke(2, "read"):ok(1)
    local r = h:check()
    t:eq(r.ok, false, r.message)
    t:match(r.message, "^reg: not linearizable %(register%): of 3 operations, 2 could be ordered; no order " ..
                       "places operation 4 %(process 2 read 1%)")
    t:match(r.message, "#2 process 1 write 2 +invoke 2 %.%. ok 3 +%(the last to complete before it%)")
    t:match(r.message, "#4 process 2 read 1 +invoke 4 %.%. ok 5 +<%- no order places it")
    local err = t:error(function() h:assert_linearizable() end, "not linearizable")
    t:match(err, "history%.test%.lua:%d+: reg: not linearizable")
end)

test("indeterminate operations may or may not have happened; failed ones did not", function(t)
    local h = provium.history("reg")
    h:invoke(1, "write", 1):ok()
    h:invoke(2, "write", 2):info() -- a timeout: maybe
    h:invoke(3, "read"):ok(2)      -- it did
    h:invoke(1, "write", 3):fail() -- it did not
    h:invoke(3, "read"):ok(2)
    t:ok(h:check().ok, h:check().message)
    h:invoke(3, "read"):ok(3)      -- the failed write cannot be seen
    t:eq(h:check().ok, false)
    local open = provium.history("open")
    open:invoke(1, "write", 7)     -- never completed: as info
    open:invoke(2, "read"):ok(7)
    t:ok(open:check().ok)
end)

test("compare-and-set, and a key-value map checked key by key", function(t)
    local h = provium.history("cas")
    h:invoke(1, "write", 1):ok()
    h:invoke(1, "cas", { 1, 2 }):ok()
    h:invoke(2, "cas", { 1, 3 }):fail()
    h:invoke(2, "read"):ok(2)
    t:ok(h:check({ model = "cas-register" }).ok)
    h:invoke(2, "cas", { 1, 4 }):ok() -- the value is 2: this cas cannot have succeeded
    t:eq(h:check({ model = "cas-register" }).ok, false)

    local kv = provium.history("kv")
    kv:invoke(1, "write", { "x", 1 }):ok()
    kv:invoke(2, "write", { "y", 5 }):ok()
    kv:invoke(1, "read", { "x", 1 }):ok()
    kv:invoke(2, "read", { "y", 5 }):ok()
    t:ok(kv:check({ model = "kv" }).ok, kv:check({ model = "kv" }).message)
    kv:invoke(1, "read", { "y", 1 }):ok() -- y's value read as x's
    local r = kv:check({ model = "kv" })
    t:eq(r.ok, false)
    t:match(r.message, "not linearizable %(kv, key \"y\"%)")
end)

-- A register's history from a simulation: each operation takes effect at a random point of a
-- random interval, so some order explains every read.
local function simulate(n, processes)
    local h = provium.history("sim")
    local value, t0 = 0, 0
    local inflight = {}
    local events = {}
    for i = 1, n do
        local p = (i - 1) % processes + 1
        local start = t0 + provium.random(0, 5)
        local at = start + provium.random(0, 10)
        local stop = at + provium.random(0, 10)
        t0 = start
        local f = provium.random() < 0.5 and "write" or "read"
        events[#events + 1] = { time = start, kind = "invoke", p = p, f = f, v = f == "write" and i or nil, i = i }
        events[#events + 1] = { time = at, kind = "apply", i = i }
        events[#events + 1] = { time = stop, kind = "done", p = p, i = i }
    end
    table.sort(events, function(a, b)
        if a.time ~= b.time then return a.time < b.time end
        local order = { invoke = 1, apply = 2, done = 3 }
        if a.kind ~= b.kind then return order[a.kind] < order[b.kind] end
        return a.i < b.i
    end)
    local ops, result, busy = {}, {}, {}
    for _, e in ipairs(events) do
        if e.kind == "invoke" then
            if busy[e.p] then e.p = e.p + 100 * e.i end -- a process does one operation at a time
            busy[e.p] = true
            ops[e.i] = { op = h:invoke(e.p, e.f, e.v), f = e.f, v = e.v, p = e.p }
        elseif e.kind == "apply" then
            local o = ops[e.i]
            if o.f == "write" then value = o.v else result[e.i] = value end
        else
            local o = ops[e.i]
            busy[o.p] = nil
            if o.f == "write" then o.op:ok() else o.op:ok(result[e.i]) end
        end
    end
    return h, ops, result
end

test("a simulated register's 300 operations are linearizable; one changed read is caught", function(t)
    local h = simulate(300, 5)
    local r = h:check({ initial = 0 }) -- the simulated register starts at 0
    t:ok(r.ok, r.message)
    t:eq(r.operations, 300)
    -- the same operations again, through the API, with one read returning what no write wrote
    local bad, open, changed = provium.history("sim-bad"), {}, false
    for _, e in ipairs(h:events()) do
        if e.type == "invoke" then
            open[e.process] = bad:invoke(e.process, e.f, e.value)
        elseif e.f == "read" and not changed then
            open[e.process]:ok(-1)
            changed = true
        else
            open[e.process][e.type](open[e.process], e.value)
        end
    end
    local rb = bad:check({ initial = 0 })
    t:eq(rb.ok, false, "a read of -1")
    t:match(rb.message, "read %-1 +invoke %d+ %.%. ok %d+ +<%- no order places it")
end)

test("JSON and EDN as Jepsen's tools read them", function(t)
    local h = provium.history("out")
    h:invoke(0, "write", 3):ok()
    h:invoke("nemesis", "partition", { "n1", "n2" }):info()
    h:invoke(1, "read"):ok("x\"y")
    local dir = st.tmpdir("history")
    h:write_json(dir .. "/h.json"):write_edn(dir .. "/h.edn")
    local py = "import json,sys; h=json.load(open(sys.argv[1])); print(len(h), h[0]['type'], h[2]['process'], h[5]['value'])"
    t:eq(st.sh("python3 -c \"" .. py .. "\" " .. dir .. "/h.json"), "6 invoke nemesis x\"y\n")
    local edn = st.read(dir .. "/h.edn")
    t:match(edn, "^{:index 0, :type :invoke, :f :write, :value 3, :process 0, :time %d+}\n")
    t:match(edn, "\n{:index 3, :type :info, :f :partition, :value %[\"n1\" \"n2\"%], :process :nemesis, :time %d+}\n")
    t:match(edn, "\n{:index 5, :type :ok, :f :read, :value \"x\\\"y\", :process 1, :time %d+}\n$")
end)

test("Clojure's EDN reader reads the history back, as Knossos and Elle would", function(t)
    local k = provium.keyword
    local h = provium.history("clj")
    h:invoke(0, "write", 3):ok()
    h:invoke("nemesis", "partition", { "n1", "n2" }):info()
    h:invoke(1, "read"):ok("quote \" backslash \\ newline \n tab \t é")
    h:invoke(2, "txn", { { k"append", 5, 3 }, { k"r", 5 } }):ok({ { k"append", 5, 3 }, { k"r", 5, { 1, 3 } } })
    h:invoke(3, "cas", { -1, 2.5 }):fail()
    h:invoke(4, "write", true):info()
    local dir = st.tmpdir("history")
    h:write_edn(dir .. "/h.edn")
    local out, code = st.sh("clojure " .. here .. "/lib/read_history.clj " .. dir .. "/h.edn 2>&1")
    t:eq(code, 0, "clojure (Debian's clojure; scripts/bootstrap installs it): " .. out)
    t:eq(out, table.concat({
        '[0 :invoke :write 3 0]', '[1 :ok :write 3 0]',
        '[2 :invoke :partition ["n1" "n2"] :nemesis]', '[3 :info :partition ["n1" "n2"] :nemesis]',
        '[4 :invoke :read nil 1]', '[5 :ok :read "quote \\" backslash \\\\ newline \\n tab \\t é" 1]',
        '[6 :invoke :txn [[:append 5 3] [:r 5]] 2]', '[7 :ok :txn [[:append 5 3] [:r 5 [1 3]]] 2]',
        '[8 :invoke :cas [-1 2.5] 3]', '[9 :fail :cas [-1 2.5] 3]',
        '[10 :invoke :write true 4]', '[11 :info :write true 4]', "" }, "\n"))
    t:match(h:json(), '"value":%[%["append",5,3%],%["r",5%]%]', "JSON writes a keyword's name")
    t:eq(k"append", provium.keyword("append"), "one keyword per name")
    t:error(function() provium.keyword("no spaces") end, "provium.keyword%(name%): a name of letters")
end)

test("bad input is refused, naming what was wrong", function(t)
    local h = provium.history("h")
    t:error(function() h:invoke({}, "read") end, "h: invoke: process must be an integer or a string")
    t:error(function() h:invoke(1, "") end, "f must be a function's name")
    local op = h:invoke(1, "read")
    t:error(function() h:invoke(1, "read") end, "process 1 has operation 0 in flight")
    op:ok(1)
    t:error(function() op:fail() end, "operation 0 is complete already %(ok%)")
    t:error(function() h:invoke(2, "write", function() end) end, "a value must be nil, a boolean")
    t:error(function() h:check({ model = "registr" }) end, "did you mean 'register'")
    local kv = provium.history("kv")
    kv:invoke(1, "read", 3):ok(3)
    t:error(function() kv:check({ model = "kv" }) end, "kv: check kv: operation 0's value must be {key, value}, got 3")
    t:error(function() kv:events()[1].type = "ok" end, "read%-only")
end)
