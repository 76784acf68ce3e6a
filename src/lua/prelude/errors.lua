-- errors.lua: values shown in messages, and errors raised at the caller's line (the test's).
-- The prelude's first file: every other one uses these, from the table P they all get.
local P = ...
-- The public classes, by name (api.lua lists their methods for "did you mean" and provium check):
-- each file adds its own.
P.api = {}

-- Where an error raised inside the prelude says it was ("prelude/vm.lua:12: "), to take off a
-- message that is re-raised at the caller's line.
local PRELUDE_WHERE = "^prelude/[%w_]+%.lua:%d+: "
P.PRELUDE_WHERE = PRELUDE_WHERE

local function show(v)
    if type(v) == "string" then
        if #v > 400 then v = v:sub(1, 200) .. "..." .. v:sub(-200) end
        return string.format("%q", v)
    elseif type(v) == "table" then
        local mt = getmetatable(v)
        if mt and mt.__tostring then return tostring(v) end
        local parts, n = {}, 0
        for k, x in pairs(v) do
            n = n + 1
            if n > 10 then parts[#parts + 1] = "..."; break end
            parts[#parts + 1] = (type(k) == "string" and k or "[" .. tostring(k) .. "]") .. "=" ..
                (type(x) == "table" and tostring(x) or show(x))
        end
        return "{" .. table.concat(parts, ", ") .. "}"
    end
    return tostring(v)
end

local function tail(s, lines)
    s = s or ""
    local out = {}
    for line in s:gmatch("[^\n]*") do out[#out + 1] = line end
    while #out > 0 and out[#out] == "" do out[#out] = nil end
    local from = math.max(1, #out - lines + 1)
    return table.concat(out, "\n", from)
end

-- Raises msg at the first caller outside the prelude's files: the test's own file and line,
-- even through wrappers and tail calls.
local function raise(msg)
    local level = 2
    while true do
        local info = debug.getinfo(level, "S")
        if not info then return error(msg, 0) end
        if info.source:sub(1, 9) ~= "=prelude/" and info.what ~= "C" then return error(msg, level) end
        level = level + 1
    end
end

local function fail(msg, extra)
    if extra then msg = extra .. ": " .. msg end
    raise(msg)
end

-- Calls a C primitive of VM; an argument error is re-raised under the public method's name
-- (arguments counted as in a method call), a failed operation at the test's line. The results
-- pass through varargs, not a table: every guest operation goes through here.
local function called(name, ok, first, ...)
    if not ok then
        local msg = tostring(first):gsub(PRELUDE_WHERE, "")
        msg = msg:gsub("bad argument #(%d+) to '[^']*'", function(n)
            return "bad argument #" .. (tonumber(n) - 1) .. " to '" .. name .. "'"
        end)
        raise(msg)
    end
    if first == nil then raise((...)) end
    return first, ...
end

local function call(name, prim, self, ...)
    return called(name, pcall(prim, self, ...))
end

-- A timeout or a duration in seconds: 0 to 1e6 (NaN, infinities and negatives are not).
local function is_seconds(v) return type(v) == "number" and v >= 0 and v <= 1e6 end

P.show, P.tail, P.raise, P.fail, P.call, P.is_seconds = show, tail, raise, fail, call, is_seconds
