-- stream.lua: the stream interface (next, read_until, expect, drain, eof) of bytes and of packets.
-- The waiting loops are shared; a kind says how its items are taken and found, and how its
-- messages read: bytes here (process output, tails, the console), packets in capture.lua.
local P = ...
local internal, Stream = P.internal, P.Stream
local show, tail, raise = P.show, P.tail, P.raise

local function deadline(self, kind, timeout)
    if timeout == nil then return nil end
    if not P.is_seconds(timeout) then raise(kind.bad_timeout(self, timeout)) end
    return internal.now() + timeout
end

local function remaining(dl)
    if not dl then return nil end
    return math.max(0, dl - internal.now())
end

-- stream:next(timeout?) -> the next item (bytes: all there are), or nil at the end; raises on
-- timeout.
local function next_item(self, kind, timeout)
    local dl = deadline(self, kind, timeout)
    while true do
        local item = kind.take(self)
        if item then return item end
        local ended, err = self:_ended()
        if ended then
            if err then raise(kind.end_error(self, err)) end
            return nil
        end
        if not self:_wait(remaining(dl)) then
            raise(self:name() .. ": " .. kind.nothing .. " within " .. timeout .. " s")
        end
    end
end

-- stream:read_until(pattern, timeout?) -> what matches the Lua pattern (bytes: the text up to
-- and including the first match, what follows staying for the next read), or nil, "timeout" |
-- "eof".
local function read_until(self, kind, pattern, timeout)
    if type(pattern) ~= "string" then
        raise("bad argument #1 to 'read_until' (pattern string expected, got " .. type(pattern) .. ")")
    end
    local dl = deadline(self, kind, timeout)
    local seen = 0
    while true do
        local found
        found, seen = kind.find(self, pattern, seen)
        if found then return found end
        if self:_ended() then return nil, "eof" end
        if not self:_wait(remaining(dl), seen) then return nil, "timeout" end
    end
end

-- stream:expect(pattern, timeout?) is read_until that fails the test, showing what came.
local function expect(self, kind, pattern, timeout)
    local got, why = self:read_until(pattern, timeout)
    if got then return got end
    local seen = kind.seen(self)
    local _, err = self:_ended()
    raise(string.format("%s: expected %s %s; %s", self:name(), kind.expected(pattern),
        why == "eof" and ("before the end of the " .. kind.whole) or ("within " .. tostring(timeout) .. " s"),
        seen) .. (err and (" (" .. err .. ")") or ""))
end

-- Gives a stream type (its methods table) next, read_until and expect over its kind.
function P.add_stream_methods(M, kind)
    function M:next(timeout) return next_item(self, kind, timeout) end
    function M:read_until(pattern, timeout) return read_until(self, kind, pattern, timeout) end
    function M:expect(pattern, timeout) return expect(self, kind, pattern, timeout) end
end

-- Byte streams: _peek() is every unread byte, _consume(n) drops n of them.
local bytes = {
    whole = "stream",
    nothing = "nothing arrived",
    bad_timeout = function(_, timeout)
        return "stream: timeout must be a number of seconds from 0 to 1e6, got " .. show(timeout)
    end,
    end_error = function(self, err) return self:name() .. ": " .. err end,
    take = function(self)
        local s = self:_peek()
        if #s == 0 then return nil end
        self:_consume(#s)
        return s
    end,
    find = function(self, pattern)
        local s = self:_peek()
        local _, j = s:find(pattern)
        if not j then return nil, #s end
        self:_consume(j)
        return s:sub(1, j)
    end,
    expected = show,
    seen = function(self)
        local s = self:_peek()
        return #s > 0 and ("got " .. show(tail(s, 10))) or "got nothing"
    end,
}
P.add_stream_methods(Stream, bytes)

-- stream:drain() -> everything buffered now, without waiting.
function Stream:drain()
    local s = self:_peek()
    self:_consume(#s)
    return s
end

-- stream:eof() -> true once the stream has ended and every byte was read.
function Stream:eof()
    return (self:_ended()) and #self:_peek() == 0
end
