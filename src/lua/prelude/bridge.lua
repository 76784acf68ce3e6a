-- bridge.lua: bridges in the file's own network namespace, VMs attached to them, their links.
-- A VM's links are in its record (vm_state(vm).links); a bridge's state in net[bridge].
local P = ...
local provium, internal, VM = P.provium, P.internal, P.VM
local show, raise, call, vm_state = P.show, P.raise, P.call, P.vm_state

local Bridge = internal.Bridge
local bridges = {}        -- name -> Bridge
local net = setmetatable({}, { __mode = "k" }) -- Bridge -> {name, index, links = {vm -> link}, order}
local ntaps = 0
local index_used = {}     -- subnet index -> bridge name
P.net = net

-- The name of a new TAP: pvt1, pvt2, ... in the file's namespace.
function P.new_tap()
    ntaps = ntaps + 1
    return string.format("pvt%d", ntaps)
end

-- provium:bridge(name) -> a new Linux bridge, subnet 10.77.<n>.0/24 (n: bridges made so far).
function provium:bridge(name, opts)
    if self ~= provium then error("provium:bridge must be called with ':'", 2) end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad argument #2 to 'bridge' (options table expected, got " .. type(opts) .. ")", 2)
    end
    local seed = opts and opts.rng_seed
    if seed ~= nil and math.type(seed) ~= "integer" then
        error("bad argument #2 to 'bridge' (rng_seed must be an integer, got " .. show(seed) .. ")", 2)
    end
    if type(name) ~= "string" or not name:match("^[a-z0-9_]+$") or #name > 12 then
        error("bad argument #1 to 'bridge' (bridge name of 1-12 characters a-z 0-9 _ expected, got " ..
              show(name) .. ")", 2)
    end
    if bridges[name] then raise("bridge " .. name .. ": a bridge of that name exists in this file") end
    local index = opts and opts._index
    if not index then
        index = 1
        while index_used[index] do index = index + 1 end
    elseif index_used[index] then
        raise(string.format("bridge %s: subnet 10.77.%d.0/24 is taken by bridge %s in this file",
                            name, index, index_used[index]))
    end
    if index > 250 then raise("bridge " .. name .. ": at most 250 bridges per file") end
    local b, err = internal.bridge_new(name, string.format("10.77.%d.1/24", index))
    if not b then raise(err) end
    bridges[name] = b
    index_used[index] = name
    if not seed then -- the same choices in every run with the run's seed (seed.lua)
        seed = P.derived_seed("bridge", name)
    end
    net[b] = { name = name, index = index, links = {}, order = {}, next_host = 10, seed = seed }
    return b
end

local function hosts_file(vm)
    local lines = { "127.0.0.1 localhost" }
    for _, link in ipairs(vm_state(vm).links) do
        for _, other in ipairs(net[link.bridge].order) do
            lines[#lines + 1] = other.ip .. " " .. other.vm:name() .. "." .. net[link.bridge].name
        end
    end
    return table.concat(lines, "\n") .. "\n"
end

-- In the guest: find the card by its MAC (a hot-plugged one takes a moment to appear), give it
-- its address, bring it up; with an uplink on the bridge, a default route through the gateway.
local function configure_link(vm, link)
    local up = net[link.bridge].uplink
    local route = up and (" && ip route replace default via " .. up.gateway .. " dev $dev") or ""
    local script = string.format([[
ip link set lo up
dev=
for i in $(seq 1 200); do
  for d in /sys/class/net/*; do
    [ "$(cat $d/address 2>/dev/null)" = "%s" ] && dev=${d##*/}
  done
  [ -n "$dev" ] && break
  sleep 0.05
done
[ -n "$dev" ] || { echo "no network interface with MAC %s appeared" >&2; exit 1; }
ip addr add %s/24 dev $dev && ip link set $dev up%s && echo $dev
]], link.mac, link.mac, link.ip, route)
    local r = vm:run(script, { timeout = 30 })
    if not r:ok() then
        raise(string.format("bridge %s: attach: configuring vm %s: %s", net[link.bridge].name,
                            vm:name(), r.stderr ~= "" and r.stderr or r.stdout))
    end
    link.dev = r.stdout:match("(%S+)%s*$")
    link.configured = true
end

local function refresh_hosts(b)
    for _, link in ipairs(net[b].order) do
        if link.configured and link.vm:state() == "running" then
            link.vm:write_file("/etc/hosts", hosts_file(link.vm))
        end
    end
end

-- After a boot: configure the cards attached before it.
-- A local VM's card is a veth into its network namespace (there is no QEMU to give it a TAP),
-- plugged once the VM runs: eth<k>, k its place among the VM's cards, as a guest kernel names it.
local function plug_veth(vm, link)
    local k = 0
    for i, l in ipairs(vm_state(vm).links) do
        if l == link then k = i - 1 end
    end
    local ok, err = link.bridge:_veth(link.tap, vm, link.mac, "eth" .. k)
    if not ok then raise(err) end
    link.plugged = true
end

function internal.configure_links(vm)
    local touched = {}
    for _, link in ipairs(vm_state(vm).links) do
        if link.veth and not link.plugged then plug_veth(vm, link) end
        if not link.configured then
            configure_link(vm, link)
            touched[link.bridge] = true
        end
    end
    for b in pairs(touched) do refresh_hosts(b) end
end

function internal.is_vm(v)
    local mt = type(v) == "userdata" and getmetatable(v)
    return mt and mt.__index == VM or false
end

local function check_bridge_alive(b, what)
    if b:_gone() then raise(string.format("bridge %s: %s: the bridge is gone", b:name(), what)) end
end
P.check_bridge_alive = check_bridge_alive

-- bridge:attach(vm or {vm, ...}): a virtio-net card for each on a TAP port of the bridge, its
-- address (10.77.<n>.<10+k> in attach order) configured in the guest, and every VM on the
-- bridge able to resolve every other as <vm>.<bridge>. Works before and after boot.
function Bridge:attach(vms)
    local st = net[self]
    check_bridge_alive(self, "attach")
    if internal.is_vm(vms) then vms = { vms } end
    if type(vms) ~= "table" then
        raise("bridge " .. st.name .. ": attach: a VM or a list of VMs expected, got " .. type(vms))
    end
    for i, vm in ipairs(vms) do
        if not internal.is_vm(vm) then
            raise(string.format("bridge %s: attach: item %d is not a VM (%s)", st.name, i, show(vm)))
        end
        if st.links[vm] then
            raise(string.format("bridge %s: attach: vm %s is attached already", st.name, vm:name()))
        end
    end
    for _, vm in ipairs(vms) do
        local host = st.next_host
        if host > 254 then raise("bridge " .. st.name .. ": attach: the subnet is full") end
        st.next_host = host + 1
        local link = {
            bridge = self, vm = vm, tap = P.new_tap(),
            ip = string.format("10.77.%d.%d", st.index, host),
            mac = string.format("52:54:00:77:%02x:%02x", st.index, host),
        }
        local ok, err = self:_add_tap(link.tap)
        if not ok then raise(err) end
        link.veth = vm:vmm() == "local"
        if not link.veth then call("attach", vm._add_nic, vm, link.tap, link.mac) end
        st.links[vm] = link
        st.order[#st.order + 1] = link
        table.insert(vm_state(vm).links, link)
        if vm:state() == "running" then
            if link.veth then plug_veth(vm, link) end
            configure_link(vm, link)
        end
    end
    refresh_hosts(self)
    return self
end

function VM:ip(bridge)
    local st = net[bridge]
    if not st then raise("vm " .. self:name() .. ": ip: a Bridge expected, got " .. show(bridge)) end
    local link = st.links[self]
    if not link then raise(string.format("vm %s: ip: not attached to bridge %s", self:name(), st.name)) end
    return link.ip
end

-- bridge:remove(): deletes the bridge now (its ports and uplink too); it is also gone when the
-- file ends.
function Bridge:remove()
    if net[self].uplink then net[self].uplink:remove() end
    self:_remove()
end

-- Links: bridge:link(vm) is vm's port, with the same impairments applied to it alone.
local Link = {}
Link.__index = Link
Link.__tostring = function(l) return "Link(" .. net[l.bridge].name .. ", " .. l.vm:name() .. ")" end

function Bridge:link(vm)
    local link = internal.is_vm(vm) and net[self].links[vm]
    if not link then
        raise(string.format("bridge %s: link: %s is not attached to this bridge", net[self].name,
                            internal.is_vm(vm) and ("vm " .. vm:name()) or show(vm)))
    end
    return setmetatable({ bridge = self, vm = vm, state = link }, Link)
end

function Link:isolate() return self.bridge:isolate(self.vm) end
P.Link = Link

-- The builder's bridges go once the lab is saved: the restored lab gets its own.
function internal.net_forget_bridge(b)
    local st = net[b]
    if not st then return end
    b:_remove()
    bridges[st.name] = nil
    index_used[st.index] = nil
end
