-- clock.lua: vm:clock(), the guest's clock: now, set, advance, sleep (through vm:syscall).
-- CLOCK_REALTIME moves; CLOCK_MONOTONIC and CLOCK_BOOTTIME never jump.
local P = ...
local provium, internal, VM, show, raise = P.provium, P.internal, P.VM, P.show, P.raise

local Clock = {}
P.api.Clock = Clock
Clock.__index = Clock
Clock.__tostring = function(c) return "Clock(" .. c.vm:name() .. ")" end

function VM:clock() return setmetatable({ vm = self }, Clock) end

local function clock_call(c, what, ...)
    local ret, err = c.vm:syscall(...)
    if ret ~= 0 then raise(string.format("vm %s: clock:%s: %s", c.vm:name(), what, tostring(err))) end
end

-- clock:now() -> the guest's wall-clock time, seconds since the epoch (with fractions)
function Clock:now()
    local ts = provium.buffer(16)
    clock_call(self, "now", "clock_gettime", 0, ts)
    return ts:uint(0, 8) + ts:uint(8, 8) / 1e9
end

-- A struct timespec for t seconds, as a buffer.
local function timespec(t)
    local sec = math.floor(t)
    return provium.buffer(string.pack("<i8i8", sec, math.floor((t - sec) * 1e9)))
end

-- A local VM's clock is the host's: it is read, never set.
local function refuse_local(c, what)
    if c.vm:vmm() == "local" then
        raise("vm " .. c.vm:name() .. ": clock:" .. what .. ": " .. internal.local_unavailable)
    end
end

-- clock:set(time): sets the guest's wall clock (seconds since the epoch)
function Clock:set(time)
    refuse_local(self, "set")
    if type(time) ~= "number" or time < 0 then
        raise("bad argument #1 to 'set' (seconds since the epoch expected, got " .. show(time) .. ")")
    end
    clock_call(self, "set", "clock_settime", 0, timespec(time))
end

-- clock:advance(seconds): moves the guest's wall clock forward (or back, if negative)
function Clock:advance(seconds)
    refuse_local(self, "advance")
    if type(seconds) ~= "number" then
        raise("bad argument #1 to 'advance' (seconds expected, got " .. show(seconds) .. ")")
    end
    self:set(self:now() + seconds)
end

-- clock:sleep(seconds): waits that long in guest time (the guest's CLOCK_MONOTONIC)
function Clock:sleep(seconds)
    if not P.is_seconds(seconds) then
        raise("bad argument #1 to 'sleep' (seconds from 0 to 1e6 expected, got " .. show(seconds) .. ")")
    end
    clock_call(self, "sleep", "clock_nanosleep", 1, 0, timespec(seconds), 0)
end
