-- link:netem{...}: loss (with correlation), duplication, corruption and reordering of what a VM
-- sends on a bridge (netem in the guest), each measured in the guest by ping; and that it is
-- one direction: what the VM receives is left alone.
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

test("corrupt: a corrupted frame is dropped by its receiver", function(t)
    pair()
    local h = lan:link(a):netem({ corrupt = 0.5 })
    local _, received = pings(300)
    h:undo()
    -- a flipped bit fails the Ethernet frame's checks or the IP or ICMP checksum: no reply
    within(t, 300 - received, 110, 190, "echo requests lost to corruption of 300")
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
