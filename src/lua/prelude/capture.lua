-- capture.lua: bridge:capture and provium:capture, packet captures with the stream interface.
-- A capture's items are packets, tables {ts, len, data, summary}; patterns match the summary.
-- Its primitives are C's (bind/capture_object.c): _get(i), _summary(i), _buffered(),
-- _consume(n), _ended(), _wait(timeout, seen); drain, eof, close, path, count, name.
local P = ...
local provium, internal, show, raise = P.provium, P.internal, P.show, P.raise
local net, check_bridge_alive = P.net, P.check_bridge_alive
local Bridge, Capture = internal.Bridge, internal.Capture

local packets = {
    whole = "capture",
    nothing = "no packet arrived",
    bad_timeout = function(self, timeout)
        return self:name() .. ": timeout must be a number of seconds from 0 to 1e6, got " .. tostring(timeout)
    end,
    end_error = function(_, err) return err end,
    take = function(self)
        local p = self:_get(1)
        if p then self:_consume(1) end
        return p
    end,
    -- The first packet whose summary matches; it and those before it are consumed. Only the
    -- packets after the `seen` already looked at are looked at.
    find = function(self, pattern, seen)
        local n = self:_buffered()
        if n < seen then seen = 0 end
        for i = seen + 1, n do
            if self:_summary(i):find(pattern) then
                local p = self:_get(i)
                self:_consume(i)
                return p
            end
        end
        return nil, n
    end,
    expected = function(pattern) return string.format("a packet matching %q", pattern) end,
    seen = function(self)
        local n = self:_buffered()
        local got = {}
        for i = math.max(1, n - 9), n do got[#got + 1] = "\n  " .. self:_summary(i) end
        return (n == 0 and "got none" or (n > #got and ("got " .. n .. " others, the last " ..
            #got .. ":") or ("got " .. n .. ":"))) .. table.concat(got)
    end,
}
P.add_stream_methods(Capture, packets)

local ncaptures = 0

-- Checks the arguments (who names the call) and opens a capture on ifname into opts.path, or
-- the run directory's capture-<name>-<n>.pcap. Returns the Capture, or nil and a message.
local function open_capture(who, ifname, name, filter, opts)
    if filter ~= nil and type(filter) ~= "string" then raise(who .. ": filter must be a string, got " .. show(filter)) end
    if opts ~= nil and type(opts) ~= "table" then raise(who .. ": options table expected, got " .. show(opts)) end
    ncaptures = ncaptures + 1
    local path = opts and opts.path or
        string.format("%s/capture-%s-%d.pcap", internal.run_dir(), name, ncaptures)
    return internal.capture_open(ifname, filter, path)
end

-- bridge:capture(filter?, opts?): packets crossing the bridge (BPF filter, tcpdump syntax) into
-- a pcap file, and a stream of them. opts.path keeps the file; by default it is in the file's
-- run directory and goes with it.
function Bridge:capture(filter, opts)
    check_bridge_alive(self, "capture")
    local who = "bridge " .. net[self].name .. ": capture"
    local c, err = open_capture(who, self:ifname(), net[self].name, filter, opts)
    if not c then raise(who .. ": " .. err) end
    return c
end

-- provium:capture(ifname, filter?, opts?): the same on any interface of the file's network
-- namespace: lo, a veth pair the test made, a bridge's TAP.
function provium:capture(ifname, filter, opts)
    if self ~= provium then error("provium:capture must be called with ':'", 2) end
    if type(ifname) ~= "string" or ifname == "" then
        error("bad argument #1 to 'capture' (interface name expected, got " .. show(ifname) .. ")", 2)
    end
    local c, err = open_capture("capture on " .. ifname, ifname, ifname, filter, opts)
    if not c then raise(err) end
    return c
end
