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

-- clock:skew(ppm): the guest's clock runs fast (ppm > 0) or slow by ppm parts per million, as
-- on a host whose oscillator is off: the kernel's own tick length and frequency correction
-- (adjtimex: ADJ_TICK in steps of 100 ppm, ADJ_FREQUENCY for the rest), so CLOCK_REALTIME and
-- CLOCK_MONOTONIC both drift; 0 puts it back. At most 10% either way (the kernel's tick range).
local ADJ_FREQUENCY, ADJ_TICK, USER_TICK_US = 0x0002, 0x4000, 10000

-- struct timex (x86_64, 208 bytes) with modes, freq (offset 16) and tick (offset 88) set.
local function timex(modes, freq, tick)
    return string.pack("<I4", modes) .. ("\0"):rep(12) .. string.pack("<i8", freq) .. ("\0"):rep(64) ..
           string.pack("<i8", tick) .. ("\0"):rep(112)
end

function Clock:skew(ppm)
    refuse_local(self, "skew")
    if type(ppm) ~= "number" or ppm ~= ppm or math.abs(ppm) > 100000 then
        raise("bad argument #1 to 'skew' (parts per million from -100000 to 100000 expected, got " .. show(ppm) .. ")")
    end
    local tick_steps = ppm >= 0 and math.floor(ppm / 100 + 0.5) or -math.floor(-ppm / 100 + 0.5)
    local rest = ppm - tick_steps * 100
    -- freq is in scaled ppm (ppm << 16)
    local tx = provium.buffer(timex(ADJ_FREQUENCY | ADJ_TICK, math.floor(rest * 65536 + 0.5),
                                    USER_TICK_US + tick_steps))
    local ret, err = self.vm:syscall("adjtimex", tx)
    if ret == nil or ret < 0 then
        raise(string.format("vm %s: clock:skew: %s", self.vm:name(), tostring(err)))
    end
    internal.event("vm.clock_skew", { vm = self.vm:name(), ppm = ppm })
    return self
end

-- clock:sleep(seconds): waits that long in guest time (the guest's CLOCK_MONOTONIC)
function Clock:sleep(seconds)
    if not P.is_seconds(seconds) then
        raise("bad argument #1 to 'sleep' (seconds from 0 to 1e6 expected, got " .. show(seconds) .. ")")
    end
    clock_call(self, "sleep", "clock_nanosleep", 1, 0, timespec(seconds), 0)
end
