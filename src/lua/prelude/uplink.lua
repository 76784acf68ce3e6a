-- uplink.lua: bridge:uplink(), NAT from a bridge's guests to the host's namespace; uplink:remove().
local P = ...
local internal, raise, net, check_bridge_alive = P.internal, P.raise, P.net, P.check_bridge_alive
local Bridge = internal.Bridge

-- bridge:uplink() -> Uplink {host_ip, gateway, runner_ip, host_netns}: NAT from the bridge's
-- guests to the host's network namespace through a veth pair. A server the host runs at host_ip
-- is reachable from every guest on the bridge (each gets a default route via gateway,
-- 10.77.<n>.1; guests attached later too); it sees them coming from runner_ip. host_netns names
-- the host's namespace for `nsenter --net=` (a host-side server started from a test). Nothing
-- is routed beyond host_ip. Calling it again returns the same uplink; it goes with
-- uplink:remove(), bridge:remove(), or the file.
local Uplink = {}
P.api.Uplink = Uplink
Uplink.__index = Uplink
Uplink.__tostring = function(u) return "Uplink(" .. net[u.bridge].name .. ", " .. u.host_ip .. ")" end

function Bridge:uplink()
    local st = net[self]
    check_bridge_alive(self, "uplink")
    if st.uplink then return st.uplink end
    local gateway = string.format("10.77.%d.1", st.index)
    local h, err = internal.uplink_new(self:ifname(), gateway)
    if not h then raise(err) end
    local up = setmetatable({ bridge = self, handle = h, gateway = gateway, host_ip = h:host_ip(),
                              runner_ip = h:runner_ip(), host_netns = h:host_netns() }, Uplink)
    st.uplink = up
    for _, link in ipairs(st.order) do
        if link.configured and link.vm:state() == "running" then
            local r = link.vm:run(string.format("ip route replace default via %s dev %s", gateway,
                                                link.dev), { timeout = 30 })
            if not r:ok() then
                raise(string.format("bridge %s: uplink: route in vm %s: %s", st.name,
                                    link.vm:name(), r.stderr ~= "" and r.stderr or r.stdout))
            end
        end
    end
    return up
end

-- uplink:remove(): deletes the veth pair and its NAT rule now (the guests' routes stay).
function Uplink:remove()
    self.handle:_remove()
    if net[self.bridge].uplink == self then net[self.bridge].uplink = nil end
end
