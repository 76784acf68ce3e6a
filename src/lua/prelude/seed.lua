-- seed.lua: the run's seed (--seed N, drawn at the start when not given) and what derives from
-- it by stable names: provium.seed() and provium.random() for a test's own choices, and the
-- default rng_seed of bridges and disks (P.derived_seed). Two runs with one seed make the same
-- choices; a test's stream starts afresh at each test, so -k and the order change nothing.
local P = ...
local provium, internal = P.provium, P.internal
local raise = P.raise

-- The seed of (kind, name) in this file under the run's seed.
function P.derived_seed(kind, name)
    return internal.derive_seed(internal.file_name(), kind, name)
end

-- A QEMU VM's /dev/hwrng reads the stream of its rng_seed (src/agent/hwrng.c): the one it
-- was booted or saved with, else one derived from (file, "vm", its name), given once it is up.
-- A vm.hwrng event says which. A local VM's /dev is the host's: it has none.
function P.seed_hwrng(vm, given)
    if vm:vmm() == "local" then return end
    local seed = given
    if seed == nil then
        seed = P.derived_seed("vm", vm:name())
        local ok, err = vm:_hwrng(seed)
        if not ok then raise(string.format("vm %s: /dev/hwrng: %s", vm:name(), tostring(err))) end
    end
    internal.event("vm.hwrng", { vm = vm:name(), seed = seed, derived = given == nil })
end

-- provium.seed(): the running test's seed (the file's at its top level).
function provium.seed()
    return internal.derive_seed(internal.file_name(), "test", P.current_test or "")
end

-- xoshiro256**, seeded through SplitMix64 (Lua's integers wrap as the algorithm wants).
local function splitmix(x)
    x = x + 0x9e3779b97f4a7c15
    local z = x
    z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
    z = (z ~ (z >> 27)) * 0x94d049bb133111eb
    return x, z ~ (z >> 31)
end

local function rotl(x, k) return (x << k) | (x >> (64 - k)) end

local function new_stream(seed)
    local s, x = {}, seed
    for i = 1, 4 do x, s[i] = splitmix(x) end
    return s
end

local function next64(s)
    local result = rotl(s[2] * 5, 7) * 9
    local t = s[2] << 17
    s[3] = s[3] ~ s[1]
    s[4] = s[4] ~ s[2]
    s[2] = s[2] ~ s[3]
    s[1] = s[1] ~ s[4]
    s[3] = s[3] ~ t
    s[4] = rotl(s[4], 45)
    return result
end

-- A stream for a purpose ("nemesis", ...): its own, from (kind, name) under the run's seed.
function P.stream(kind, name)
    local s = new_stream(P.derived_seed(kind, name))
    return function() return (next64(s) >> 11) * 0x1p-53 end
end

-- provium.random(), provium.random(m), provium.random(m, n): as math.random, from the running
-- test's own stream (provium.seed()'s).
function provium.random(m, n)
    if m == provium then m, n = n, select(3, m, n) end -- provium:random(...) too
    local key = P.current_test or ""
    if not P.test_stream or P.test_stream_key ~= key then
        P.test_stream, P.test_stream_key = new_stream(provium.seed()), key
    end
    local x = next64(P.test_stream)
    P.draws, P.draw_digest = (P.draws or 0) + 1, ((P.draw_digest or 0xcbf29ce484222325) ~ x) * 0x100000001b3
    local u = (x >> 11) * 0x1p-53
    if m == nil then return u end
    if n == nil then m, n = 1, m end
    if math.type(m) ~= "integer" or math.type(n) ~= "integer" or n < m or n - m >= 1 << 53 then
        raise("provium.random(m, n): integers m <= n, less than 2^53 apart, got " ..
              tostring(m) .. ", " .. tostring(n))
    end
    return m + math.floor(u * (n - m + 1))
end

-- After each test that drew: how many draws and their digest, a seed.draws event, so that two
-- runs with one seed can be compared (--check-determinism).
P.after_test[#P.after_test + 1] = function()
    if (P.draws or 0) > 0 then
        internal.event("seed.draws", { draws = P.draws, digest = string.format("%016x", P.draw_digest) })
    end
    P.draws, P.draw_digest = 0, nil
end
