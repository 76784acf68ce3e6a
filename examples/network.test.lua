-- Two VMs on a bridge of this file's own: names, a partition, and healing it.
test("guest can ping its bridge peer", function(t)
    local lan = provium:bridge("lan")
    local a = provium:vm("a"):boot()
    local b = provium:vm("b"):boot()
    lan:attach({ a, b })
    a:run("ping -c 1 -W 1 b.lan"):assert_ok()

    local cut = lan:partition({ a }, { b })
    t:ne(a:run("ping -c 1 -W 1 b.lan").code, 0, "partitioned")
    cut:undo()
    a:run("ping -c 1 -W 1 b.lan"):assert_ok()

    local slow = lan:link(b):add_latency(50)
    local r = a:run("ping -c 3 -i 0.2 b.lan"):assert_ok()
    t:ok(tonumber(r.stdout:match("min/avg/max = ([%d.]+)/")) >= 45, r.stdout)
    slow:undo()
end)
