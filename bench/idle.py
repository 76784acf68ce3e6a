#!/usr/bin/env python3
"""bench/run idle: what an idle VM costs its host (docs/performance.md, "Idle VMs").

The CPU time (utime + stime of /proc/PID/stat, in clock ticks of 10 ms) of a VM's QEMU over
BENCH_IDLE_S (10) seconds, BENCH_IDLE_AFTER_S (3) seconds after it is ready, for:

  1. a Provium VM of the default image, cold-booted (its agent answered, then nothing asked);
  2. the floor: QEMU with the same command line, kernel and initrd, whose /init mounts /proc
     and becomes busybox `sleep` (the same kernel idling, no agent), started as the other
     floor guests are (bench/floor.py);
  3. a fixture clone, restored while BENCH_IDLE_CLONES (32) clones of the same fixture are
     alive: the restore's duration (vm.restore), first and last, and the ticks of every clone
     over the same span (what 32 idle clones cost together).

1 and 2 alternate BENCH_IDLE_ROUNDS (3) times; medians are printed.

usage: bench/idle.py PROVIUM OUTDIR
"""
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from floor import (Guest, events, floor_argv, option, overlay_initrd, provium_argv,  # noqa: E402
                   run_dir, write_report)

ROUNDS = int(os.environ.get("BENCH_IDLE_ROUNDS", "3"))
SPAN_S = float(os.environ.get("BENCH_IDLE_S", "10"))
AFTER_S = float(os.environ.get("BENCH_IDLE_AFTER_S", "3"))
CLONES = int(os.environ.get("BENCH_IDLE_CLONES", "32"))
ACCEL = os.environ.get("BENCH_ACCEL", "tcg")

# The Provium side: IDLE_MODE=vm boots one VM and measures its QEMU; IDLE_MODE=clones restores
# IDLE_CLONES clones of a fixture one after the other (each idle), then measures them all.
# Lines "ticks NAME N" and "pid NAME PID" go to IDLE_OUT.
LUA = r'''
local out = assert(io.open(os.getenv("IDLE_OUT"), "a"))
local after, span = tonumber(os.getenv("IDLE_AFTER")), tonumber(os.getenv("IDLE_S"))
local tag = os.getenv("IDLE_TAG")
provium:claim({ memory = 256 * (tonumber(os.getenv("IDLE_CLONES")) + 3) })

local function ticks(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    local w = {}
    for x in s:gsub("^.-%) ", ""):gmatch("%S+") do w[#w + 1] = x end
    return tonumber(w[12]) + tonumber(w[13])
end

-- The QEMU of a cold-booted VM: its run directory (.../<name>/) is in its command line.
local function qemu_pid(dir_part)
    local p = io.popen("pgrep -f -- '" .. dir_part .. "/[q]mp.sock'")
    local pids = {}
    for l in p:lines() do pids[#pids + 1] = l end
    p:close()
    assert(#pids == 1, "one QEMU for " .. dir_part .. ", found " .. #pids)
    return pids[1]
end

local function measure(pids)
    os.execute("sleep " .. after)
    local a = {}
    for i, pid in ipairs(pids) do a[i] = ticks(pid) end
    os.execute("sleep " .. span)
    local total = 0
    for i, pid in ipairs(pids) do total = total + ((ticks(pid) or a[i]) - a[i]) end
    return total
end

test("idle", function(t)
    if os.getenv("IDLE_MODE") == "vm" then
        local vm = provium:vm(tag):boot()
        vm:run("true"):assert_ok()
        out:write(string.format("ticks vm %d\n", measure({ qemu_pid("/" .. tag) })))
        return
    end
    local function setup(vm) vm:write_file("/root/idle", "1") end
    local clones, pids = {}, {}
    for i = 1, tonumber(os.getenv("IDLE_CLONES")) do
        clones[i] = provium:vm_fixture(tag, setup, { pool = 1 })
        t:eq(clones[i]:read_file("/root/idle"), "1")
    end
    -- every QEMU that maps the fixture's RAM: the clones, and the spare kept for a next one
    local ps = io.popen("pgrep -f 'mem-path=[^ ]*" .. tag .. "'")
    for l in ps:lines() do pids[#pids + 1] = l end
    ps:close()
    out:write(string.format("ticks clones %d %d\n", measure(pids), #pids))
end)
'''


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        w = f.read().rsplit(")", 1)[1].split()
    return int(w[11]) + int(w[12])


def med(v):
    return statistics.median(v) if v else float("nan")


def provium_run(provium, work, mode, tag, evfile):
    outf = os.path.join(work, "idle.out")
    if os.path.exists(outf):
        os.remove(outf)
    lua = os.path.join(work, "idle.lua")
    with open(lua, "w") as f:
        f.write(LUA)
    env = dict(os.environ, IDLE_OUT=outf, IDLE_AFTER=str(AFTER_S), IDLE_S=str(SPAN_S),
               IDLE_TAG=tag, IDLE_MODE=mode, IDLE_CLONES=str(CLONES))
    r = subprocess.run([provium, "--accel", ACCEL, "--events", evfile, lua], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit("bench idle: %s (%s) failed (%d):\n%s" % (lua, mode, r.returncode, r.stdout[-3000:]))
    with open(outf) as f:
        return f.read().split()


def floor_ticks(spawn, initrd, tmp):
    g = Guest(floor_argv(spawn, initrd, tmp, []))
    try:
        g.wait_for(b"IDLE-READY")
        time.sleep(AFTER_S)
        a = ticks(g.p.pid)
        time.sleep(SPAN_S)
        return ticks(g.p.pid) - a
    finally:
        g.stop()


def main():
    provium, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="provium-bench-idle-")
    tmp = run_dir("provium-bench-idle.")
    try:
        spawn = provium_argv(provium, out)
        initrd = option(spawn, "-initrd")
        init = b"#!/bin/sh\nmount -t proc proc /proc\necho IDLE-READY\nexec sleep 2000000000\n"
        idle_initrd = os.path.join(tmp, "initrd-idle")
        overlay_initrd(initrd, [("init", stat.S_IFREG | 0o755, init)], idle_initrd)
        vm, floor = [], []
        for i in range(ROUNDS):
            for who in (("vm", "floor") if i % 2 == 0 else ("floor", "vm")):
                if who == "floor":
                    floor.append(floor_ticks(spawn, idle_initrd, tmp))
                else:
                    tag = "idle%s" % os.urandom(3).hex()
                    w = provium_run(provium, work, "vm", tag, os.path.join(out, "idle-vm.events"))
                    vm.append(int(w[2]))
        tag = "idlefx%s" % os.urandom(3).hex()
        evfile = os.path.join(out, "idle-clones.events")
        try:
            w = provium_run(provium, work, "clones", tag, evfile)
        finally:
            subprocess.run([provium, "cache", "clear", "fixtures", tag], stdout=subprocess.DEVNULL)
        clone_ticks, nclones = int(w[2]), int(w[3])
        rs = [e["duration_ns"] / 1e6 for e in events(provium, evfile)
              if e.get("type") == "vm.restore" and e.get("ok")]
        raw = {"vm_ticks": vm, "floor_ticks": floor, "span_s": SPAN_S, "after_s": AFTER_S,
               "clones": nclones, "clones_ticks": clone_ticks, "restore_ms": rs}
        v, f = med(vm), med(floor)
        lines = [
            "%-40s %10s %-34s %7s %s" % ("idle VMs (QEMU ticks of 10 ms)", "median", "floor (same run)",
                                        "ratio", "target"),
            "%-40s %10s %-34s %7s %-10s %s" % (
                "an idle VM, %g s, %g s after ready (n=%d)" % (SPAN_S, AFTER_S, len(vm)), "%g" % v,
                "raw QEMU, sleep as init: %g (n=%d)" % (f, len(floor)), "%.1fx" % (v / f if f else float("inf")),
                "<= 1.5x", "PASS" if v <= 1.5 * max(f, 1) else "MISS"),
            "%-40s %10s %s" % ("%d clones and their spare, together" % CLONES, "%d" % clone_ticks,
                               "%.1f a QEMU (%d); %.1f %% of a core" % (clone_ticks / max(nclones, 1), nclones,
                                                                   clone_ticks / SPAN_S)),
        ]
        early, late = med(rs[1:8]), med(rs[-8:])
        ok = late <= 1.2 * early
        lines.append("%-40s %10s %-34s %7s %-10s %s" % (
            "restores with %d-%d clones alive (ms)" % (max(CLONES - 8, 0), CLONES - 1), "%.0f" % late,
            "with 1-7 alive: %.0f (the 1st: %.0f)" % (early, rs[0] if rs else float("nan")),
            "%.2fx" % (late / early), "<= 1.2x", "PASS" if ok else "MISS"))
        spares = {}
        for e in events(provium, evfile):
            if e.get("type") == "vm.restore" and e.get("ok"):
                k = e.get("spare") or "none"
                spares[k] = spares.get(k, 0) + 1
        lines.append("  (the clones are restored back to back, each reading one file; spares adopted: %s)" %
                     ", ".join("%d %s" % (n, k) for k, n in sorted(spares.items())))
        raw["restore_spares"] = spares
        write_report(out, "idle", "\n".join(lines) + "\n", raw)
        return 0 if v <= 1.5 * max(f, 1) and ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
