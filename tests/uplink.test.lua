-- Uplinks: bridge:uplink() gives the bridge's guests NAT to the host's network namespace through
-- a veth pair; a server the host side runs at the uplink's host address answers them. Nothing
-- here talks to anything but servers on this machine.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

-- The namespace this runner came from: its parent's, the dispatcher's (this runner's own
-- namespace is private). Independent of what the uplink reports, for checking it.
local function host_netns()
    local f = assert(io.open("/proc/self/status"))
    local status = f:read("a")
    f:close()
    return "/proc/" .. status:match("\nPPid:%s*(%d+)") .. "/ns/net"
end
local HOST = host_netns()

local function in_host(cmd, netns)
    return st.sh("nsenter --net=" .. (netns or HOST) .. " " .. cmd)
end

-- Lines of b that are not in a.
local function added(a, b)
    local seen, new = {}, {}
    for line in a:gmatch("[^\n]+") do seen[line] = true end
    for line in b:gmatch("[^\n]+") do
        if not seen[line] then new[#new + 1] = line end
    end
    return new
end

local function host_state()
    return {
        addr = in_host("ip -o addr show"),
        route4 = in_host("ip -4 route show table all"),
        route6 = in_host("ip -6 route show table all"),
    }
end

-- What the host-side servers serve.
local dir = st.tmpdir("uplink")
do
    local f = assert(io.open(dir .. "/hello.txt", "w"))
    f:write("hello from the host\n")
    f:close()
end
local PORT = 8000 -- the host address is this uplink's own: no other server can hold it

local lan = provium:bridge("lan")
local a = provium:vm("a")

-- lan's uplink, made by whichever test needs it first, after a has booted and joined lan (a
-- gets its route when the uplink comes), with the host's namespace just before and after it:
-- {up, before, after}. A test that removes it sets made to nil, and the next call makes anew.
local made
local function uplink()
    if not made then
        if a:state() == "defined" then
            a:boot()
            lan:attach(a)
        end
        local before = host_state()
        local up = lan:uplink()
        made = { up = up, before = before, after = host_state() }
    end
    return made.up
end

-- A host-side HTTP server in the uplink's host namespace, serving dir; returns its pid. timeout
-- bounds it should this file die before stopping it.
local function serve(u, root)
    local out = st.sh(string.format(
        "cd %s && { timeout 300 nsenter --net=%s python3 -m http.server --bind %s %d " ..
        ">%s/server.log 2>&1 & echo pid=$!; }", root, u.host_netns, u.host_ip, PORT, root))
    return assert(out:match("pid=(%d+)"), out)
end

local function fetch(vm, u, path)
    return vm:run(string.format("for i in $(seq 1 100); do wget -q -O - http://%s:%d/%s && " ..
                                "exit 0; sleep 0.1; done; exit 1", u.host_ip, PORT, path),
                  { timeout = 60 })
end

test("an uplink adds its veth end and that end's /30 to the host's namespace, nothing else", function(t)
    local up = uplink()
    local before = made.before
    t:eq(lan:uplink(), up, "one uplink per bridge")
    t:eq(up.gateway, "10.77.1.1")
    local p = up.host_ip:match("^100%.(%d+)%.%d+%.%d+$")
    t:ok(p and tonumber(p) >= 64 and tonumber(p) < 128, "in 100.64.0.0/10: " .. up.host_ip)
    t:eq(tostring(up), "Uplink(lan, " .. up.host_ip .. ")")
    t:eq(st.sh("readlink " .. up.host_netns), st.sh("readlink " .. HOST), "host_netns is the host's")
    local ifname = up.handle:host_ifname()
    t:match(ifname, "^pvh%d+_%d+$")

    local after = made.after
    local addrs = added(before.addr, after.addr)
    t:eq(#addrs, 1, "one new address: " .. table.concat(addrs, " | "))
    t:match(addrs[1] or "", "^%d+: " .. ifname .. "%s+inet " .. up.host_ip:gsub("%.", "%%.") .. "/30 ")
    local prefix = false
    for _, line in ipairs(added(before.route4, after.route4)) do
        t:ok(not line:match("^default"), "no default route: " .. line)
        t:ok(line:find(ifname, 1, true), "only routes of the veth end: " .. line)
        prefix = prefix or line:match("^100%.[%d.]+/30 dev " .. ifname .. " ") ~= nil
    end
    t:ok(prefix, "the kernel's route for the /30")
    for _, line in ipairs(added(before.route6, after.route6)) do
        t:ok(not line:match("^default"), "no IPv6 default route: " .. line)
        t:ok(line:find(ifname, 1, true), "only routes of the veth end: " .. line)
    end
    t:eq(in_host("ip -6 -o addr show dev " .. ifname), "", "no IPv6 address on the veth end")

    -- This runner's namespace: the other end, forwarding on, still no default route.
    t:match(st.sh("ip -4 -o addr show dev " .. up.handle:runner_ifname()),
            "inet " .. up.runner_ip:gsub("%.", "%%.") .. "/30 ")
    t:eq(st.sh("cat /proc/sys/net/ipv4/ip_forward"), "1\n")
    t:ok(not st.sh("ip route"):find("default", 1, true), "no default route in the runner")
end)

test("a guest fetches a file from a server on the host side, seen as the uplink's address", function(t)
    local up = uplink()
    local pid = serve(up, dir)
    t:match(a:run("ip route"):assert_ok().stdout, "default via 10%.77%.1%.1 ")
    local r = fetch(a, up, "hello.txt")
    st.sh("kill " .. pid)
    t:eq(r.stdout, "hello from the host\n", r.stderr)
    local log = st.sh("cat " .. dir .. "/server.log")
    t:match(log, up.runner_ip:gsub("%.", "%%.") .. " %- %- %[[^\n]*\"GET /hello%.txt", "NATed: " .. log)
end)

test("a VM attached after the uplink gets its route too; nothing beyond the host end is routed", function(t)
    local up = uplink()
    local b = provium:vm("b"):boot()
    lan:attach(b)
    t:match(b:run("ip route"):assert_ok().stdout, "default via 10%.77%.1%.1 ")
    local pid = serve(up, dir)
    local r = fetch(b, up, "hello.txt")
    st.sh("kill " .. pid)
    t:eq(r.stdout, "hello from the host\n", r.stderr)
    -- Another address of the host's namespace (not the uplink's) is not reachable.
    local other = in_host("ip -4 -o addr show scope global"):match("inet (%d+%.%d+%.%d+%.%d+)/")
    if other and other ~= up.host_ip then
        local p = b:run("ping -c 1 -W 1 " .. other)
        t:ok(not p:ok(), "no route to " .. other .. ": " .. p.stdout)
    end
end)

test("each bridge's uplink has its own /30; bridge:remove() takes it away", function(t)
    local up = uplink()
    local side = provium:bridge("side")
    local up2 = side:uplink()
    t:eq(up2.gateway, "10.77.2.1")
    t:ne(up2.host_ip, up.host_ip)
    local ifname, runner_if = up2.handle:host_ifname(), up2.handle:runner_ifname()
    t:match(in_host("ip -o link show dev " .. ifname), ifname .. "@")
    side:remove()
    local out, code = in_host("ip -o link show dev " .. ifname)
    t:ne(code, 0, "the host end is gone: " .. out)
    local _, rcode = st.sh("ip -o link show dev " .. runner_if)
    t:ne(rcode, 0, "the runner end is gone")
    t:error(function() side:uplink() end, "bridge side: uplink: the bridge is gone")
    -- the first uplink still works
    local pid = serve(up, dir)
    local r = fetch(a, up, "hello.txt")
    st.sh("kill " .. pid)
    t:eq(r.stdout, "hello from the host\n", r.stderr)
end)

-- Two files in a second provium, in the host's namespace: one ends normally, one's runner is
-- killed. Each writes its uplink's host end name and its namespace to NET_UPLINK_OUT.
local inner = [[
test("an uplink", function(t)
    local f = assert(io.open("/proc/self/status"))
    local pid = f:read("a"):match("\nPid:%s*(%d+)")
    f:close()
    local up = provium:bridge("lan"):uplink()
    local p = io.popen("readlink /proc/self/ns/net")
    local ns = p:read("l")
    p:close()
    f = assert(io.open(os.getenv("NET_UPLINK_OUT") .. "/" .. up.handle:host_ifname(), "w"))
    f:write(ns)
    f:close()
    if os.getenv("NET_UPLINK_CRASH_" .. FILE) then os.execute("kill -9 " .. pid) end
end)
]]

test("nothing is left in the host's namespace after a file ends, or after its runner is killed", function(t)
    local work = st.sh("mktemp -d /tmp/provium-uplink-XXXXXX"):gsub("%s+$", "")
    for _, name in ipairs({ "clean", "crash" }) do
        local f = assert(io.open(work .. "/" .. name .. ".test.lua", "w"))
        f:write('local FILE = "' .. name .. '"\n' .. inner)
        f:close()
    end
    local out, code = st.sh(string.format(
        "NET_UPLINK_OUT=%s NET_UPLINK_CRASH_crash=1 nsenter --net=%s %s --accel tcg -j 2 %s",
        work, HOST, provium.executable, work))
    t:ne(code, 0, out)
    t:match(out, "1 passed, 1 failed, 0 skipped\n$")
    local names = {}
    for name in st.sh("ls " .. work):gmatch("(pvh%S+)") do names[#names + 1] = name end
    t:eq(#names, 2, "both files made an uplink: " .. out)
    -- A killed runner's namespace is torn down asynchronously: give it a few seconds.
    local left
    for _ = 1, 100 do
        left = {}
        for _, name in ipairs(names) do
            local _, c = in_host("ip -o link show dev " .. name)
            if c == 0 then left[#left + 1] = name end
        end
        if #left == 0 then break end
        st.sh("sleep 0.1")
    end
    t:eq(#left, 0, "veth ends left in the host's namespace: " .. table.concat(left, " "))
    local still = st.sh("for p in /proc/[0-9]*; do readlink $p/ns/net; done 2>/dev/null | sort -u")
    for _, name in ipairs(names) do
        local ns = st.sh("cat " .. work .. "/" .. name)
        t:ok(not still:find(ns, 1, true), "the runner's namespace is gone: " .. ns)
    end
    -- and no uplink of any runner that is gone (pvh<pid>_<n>)
    for pid in in_host("ip -o link show type veth"):gmatch("%d+: pvh(%d+)_%d+") do
        t:ok(io.open("/proc/" .. pid .. "/status") ~= nil, "pvh" .. pid .. "_*: runner " .. pid .. " is gone")
    end
    st.sh("rm -rf " .. work)
end)

test("uplink:remove() deletes it now; the bridge can have a new one", function(t)
    local up = uplink()
    local ifname = up.handle:host_ifname()
    up:remove()
    made = nil
    local out, code = in_host("ip -o link show dev " .. ifname)
    t:ne(code, 0, "the host end is gone: " .. out)
    local again = uplink()
    t:match(again.host_ip or "", "^%d+%.%d+%.%d+%.%d+$", "a new uplink with an address")
    local out2, code2 = in_host("ip -o link show dev " .. again.handle:host_ifname())
    t:eq(code2, 0, "its host end exists: " .. out2)
end)
