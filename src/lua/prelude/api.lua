-- api.lua: the public API as data: every class's methods (P.api, filled by the files before this
-- one), and "did you mean" for a name that is not in it. The test runner uses it when a test
-- calls a method that does not exist, vm:boot for its option names, and provium check
-- (check.lua) for files it never runs.
local P = ...
local provium, internal = P.provium, P.internal

P.api.provium, P.api.VM, P.api.Result = provium, P.VM, P.Result
P.api.Stream, P.api.Process, P.api.File, P.api.Worker = P.Stream, P.Process, P.File, P.Worker
P.api.Link, P.api.Bridge, P.api.Disk, P.api.Capture = P.Link, internal.Bridge, internal.Disk,
    internal.Capture

-- Levenshtein distance, bounded: above limit it stops counting.
local function distance(a, b, limit)
    if math.abs(#a - #b) > limit then return limit + 1 end
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur, best = { [0] = i }, i
        for j = 1, #b do
            local cost = a:byte(i) == b:byte(j) and 0 or 1
            cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if cur[j] < best then best = cur[j] end
        end
        if best > limit then return limit + 1 end
        prev = cur
    end
    return prev[#b]
end

-- " (did you mean 'x'?)" for the closest of names (a list or a set) to name, or "".
function P.suggest(name, names)
    local limit = #name <= 4 and 1 or 2
    local best, best_d = {}, limit + 1
    local list = names[1] and names or {}
    if not names[1] then for k in pairs(names) do list[#list + 1] = k end end
    for _, n in ipairs(list) do
        local d = distance(name, n, limit)
        if d < best_d then best, best_d = { n }, d
        elseif d == best_d and d <= limit then best[#best + 1] = n end
    end
    if best_d > limit then return "" end
    table.sort(best)
    return " (did you mean '" .. table.concat(best, "' or '", 1, math.min(#best, 3)) .. "'?)"
end

-- The classes of P.api, and those the C bindings register ("provium.*" metatables whose
-- __index is a table of methods; one of the same name as a Lua class adds to it).
local NOT_API = { FixtureBuild = true } -- the fixture builder's own object
local function classes()
    local all = {}
    for name, t in pairs(P.api) do all[name] = { t } end
    for key, mt in pairs(debug.getregistry()) do
        local name = type(key) == "string" and key:match("^provium%.([%w_]+)$")
        if name and not NOT_API[name] and type(mt) == "table" and
            type(rawget(mt, "__index")) == "table" then
            all[name] = all[name] or {}
            table.insert(all[name], rawget(mt, "__index"))
        end
    end
    return all
end

-- {method name = {class, ...}} of every method; with private, also those whose name starts
-- with "_" (tests may call them; they are never suggested).
function P.api_methods(private)
    local by = {}
    for class, tables in pairs(classes()) do
        local seen = {}
        for _, t in ipairs(tables) do
            for k, v in pairs(t) do
                if type(k) == "string" and type(v) == "function" and not seen[k] and
                    (private or k:sub(1, 1) ~= "_") then
                    seen[k] = true
                    by[k] = by[k] or {}
                    table.insert(by[k], class)
                end
            end
        end
    end
    for _, cs in pairs(by) do table.sort(cs) end
    return by
end

-- internal.api_list() -> {"Class:method", ...} sorted: every public method (provium check --api,
-- and the test that holds types/provium.lua to it).
function internal.api_list()
    local out = {}
    for name, cs in pairs(P.api_methods()) do
        for _, c in ipairs(cs) do out[#out + 1] = c .. ":" .. name end
    end
    table.sort(out)
    return out
end

-- The message of a failed call of a method that is not Provium's, with the nearest names.
function P.explain_missing_method(err)
    local name = err:match("attempt to call a nil value %(method '([%w_]+)'%)")
    if not name then return err end
    local methods = P.api_methods()
    if P.api_methods(true)[name] then return err end
    return err .. ": no method '" .. name .. "' in Provium's API" .. P.suggest(name, methods)
end

-- vm:boot's options (boot_options.c reads each by name, so a misspelt one would be ignored).
function P.check_boot_options(who, opts)
    if type(opts) ~= "table" then return end
    local known = internal.boot_options()
    for k in pairs(opts) do
        if type(k) ~= "string" or not known[k] then
            local names = {}
            for n in pairs(known) do if n:sub(1, 1) ~= "_" then names[#names + 1] = n end end
            table.sort(names)
            P.raise(string.format("%s: unknown option %s%s (vm:boot takes %s)", who,
                type(k) == "string" and "'" .. k .. "'" or P.show(k),
                type(k) == "string" and P.suggest(k, names) or "", table.concat(names, ", ")))
        end
    end
end

---------------------------------------------------------------------------------------------
-- provium check: a file's mistakes found without running it (docs/check.md)

-- src with its comments and the insides of its strings blanked (newlines kept), so that a scan
-- for calls sees code only.
local function code_only(src)
    local out, i, n = {}, 1, #src
    local function blank(s) return (s:gsub("[^\n]", " ")) end
    while i <= n do
        local c = src:sub(i, i)
        local long = src:match("^%[(=*)%[", i)
        if src:sub(i, i + 1) == "--" then
            local lvl = src:match("^%-%-%[(=*)%[", i)
            local j
            if lvl then
                local _, e = src:find("]" .. lvl .. "]", i, true)
                j = e or n
            else
                j = (src:find("\n", i, true) or n + 1) - 1
            end
            out[#out + 1] = blank(src:sub(i, j))
            i = j + 1
        elseif long then
            local _, e = src:find("]" .. long .. "]", i, true)
            e = e or n
            out[#out + 1] = "\"" .. blank(src:sub(i + 1, e - 1)) .. "\""
            i = e + 1
        elseif c == "\"" or c == "'" then
            local j = i + 1
            while j <= n and src:sub(j, j) ~= c and src:sub(j, j) ~= "\n" do
                if src:sub(j, j) == "\\" then j = j + 1 end
                j = j + 1
            end
            out[#out + 1] = c .. blank(src:sub(i + 1, j - 1)) .. c
            i = j + 1
        else
            local j = src:find("[%-%[\"']", i) or n + 1
            if j == i then j = i + 1 end
            out[#out + 1] = src:sub(i, j - 1)
            i = j
        end
    end
    return table.concat(out)
end

local STRING_METHODS = {}
for k in pairs(string) do STRING_METHODS[k] = true end
local FILE_METHODS = { read = true, write = true, lines = true, close = true, seek = true,
                       setvbuf = true, flush = true }

-- internal.check_source(path, src) -> {"path:line: message", ...}: a syntax error; a method
-- call that neither Provium's API, Lua's strings and files, nor the file itself defines; an
-- unknown option in a vm:boot{...} table written in the call.
function internal.check_source(path, src)
    local found = {}
    local _, err = load(src, "@" .. path, "t")
    if err then return { err } end
    local code = code_only(src)
    local api, private = P.api_methods(), P.api_methods(true)
    local own = {}
    for name in code:gmatch("function%s+[%w_%.]+:([%a_][%w_]*)") do own[name] = true end
    for name in code:gmatch("([%a_][%w_]*)%s*=%s*function") do own[name] = true end
    local boot = internal.boot_options()
    local line = 1
    for text in (code .. "\n"):gmatch("([^\n]*)\n") do
        for name in text:gmatch(":%s*([%a_][%w_]*)%s*[%(%{\"']") do
            if not (private[name] or own[name] or STRING_METHODS[name] or FILE_METHODS[name]) then
                found[#found + 1] = string.format("%s:%d: no method '%s' in Provium's API%s",
                    path, line, name, P.suggest(name, api))
            end
        end
        for opts in text:gmatch(":%s*boot%s*%(?%s*(%b{})") do
            local depth0 = opts:sub(2, -2):gsub("%b{}", ""):gsub("%b()", "")
            for key in depth0:gmatch("([%a_][%w_]*)%s*=[^=]") do
                if not boot[key] then
                    found[#found + 1] = string.format("%s:%d: vm:boot has no option '%s'%s",
                        path, line, key, P.suggest(key, boot))
                end
            end
        end
        line = line + 1
    end
    return found
end
