-- types/provium.lua, the LuaLS annotations of the API, against the API itself: every public
-- method (provium check --api) has an annotation, every annotation a method, and every class
-- its ---@class. No VM boots here.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local root = here .. "/.."

local function annotated()
    local text = assert(st.read(root .. "/types/provium.lua"), "types/provium.lua is missing")
    local methods, classes = {}, {}
    for c, m in text:gmatch("\nfunction ([%w_]+):([%w_]+)%(") do methods[c .. ":" .. m] = true end
    for c in text:gmatch("%-%-%-@class ([%w_]+)") do classes[c] = true end
    return text, methods, classes
end

local function api()
    local out, code = st.sh(provium.executable .. " check --api")
    assert(code == 0, "provium check --api failed: " .. out)
    local list = {}
    for line in out:gmatch("[^\n]+") do list[line] = true end
    return list
end

test("every public method has an annotation, and every annotation a method", function(t)
    local _, methods, classes = annotated()
    local missing, extra = {}, {}
    for m in pairs(api()) do
        if not methods[m] then missing[#missing + 1] = m end
        if not classes[m:match("^[^:]+")] then missing[#missing + 1] = "---@class " .. m:match("^[^:]+") end
    end
    local real = api()
    for m in pairs(methods) do if not real[m] then extra[#extra + 1] = m end end
    table.sort(missing)
    table.sort(extra)
    t:eq(table.concat(missing, " "), "", "methods with no annotation in types/provium.lua")
    t:eq(table.concat(extra, " "), "", "annotations of methods the API does not have")
end)

test("the annotations are Lua that loads, and name the globals provium and test", function(t)
    local text = annotated()
    t:ok(load(text, "@types/provium.lua", "t"))
    t:match(text, "^%-%-%-@meta")
    t:match(text, "\nfunction test%(name, fn%) end")
    t:match(text, "\n%-%-%-@class provium\nprovium = {}")
end)

test("the project's .luarc.json points LuaLS at the annotations", function(t)
    local text = assert(st.read(root .. "/.luarc.json"), ".luarc.json is missing")
    t:match(text, '"workspace.library"%s*:%s*%[%s*"types"%s*%]')
    t:match(text, '"runtime.version"%s*:%s*"Lua 5.4"')
end)
