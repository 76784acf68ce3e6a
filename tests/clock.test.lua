-- vm:clock() and the determinism boot options.
test("clock:advance is visible to date in the guest", function(t)
    local vm = provium:vm("clock"):boot()
    local c = vm:clock()
    local before = tonumber(vm:run("date +%s").stdout)
    t:ok(math.abs(c:now() - before) < 5, "now() agrees with date")
    c:advance(86400)
    local after = tonumber(vm:run("date +%s").stdout)
    t:ok(after - before >= 86400 and after - before < 86400 + 10,
        "date moved by a day: " .. (after - before))
    c:set(2000000000)
    t:eq(vm:run("date -u +%Y-%m-%d").stdout, "2033-05-18\n")
    local up0 = tonumber(vm:read_file("/proc/uptime"):match("^(%S+)"))
    c:sleep(0.5)
    local up1 = tonumber(vm:read_file("/proc/uptime"):match("^(%S+)"))
    t:ok(up1 - up0 >= 0.5, "slept 0.5 s of guest time, uptime moved " .. (up1 - up0))
    t:error(function() c:set(-1) end, "bad argument #1 to 'set'")
end)

test("initial_time sets the guest's clock at power-on", function(t)
    local vm = provium:vm("t2030"):boot({ initial_time = "2030-01-01T00:00:00" })
    t:eq(vm:run("date -u +%Y").stdout, "2030\n")
    local e = provium:vm("epoch"):boot({ initial_time = 1900000000 })
    t:eq(e:run("date -u +%Y-%m").stdout, "2030-03\n")
    t:error(function() provium:vm("bad"):boot({ initial_time = "soon" }) end, "initial_time")
end)

test("rng_seed makes the guest's hardware RNG reproducible", function(t)
    local function hwrng(name)
        local vm = provium:vm(name):boot({ rng_seed = 42 })
        vm:run("for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/hwrng ] && break; sleep 0.2; done")
        local r = vm:run("head -c 16 /dev/hwrng | od -An -tx1")
        if r.stdout == "" and not vm:read_file("/proc/modules"):find("virtio_rng") then
            t:skip("the image does not load virtio_rng yet, so /dev/hwrng has no source")
        end
        return r.stdout
    end
    local a, b = hwrng("seed1"), hwrng("seed2")
    t:ne(a, "")
    t:eq(a, b, "same seed, same bytes")
end)
