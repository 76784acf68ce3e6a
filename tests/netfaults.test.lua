-- link:netem{...}: loss (with correlation), duplication, corruption and reordering of what a VM
-- sends on a bridge (netem in the guest), each measured in the guest by ping; and that it is
-- one direction: what the VM receives is left alone. direction = "in" (what the VM receives,
-- through an IFB device in the guest) and "both", told apart by loss and InEchos; a delay to
-- show the parameters reach the IFB; and what undo leaves.
provium:claim({ memory = "1G" })

local lan, a, b
local function pair()
    if a then return end
    lan = provium:bridge("lan")
    a = provium:vm("a"):boot({ memory = "256M" })
    b = provium:vm("b"):boot({ memory = "256M" })
    lan:attach({ a, b })
end

-- n echo requests from a to b every 10 ms: the seqs answered, in the order the replies came,
-- and busybox ping's summary (transmitted, received, duplicates).
local function pings(n, interval)
    local r = a:run(string.format("ping -c %d -i %s -W 2 b.lan", n, interval or "0.01"), { timeout = 120 })
    local seqs = {}
    for seq in r.stdout:gmatch("seq=(%d+)") do seqs[#seqs + 1] = tonumber(seq) end
    local received = tonumber(r.stdout:match("(%d+) packets received")) or 0
    local dups = tonumber(r.stdout:match("(%d+) duplicates")) or 0
    return seqs, received, dups, r.stdout
end

local function within(t, v, lo, hi, what)
    t:ok(v >= lo and v <= hi, string.format("%s: %s, expected %s..%s", what, tostring(v), lo, hi))
end

-- The echo requests vm has received (InEchos of /proc/net/snmp's Icmp lines).
local function echos_in(vm)
    local snmp = vm:read_file("/proc/net/snmp")
    local names, values = snmp:match("Icmp: (%S[^\n]*)\nIcmp: ([^\n]*)")
    local idx, i = nil, 0
    for name in names:gmatch("%S+") do i = i + 1 if name == "InEchos" then idx = i end end
    i = 0
    for v in values:gmatch("%S+") do i = i + 1 if i == idx then return tonumber(v) end end
end

-- Each VM pings the other once, so both know the other's MAC: with one side's frames all
-- lost, ARP could not resolve it, and no echo request would leave at all.
local function warm()
    a:run("ping -c 1 -W 5 b.lan"):assert_ok()
    b:run("ping -c 1 -W 5 a.lan"):assert_ok()
end

-- n echo requests from vm to host: what vm received, the min and median RTT (ms; the median,
-- not the mean: one round trip a loaded host stalls does not move it), InEchos' rise on the
-- peer, and the output.
local function ping_from(vm, host, peer, n, interval)
    local before = echos_in(peer)
    local r = vm:run(string.format("ping -c %d -i %s -W 2 %s", n, interval or "0.1", host), { timeout = 120 })
    local received = tonumber(r.stdout:match("(%d+) packets received")) or 0
    local times = {}
    for ms in r.stdout:gmatch("time=([%d.]+) ms") do times[#times + 1] = tonumber(ms) end
    table.sort(times)
    local median = #times > 0 and (times[(#times + 1) // 2] + times[#times // 2 + 1]) / 2 or nil
    return received, times[1], median, echos_in(peer) - before, r.stdout
end

test("loss: about that share of what the VM sends is lost", function(t)
    pair()
    -- what a loaded host loses without netem, measured the same way just before: the peer
    local _, base = pings(400)
    local h = lan:link(a):netem({ loss = 0.3 })
    local _, received = pings(400)
    h:undo()
    -- of the base's answered ones, netem loses binomial(base, 0.3): 0.3 base, four sd either way
    local mean, sd = 0.3 * base, math.sqrt(base * 0.3 * 0.7)
    within(t, base - received, math.floor(mean - 4 * sd), math.ceil(mean + 4 * sd),
           "echo requests netem lost of the " .. base .. " answered without it")
    local _, after = pings(50)
    t:eq(after, 50, "undo ends it")
end)

test("loss with correlation comes in bursts, and keeps its rate", function(t)
    pair()
    local function bursts(opts)
        local h = lan:link(a):netem(opts)
        local seqs = pings(600)
        h:undo()
        local got, lost, runs = {}, 0, 0
        for _, s in ipairs(seqs) do got[s] = true end
        local in_run = false
        for s = 0, 599 do
            if not got[s] then
                lost = lost + 1
                if not in_run then runs = runs + 1 end
                in_run = true
            else
                in_run = false
            end
        end
        return lost / math.max(runs, 1)
    end
    local plain = bursts({ loss = 0.3 })
    local correlated = bursts({ loss = 0.3, loss_correlation = 0.9 })
    -- the Gilbert model: bursts of mean length 1 / (1 - 0.9) = 10; uncorrelated, 1 / 0.7
    t:ok(correlated >= 4, string.format("mean burst of correlated losses: %.2f (10 expected)", correlated))
    t:ok(plain < 2.5, string.format("mean burst of uncorrelated losses: %.2f (1.4 expected)", plain))
end)

test("duplicate: about that share arrives twice", function(t)
    pair()
    local h = lan:link(a):netem({ duplicate = 0.5 })
    local _, received, dups = pings(300)
    h:undo()
    t:eq(received, 300, "none lost")
    -- each request is duplicated with p 0.5, and b answers both: binomial(300, 0.5), sd 8.7
    within(t, dups, 115, 185, "duplicate replies of 300")
end)

-- Each VM holds the other's MAC fixed (a permanent neighbour entry) until undo() of what it
-- returns. Corruption flips bits in ARP too, which has no checksum: a corrupted request from a
-- can teach b a wrong MAC for a, so that b's replies go nowhere, in this test and the next
-- (seen in a fresh-clone run: 219 of 300 lost, then 0 of 200 answered under reorder).
local function pin_neighbours()
    local mac_a = a:read_file("/sys/class/net/eth0/address"):gsub("%s+$", "")
    local mac_b = b:read_file("/sys/class/net/eth0/address"):gsub("%s+$", "")
    a:run("arp -s b.lan " .. mac_b):assert_ok()
    b:run("arp -s a.lan " .. mac_a):assert_ok()
    return { undo = function()
        a:run("arp -d b.lan"):assert_ok()
        b:run("arp -d a.lan"):assert_ok()
    end }
end

test("corrupt: a corrupted frame is dropped by its receiver", function(t)
    pair()
    local pinned = pin_neighbours()
    local _, base = pings(300) -- what a loaded host loses without netem, just before
    local h = lan:link(a):netem({ corrupt = 0.5 })
    local _, received = pings(300)
    h:undo()
    pinned.undo()
    -- a flipped bit fails the Ethernet frame's checks or the IP or ICMP checksum: no reply;
    -- of the base's answered ones, binomial(base, 0.5), four sd either way
    local mean, sd = 0.5 * base, math.sqrt(base * 0.25)
    within(t, base - received, math.floor(mean - 4 * sd), math.ceil(mean + 4 * sd),
           "echo requests lost to corruption of the " .. base .. " answered without it")
end)

test("reorder: some frames go at once and overtake the delayed ones", function(t)
    pair()
    local h = lan:link(a):netem({ delay_ms = 40, reorder = 0.5 })
    local seqs = pings(200, "0.005")
    h:undo()
    local inversions = 0
    for i = 2, #seqs do if seqs[i] < seqs[i - 1] then inversions = inversions + 1 end end
    t:ok(#seqs >= 190, "almost all answered: " .. #seqs)
    t:ok(inversions >= 20, "replies out of order: " .. inversions .. " of " .. #seqs)
    t:error(function() lan:link(a):netem({ reorder = 0.5 }) end, "reorder needs delay_ms")
end)

test("it is one direction: what the VM sends, not what it receives", function(t)
    pair()
    warm()
    local h = lan:link(a):netem({ loss = 1 })
    local before = echos_in(a)
    local r = b:run("ping -c 5 -i 0.1 -W 1 a.lan")
    local arrived = echos_in(a) - before
    h:undo()
    t:ne(r.code, 0, "b gets no reply: a's replies are lost")
    t:eq(arrived, 5, "but b's requests reach a")
    t:error(function() lan:link(a):netem({ los = 0.1 }) end, "unknown option \"los\".*did you mean 'loss'")
    t:error(function() lan:link(a):netem({ loss = 2 }) end, "loss must be a fraction from 0 to 1")
end)

-- Loss 1 in direction on a's link, five pings each way: the replies a and b got, and how many
-- of a's requests reached b and of b's reached a.
local function all_lost(direction)
    local h = lan:link(a):netem({ loss = 1, direction = direction })
    local a_got, _, _, b_echos = ping_from(a, "b.lan", b, 5)
    local b_got, _, _, a_echos = ping_from(b, "a.lan", a, 5)
    h:undo()
    return a_got, b_got, b_echos, a_echos
end

-- direction = "in": netem on what the VM receives (an IFB device in the guest), not what it sends.
test('direction "in": what the VM receives is lost, what it sends still leaves', function(t)
    pair()
    warm()
    local a_got, b_got, b_echos, a_echos = all_lost("in")
    t:eq(b_echos, 5, "a's requests leave a and reach b")
    t:eq(a_got, 0, "but b's replies never reach a")
    t:eq(a_echos, 0, "b's requests never reach a")
    t:eq(b_got, 0, "so b gets no reply")
    local after = ping_from(a, "b.lan", b, 20)
    t:eq(after, 20, "undo ends it")
end)

test('direction "in" carries the netem parameters: a delay on a\'s receive side', function(t)
    pair()
    warm()
    -- the round trips without it, measured the same way just before
    local _, _, base_ab = ping_from(a, "b.lan", b, 11, "0.2")
    local _, _, base_ba = ping_from(b, "a.lan", a, 11, "0.2")
    local h = lan:link(a):netem({ delay_ms = 200, direction = "in" })
    local got_ab, min_ab, med_ab = ping_from(a, "b.lan", b, 11, "0.2")
    local got_ba, min_ba, med_ba = ping_from(b, "a.lan", a, 11, "0.2")
    h:undo()
    -- a to b: the reply waits on its way into a; b to a: the request does. Once per round trip.
    t:eq(got_ab + got_ba, 22, "none lost")
    t:ok(min_ab >= 199 and min_ba >= 199, string.format("netem never sends early: min RTT %s, %s ms", min_ab, min_ba))
    within(t, med_ab - base_ab, 160, 250, "a to b: median RTT rise (ms)")
    within(t, med_ba - base_ba, 160, 250, "b to a: median RTT rise (ms)")
end)

test('direction "both": nothing reaches a and nothing leaves it', function(t)
    pair()
    warm()
    local a_got, b_got, b_echos, a_echos = all_lost("both")
    t:eq(b_echos, 0, "a's requests are lost on their way out of a")
    t:eq(a_echos, 0, "b's requests are lost on their way into a")
    t:eq(a_got + b_got, 0, "no replies either way")
end)

-- What the guest shows of the ingress side of dev (eth0: each VM has one card): its IFB device,
-- and its ingress qdisc.
local function ingress_state(vm, dev)
    local links = vm:run("ls /sys/class/net"):assert_ok().stdout
    local qdiscs = vm:run("tc qdisc show dev " .. dev):assert_ok().stdout
    return links:find("ifb-" .. dev, 1, true) ~= nil, qdiscs:find("ingress", 1, true) ~= nil, qdiscs
end

test("setting again replaces both directions; undo leaves no IFB and no ingress qdisc", function(t)
    pair()
    warm()
    local dev = "eth0" -- each VM's one card
    local h1 = lan:link(a):netem({ loss = 1, direction = "both" })
    local ifb, ingress, qdiscs = ingress_state(a, dev)
    t:ok(ifb and ingress, "set: ifb-" .. dev .. " and an ingress qdisc on " .. dev .. ":\n" .. qdiscs)
    -- the second replaces the first in both directions: no loss left, a delay on the way in
    local h2 = lan:link(a):netem({ delay_ms = 50, direction = "in" })
    t:ok(not a:run("tc qdisc show dev " .. dev).stdout:find("netem", 1, true), "no netem left on " .. dev .. "'s egress")
    t:contains(a:run("tc qdisc show dev ifb-" .. dev).stdout, "netem", "the IFB's root is netem")
    local got, mn = ping_from(a, "b.lan", b, 10)
    t:eq(got, 10, "the loss is gone both ways")
    t:ok(mn and mn >= 49, "the new delay is there: min RTT " .. tostring(mn) .. " ms")
    h2:undo()
    ifb, ingress, qdiscs = ingress_state(a, dev)
    t:ok(not ifb, "no ifb-" .. dev .. " after undo")
    t:ok(not ingress, "no ingress qdisc on " .. dev .. " after undo:\n" .. qdiscs)
    h1:undo()
    t:eq(a:_netem_clear(dev), true, "clearing again is fine")
    local after = ping_from(a, "b.lan", b, 20)
    local back = ping_from(b, "a.lan", a, 20)
    t:eq(after + back, 40, "full connectivity back both ways")
end)

test('bridge:netem{direction = "in"}: every VM\'s receive side', function(t)
    pair()
    warm()
    local _, _, base = ping_from(a, "b.lan", b, 11, "0.2")
    local h = lan:netem({ delay_ms = 100, direction = "in" })
    local on_a, on_b = ingress_state(a, "eth0"), ingress_state(b, "eth0")
    local got, mn, median = ping_from(a, "b.lan", b, 11, "0.2")
    h:undo()
    t:ok(on_a and on_b, "an IFB device in both guests")
    -- the request waits on its way into b, the reply on its way into a
    t:eq(got, 11, "none lost")
    t:ok(mn >= 199, "min RTT " .. mn .. " ms >= 2 x 100 ms")
    within(t, median - base, 160, 250, "median RTT rise (ms)")
    t:ok(not ingress_state(a, "eth0"), "undo takes a's IFB down")
    t:ok(not ingress_state(b, "eth0"), "and b's")
end)

test("a bad direction is an error naming it and the value, at the caller's line", function(t)
    pair()
    local line = debug.getinfo(1, "l").currentline + 1
    local err = t:error(function() lan:link(a):netem({ loss = 0.1, direction = "sideways" }) end,
                        'netem: direction must be "out", "in" or "both", got "sideways"')
    t:match(err, "^[^:]*netfaults%.test%.lua:" .. line .. ":", "the error points at the test's line")
    t:error(function() lan:netem({ direction = 1 }) end, 'direction must be "out", "in" or "both", got 1')
    t:error(function() a:_netem("eth0", 0, 0, { direction = "up" }) end,
            'netem: direction must be "out", "in" or "both", got "up"')
    t:error(function() a:_netem("eth0", 0, 0, { direction = true }) end,
            'direction must be "out", "in" or "both", got boolean')
    t:ok(not ingress_state(a, "eth0"), "nothing was set")
end)
