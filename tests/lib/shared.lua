-- shared.lua: set-up that the tests of a file share, made by whichever test needs it first, so
-- that each test can run alone (provium -k) or in any order, and a file none of whose tests
-- runs boots nothing.
-- local shared = dofile(here .. "/lib/shared.lua")
local shared = {}

-- shared.once(make) -> a function that calls make() on its first call and returns what it
-- returned on every call after; a make() that raised raises that same error on every call
-- after (a failed set-up fails each test that needs it with its cause).
function shared.once(make)
    local result
    return function()
        result = result or table.pack(pcall(make))
        if not result[1] then error(result[2], 0) end
        return table.unpack(result, 2, result.n)
    end
end

-- shared.vm(name, opts?) -> a function that returns the VM name, booted with opts on its first
-- call.
function shared.vm(name, opts)
    local vm = provium:vm(name)
    return shared.once(function() return vm:boot(opts) end)
end

return shared
