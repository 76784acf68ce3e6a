-- vm:_netem / vm:_netem_clear: delay and jitter on a guest interface (netem in the guest).
local vm = provium:vm("netem")

-- ping inside the guest; returns min, avg, max in ms (busybox: "round-trip min/avg/max = ...").
local function ping(t, count)
    local r = vm:run("ping -c " .. (count or 5) .. " -i 0.2 127.0.0.1"):assert_ok()
    local mn, avg, mx = r.stdout:match("min/avg/max = ([%d.]+)/([%d.]+)/([%d.]+) ms")
    t:ok(avg, "ping printed its round-trip line:\n" .. r.stdout)
    return tonumber(mn), tonumber(avg), tonumber(mx)
end

-- What the guest shows right after its boot, before any netem call: its modules, and its
-- loopback RTT (the base the tests compare with). Boots the VM in whichever test runs first.
local at_boot
local function booted(t)
    if not at_boot then
        if vm:state() == "defined" then vm:boot() end
        vm:run("ip link set lo up"):assert_ok()
        local modules = vm:vmm() == "qemu" and vm:read_file("/proc/modules") or ""
        local _, base = ping(t)
        at_boot = { modules = modules, base = base }
    end
    return at_boot.base
end

test("boot; sch_netem is shipped but not loaded at boot", function(t)
    t:needs_kernel(vm, "the guest's modules")
    local base = booted(t)
    t:ok(not at_boot.modules:find("sch_netem", 1, true), "sch_netem not loaded")
    t:contains(vm:read_file("/lib/modules/provium.ondemand"), "sch_netem: ")
    t:ok(base < 50, "loopback RTT without netem is small: " .. base .. " ms")
end)

test("100 ms on lo delays both the request and the reply: RTT + 200 ms", function(t)
    local base = booted(t)
    t:eq(vm:_netem("lo", 100, 0), true)
    t:contains(vm:read_file("/proc/modules"), "sch_netem", "loaded on first use")
    t:contains(vm:run("tc qdisc show dev lo"):assert_ok().stdout, "netem")
    local mn, avg = ping(t)
    -- netem never sends early: each direction waits at least 100 ms
    t:ok(mn >= 199, "min RTT " .. mn .. " ms >= 200 ms")
    local added = avg - base
    t:ok(added >= 160 and added <= 240, "avg RTT rose by " .. added .. " ms (expected 200 +-20 %)")
end)

test("a second call changes the delay in place; jitter spreads the RTT", function(t)
    local base = booted(t)
    t:eq(vm:_netem("lo", 100, 0), true, "the first call")
    t:eq(vm:_netem("lo", 50, 40), true)
    -- each direction waits 50 +- 40 ms (uniform): the RTT lies in 20..180 ms, sd 33 ms; the mean
    -- of 30 has sd 6 ms, so the bounds below are 5 sd (with 10 pings they were 3 sd, and a full
    -- make check here once measured 68 ms)
    local mn, avg, mx = ping(t, 30)
    t:ok(mn >= 19, "min RTT " .. mn .. " ms >= 20 ms")
    t:ok(mx <= 180 + 40, "max RTT " .. mx .. " ms <= 180 ms (+ TCG noise)")
    t:ok(mx - mn >= 10, "jitter spreads the RTT: " .. mn .. " .. " .. mx .. " ms")
    t:ok(avg - base >= 70 and avg - base <= 130, "avg RTT rose by " .. (avg - base) .. " ms (expected ~100)")
    t:eq(vm:_netem("lo", 100.5, 0.25), true, "fractions of ms are accepted")
end)

test("clear brings the RTT back down, and clearing again is fine", function(t)
    local base = booted(t)
    t:eq(vm:_netem("lo", 100, 0), true, "something to clear")
    t:eq(vm:_netem_clear("lo"), true)
    t:ok(not vm:run("tc qdisc show dev lo").stdout:find("netem", 1, true), "netem removed")
    local _, avg = ping(t)
    t:ok(avg < base + 50, "RTT back down: " .. avg .. " ms (before netem: " .. base .. " ms)")
    t:eq(vm:_netem_clear("lo"), true, "nothing to clear is not an error")
end)

test("an unknown interface is an error naming it", function(t)
    booted(t)
    local ok, msg = vm:_netem("nosuch0", 10, 0)
    t:eq(ok, nil)
    t:contains(msg, "nosuch0")
    t:contains(msg, "ENODEV")
    ok, msg = vm:_netem_clear("nosuch1")
    t:eq(ok, nil)
    t:contains(msg, "nosuch1")
end)

test("bad arguments are named", function(t)
    booted(t)
    t:error(function() vm:_netem("lo", -1, 0) end, "delay must be 0..60000 ms")
    t:error(function() vm:_netem("lo", 0 / 0, 0) end, "delay must be 0..60000 ms")
    t:error(function() vm:_netem("lo", 10, 70000) end, "jitter must be 0..60000 ms")
    t:error(function() vm:_netem("a-very-long-ifname0", 10) end, "interface name")
    t:error(function() vm:_netem("", 10) end, "interface name")
    t:error(function() vm:_netem_clear({}) end, "string expected")
end)
