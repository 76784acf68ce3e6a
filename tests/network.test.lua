-- Networks: bridges in the file's own network namespace, VMs attached before and after boot,
-- names, and impairments through nftables.
provium:claim({ memory = "2G" }) -- six VMs on bridges at the most
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local shared = dofile(here .. "/lib/shared.lua")

-- Made first, so its subnet is 10.77.1.0/24 whichever test runs first.
local lan = provium:bridge("lan")
local a, b
local c = provium:vm("c") -- attached before it boots

-- The seed's example (its set-up here, its ping in the first test), with only the image name
-- changed: a and b boot, then join the bridge.
local ab = shared.once(function()
    a = provium:vm("a", "default"):boot()
    b = provium:vm("b", "default"):boot()
    lan:attach({a, b})
end)

-- And c, attached after them but before it boots.
local abc = shared.once(function()
    ab()
    lan:attach(c)
    c:boot()
end)

test("guest can ping its bridge peer", function(t)
    ab()
    -- up to three echoes, any one answered: the first can be lost while a slow host (ASan, a
    -- loaded TCG run) still brings the new ports up; busybox ping fails only when none came back
    local r = a:run("ping -c 3 -W 2 b.lan")
    r:assert_ok()
    t:match(r.stdout, "[123] packets received")
end)

test("a VM attached before boot comes up on the bridge, with names for every peer", function(t)
    abc()
    t:eq(a:ip(lan), "10.77.1.10")
    t:eq(b:ip(lan), "10.77.1.11")
    t:eq(c:ip(lan), "10.77.1.12")
    c:run("ping -c 1 -W 2 a.lan"):assert_ok()
    a:run("ping -c 1 -W 2 c.lan"):assert_ok()
    t:contains(b:read_file("/etc/hosts"), "10.77.1.12 c.lan")
end)

local function reaches(from, to)
    return from:run("ping -c 1 -W 1 " .. to:name() .. ".lan").code == 0
end

-- Echo requests the guest's kernel has received (/proc/net/snmp, Icmp InEchos).
local function echos_in(vm)
    local snmp = vm:read_file("/proc/net/snmp")
    local names, values = snmp:match("Icmp: (%S[^\n]*)\nIcmp: ([^\n]*)")
    local i = 0
    for name in names:gmatch("%S+") do
        i = i + 1
        if name == "InEchos" then
            local k = 0
            for v in values:gmatch("%S+") do
                k = k + 1
                if k == i then return tonumber(v) end
            end
        end
    end
end

test("a partition stops traffic both ways, and heal restores it", function(t)
    abc()
    lan:heal()
    t:ok(reaches(a, b), "before")
    local cut = lan:partition({ a }, { b, c })
    t:eq(tostring(cut), "Impairment(lan, partition)")
    t:ok(not reaches(a, b), "a to b cut")
    t:ok(not reaches(c, a), "c to a cut")
    t:ok(reaches(b, c), "b and c are on the same side")
    lan:heal()
    t:ok(reaches(a, b), "healed")
    t:ok(reaches(c, a), "healed")
end)

test("a one-way partition blocks one direction only", function(t)
    ab()
    lan:heal()
    local cut = lan:partition({ a }, { b }, { oneway = true })
    local b_before, a_before = echos_in(b), echos_in(a)
    a:run("ping -c 3 -W 1 b.lan")
    t:eq(echos_in(b) - b_before, 0, "a's requests never reach b")
    b:run("ping -c 3 -W 1 a.lan")
    t:eq(echos_in(a) - a_before, 3, "b's requests reach a (a's replies are what is cut)")
    cut:undo()
    t:ok(reaches(a, b), "undone")
end)

test("isolate cuts one VM off, and its handle undoes just that", function(t)
    abc()
    lan:heal()
    local iso = lan:isolate(c)
    local cut = lan:partition({ a }, { b })
    t:ok(not reaches(a, c) and not reaches(b, c), "c isolated")
    iso:undo()
    t:ok(reaches(a, c), "c is back")
    t:ok(not reaches(a, b), "the partition is still there")
    cut:undo()
    t:ok(reaches(a, b))
end)

-- Average round trip in ms of n pings from one guest to another.
local function rtt(from, to, n)
    local r = from:run(string.format("ping -c %d -i 0.2 -W 2 %s.lan", n or 5, to:name()))
    r:assert_ok()
    return tonumber(r.stdout:match("min/avg/max = [%d.]+/([%d.]+)/"))
end

test("latency on a link raises the round trip to that VM by its value", function(t)
    abc()
    lan:heal()
    local base = rtt(a, b)
    rtt(a, c) -- a and c know each other's MAC now, not in the first ping measured below
    local slow = lan:link(b):add_latency(100)
    local with = rtt(a, b)
    t:ok(math.abs((with - base) - 100) <= 20, string.format("rtt %.1f -> %.1f ms", base, with))
    slow:undo()
    t:ok(rtt(a, b) < base + 20, "undone")
    lan:add_latency(40) -- every VM's side: both ways, twice the value
    local both = rtt(a, c)
    t:ok(math.abs((both - base) - 80) <= 16, string.format("rtt %.1f -> %.1f ms", base, both))
    lan:heal()
    t:ok(rtt(a, c) < base + 20, "heal removes latency too")
end)

test("drop_rate loses packets at the configured rate, the same way every run", function(t)
    ab()
    lan:heal()
    local lossy = lan:link(b):drop_rate(0.2)
    local before = echos_in(b)
    a:run("ping -c 1000 -i 0.005 -W 1 b.lan >/dev/null", { timeout = 120 })
    local lost = 1000 - (echos_in(b) - before)
    -- binomial(1000, 0.2): mean 200, sd 12.6; four sd either way
    t:ok(lost >= 150 and lost <= 250, "lost " .. lost .. " of 1000 echo requests")
    lossy:undo()
    t:error(function() lan:drop_rate(1.5) end, "bridge lan: drop_rate: probability must be between 0 and 1, got 1.5")
    t:error(function() lan:drop_rate(-0.1) end, "probability must be between 0 and 1")
end)

-- Seconds to send n MiB over TCP from one guest to another.
local function send_mib(from, to, n, port)
    local sink = to:run_async("nc -l -p " .. port .. " > /dev/null")
    to:run("sleep 0.3")
    local r = from:run(string.format("dd if=/dev/zero bs=64k count=%d 2>/dev/null | nc %s %d",
                                     n * 16, to:ip(lan), port), { timeout = 120 })
    r:assert_ok()
    sink:wait(30)
    return r.duration
end

test("a bandwidth cap holds throughput down to it, and undoing it lifts it", function(t)
    ab()
    lan:heal()
    local mib = 2
    local free = send_mib(a, b, mib, 5001)
    -- under TCG the uncapped copy is bound by the guests' CPUs (CI copied at 6.8 Mbit/s): the
    -- cap is a quarter of what this host reached, at most 8 Mbit/s, so that it is what binds
    local free_mbit = mib * 8 * 1.048576 / free
    local cap_mbit = math.min(8, math.floor(free_mbit / 4 * 100) / 100)
    local cap = lan:bandwidth_limit(string.format("%.0fkbit", cap_mbit * 1000))
    local capped = send_mib(a, b, mib, 5002)
    local mbit = mib * 8 * 1.048576 / capped
    local at_cap = mib * 8 * 1.048576 / cap_mbit
    t:ok(mbit <= cap_mbit * 1.2, string.format("%.2f Mbit/s under a %.2f Mbit/s cap (uncapped %.2f)",
                                               mbit, cap_mbit, free_mbit))
    -- a loaded host may slow the capped copy further, but not far beyond the uncapped copy's
    -- own time plus the time the cap itself takes
    t:ok(capped <= (free + at_cap) * 1.5,
         string.format("capped %.2f s, at most the uncapped %.2f s plus %.2f s at the cap", capped,
                       free, at_cap))
    cap:undo()
    -- the capped copy took at least four uncapped ones: the cap is gone when a copy is clearly
    -- faster than that, even on a host that slowed since
    local after = send_mib(a, b, mib, 5003)
    t:ok(after < capped * 0.75, string.format("undone: %.2f s (uncapped %.2f s, capped %.2f s)",
                                               after, free, capped))
    t:error(function() lan:bandwidth_limit(-5) end, "rate must be positive")
    t:error(function() lan:bandwidth_limit("fast") end, "rate must be positive")
end)

test("a capture holds the ping's ICMP packets, as a stream and as a pcap file tcpdump reads", function(t)
    ab()
    lan:heal()
    local path = os.tmpname()
    local cap = lan:capture("icmp", { path = path })
    a:run("ping -c 2 -W 2 b.lan"):assert_ok()
    t:match(cap:expect("ICMP echo request", 10).summary, a:ip(lan):gsub("%.", "%%.") .. " > " .. b:ip(lan):gsub("%.", "%%."))
    cap:expect("ICMP echo reply", 10)
    cap:close()
    t:eq(cap:count(), 4, "2 requests, 2 replies")
    local out = st.sh("tcpdump -n -r " .. path .. " 2>/dev/null")
    local _, lines = out:gsub("ICMP echo", "")
    t:eq(lines, 4, out)
    t:contains(out, a:ip(lan) .. " > " .. b:ip(lan) .. ": ICMP echo request")
    os.remove(path)
    t:error(function() lan:capture("not a filter (") end, "bridge lan: capture: .*bad filter")
end)

test("two bridges joined by a router VM", function(t)
    local left, right = provium:bridge("left"), provium:bridge("right")
    local router, x, y = provium:vm("router"), provium:vm("x"), provium:vm("y")
    left:attach({ x, router })
    right:attach({ y, router })
    provium:parallel(function() router:boot() end, function() x:boot() end, function() y:boot() end)
    router:run("echo 1 > /proc/sys/net/ipv4/ip_forward"):assert_ok()
    x:run("ip route add 10.77.0.0/16 via " .. router:ip(left)):assert_ok()
    y:run("ip route add 10.77.0.0/16 via " .. router:ip(right)):assert_ok()
    local r = x:run("ping -c 1 -W 2 " .. y:ip(right))
    r:assert_ok()
    t:match(r.stdout, "ttl=63", "one hop through the router")
    t:contains(router:read_file("/etc/hosts"), "x.left")
    t:contains(router:read_file("/etc/hosts"), "y.right")
    local cut = left:isolate(router)
    t:ne(x:run("ping -c 1 -W 1 " .. y:ip(right)).code, 0, "no way around the router")
    cut:undo()
end)

test("bad input gets clear errors", function(t)
    ab()
    t:error(function() lan:attach(a) end, "bridge lan: attach: vm a is attached already")
    t:error(function() lan:attach({ a, "b" }) end, "bridge lan: attach: vm a is attached already")
    t:error(function() lan:attach({ "x" }) end, "item 1 is not a VM")
    t:error(function() provium:bridge("lan") end, "bridge lan: a bridge of that name exists")
    t:error(function() provium:bridge("Bad Name") end, "bad argument #1 to 'bridge'")
    local other = provium:bridge("other")
    local d = provium:vm("d")
    t:error(function() other:isolate(d) end, "bridge other: isolate: vm d is not attached to this bridge")
    t:error(function() a:ip(other) end, "vm a: ip: not attached to bridge other")
    other:remove()
    t:error(function() other:attach(d) end, "bridge other: attach: the bridge is gone")
    t:error(function() other:heal() end, "bridge other: heal: the bridge is gone")
end)

test("each file has its own namespace: two files with a bridge 'lan' at once, nothing left", function(t)
    local dir = st.workdir("net_lan:one", "net_lan:two")
    st.sh(string.format("NET_LAN_OUT=%s %s --accel tcg -j 2 %s > %s/out 2>&1 & echo $! > %s/pid",
                        dir, provium.executable, dir, dir, dir))
    -- each runner's namespace held open while it runs: its number stays its own
    local held, names = {}, {}
    for _ = 1, 400 do
        for line in st.sh("cat " .. dir .. "/net_* 2>/dev/null; echo"):gmatch("(net:%[%d+%] %d+)") do
            local ns, pid = line:match("^(%S+) (%d+)$")
            if not names[ns] then
                held[#held + 1] = io.open("/proc/" .. pid .. "/ns/net")
                names[ns] = true
                names[#names + 1] = ns
                st.sh("touch " .. dir .. "/pinned-" .. pid)
            end
        end
        if #names == 2 then break end
        st.sh("sleep 0.05")
    end
    st.sh("while kill -0 $(cat " .. dir .. "/pid) 2>/dev/null; do sleep 0.05; done")
    local out = st.sh("cat " .. dir .. "/out")
    t:match(out, "\n2 passed, 0 failed, 0 skipped\n$")
    local n1, n2 = names[1], names[2]
    t:ok(n1 and n2 and n1 ~= n2 and #held == 2, "two namespaces: " .. tostring(n1) .. " " .. tostring(n2))
    local mine = st.sh("readlink /proc/self/ns/net"):gsub("%s+$", "")
    t:ok(n1 ~= mine and n2 ~= mine, "neither is this file's")
    local left = st.sh(string.format(
        "for p in /proc/[0-9]*; do n=$(readlink $p/ns/net 2>/dev/null); " ..
        "if [ \"$n\" = '%s' ] || [ \"$n\" = '%s' ]; then echo ${p#/proc/}; fi; done", n1, n2))
    for _, f in ipairs(held) do f:close() end
    t:eq(left, "", "no process is left in a runner's namespace")
    st.sh("rm -rf " .. dir)
end)
