-- linearizable.lua: h:check{model = ...} and h:assert_linearizable(...): is there an order of
-- the history's operations, each placed between its invoke and its completion, that the
-- model's sequential specification accepts? The search is Wing and Gong's with Lowe's cache of
-- (operations placed, state) as Porcupine does it; a key-value map is checked key by key (its
-- keys are independent registers). When none exists, the result names the operation no order
-- could place and the operations concurrent with it: the smallest window that shows it.
local P = ...
local raise, show = P.raise, P.show
local History = P.History

local STEP_LIMIT = 5000000 -- search steps before giving up (said so, never a verdict)

local function same(a, b)
    if a == b then return true end
    if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
    for i = 1, #a do if not same(a[i], b[i]) then return false end end
    return true
end

local function key_of(v)
    if type(v) ~= "table" then return type(v):sub(1, 1) .. tostring(v) end
    local parts = {}
    for i, x in ipairs(v) do parts[i] = key_of(x) end
    return "[" .. table.concat(parts, ",") .. "]"
end

-- A register: write v, read -> v, cas {old, new}.
local register = {}
function register.step(state, op)
    if op.f == "write" then return true, op.value end
    if op.f == "read" then return same(state, op.value), state end
    if op.f == "cas" then
        if type(op.value) ~= "table" or #op.value ~= 2 then return false, state end
        if same(state, op.value[1]) then return true, op.value[2] end
        return false, state
    end
    return false, state
end

-- What a register's operations are; the rest of a history (a nemesis's partitions and heals)
-- is not the model's to judge.
local register_fs = { read = true, write = true, cas = true }

-- The history's operations: an invoke and its completion paired by process. A failed one did
-- not happen (left out); an indeterminate one (info, or never completed) may have happened at
-- any point after its invoke, so it returns "at infinity"; an indeterminate read says nothing.
local function operations(h)
    local ops, open = {}, {}
    for _, e in ipairs(h.records) do
        if not register_fs[e.f] then
            -- not the model's
        elseif e.type == "invoke" then
            open[e.process] = { process = e.process, f = e.f, value = e.value, call = e.index, invoke = e }
        else
            local op = open[e.process]
            open[e.process] = nil
            if op and e.type == "ok" then
                op.value, op.ret, op.done = e.value, e.index, e
                ops[#ops + 1] = op
            elseif op and e.type == "info" and op.f ~= "read" then
                op.ret, op.done = math.huge, e
                ops[#ops + 1] = op
            end
        end
    end
    for _, op in pairs(open) do
        if op.f ~= "read" then op.ret = math.huge; ops[#ops + 1] = op end
    end
    table.sort(ops, function(a, b) return a.call < b.call end)
    return ops
end

-- The search over ops (sorted by call). Returns true; or false and what it found at its
-- deepest (the operation it could not place, the state then, how many were placed); or nil
-- and why it gave up.
local function search(ops, model, initial)
    local entries = {}
    for i, op in ipairs(ops) do
        op.id = i
        local c, r = { time = op.call, op = op, is_call = true }, { time = op.ret, op = op, is_call = false }
        c.match = r
        entries[#entries + 1], entries[#entries + 2] = c, r
    end
    table.sort(entries, function(a, b)
        if a.time ~= b.time then return a.time < b.time end
        if a.is_call ~= b.is_call then return a.is_call end
        return a.op.id < b.op.id
    end)
    local head = {}
    local prev = head
    for _, e in ipairs(entries) do e.prev, prev.next, prev = prev, e, e end
    local function unlink(e)
        e.prev.next = e.next
        if e.next then e.next.prev = e.prev end
    end
    local function relink(e)
        e.prev.next = e
        if e.next then e.next.prev = e end
    end
    local words, W = {}, 48
    local function bits_key()
        local parts = {}
        for i = 1, (#ops + W - 1) // W do parts[i] = string.format("%x", words[i] or 0) end
        return table.concat(parts, ".")
    end
    local function flip(id)
        local w, b = (id - 1) // W + 1, (id - 1) % W
        words[w] = (words[w] or 0) ~ (1 << b)
    end
    local state, placed, cache, stack = initial, 0, {}, {}
    local deepest = { placed = -1 }
    local entry, steps = head.next, 0
    while head.next do
        steps = steps + 1
        if steps > STEP_LIMIT then return nil, "gave up after " .. STEP_LIMIT .. " search steps" end
        if entry.is_call then
            local ok, new = model.step(state, entry.op)
            local fresh = false
            if ok then
                flip(entry.op.id)
                local key = bits_key() .. "|" .. key_of(new)
                fresh = not cache[key]
                if fresh then cache[key] = true else flip(entry.op.id) end
            end
            if fresh then
                stack[#stack + 1] = { entry = entry, state = state }
                state, placed = new, placed + 1
                unlink(entry.match)
                unlink(entry)
                entry = head.next
            else
                entry = entry.next
            end
        else
            if placed > deepest.placed then deepest = { placed = placed, op = entry.op, state = state } end
            if #stack == 0 then return false, deepest end
            local top = table.remove(stack)
            entry, state, placed = top.entry, top.state, placed - 1
            flip(entry.op.id)
            relink(entry)
            relink(entry.match)
            entry = entry.next
        end
    end
    return true
end

local function describe_op(op, mark)
    local done = op.ret == math.huge and (op.done and "info" or "never completed") or ("ok " .. op.ret)
    return string.format("  #%d process %s %s %s   invoke %d .. %s%s", op.invoke.index, tostring(op.process),
                         op.f, show(op.value), op.call, done, mark or "")
end

-- The window around the operation no order could place: the last one to complete before it
-- began (what the state should have been), then it and what ran concurrently with it.
local function window(ops, stuck)
    local lines, before = {}, nil
    for _, op in ipairs(ops) do
        if op.ret < stuck.call and (not before or op.ret > before.ret) then before = op end
    end
    if before then lines[1] = describe_op(before, "   (the last to complete before it)") end
    for _, op in ipairs(ops) do
        if op.call <= stuck.ret and op.ret >= stuck.call then
            lines[#lines + 1] = describe_op(op, op == stuck and "   <- no order places it" or nil)
        end
    end
    return lines
end

-- Splits a key-value history into one register history per key: values are {key, v}.
local function by_key(ops)
    local keys, order = {}, {}
    for _, op in ipairs(ops) do
        if type(op.value) ~= "table" or op.value[1] == nil then return nil, op end
        local k = op.value[1]
        local kk = key_of(k)
        if not keys[kk] then keys[kk] = {}; order[#order + 1] = { kk, k } end
        local sub = setmetatable({ value = op.value[2] }, { __index = op })
        keys[kk][#keys[kk] + 1] = sub
    end
    return keys, order
end

local models = { register = true, ["cas-register"] = true, kv = true }

-- h:check{model = "register" | "cas-register" | "kv", initial = v} -> {ok, model, operations,
-- message, window}: ok is true, false, or nil when the search gave up (message says why).
function History:check(opts)
    opts = opts or {}
    local model = opts.model or "register"
    if not models[model] then
        raise(self.name .. ": check: model must be \"register\", \"cas-register\" or \"kv\", got " .. show(model) ..
              P.suggest(tostring(model), { "register", "cas-register", "kv" }))
    end
    local ops = operations(self)
    local groups = { { name = nil, ops = ops } }
    if model == "kv" then
        local keys, order = by_key(ops)
        if not keys then
            raise(self.name .. ": check kv: operation " .. order.invoke.index .. "'s value must be {key, value}, got " ..
                  show(order.value))
        end
        groups = {}
        for _, ko in ipairs(order) do groups[#groups + 1] = { name = ko[2], ops = keys[ko[1]] } end
    end
    for _, g in ipairs(groups) do
        local ok, found = search(g.ops, register, opts.initial)
        if ok == nil then
            return { ok = nil, model = model, operations = #ops, message = self.name .. ": " .. found }
        end
        if not ok then
            local lines = window(g.ops, found.op)
            local msg = string.format("%s: not linearizable (%s%s): of %d operations, %d could be ordered; no order " ..
                                      "places operation %d (process %s %s %s), the state then %s; it and the " ..
                                      "operations concurrent with it:\n%s", self.name, model,
                                      g.name ~= nil and (", key " .. show(g.name)) or "", #g.ops, found.placed,
                                      found.op.invoke.index, tostring(found.op.process), found.op.f,
                                      show(found.op.value), show(found.state), table.concat(lines, "\n"))
            return { ok = false, model = model, operations = #ops, message = msg, window = lines, key = g.name }
        end
    end
    return { ok = true, model = model, operations = #ops,
             message = string.format("%s: linearizable (%s, %d operations)", self.name, model, #ops) }
end

-- h:assert_linearizable(opts?): fails the test with check's message unless it is.
function History:assert_linearizable(opts)
    local r = self:check(opts)
    if r.ok ~= true then P.fail(r.message) end
    return r
end
