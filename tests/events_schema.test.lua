-- docs/events.schema.json and scripts/check-events: a small run that emits most event types
-- validates, and an unknown type, an extra field and a field of the wrong type each fail.
-- (make check validates every event of the whole suite the same way.)
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local CHECK = here .. "/../scripts/check-events --provium " .. provium.executable .. " "
-- Beside provium, or in build/ for a build without the guest's programs (make check-asan's).
local DISKIO = provium.executable:gsub("provium$", "provium-diskio")
if not io.open(DISKIO) then DISKIO = here .. "/../build/provium-diskio" end

-- The inner suite: boot, exec, syscall, a bridge with impairments and an uplink, a capture, a
-- snapshot, a disk with a fault and a power loss, a fixture, a failing and a skipped test.
local SUITE = [[
test("a VM on a bridge with a disk", function(t)
    local lan = provium:bridge("lan")
    local d = provium:disk("d", { size = "1M" })
    local vm = provium:vm("a")
    vm:attach_disk(d)
    lan:attach(vm)
    vm:boot()
    lan:uplink()
    local c = lan:capture("icmp", { path = DIR .. "/lan.pcap" })
    vm:run("ping -c 1 -W 2 10.77.1.1"):assert_ok()
    c:close()
    lan:drop_rate(0.25):undo()
    lan:link(vm):isolate()
    lan:heal()
    lan:add_latency(1, 0.5):undo()
    lan:bandwidth_limit("10mbit"):undo()
    t:eq(vm:syscall("getpid"), 1)
    vm:pause()
    vm:resume()
    vm:restore(vm:snapshot("s"))
    vm:write_file("/bin/diskio", { from = DISKIO, mode = "0755" })
    d:eio_read({ times = 1 })
    vm:run("diskio read " .. d:guest_path() .. " 0 1")
    d:heal()
    d:power_loss_mode(true)
    vm:run("diskio write " .. d:guest_path() .. " 1 x direct")
    vm:kill()
    lan:remove()
end)

test("a fixture", function(t)
    local vm = provium:vm_fixture("events-schema", function(v) v:write_file("/root/m", "m") end)
    t:eq(vm:read_file("/root/m"), "m")
end)

test("fails", function(t) t:fail("on purpose") end)
test("is skipped", function(t) t:skip("on purpose") end)
]]

-- A msgpack map of string keys to strings, small non-negative integers and booleans.
local function mp_map(fields)
    local out = { string.char(0x80 + #fields) }
    local function str(s) return string.char(0xa0 + #s) .. s end
    for _, kv in ipairs(fields) do
        local k, v = kv[1], kv[2]
        out[#out + 1] = str(k)
        if type(v) == "string" then out[#out + 1] = str(v)
        elseif type(v) == "boolean" then out[#out + 1] = v and "\xc3" or "\xc2"
        else out[#out + 1] = "\xcf" .. string.pack(">I8", v) end
    end
    return table.concat(out)
end

local write = st.write

local dir = st.tmpdir("events-schema")

test("every event of a run with most event types is valid; --stats counts them", function(t)
    write(dir .. "/inner.test.lua", string.format("local DIR, DISKIO = %q, %q\n", dir, DISKIO) .. SUITE)
    st.sh(string.format("cp %s/fixtures/syntax.lua %s/syntax.test.lua", here, dir))
    local out, code = st.run(dir, string.format("-j 1 --events %s/run.mp --junit %s/junit.xml --artifacts %s/art",
                                                dir, dir, dir))
    t:eq(code, 1, out)
    t:match(out, "2 passed, 2 failed, 1 skipped\n$")
    local check, ccode = st.sh(CHECK .. dir .. "/run.mp")
    t:eq(ccode, 0, check)
    t:eq(check, "")
    local stats = "\n" .. st.sh(CHECK .. "--stats " .. dir .. "/run.mp")
    for _, ty in ipairs({ "accel.choose", "pool.budget", "pool.request", "pool.grant", "file.start",
                          "test.start", "test.end", "test.artifacts", "file.end", "vm.spawn", "vm.boot",
                          "vm.exit", "vm.lifecycle", "vm.qmp_event", "vm.snapshot", "vm.restore", "op",
                          "image.resolve", "bridge.create", "bridge.attach", "bridge.uplink",
                          "bridge.impair", "bridge.heal", "bridge.drop_rate", "bridge.latency",
                          "bridge.bandwidth", "bridge.bandwidth_clear", "bridge.remove",
                          "capture.start", "capture.stop", "disk.create", "disk.attach", "disk.fault",
                          "disk.fault_hit", "disk.heal", "disk.power_loss" }) do
        t:match(stats, "\n *%d+ " .. ty:gsub("%p", "%%%0") .. "\n", ty)
    end
    t:match(stats, "\n *%d+ fixture%.[bh]%a+\n", "fixture.build or fixture.hit")
    t:match(stats, "\n *%d+ events, 0 invalid\n$")
end)

test("an unknown type, an extra field and a wrong field type each fail, with the event's line", function(t)
    local head = { { "v", 1 }, { "type", "file.start" }, { "ts", 1700000000000000000 } }
    local function event(extra, ty)
        local f = { head[1], { "type", ty or "file.start" }, head[3] }
        for _, kv in ipairs(extra) do f[#f + 1] = kv end
        return mp_map(f)
    end
    local good = event({ { "file", "a.test.lua" }, { "test", "(file)" } })
    write(dir .. "/good.mp", good .. good)
    local out, code = st.sh(CHECK .. dir .. "/good.mp")
    t:eq(code, 0, out)
    t:eq(out, "")
    for _, case in ipairs({
        { "unknown", event({ { "file", "a" } }, "file.nosuch"), "file.nosuch: type: 'file.nosuch' is not a type the schema knows\n" },
        { "extra", event({ { "file", "a" }, { "test", "t" }, { "color", "red" } }),
          "file.start: Additional properties are not allowed %('color' was unexpected%)" },
        { "wrongtype", event({ { "file", true }, { "test", "t" } }), "file.start: file: True is not of type 'string'" },
        { "missing", event({ { "file", "a" } }), "file.start: 'test' is a required property" },
    }) do
        write(dir .. "/" .. case[1] .. ".mp", good .. case[2] .. good)
        out, code = st.sh(CHECK .. dir .. "/" .. case[1] .. ".mp")
        t:eq(code, 1, case[1] .. ": " .. out)
        t:match(out, "^[^\n]*/" .. case[1] .. "%.mp: line 2: " .. case[3], case[1])
        t:eq(select(2, out:gsub("\n", "")), 1, case[1] .. ": one line per bad event\n" .. out)
    end
    -- A stream cut short is a problem too, after the events before it were checked.
    write(dir .. "/cut.mp", good .. good:sub(1, 5))
    out, code = st.sh(CHECK .. dir .. "/cut.mp")
    t:eq(code, 1, out)
    t:match(out, "cut%.mp: line 2: %?: provium events exited 1: [^\n]*offset %d+")
end)
