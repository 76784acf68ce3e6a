-- result.lua: a finished command's Result (code, stdout...): r:ok(), r:assert_ok(), r:assert_fail().
local P = ...
local tail, fail = P.tail, P.fail

local Result = {}
Result.__index = Result
Result.__tostring = function(r)
    return string.format("Result(%s: code=%s)", r.cmd, tostring(r.code or ("signal " .. tostring(r.signal))))
end

-- The failure's first line says what happened and what was expected; the output's tails follow.
local function describe(r, expected)
    local how
    if r.timed_out then how = "timed out"
    elseif r.signal then how = "was killed by signal " .. r.signal
    else how = "exited with code " .. tostring(r.code) end
    local s = string.format("vm %s: command %q %s (%s)", r.vm, r.cmd, how, expected)
    if r.stdout ~= "" then s = s .. "\n--- stdout (last lines) ---\n" .. tail(r.stdout, 10) end
    if r.stderr ~= "" then s = s .. "\n--- stderr (last lines) ---\n" .. tail(r.stderr, 10) end
    return s
end

function Result:ok() return self.code == 0 and not self.timed_out end

function Result:assert_ok(msg)
    if not self:ok() then fail(describe(self, "expected exit code 0"), msg) end
    return self
end

function Result:assert_fail(msg)
    if self:ok() then fail(describe(self, "expected a failure"), msg) end
    return self
end

P.Result = Result
