-- history.lua: provium.history(): a workload's operations as Jepsen records them: an `invoke`,
-- then `ok`, `fail` (it did not happen) or `info` (it may have: a timeout, a lost connection),
-- with process, function, value and times; written as JSON or as EDN, which Jepsen's Knossos
-- and Elle read; judged by the linearizability checker (linearizable.lua).
local P = ...
local provium, internal = P.provium, P.internal
local raise, show = P.raise, P.show

local History = {}
History.__index = History
P.api.History = History
local Op = {}
Op.__index = Op
P.api.HistoryOp = Op

local function now_ns(h) return math.floor((internal.now() - h.t0) * 1e9) end

-- provium.history(name?): a new, empty history.
function provium.history(name)
    if name == provium then name = nil end -- provium:history() too
    if name ~= nil and type(name) ~= "string" then
        raise("provium.history(name): name must be a string, got " .. show(name))
    end
    return setmetatable({ name = name or "history", t0 = internal.now(), records = {}, open = {} }, History)
end

-- provium.keyword(name): an EDN keyword (:append, :r), for values such as Elle's transactions
-- ({{k"append", 5, 3}, {k"r", 5}}); one table per name, so == compares them. JSON writes the name.
local Keyword = { __name = "provium.keyword" }
Keyword.__index = Keyword
Keyword.__tostring = function(k) return ":" .. k.name end
local keywords = {}
function provium.keyword(name)
    if name == provium then name = nil end
    if type(name) ~= "string" or not name:match("^[%a_][%w%-_.?!*+]*$") then
        raise("provium.keyword(name): a name of letters, digits and - _ . ? ! * + expected, got " .. show(name))
    end
    keywords[name] = keywords[name] or setmetatable({ name = name }, Keyword)
    return keywords[name]
end

local function check_value(who, v, depth)
    local ty = type(v)
    if ty == "nil" or ty == "boolean" or ty == "number" or ty == "string" then return end
    if getmetatable(v) == Keyword then return end
    if ty == "table" and (depth or 0) < 4 then
        for i, x in ipairs(v) do check_value(who, x, (depth or 0) + 1) end
        if #v == 0 and next(v) ~= nil then raise(who .. ": a table value must be a list, got " .. show(v)) end
        return
    end
    raise(who .. ": a value must be nil, a boolean, a number, a string, a keyword or a list of them, got " .. show(v))
end

-- h:invoke(process, f, value?) -> op: the operation starts now. process: an integer or a name.
function History:invoke(process, f, value)
    local who = self.name .. ": invoke"
    if math.type(process) ~= "integer" and type(process) ~= "string" then
        raise(who .. ": process must be an integer or a string, got " .. show(process))
    end
    if type(f) ~= "string" or f == "" then raise(who .. ": f must be a function's name, got " .. show(f)) end
    check_value(who, value)
    if self.open[process] then
        raise(string.format("%s: process %s has operation %d in flight (a process does one at a time)",
                            who, tostring(process), self.open[process].index))
    end
    local e = { type = "invoke", f = f, value = value, process = process, time = now_ns(self),
                index = #self.records }
    self.records[#self.records + 1] = e
    local op = setmetatable({ history = self, invoke = e, index = e.index }, Op)
    self.open[process] = op
    return op
end

local function complete(op, kind, value, given)
    local h = op.history
    if op.done then raise(string.format("%s: operation %d is complete already (%s)", h.name, op.index, op.done.type)) end
    check_value(h.name .. ": " .. kind, value)
    local e = { type = kind, f = op.invoke.f, value = given and value or op.invoke.value,
                process = op.invoke.process, time = now_ns(h), index = #h.records }
    h.records[#h.records + 1] = e
    op.done = e
    h.open[op.invoke.process] = nil
    return op
end

-- op:ok(value?): it happened (a read's value is what it read); op:fail(): it did not happen;
-- op:info(): it may have. Without a value the invoke's is kept.
function Op:ok(...) return complete(self, "ok", (...), select("#", ...) > 0) end
function Op:fail(...) return complete(self, "fail", (...), select("#", ...) > 0) end
function Op:info(...) return complete(self, "info", (...), select("#", ...) > 0) end

-- h:call(process, f, value, fn): invoke, then fn(value) decides: it returns "ok" (and the
-- value), "fail" or "info"; an error it raises makes the operation info (indeterminate) and is
-- returned after it. Returns the completion's type and value.
function History:call(process, f, value, fn)
    if type(fn) ~= "function" then raise(self.name .. ": call: fn must be a function, got " .. show(fn)) end
    local op = self:invoke(process, f, value)
    local ok, status, result = pcall(fn, value)
    if not ok then
        op:info()
        return "info", status
    end
    if status ~= "ok" and status ~= "fail" and status ~= "info" then
        op:info()
        raise(string.format("%s: call: fn must return \"ok\", \"fail\" or \"info\", got %s", self.name, show(status)))
    end
    if result ~= nil then op[status](op, result) else op[status](op) end
    return status, result
end

-- h:events(): the records, in order (invoke and completion each one).
function History:events()
    local copy = {}
    for i, e in ipairs(self.records) do copy[i] = setmetatable({}, { __index = e, __newindex = function()
        raise("a history's records are read-only") end }) end
    return copy
end

---------------------------------------------------------------------------------------------
-- JSON and EDN

local function json_value(v)
    local ty = type(v)
    if v == nil then return "null" end
    if ty == "boolean" then return tostring(v) end
    if ty == "number" then
        if math.type(v) == "integer" then return tostring(v) end
        if v ~= v or v == math.huge or v == -math.huge then return "null" end
        return string.format("%.17g", v)
    end
    if getmetatable(v) == Keyword then v, ty = v.name, "string" end
    if ty == "string" then
        return '"' .. v:gsub('[%c"\\]', function(c)
            local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
            return named[c] or string.format("\\u%04x", c:byte())
        end) .. '"'
    end
    local parts = {}
    for i, x in ipairs(v) do parts[i] = json_value(x) end
    return "[" .. table.concat(parts, ",") .. "]"
end

local function edn_value(v)
    local ty = type(v)
    if v == nil then return "nil" end
    if ty == "boolean" or ty == "number" then
        if ty == "number" and math.type(v) == "float" and (v ~= v or v == math.huge or v == -math.huge) then
            return "nil"
        end
        return ty == "number" and math.type(v) == "float" and string.format("%.17g", v) or tostring(v)
    end
    if getmetatable(v) == Keyword then return ":" .. v.name end
    if ty == "string" then return '"' .. v:gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"' end
    local parts = {}
    for i, x in ipairs(v) do parts[i] = edn_value(x) end
    return "[" .. table.concat(parts, " ") .. "]"
end

-- A process as Jepsen writes one: an integer, or a keyword for a name (:nemesis).
local function edn_process(p)
    return math.type(p) == "integer" and tostring(p) or ":" .. p:gsub("[^%w%-_.]", "_")
end

local function write_file(self, path, text)
    local f, err = io.open(path, "w")
    if not f then raise(self.name .. ": " .. err) end
    f:write(text)
    f:close()
end

-- h:json(): the records as a JSON array of objects; h:write_json(path) writes it.
function History:json()
    local lines = {}
    for i, e in ipairs(self.records) do
        lines[i] = string.format('{"index":%d,"type":"%s","f":%s,"value":%s,"process":%s,"time":%d}',
                                 e.index, e.type, json_value(e.f), json_value(e.value), json_value(e.process), e.time)
    end
    return "[" .. table.concat(lines, ",\n") .. "]\n"
end

-- h:edn(): one map a line, as Jepsen's history.edn: what knossos.cli and Elle read.
function History:edn()
    local lines = {}
    for i, e in ipairs(self.records) do
        lines[i] = string.format("{:index %d, :type :%s, :f :%s, :value %s, :process %s, :time %d}",
                                 e.index, e.type, e.f:gsub("[^%w%-_.?!]", "_"), edn_value(e.value),
                                 edn_process(e.process), e.time)
    end
    return table.concat(lines, "\n") .. "\n"
end

function History:write_json(path) write_file(self, path, self:json()) return self end
function History:write_edn(path) write_file(self, path, self:edn()) return self end

P.History = History
