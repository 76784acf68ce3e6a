-- hwrng.lua: the stream a guest's /dev/hwrng reads for a seed (docs/api.md): xoshiro256**
-- seeded through SplitMix64, 8 little-endian bytes a step, computed here to compare with.
local function splitmix64(x)
    x = x + 0x9e3779b97f4a7c15
    local z = x
    z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
    z = (z ~ (z >> 27)) * 0x94d049bb133111eb
    return x, z ~ (z >> 31)
end

local function rotl(x, k) return (x << k) | (x >> (64 - k)) end

-- The first n bytes of seed's stream, as od -tx1 prints them without spaces.
return function(seed, n)
    local s, x = {}, seed
    for i = 1, 4 do x, s[i] = splitmix64(x) end
    local out = {}
    while #out < n do
        local r = rotl(s[2] * 5, 7) * 9
        local t = s[2] << 17
        s[3] = s[3] ~ s[1]; s[4] = s[4] ~ s[2]; s[2] = s[2] ~ s[3]; s[1] = s[1] ~ s[4]
        s[3] = s[3] ~ t; s[4] = rotl(s[4], 45)
        for b = 0, 7 do out[#out + 1] = string.format("%02x", (r >> (8 * b)) & 0xff) end
    end
    return table.concat(out, "", 1, n)
end
