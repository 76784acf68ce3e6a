-- disk.lua: disks, for bench/run (the "Disks" figures of docs/performance.md).
-- One VM of the default image with two disks of the same size: "plain" (QEMU opens its raw
-- file itself, the floor) and "nbd" (served by the file's runner over NBD, where faults live).
-- provium-diskio does the guest's I/O; BENCH_DISK_OUT receives one line per measurement for
-- bench/disk.py:
--   seq-write|seq-read plain|nbd ROUND MB/s     (BENCH_DISK_MIB MiB, 1 MiB O_DIRECT blocks)
--   rand-read plain|nbd ROUND mean p50 p99 max  (BENCH_DISK_READS 4 KiB O_DIRECT reads, us)
--   warm plain|nbd MB/s                         (the untimed first write of the whole disk)
--   lat healthy|faulted|undone I us|-           (one 512-byte O_DIRECT read of sector 0)
-- Each round measures every figure on both disks, one after the other, the order swapped every
-- round, so that a slow spell of the machine hits both alike.
-- The fault toggle ("toggle N" tests) is read from the --events file: four vm:run ops of
-- `diskio lat-read DEV 0 1` on the nbd disk (healthy, healthy, faulted, undone), with
-- d:eio_read{lba = 0, count = 8} between the second and third and f:undo() between the third
-- and fourth. The gap between two ops with nothing between them is the floor of the gaps
-- around the fault and the undo.
local function knob(name, default) return tonumber(os.getenv("BENCH_DISK_" .. name) or "") or default end
local rounds, mib, reads = knob("ROUNDS", 5), knob("MIB", 64), knob("READS", 500)
local toggles, size_mib = knob("TOGGLES", 20), knob("SIZE_MIB", 256)
local out = os.getenv("BENCH_DISK_OUT")
local DISKIO = provium.executable:gsub("provium$", "provium-diskio")

local vm, dev = nil, {}
local disks = {}
local lines = {}

local function record(...)
    lines[#lines + 1] = table.concat({ ... }, " ")
end

local function diskio(args)
    local r = vm:run(args)
    r:assert_ok()
    return r.stdout
end

local function mbs(s)
    local v = s:match("^MB/s ([%d.]+)")
    if not v then error("diskio said: " .. s, 2) end
    return v
end

test("boot", function(t)
    disks.plain = provium:disk("plain", { size = size_mib .. "M" })
    disks.nbd = provium:disk("nbd", { size = size_mib .. "M" })
    vm = provium:vm("disk")
    vm:attach_disk(disks.plain, { plain = true })
    vm:attach_disk(disks.nbd)
    vm:boot()
    vm:write_file("/bin/diskio", { from = DISKIO, mode = "0755" })
    for _, kind in ipairs({ "plain", "nbd" }) do
        dev[kind] = disks[kind]:guest_path()
        -- every block written once, so that no read finds a hole and no measured write
        -- allocates one on the host
        record("warm", kind, mbs(diskio({ "/bin/diskio", "seq-write", dev[kind], tostring(size_mib) })))
    end
    t:ne(dev.plain, dev.nbd)
end)

for r = 1, rounds do
    test("round " .. r, function(t)
        local order = r % 2 == 1 and { "plain", "nbd" } or { "nbd", "plain" }
        for _, what in ipairs({ "seq-write", "seq-read" }) do
            for _, kind in ipairs(order) do
                record(what, kind, r, mbs(diskio({ "/bin/diskio", what, dev[kind], tostring(mib) })))
            end
        end
        for _, kind in ipairs(order) do
            local s = diskio({ "/bin/diskio", "rand-read", dev[kind], tostring(reads), tostring(r) })
            local figures = { s:match("^us ([%d.]+) ([%d.]+) ([%d.]+) ([%d.]+)") }
            t:eq(#figures, 4, "rand-read said: " .. s)
            record("rand-read", kind, r, table.concat(figures, " "))
        end
    end)
end

for i = 1, toggles do
    test("toggle " .. i, function(t)
        local d, argv = disks.nbd, { "/bin/diskio", "lat-read", dev.nbd, "0", "1" }
        local function read(label, ok)
            local r = vm:run(argv)
            if ok then
                r:assert_ok()
            else
                t:ne(r.code, 0, "the read under the fault failed")
                t:contains(r.stderr, "EIO", "with EIO")
            end
            record("lat", label, i, r.stdout:match("^us ([%d.]+)") or "-")
        end
        read("healthy", true)
        read("healthy", true)
        local f = d:eio_read({ lba = 0, count = 8 })
        read("faulted", false)
        f:undo()
        read("undone", true)
        t:eq(f:hits(), 1)
    end)
end

test("done", function(t)
    if out then assert(io.open(out, "w")):write(table.concat(lines, "\n"), "\n"):close() end
    t:error(function() disks.plain:eio_read() end, "attached plain")
end)
