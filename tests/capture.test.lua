-- Packet capture on the file runner's loopback (its own network namespace: nothing here is seen
-- by, or leaks into, the host's). Traffic comes from bash's /dev/udp and /dev/tcp; no VM.

local function sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("a")
    p:close()
    return out
end

local dir = sh("mktemp -d /tmp/provium-capture-XXXXXX"):gsub("%s+$", "")
-- dir goes when lua_close finalises this at file end, whichever tests ran (a global, so that
-- no collection before then finalises it).
-- luacheck: globals CAPTURE_DIR LEFT_OPEN
CAPTURE_DIR = setmetatable({}, { __gc = function() sh("rm -rf " .. dir) end })
local port = math.random(20000, 60000)

local function open(t, name, filter, ifname)
    return provium:capture(ifname or "lo", filter, { path = dir .. "/" .. name .. ".pcap" })
end

-- The host's clock, in seconds with fractions.
local function now()
    return tonumber(sh("date +%s.%N"))
end

-- n datagrams of "x\n" to 127.0.0.1:port, now
local function send_udp(n, p)
    for _ = 1, n do
        os.execute("bash -c 'echo x > /dev/udp/127.0.0.1/" .. (p or port) .. "'")
    end
end

-- A pcap file's header and records: magic, link type, { {incl, orig}, ... }
local function read_pcap(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    local magic = string.unpack("<I4", s, 1)
    local endian = (magic == 0xa1b2c3d4 or magic == 0xa1b23c4d) and "<" or ">"
    local linktype = string.unpack(endian .. "I4", s, 21)
    local records, pos = {}, 25
    while pos <= #s do
        local _, _, incl, orig = string.unpack(endian .. "I4I4I4I4", s, pos)
        records[#records + 1] = { incl = incl, orig = orig }
        pos = pos + 16 + incl
    end
    return magic, linktype, records, s
end

test("UDP on lo: one table per packet, decoded, and a pcap file", function(t)
    local c = open(t, "udp", "udp port " .. port)
    t:eq(c:count(), 0)
    t:eq(c:path(), dir .. "/udp.pcap")
    send_udp(3)
    local before = os.time()
    for i = 1, 3 do
        local p = c:next(5)
        t:match(p.summary, "^IPv4 127%.0%.0%.1:%d+ > 127%.0%.0%.1:" .. port .. " UDP len 2$")
        t:eq(p.len, 14 + 20 + 8 + 2, "Ethernet + IPv4 + UDP + \"x\\n\"")
        t:eq(#p.data, p.len)
        t:eq(p.data:sub(-2), "x\n")
        t:ok(math.abs(p.ts - before) < 60, "ts is epoch seconds: " .. p.ts)
    end
    t:eq(c:count(), 3)
    t:eq(c:drain(), {})
    t:ok(not c:eof(), "no end while it captures")
    c:close()
    t:ok(c:eof(), "eof once closed and read")
    t:eq(c:next(1), nil)

    local magic, linktype, records, raw = read_pcap(c:path())
    t:ok(magic == 0xa1b2c3d4 or magic == 0xd4c3b2a1 or magic == 0xa1b23c4d or magic == 0x4d3cb2a1,
        string.format("pcap magic, got 0x%08x", magic))
    t:eq(linktype, 1, "LINKTYPE_ETHERNET")
    t:eq(#records, 3)
    for _, r in ipairs(records) do t:eq(r, { incl = 44, orig = 44 }) end
    t:eq(raw:sub(-2), "x\n")
end)

test("the file grows while capturing, and close completes it", function(t)
    local c = open(t, "grow", "udp port " .. port)
    send_udp(2)
    c:expect("UDP", 5)
    c:expect("UDP", 5)
    local _, _, records = read_pcap(c:path())
    t:eq(#records, 2, "flushed after each batch, readable before close")
    send_udp(1)
    c:close() -- reads what the kernel still holds
    t:eq(c:count(), 3)
    local _, _, after = read_pcap(c:path())
    t:eq(#after, 3)
    t:match(c:next().summary, "UDP len 2$")
    t:ok(c:eof())
end)

test("a task waits for packets that arrive later", function(t)
    local c = open(t, "later", "udp port " .. port)
    local bg = io.popen("sleep 0.3; bash -c 'echo x > /dev/udp/127.0.0.1/" .. port .. "'")
    local t0 = now()
    local p = c:expect(":" .. port .. " UDP", 5)
    t:ok(now() - t0 >= 0.2, "it waited for the packet")
    t:match(p.summary, "UDP len 2$")
    bg:close()
    t:error(function() c:next(0.2) end, "capture on lo: no packet arrived within 0.2 s")
    c:close()
end)

test("read_until skips to the first match; a miss consumes nothing; expect shows what came", function(t)
    local other = port + 1
    local c = open(t, "match", "udp portrange " .. port .. "-" .. other)
    send_udp(2, other)
    send_udp(1)
    local p = c:read_until(" > 127%.0%.0%.1:" .. port .. " ", 5)
    t:match(p.summary, ":" .. port .. " UDP")
    t:eq(c:drain(), {}, "the two before the match were consumed with it")
    send_udp(2, other)
    local got, why = c:read_until(":" .. port .. " ", 0.3)
    t:eq(got, nil)
    t:eq(why, "timeout")
    local err = t:error(function() c:expect("TCP", 0.2) end,
        'capture on lo: expected a packet matching "TCP" within 0.2 s; got 2:')
    t:contains(err, "\n  IPv4 127.0.0.1:")
    t:match(err, "^[^:]*capture%.test%.lua:%d+:", "the error points at the test's line")
    local all = c:drain()
    t:eq(#all, 2, "a miss consumed nothing")
    t:match(all[2].summary, ":" .. other .. " UDP")
    c:close()
    t:eq({ c:read_until("x", 1) }, { nil, "eof" })
end)

test("TCP flags and ports", function(t)
    local c = open(t, "tcp", "tcp port " .. port)
    sh("bash -c 'echo > /dev/tcp/127.0.0.1/" .. port .. "'") -- refused: SYN, then RST
    t:match(c:expect("TCP %[S%]", 5).summary,
        "^IPv4 127%.0%.0%.1:%d+ > 127%.0%.0%.1:" .. port .. " TCP %[S%] seq %d+ len 0$")
    t:match(c:expect("TCP %[R", 5).summary,
        "^IPv4 127%.0%.0%.1:" .. port .. " > 127%.0%.0%.1:%d+ TCP %[R%.%] seq 0 ack %d+ len 0$")
    c:close()
end)

test("IPv6 UDP", function(t)
    if not sh("cat /proc/net/if_inet6 2>/dev/null"):find("00000000000000000000000000000001") then
        t:skip("no ::1 on lo")
    end
    local c = open(t, "v6", "ip6 and udp port " .. port)
    os.execute("bash -c 'echo x > /dev/udp/::1/" .. port .. "'")
    t:match(c:next(5).summary, "^IPv6 %[::1%]:%d+ > %[::1%]:" .. port .. " UDP len 2$")
    c:close()
end)

test("no filter captures everything", function(t)
    local c = open(t, "all", nil)
    send_udp(1)
    c:expect(":" .. port .. " UDP", 5)
    c:close()
end)

test("a bad filter, an unknown interface, an unwritable path: clear errors", function(t)
    local here = "^[^:]*capture%.test%.lua:%d+: "
    t:error(function() provium:capture("lo", "no such filter syntax", { path = dir .. "/bad.pcap" }) end,
        here .. 'capture on lo: bad filter "no such filter syntax": .+')
    t:error(function() provium:capture("nosuch0", nil, { path = dir .. "/bad.pcap" }) end,
        here .. "capture on nosuch0: no such interface")
    t:error(function() provium:capture("lo", nil, { path = dir .. "/missing/dir/x.pcap" }) end,
        here .. "capture on lo: cannot create " .. dir:gsub("%p", "%%%0") .. "/missing/dir/x%.pcap: ")
    t:error(function() provium:capture() end,
        here .. "bad argument #1 to 'capture' %(interface name expected, got nil%)")
    t:error(function() provium:capture("lo", 7) end, here .. "capture on lo: filter must be a string, got 7")
    t:error(function() provium.capture("lo") end, "provium:capture must be called with ':'")
end)

test("a capture left open is closed when collected, and at file end", function(t)
    local c = open(t, "gc", "udp port " .. port)
    send_udp(1)
    c = nil
    collectgarbage()
    collectgarbage()
    local _, _, records = read_pcap(dir .. "/gc.pcap")
    t:eq(#records, 1, "closing read the pending packet and completed the file")
    LEFT_OPEN = open(t, "left", "udp port " .. port) -- closed by lua_close at file end
    send_udp(1)
    LEFT_OPEN:expect("UDP", 5)
end)

-- Creating interfaces only in the runner's private namespace (it differs from its parent's, the
-- dispatcher's): they must not appear in, or outlive the file into, the host's.
local function private_netns(t)
    local own = sh("readlink /proc/$PPID/ns/net")
    local parent = sh("readlink /proc/$(cut -d' ' -f4 /proc/$PPID/stat)/ns/net")
    if own == "" or own == parent then t:skip("the runner has no network namespace of its own") end
end

test("a veth pair: ARP in Ethernet frames; the interface going away ends the capture", function(t)
    private_netns(t)
    local out = sh("{ ip link add capv0 type veth peer name capv1 && ip addr add 10.99.0.1/24 dev capv0 " ..
        "&& ip link set capv0 up && ip link set capv1 up && echo ok; } 2>&1")
    if not out:find("ok") then t:skip("no veth pair: " .. out) end
    local c = open(t, "veth", "arp", "capv1")
    os.execute("bash -c 'echo x > /dev/udp/10.99.0.2/9' 2>/dev/null")
    local p = c:expect("^ARP who%-has 10%.99%.0%.2 tell 10%.99%.0%.1$", 5)
    t:eq(p.data:sub(1, 6), string.rep("\255", 6), "broadcast")
    t:eq(string.unpack(">I2", p.data, 13), 0x0806)
    sh("ip link del capv0")
    local err = t:error(function() while true do c:next(5) end end,
        "^[^:]*capture%.test%.lua:%d+: capture on capv1: ")
    t:ok(c:eof(), "ended: " .. err)
    c:close()
end)

test("a wait's timeout counts from the call, even after Lua code blocked the loop", function(t)
    local c = open(t, "stale", "udp port " .. (port + 2))
    os.execute("sleep 2") -- the loop's clock stands still meanwhile
    local t0 = now()
    t:error(function() c:next(1) end, "no packet arrived within 1 s")
    local waited = now() - t0
    t:ok(waited >= 0.9, "waited " .. waited .. " s, not at once")
    c:close()
end)
