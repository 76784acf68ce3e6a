-- Partitions as grudges (who cannot hear whom) and Jepsen's presets, measured on five VMs: for
-- each preset, who can ping whom is exactly what its grudge says. The random presets draw from
-- the run's seed.
provium:claim({ memory = "3G" })

local lan, nodes
local function cluster()
    if nodes then return lan, nodes end
    lan = provium:bridge("lan")
    nodes = {}
    for i = 1, 5 do nodes[i] = provium:vm("n" .. i):boot({ memory = "256M" }) end
    lan:attach(nodes)
    return lan, nodes
end

-- Who each VM can ping (both ways must pass): {["n1"] = {n2 = true, ...}, ...}, all at once.
local function reach()
    local seen, branches = {}, {}
    for _, a in ipairs(nodes) do
        branches[#branches + 1] = function()
            local cmd = {}
            for _, b in ipairs(nodes) do
                if b ~= a then
                    cmd[#cmd + 1] = string.format("(ping -c 1 -W 1 %s.lan >/dev/null 2>&1 && echo %s) &", b:name(), b:name())
                end
            end
            local out = a:run(table.concat(cmd, " ") .. " wait"):assert_ok().stdout
            seen[a:name()] = {}
            for name in out:gmatch("%S+") do seen[a:name()][name] = true end
        end
    end
    provium:parallel(table.unpack(branches))
    return seen
end

-- What the grudge says: a reaches b when neither ignores the other.
local function expected(g)
    local ignores = {}
    for victim, enemies in pairs(g) do
        for _, e in ipairs(enemies) do ignores[victim:name() .. ">" .. e:name()] = true end
    end
    local want = {}
    for _, a in ipairs(nodes) do
        want[a:name()] = {}
        for _, b in ipairs(nodes) do
            if a ~= b and not ignores[a:name() .. ">" .. b:name()] and not ignores[b:name() .. ">" .. a:name()] then
                want[a:name()][b:name()] = true
            end
        end
    end
    return want
end

local function count(set) local n = 0 for _ in pairs(set) do n = n + 1 end return n end

for _, preset in ipairs({ "random-halves", "random-node", "minority-third", "majorities-ring", "bridge" }) do
    test("preset " .. preset .. ": who can ping whom is what its grudge says", function(t)
        cluster()
        local h = lan:grudge(preset)
        local got, want = reach(), expected(h.grudge)
        h:undo()
        t:eq(got, want, preset .. ": " .. h.text)
        local sizes = {}
        for _, n in ipairs(nodes) do sizes[#sizes + 1] = count(want[n:name()]) end
        table.sort(sizes)
        local shape = table.concat(sizes, " ")
        local shapes = { ["random-halves"] = "1 1 2 2 2", ["random-node"] = "0 3 3 3 3",
                         ["minority-third"] = "0 3 3 3 3", ["majorities-ring"] = "2 2 2 2 2",
                         ["bridge"] = "2 2 2 2 4" }
        t:eq(shape, shapes[preset], "how many peers each VM reaches, sorted")
    end)
end

test("preset primaries: a seeded non-empty subset of the primaries, each alone; the rest together", function(t)
    cluster()
    local prims = { nodes[1], nodes[2], nodes[3] }
    for round = 1, 2 do
        -- a function: asked when the grudge is made, as a nemesis asks for the current leader
        local h = lan:grudge("primaries", { primaries = round == 1 and prims or function() return prims end })
        local got, want = reach(), expected(h.grudge)
        h:undo()
        t:eq(got, want, "primaries: " .. h.text)
        local alone, together = 0, {}
        for _, n in ipairs(nodes) do
            local peers = count(want[n:name()])
            if peers == 0 then alone = alone + 1 else together[#together + 1] = peers end
        end
        t:ok(alone >= 1 and alone <= 3, "one to three primaries alone: " .. alone .. " (" .. h.text .. ")")
        for _, peers in ipairs(together) do t:eq(peers, #together - 1, "the others hear each other: " .. h.text) end
        for _, n in ipairs({ nodes[4], nodes[5] }) do t:ok(count(want[n:name()]) > 0, n:name() .. " is not a primary: never alone") end
    end
    t:error(function() lan:grudge("primaries") end, "primaries needs opts.primaries")
    t:error(function() lan:grudge("primaries", { primaries = { nodes[1] }, vms = { nodes[2], nodes[3] } }) end,
            "primaries: .* is not one of the VMs partitioned")
    t:error(function() lan:grudge("random-node", { vm = nodes }) end, "unknown option \"vm\".*did you mean 'vms'")
end)

test("a grudge of one's own is one-way, and heal ends every grudge", function(t)
    cluster()
    local n1, n2 = nodes[1], nodes[2]
    local h = lan:grudge({ [n1] = { n2 } }) -- n1 does not hear n2
    t:match(h.text, "^n1 ignores n2$")
    t:ne(n2:run("ping -c 1 -W 1 n1.lan").code, 0, "n2's echo requests never reach n1")
    t:ne(n1:run("ping -c 1 -W 1 n2.lan").code, 0, "n2's replies never reach n1")
    lan:grudge("random-halves")
    lan:heal()
    local all = reach()
    for _, n in ipairs(nodes) do t:eq(count(all[n:name()]), 4, n:name() .. " reaches everyone after heal") end
end)

test("bad presets and grudges are refused, naming them", function(t)
    cluster()
    t:error(function() lan:grudge("random-halfs") end, "no preset 'random%-halfs' .*did you mean 'random%-halves'")
    t:error(function() lan:grudge("bridge", { vms = { nodes[1], nodes[2] } }) end, "bridge needs 3 VMs or more")
    t:error(function() lan:grudge(42) end, "a grudge table or a preset name expected")
end)
