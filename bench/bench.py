#!/usr/bin/env python3
"""bench.py: Provium's benchmark, each figure beside its floor measured in the same run.

Called by bench/run (see there and docs/performance.md):

    bench.py PROVIUM IMAGE_DIR OUT_DIR

1. boot to agent-ready (vm.boot duration_ns of bench/boot.lua, one fresh provium per boot)
   beside the raw floor: Provium's own QEMU command line (the argv of the vm.spawn event of
   one uncounted boot, minus its QMP socket and agent ports: bench/floor.py), kernel and
   initrd, with /init replaced by a static program printing a marker; timed from QEMU's start
   to the marker on its stdout. The two are interleaved, BENCH_BOOTS times each.
2. vm:read_file of 4 KiB (op events of bench/roundtrip.lua) beside a bare echo over a
   virtio-serial port (busybox cat in a guest with no agent) and a bare C responder that
   reads the same 4 KiB file (bench/guest-floor.c), same kernel and modules.
3. vm:run("true") beside fork+exec+wait of /bin/true timed inside that floor guest.
   Figures 2 and 3 are measured BENCH_ROUNDS times, the agent and the floor guest alternating.
4. (BENCH_XFER=0 skips 4 and 5) write_file/read_file of 64 MiB through Lua strings (MB/s, op
   events of bench/transfer.lua) beside the raw throughput of a virtio-serial port, measured in
   each floor guest: the bare C responder pushes (or swallows) 64 MiB from memory, the host
   reads (or writes) the unix-socket chardev as fast as it can.
5. 256 MiB each way through {to=host}/{from=host} and through Lua strings, with the peak RSS
   (VmHWM) of the runner process and of the agent after each.
6. (BENCH_BUSY=0 skips it) stat and read_file 4 KiB on the main connection while 0, 1 and 4
   workers loop read_file + run (bench/busy.lua).
7. (BENCH_PEERS=0 skips it) the peers, multiplexed ssh (dropbear) and qemu-guest-agent, in a
   bench-only image (bench/peers.py), beside figures 2 and 3.
8-11. (BENCH_FIXTURE=0 skips them; `bench.py PROVIUM IMAGE_DIR OUT_DIR fixture` runs only
   them) fixtures and snapshots (bench/fixture.lua): a fixture's restore beside cold boots of
   the same run, snapshot saves, the copying restore (a clone's snapshot, RAM in the stream),
   and the memory of clones running at once beside cold-booted VMs (smaps_rollup).
12. (BENCH_DISK=0 skips it; `bench.py PROVIUM IMAGE_DIR OUT_DIR disk` runs only it) disks
   (bench/disk.lua, bench/disk.py): a Provium disk (NBD) beside a plain one in the same VM,
   sequential O_DIRECT throughput and random 4 KiB latency, and the time a fault takes to
   toggle in.

Events are read with `provium events FILE --json`. Everything is a median; raw numbers go to
OUT_DIR/raw.json, the table to OUT_DIR/table.txt.
"""
import collections, json, os, select, shutil, socket, stat, statistics, struct, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from floor import (Guest, events, floor_argv, option, overlay_initrd, provium_argv,  # noqa: E402
                   run_dir)
import disk  # noqa: E402
ENV = os.environ
BOOTS = int(ENV.get("BENCH_BOOTS", "9"))
# the boots of each variant (hotplug = false; kernel "lean"), each beside its own floor
VARIANTS = [v for v in ENV.get("BENCH_BOOT_VARIANTS", "nohotplug,lean").split(",") if v]
VARIANT_BOOTS = int(ENV.get("BENCH_VARIANT_BOOTS", "5"))
ROUNDS = int(ENV.get("BENCH_ROUNDS", "3"))
READS = int(ENV.get("BENCH_READS", "200"))
RUNS = int(ENV.get("BENCH_RUNS", "100"))
ECHOES = int(ENV.get("BENCH_ECHOES", "300"))
XFER = ENV.get("BENCH_XFER", "1") != "0"
XFER_REPS = int(ENV.get("BENCH_XFER_REPS", "5"))          # 64 MiB each way, provium
FLOOR_XFER_REPS = int(ENV.get("BENCH_FLOOR_XFER_REPS", "2"))  # per round, raw port
XFER_BYTES = 64 << 20
BUSY = ENV.get("BENCH_BUSY", "1") != "0"
BUSY_OPS = int(ENV.get("BENCH_BUSY_OPS", "200"))
PEERS = ENV.get("BENCH_PEERS", "1") != "0"
PEER_OPS = int(ENV.get("BENCH_PEER_OPS", "50"))
FIXTURE = ENV.get("BENCH_FIXTURE", "1") != "0"
FX_BOOTS = int(ENV.get("BENCH_FX_BOOTS", "5"))          # cold boots, each snapshotted once
FX_RESTORES = int(ENV.get("BENCH_FX_RESTORES", "9"))    # fixture restores
FX_COPIES = int(ENV.get("BENCH_FX_COPIES", "5"))        # copying restores
FX_CLONES = int(ENV.get("BENCH_FX_CLONES", "8"))        # clones running at once
FX_COLD = int(ENV.get("BENCH_FX_COLD", "2"))            # cold-booted VMs running at once
FX_POOL = int(ENV.get("BENCH_FX_POOL", "4"))            # spares of the pooled back-to-back series
DISK = ENV.get("BENCH_DISK", "1") != "0"
QEMU = ENV.get("PROVIUM_QEMU") or "qemu-system-x86_64"


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# ---- measurements ----

def provium_run(provium, luafile, evfile, env=None):
    e = dict(ENV, **(env or {}))
    r = subprocess.run([provium, "--accel", "tcg", "--events", evfile, luafile], env=e,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace"))
        sys.exit("bench: %s failed (exit %d)" % (luafile, r.returncode))
    return events(provium, evfile)


def boot_provium(provium, out, i, env=None, tag=""):
    """(ms from vm:boot() to agent-ready, the guest's clock in ms just after it)"""
    clock = os.path.join(out, "boot%s-%d.guest-clock" % (tag, i))
    ev = provium_run(provium, os.path.join(HERE, "boot.lua"), os.path.join(out, "boot%s-%d.events" % (tag, i)),
                     dict(env or {}, BENCH_BOOT_CLOCK=clock))
    b = [e for e in ev if e.get("type") == "vm.boot" and e.get("ok")]
    if len(b) != 1:
        sys.exit("bench: boot.lua: expected one ok vm.boot event, got %r" % b)
    with open(clock) as f:
        g = f.read().strip()
    # host time from the vm:boot() call to QEMU's spawn (events carry wall-clock ts)
    sp = [e for e in ev if e.get("type") == "vm.spawn"]
    prespawn = (sp[0]["ts"] - (b[0]["ts"] - b[0]["duration_ns"])) / 1e6 if sp else None
    return b[0]["duration_ns"] / 1e6, int(g) / 1e6 if g else None, prespawn


def boot_floor(spawn, initrd, tmp, kernel=None, append=None):
    """(ms from QEMU's start to the init marker, the guest's clock in ms at init start)"""
    g = Guest(floor_argv(spawn, initrd, tmp, ["provium.0"], kernel=kernel, append=append))
    try:
        guest = g.wait_for(b"PROVIUM-INIT-MARK")
        return (g.t_mark - g.t0) * 1000, int(guest) / 1e6
    finally:
        g.stop()


VARIANT_NAMES = {"nohotplug": "hotplug = false", "lean": 'kernel "lean"'}
VARIANT_FLOORS = {"nohotplug": "the same, acpi=noirq: %.0f ms", "lean": "the same, lean kernel: %.0f ms"}


def lean_image(provium):
    """(initrd, vmlinux) of tests/images/lean.lua, built first when needed (5 min the first time)."""
    env = dict(ENV, PROVIUM_IMAGE_PATH=os.path.join(HERE, "..", "tests", "images"))
    r = subprocess.run([provium, "image", "build", "lean"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    last = r.stdout.strip().splitlines()[-1:] or [""]
    parts = last[0].split()
    if r.returncode != 0 or len(parts) != 3:
        sys.exit("bench: provium image build lean failed: %s" % (r.stderr.strip()[-400:]))
    return os.path.join(parts[2], "initrd"), os.path.join(parts[2], "vmlinux"), env


def boot_variants(provium, out, spawn, boot_initrd, gfb, exe, tmp):
    """{variant: {"provium_ms": [...], "floor_ms": [...]}}: boots with hotplug = false beside
    the floor with the same acpi=noirq, and of the lean image beside the floor of the lean
    kernel, interleaved."""
    res = {}
    append = option(spawn, "-append")
    for v in VARIANTS:
        if v == "nohotplug":
            env, floor = {"BENCH_BOOT_HOTPLUG": "0"}, {"initrd": boot_initrd, "append": append + " acpi=noirq"}
        elif v == "lean":
            log("boot variants: the lean image (the first build takes about five minutes)")
            initrd, vmlinux, lenv = lean_image(provium)
            lean_boot = os.path.join(tmp, "initrd-lean-boot")
            overlay_initrd(initrd, [("init", exe, gfb)], lean_boot)
            env = {"BENCH_IMAGE": "lean", "PROVIUM_IMAGE_PATH": lenv["PROVIUM_IMAGE_PATH"]}
            floor = {"initrd": lean_boot, "kernel": vmlinux}
        else:
            sys.exit("bench: BENCH_BOOT_VARIANTS: unknown variant %r (nohotplug, lean)" % v)
        d = res[v] = {"provium_ms": [], "floor_ms": []}
        for i in range(VARIANT_BOOTS):
            for who in (("provium", "floor") if i % 2 == 0 else ("floor", "provium")):
                if who == "provium":
                    d["provium_ms"].append(boot_provium(provium, out, i, env, "-" + v)[0])
                else:
                    d["floor_ms"].append(boot_floor(spawn, floor["initrd"], tmp, floor.get("kernel"),
                                                    floor.get("append"))[0])
        log("boot %s: provium %.0f ms, floor %.0f ms" % (v, med(d["provium_ms"]), med(d["floor_ms"])))
    return res


def rt_provium(provium, out, r, guest_floor):
    gd = os.path.join(out, "roundtrip-%d.guest-durations" % r)
    fl = os.path.join(out, "roundtrip-%d.invm-floor" % r)
    ev = provium_run(provium, os.path.join(HERE, "roundtrip.lua"),
                     os.path.join(out, "roundtrip-%d.events" % r),
                     {"BENCH_READS": str(READS), "BENCH_RUNS": str(RUNS), "BENCH_GUEST_DURATIONS": gd,
                      "BENCH_GUEST_FLOOR": guest_floor, "BENCH_INVM_FLOOR": fl})
    ops = lambda name: [e["duration_ns"] / 1e6 for e in ev
                        if e.get("type") == "op" and e.get("op") == name and e.get("ok")]
    tests = {e["test"]: e["duration_ns"] / 1e6 for e in ev if e.get("type") == "test.end"}
    reads, execs = ops("read_file")[-READS:], ops("exec")[-RUNS:]
    if len(reads) != READS or len(execs) != RUNS:
        sys.exit("bench: roundtrip.lua: %d read_file / %d exec ops, expected %d / %d"
                 % (len(reads), len(execs), READS, RUNS))
    with open(gd) as f:
        guest = [float(x) * 1000 for x in f.read().split()]
    with open(fl) as f:
        invm = [int(x) / 1e6 for x in f.read().split()]
    return {"read_file_ms": reads, "exec_ms": execs, "exec_guest_ms": guest, "invm_forkexec_sh_ms": invm,
            "read_file_batch_mean_ms": tests["read_file 4 KiB"] / READS,
            "exec_batch_mean_ms": tests["run true"] / RUNS}


def ops_by_test(ev):
    """{(test, vm, op): [ms, ...]} of the ok op events, each under the test it ran in."""
    by, test = {}, None
    for e in ev:
        if e.get("type") == "test.start":
            test = e.get("test")
        elif e.get("type") == "op" and e.get("ok"):
            by.setdefault((test, e["vm"], e["op"]), []).append(e["duration_ns"] / 1e6)
    return by


def xfer_provium(provium, out):
    hwm = os.path.join(out, "transfer.hwm")
    ev = provium_run(provium, os.path.join(HERE, "transfer.lua"), os.path.join(out, "transfer.events"),
                     {"BENCH_XFER_REPS": str(XFER_REPS), "BENCH_XFER_OUT": hwm})
    by = ops_by_test(ev)
    tests = {e["test"]: e["duration_ns"] / 1e6 for e in ev if e.get("type") == "test.end"}
    # [:XFER_REPS]: that test also reads /proc/1/status at its end
    res = {"write_64m_ms": by.get(("write_file 64 MiB", "xfer", "write_file"), [])[:XFER_REPS],
           "read_64m_ms": by.get(("read_file 64 MiB", "xfer", "read_file"), [])[:XFER_REPS],
           "write_256m_from_host_ms": by.get(("256 MiB through host files", "xfer", "write_file"), []),
           "read_256m_to_host_ms": by.get(("256 MiB through host files", "xfer", "read_file"), [])[:1],
           "write_256m_string_ms": by.get(("256 MiB through Lua strings", "xfer", "write_file"), []),
           "read_256m_string_ms": by.get(("256 MiB through Lua strings", "xfer", "read_file"), [])[:1],
           "write_64m_devnull_ms": by.get(("write_file 64 MiB into /dev/null", "xfer", "write_file"), []),
           "write_64m_batch_mean_ms": tests["write_file 64 MiB"] / XFER_REPS,
           "read_64m_batch_mean_ms": tests["read_file 64 MiB"] / XFER_REPS}
    if len(res["write_64m_ms"]) != XFER_REPS or len(res["read_64m_ms"]) != XFER_REPS:
        sys.exit("bench: transfer.lua: %d / %d 64 MiB ops, expected %d" % (
            len(res["write_64m_ms"]), len(res["read_64m_ms"]), XFER_REPS))
    with open(hwm) as f:
        kv = dict(l.strip().split("=", 1) for l in f if "=" in l)
    res["dd_tmpfs_64m_ms"] = [float(v) for v in kv.pop("dd_tmpfs_64m_ms", "").split(",") if v]
    res["hwm_kb"] = {k: int(v) for k, v in kv.items()}
    return res


def busy_provium(provium, out):
    ev = provium_run(provium, os.path.join(HERE, "busy.lua"), os.path.join(out, "busy.events"),
                     {"BENCH_BUSY_OPS": str(BUSY_OPS)})
    by = ops_by_test(ev)
    res = {}
    for test in ("idle", "1 busy", "4 busy"):
        res[test] = {"stat_ms": by.get((test, "busy", "stat"), []),
                     "read_file_ms": by.get((test, "busy", "read_file"), []),
                     "worker_loops": sum(len(v) for (t, vm, op), v in by.items()
                                         if t == test and vm != "busy" and op == "exec")}
        if len(res[test]["stat_ms"]) != BUSY_OPS or len(res[test]["read_file_ms"]) != BUSY_OPS:
            sys.exit("bench: busy.lua: test %r: %d stat / %d read_file ops on the main connection" % (
                test, len(res[test]["stat_ms"]), len(res[test]["read_file_ms"])))
    return res


def events_by_test(ev):
    """{test: [events emitted while it ran]}, the test.end event included."""
    by, test = {}, None
    for e in ev:
        if e.get("type") == "test.start":
            test = e.get("test")
        by.setdefault(test, []).append(e)
    return by


def fixture_provium(provium, out):
    """Figures 8-11: bench/fixture.lua with a fixture of its own (a new name each run, removed
    from the cache afterwards), so nothing built earlier is reused."""
    name = "benchfx" + os.urandom(4).hex()
    mem = os.path.join(out, "fixture.mem")
    env = {"BENCH_FX_NAME": name, "BENCH_FX_OUT": mem, "BENCH_FX_BOOTS": str(FX_BOOTS),
           "BENCH_FX_RESTORES": str(FX_RESTORES), "BENCH_FX_COPIES": str(FX_COPIES),
           "BENCH_FX_CLONES": str(FX_CLONES), "BENCH_FX_COLD": str(FX_COLD), "BENCH_FX_POOL": str(FX_POOL)}
    if os.path.exists(mem):
        os.remove(mem)
    try:
        ev = provium_run(provium, os.path.join(HERE, "fixture.lua"), os.path.join(out, "fixture.events"), env)
    finally:
        subprocess.run([provium, "cache", "clear", "fixtures", name], stdout=subprocess.DEVNULL)
    by = events_by_test(ev)
    ms = lambda e: e["duration_ns"] / 1e6

    def of(test, typ, ok=True):
        return [e for e in by.get(test, []) if e.get("type") == typ and (not ok or e.get("ok"))]

    def test_ms(test):
        return [ms(e) for e in of(test, "test.end", ok=False)][:1]

    def first_exec(test):
        return [ms(e) for e in of(test, "op", ok=False) if e.get("op") == "exec"][:1]

    def phases(e):
        p = {k[:-3] + "_ms": e[k] / 1e6 for k in ("duration_ns", "spawned_ns", "qmp_ns", "running_ns",
                                                  "answered_ns") if k in e}
        p["spare"] = e.get("spare", "")  # the spare adopted: warm, loading, waiting, or none
        return p

    res = {"name": name, "cold_boot_ms": [], "cold_snapshot_ms": [], "cold_snapshot_ram_bytes": [],
           "cold_snapshot_state_bytes": [], "restore": [], "restore_call_ms": [], "back": [],
           "back_call_ms": [], "pooled": [], "pooled_call_ms": [], "clone_first_exec_ms": [],
           "cold_first_exec_ms": [], "copying": [],
           "copying_errors": []}
    for i in range(1, max(FX_BOOTS, FX_RESTORES) + 1):
        if i <= FX_BOOTS:
            res["cold_boot_ms"] += [ms(e) for e in of("cold boot %d" % i, "vm.boot")]
            for e in of("cold use %d" % i, "vm.snapshot"):
                res["cold_snapshot_ms"].append(ms(e))
                res["cold_snapshot_ram_bytes"].append(e["ram_bytes"])
                res["cold_snapshot_state_bytes"].append(e["state_bytes"])
        if i <= FX_RESTORES:
            res["restore"] += [phases(e) for e in of("fixture restore %d" % i, "vm.restore")]
            res["restore_call_ms"] += test_ms("fixture restore %d" % i)
            res["back"] += [phases(e) for e in of("back-to-back restore %d" % i, "vm.restore")]
            res["back_call_ms"] += test_ms("back-to-back restore %d" % i)
            res["pooled"] += [phases(e) for e in of("pooled restore %d" % i, "vm.restore")]
            res["pooled_call_ms"] += test_ms("pooled restore %d" % i)
            res["clone_first_exec_ms"] += first_exec("fixture use %d" % i)
        if i <= FX_BOOTS:
            res["cold_first_exec_ms"] += first_exec("cold use %d" % i)
    b = {t: of("build", t) for t in ("vm.snapshot", "vm.boot", "vm.restore")}
    b["fixture.build"] = [e for e in of("build", "fixture.build", ok=False) if not e.get("error")]
    res["build_ms"] = [ms(e) for e in b["fixture.build"]]
    res["build_boot_ms"] = [ms(e) for e in b["vm.boot"]]
    res["build_save_ms"] = [ms(e) for e in b["vm.snapshot"]]
    res["build_save_state_bytes"] = [e["state_bytes"] for e in b["vm.snapshot"]]
    res["first_restore"] = [phases(e) for e in b["vm.restore"]]
    cs = of("copying snapshot", "vm.snapshot")
    res["clone_snapshot_ms"] = [ms(e) for e in cs]
    res["clone_snapshot_state_bytes"] = [e["state_bytes"] for e in cs]
    for i in range(1, FX_COPIES + 1):
        for e in of("copying restore %d" % i, "vm.restore", ok=False):
            if e.get("ok"):
                res["copying"].append(phases(e))
            else:
                res["copying_errors"].append(e.get("error", "").strip())
    if len(res["cold_boot_ms"]) != FX_BOOTS or len(res["restore"]) != FX_RESTORES or \
            len(res["back"]) != FX_RESTORES or \
            len(res["cold_snapshot_ms"]) != FX_BOOTS or len(res["build_save_ms"]) != 1:
        sys.exit("bench: fixture.lua: %d cold boots, %d snapshots, %d + %d restores, %d build saves; "
                 "expected %d, %d, %d + %d, 1" % (
                     len(res["cold_boot_ms"]), len(res["cold_snapshot_ms"]), len(res["restore"]),
                     len(res["back"]), len(res["build_save_ms"]), FX_BOOTS, FX_BOOTS, FX_RESTORES,
                     FX_RESTORES))
    res["mem"] = []
    with open(mem) as f:
        for l in f:
            w = l.split()
            if not w:
                continue
            if w[0] == "copying_error":
                res["copying_errors"].append(l.split(None, 1)[1].strip())
                continue
            kb = dict(x.split("=") for x in w[3:])
            res["mem"].append({"kind": w[0], "vm": w[1], "pid": int(w[2]),
                               **{k: int(v) for k, v in kb.items()}})
    return res


def fixture_report(x, head, row, info):
    """(table lines, misses, summary) of figures 8-11."""
    pick = lambda key, k: [d[k] for d in x[key]]
    boot = med(x["cold_boot_ms"])
    rs = med(pick("restore", "duration_ms"))
    call = med(x["restore_call_ms"]) if x["restore_call_ms"] else float("nan")
    ph = {k: med(pick("restore", k)) for k in ("spawned_ms", "qmp_ms", "running_ms", "answered_ms")
          if all(k in d for d in x["restore"])}
    snap, save = med(x["cold_snapshot_ms"]), x["build_save_ms"][0]
    mib = lambda kb: kb / 1024
    sm = {"cold_boot_ms": boot, "restore_ms": rs, "restore_call_ms": call, "restore_vs_boot": boot / rs,
          "restore_phases_ms": ph, "cold_snapshot_ms": snap, "build_save_ms": save,
          "build_ms": x["build_ms"][0] if x["build_ms"] else None}
    bb = med(pick("back", "duration_ms"))
    bb_call = med(x["back_call_ms"]) if x["back_call_ms"] else float("nan")
    bph = {k: med(pick("back", k)) for k in ("spawned_ms", "qmp_ms", "running_ms", "answered_ms")
           if all(k in d for d in x["back"])}
    sm.update({"back_to_back_restore_ms": bb, "back_to_back_call_ms": bb_call,
               "back_to_back_phases_ms": bph, "back_to_back_vs_boot": boot / bb})
    pl_call = med(x["pooled_call_ms"]) if x["pooled_call_ms"] else float("nan")
    fe_clone = med(x["clone_first_exec_ms"]) if x["clone_first_exec_ms"] else float("nan")
    fe_cold = med(x["cold_first_exec_ms"]) if x["cold_first_exec_ms"] else float("nan")
    sm.update({"clone_first_exec_ms": fe_clone, "cold_first_exec_ms": fe_cold})
    spares = lambda key: ", ".join("%d %s" % (n, k) for k, n in sorted(
        collections.Counter(d.get("spare") or "none" for d in x[key]).items()))
    sm.update({"pooled_call_ms": pl_call, "restore_spares": spares("restore"),
               "back_to_back_spares": spares("back"), "pooled_spares": spares("pooled")})
    misses = [rs > 150, boot / rs < 15, bb > 150, boot / bb < 15, call > 20, snap > 20, save > 100]
    n_r, n_b = len(x["restore"]), len(x["cold_boot_ms"])
    lines = [
        "",
        head % ("fixtures and snapshots", "median", "peer (same run)", "ratio", "target", ""),
        row("fixture restore, spaced (n=%d)" % n_r, "%.0f ms" % rs, "cold boot: %.0f ms (n=%d)" % (boot, n_b),
            "%.1fx" % (boot / rs), "<= 150 ms", rs <= 150),
        row("  spaced restore vs cold boot", "", "", "", ">= 15x faster", boot / rs >= 15),
        row("fixture restore, back to back (n=%d)" % len(x["back"]), "%.0f ms" % bb,
            "cold boot: %.0f ms" % boot, "%.1fx" % (boot / bb), "<= 150 ms", bb <= 150),
        row("  back-to-back restore vs cold boot", "", "", "", ">= 15x faster", boot / bb >= 15),
        row("whole provium:vm_fixture() call, spaced", "%.0f ms" % call,
            "spares adopted: %s" % spares("restore"), "", "<= 20 ms", call <= 20),
        info("  the same, back to back", "%.0f ms" % bb_call, "spares adopted: %s" % spares("back")),
        info("  back to back, pool = %d" % FX_POOL, "%.0f ms" % pl_call,
             "spares adopted: %s (the call: key, cache lookup and check, restore)" % spares("pooled")),
        info("a clone's first vm:run(\"true\")", "%.0f ms" % fe_clone,
             "a cold-booted VM's first: %.0f ms" % fe_cold, "%.1fx" % (fe_clone / fe_cold)),
        row("vm:snapshot(), cold-booted VM (n=%d)" % len(x["cold_snapshot_ms"]), "%.0f ms" % snap,
            "RAM copied %.0f MiB, state %.2f MiB" % (med(x["cold_snapshot_ram_bytes"]) / 2**20,
                                                   med(x["cold_snapshot_state_bytes"]) / 2**20),
            "", "<= 20 ms", snap <= 20),
        row("fixture build's save (n=1)", "%.0f ms" % save,
            "state %.2f MiB, RAM in place" % (x["build_save_state_bytes"][0] / 2**20),
            "", "<= 100 ms", save <= 100),
    ]
    if x["copying"]:
        cp = med(pick("copying", "duration_ms"))
        sm["copying_restore_ms"] = cp
        sm["copying_phases_ms"] = {k: med(pick("copying", k)) for k in ("spawned_ms", "qmp_ms", "running_ms")
                                   if all(k in d for d in x["copying"])}
        lines.append(info("copying restore (n=%d)" % len(x["copying"]), "%.0f ms" % cp,
                          "fixture restore: %.0f ms" % rs, "%.1fx" % (cp / rs)))
    else:
        why = (x["copying_errors"] or ["no restore event"])[0].splitlines()[0]
        lines.append(info("copying restore", "", "NOT MEASURED: %s" % why[:200]))
    if x["clone_snapshot_ms"]:
        lines.append(info("  its snapshot of a clone (n=1)", "%.0f ms" % x["clone_snapshot_ms"][0],
                          "state %.0f MiB (all RAM in the stream)" % (x["clone_snapshot_state_bytes"][0] / 2**20)))
    first = x["first_restore"][0] if x["first_restore"] else None
    def phase_text(p, total):
        return ("QEMU spawned %.0f ms, QMP answers %.0f ms, guest running %.0f ms,%s agent ready with "
                "the clock set %.0f ms" % (p["spawned_ms"], p["qmp_ms"], p["running_ms"],
                                           " agent answers hello %.0f ms," % p["answered_ms"]
                                           if "answered_ms" in p else "", total))
    lines.append("  (restore phases, medians from the restore's start; spaced: %s; back to back: %s. "
                 "The fixture's build took %.0f ms, its builder's boot %.0f ms%s)" % (
                     phase_text(ph, rs), phase_text(bph, bb), sm["build_ms"] or 0,
                     x["build_boot_ms"][0] if x["build_boot_ms"] else 0,
                     ", the first restore after it %.0f ms (not counted)" % first["duration_ms"] if first else ""))
    if sm.get("copying_phases_ms"):
        c = sm["copying_phases_ms"]
        lines.append("  (copying restore phases: QEMU spawned %.0f ms, QMP answers %.0f ms, guest running "
                     "%.0f ms)" % (c["spawned_ms"], c["qmp_ms"], c["running_ms"]))

    # memory
    def agg(kind):
        vms = [m for m in x["mem"] if m["kind"] == kind]
        tot = lambda *ks: sum(m.get(k, 0) for m in vms for k in ks)
        return len(vms), {"rss": tot("Rss"), "pss": tot("Pss"),
                          "private": tot("Private_Clean", "Private_Dirty"),
                          "shared": tot("Shared_Clean", "Shared_Dirty"), "anon": tot("Anonymous"),
                          "ram_rss": tot("ram_Rss"), "ram_pss": tot("ram_Pss"),
                          "ram_private": tot("ram_Private_Clean", "ram_Private_Dirty")}
    nc, cl = agg("clone")
    nk, co = agg("cold")
    cols = ("rss", "pss", "private", "shared", "ram_rss", "ram_pss", "ram_private")
    mhead = "%-38s" + " %8s" * len(cols)
    mrow = lambda fig, d, n=1: mhead % ((fig,) + tuple("%.0f" % mib(d[k] / n) for k in cols))
    if nc and nk:
        sm["memory_kb"] = {"clones": nc, "clone_total": cl, "cold": nk, "cold_total": co}
        lines += [
            "",
            mhead % ("memory of QEMU (MiB; smaps)", "RSS", "PSS", "private", "shared",
                     "RAM RSS", "RAM PSS", "RAM priv"),
            mrow("%d fixture clones at once, total" % nc, cl),
            mrow("  per clone", cl, nc),
            mrow("cold-booted VM (%d at once), per VM" % nk, co, nk),
            mrow("  x %d (%d cold VMs)" % (nc, nc), {k: v * nc / nk for k, v in co.items()}),
            "  (each VM ran the fixture's setup, then md5sum of its 16 MiB of data. Whole process "
            "(smaps_rollup): private = Private_Clean + Private_Dirty, shared = Shared_*; RAM *: the "
            "guest RAM's mapping alone. Clones: PSS total %.0f MiB of an RSS total %.0f MiB (%.0f%%); "
            "PSS per VM %.1fx less than a cold-booted VM's, guest RAM PSS %.1fx less)" % (
                mib(cl["pss"]), mib(cl["rss"]), 100.0 * cl["pss"] / cl["rss"],
                (co["pss"] / nk) / (cl["pss"] / nc), (co["ram_pss"] / nk) / (cl["ram_pss"] / nc)),
        ]
        ns, sp = agg("spare_clone")
        if ns:
            sm["memory_kb"]["spares"], sm["memory_kb"]["spare_total"] = ns, sp
            lines.append("  (also running beside the clones: %d spare QEMU%s started ahead for the next "
                         "restore, not counted above: RSS %.0f MiB, PSS %.0f MiB in all)" % (
                             ns, "s" if ns > 1 else "", mib(sp["rss"]), mib(sp["pss"])))
    else:
        lines += ["", "memory: NOT MEASURED (no smaps figures from bench/fixture.lua)"]
    return lines, misses, sm


def recv_full(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise RuntimeError("floor guest closed the port")
        b += c
    return b


def rt_floor(spawn, initrd, tmp):
    for f in ("p0.sock", "p1.sock"):
        try:
            os.unlink(os.path.join(tmp, f))
        except FileNotFoundError:
            pass
    g = Guest(floor_argv(spawn, initrd, tmp, ["bench.echo", "bench.c"]))
    try:
        c0, c1, c2 = [int(x) / 1e6 for x in g.wait_for(b"FLOOR-CLOCK").split()]
        per_mod = {w.split(":")[0]: int(w.split(":")[1]) / 1e6 for w in g.wait_for(b"FLOOR-INSMOD").split()}
        fe_true = [int(x) / 1e6 for x in g.wait_for(b"FLOOR-FORKEXEC").split()]
        fe_sh = [int(x) / 1e6 for x in g.wait_for(b"FLOOR-FORKEXEC").split()]
        g.wait_for(b"FLOOR-SERVE-READY")
        g.wait_for(b"FLOOR-ECHO-READY")
        echo = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        echo.connect(os.path.join(tmp, "p0.sock"))
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(os.path.join(tmp, "p1.sock"))
        msg = b"ping-0123456789\n"
        # the guest's cat may start a moment after the host connects: retry the first one
        echo.settimeout(0.5)
        for _ in range(40):
            echo.sendall(msg)
            try:
                got = b""
                while not got.endswith(msg):
                    got += echo.recv(4096)
                break
            except socket.timeout:
                continue
        else:
            raise RuntimeError("no echo from the floor guest")
        echo.settimeout(None)
        time.sleep(0.1)
        while select.select([echo], [], [], 0)[0]:
            echo.recv(65536)  # late answers to the retries

        def echo_rt():
            t = time.monotonic_ns()
            echo.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += echo.recv(4096)
            return (time.monotonic_ns() - t) / 1e6

        def c_rt(req):
            t = time.monotonic_ns()
            c.sendall(struct.pack("<I", len(req)) + req)
            n = struct.unpack("<I", recv_full(c, 4))[0]
            data = recv_full(c, n)
            return (time.monotonic_ns() - t) / 1e6, data

        for _ in range(30):
            echo_rt()
            c_rt(b"E" + msg)
            c_rt(b"R/tmp/f4k")
        echoes = [echo_rt() for _ in range(ECHOES)]
        c_echoes = [c_rt(b"E" + msg)[0] for _ in range(ECHOES)]
        c_reads = []
        for _ in range(READS):
            ms, data = c_rt(b"R/tmp/f4k")
            if len(data) != 4096:
                raise RuntimeError("C responder read %d bytes" % len(data))
            c_reads.append(ms)
        xfer = {}
        if XFER:
            buf = bytearray(1 << 20)
            payload = bytes(XFER_BYTES)

            def push():  # guest -> host
                t = time.monotonic_ns()
                c.sendall(struct.pack("<I", 9) + b"P" + struct.pack("<Q", XFER_BYTES))
                got = 0
                while got < XFER_BYTES:
                    r = c.recv_into(buf, min(len(buf), XFER_BYTES - got))
                    if r <= 0:
                        raise RuntimeError("floor guest closed the port")
                    got += r
                return (time.monotonic_ns() - t) / 1e6

            def get():  # host -> guest
                t = time.monotonic_ns()
                c.sendall(struct.pack("<I", 9) + b"G" + struct.pack("<Q", XFER_BYTES))
                c.sendall(payload)
                if recv_full(c, 4) != b"DONE":
                    raise RuntimeError("floor guest: no DONE after the upload")
                return (time.monotonic_ns() - t) / 1e6

            xfer = {"port_g2h_ms": [push() for _ in range(FLOOR_XFER_REPS)],
                    "port_h2g_ms": [get() for _ in range(FLOOR_XFER_REPS)]}
        echo.close()
        c.close()
        return dict(xfer, **{"insmod_ms": c1 - c0, "insmod_per_module_ms": per_mod, "ports_after_insmod_ms": c2 - c1, "forkexec_true_ms": fe_true, "forkexec_sh_c_true_ms": fe_sh,
                "echo_cat_ms": echoes, "echo_c_ms": c_echoes, "c_read_4k_ms": c_reads})
    finally:
        g.stop()


# ---- report ----

def med(xs):
    return statistics.median(xs)


FIG_HEAD = "%-34s %12s %-30s %7s %-18s %s"


def fig_row(fig, v, floor, ratio, target, ok):
    return FIG_HEAD % (fig, v, floor, ratio, target, "PASS" if ok else "MISS")


def fig_info(fig, v, floor, ratio="", target=""):
    return (FIG_HEAD % (fig, v, floor, ratio, target, "")).rstrip()


def header(imgdir):
    return [
        "Provium bench, %s, %s, %d cores, TCG, %s" % (
            time.strftime("%Y-%m-%d %H:%M:%S %z"), os.uname().nodename, os.cpu_count(),
            subprocess.run([QEMU, "--version"], stdout=subprocess.PIPE).stdout.decode().splitlines()[0]),
        "image %s; all figures are medians; load average at the start %.2f %.2f %.2f" % (
            (imgdir,) + LOAD_AT_START),
        "source %s" % SOURCE_AT_START,
    ]


def source_rev():
    """The commit bench.py's tree is at, and whether src/ has uncommitted changes."""
    git = lambda *a: subprocess.run(["git", "-C", HERE] + list(a), stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL).stdout.decode().strip()
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + (" + uncommitted changes in src/" if git("status", "--porcelain", "--", "../src") else "")


def write_outputs(out, raw, lines, suffix=""):
    """table<suffix>.txt and raw<suffix>.json in out, with timestamped copies; prints the table."""
    table = "\n".join(l.rstrip() for l in lines) + "\n"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(out, "raw%s.json" % suffix), "w") as f:
        json.dump(raw, f, indent=1)
    shutil.copy(os.path.join(out, "raw%s.json" % suffix), os.path.join(out, "raw%s-%s.json" % (suffix, stamp)))
    with open(os.path.join(out, "table%s.txt" % suffix), "w") as f:
        f.write(table)
    shutil.copy(os.path.join(out, "table%s.txt" % suffix), os.path.join(out, "table%s-%s.txt" % (suffix, stamp)))
    sys.stdout.write(table)


def main_only(imgdir, out, key, measure, report):
    """`bench/run fixture` or `bench/run disk`: those figures alone (table-KEY.txt, raw-KEY.json);
    measure() -> raw figures, report(raw figures, head, row, info) -> (lines, misses, summary)."""
    t_start = time.monotonic()
    raw = {"image": imgdir, key: measure()}
    lines, misses, sm = report(raw[key], FIG_HEAD, fig_row, fig_info)
    sm["wall_s"] = time.monotonic() - t_start
    raw["summary"] = {key: sm, "loadavg_start": LOAD_AT_START, "loadavg_end": os.getloadavg()}
    lines = header(imgdir) + lines + [
        "", "load average at the end %.2f %.2f %.2f; raw numbers: %s/raw-%s.json; %.0f s" % (
            os.getloadavg() + (out, key, sm["wall_s"]))]
    write_outputs(out, raw, lines, "-" + key)
    return 1 if any(misses) else 0


def disk_provium(provium, out):
    """Figure 12: bench/disk.lua (bench/disk.py)."""
    return disk.measure(lambda lua, evfile, env: provium_run(provium, lua, evfile, env), HERE, out)


LOAD_AT_START = os.getloadavg()
SOURCE_AT_START = source_rev()


def main():
    provium, imgdir, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    only = sys.argv[4:]
    if only == ["fixture"]:
        return main_only(imgdir, out, "fixture", lambda: fixture_provium(provium, out), fixture_report)
    if only == ["disk"]:
        return main_only(imgdir, out, "disk", lambda: disk_provium(provium, out), disk.report)
    if only:
        print("bench: unknown selection %r (valid: fixture, disk)" % " ".join(only), file=sys.stderr)
        return 2
    tmp = run_dir("provium-bench.")
    t_start = time.monotonic()
    try:
        # Every floor and peer guest boots Provium's own QEMU command line, minus its parts.
        log("QEMU's command line: from the vm.spawn event of one boot (not counted)")
        spawn = provium_argv(provium, out)
        kernel, initrd, append = (option(spawn, o) for o in ("-kernel", "-initrd", "-append"))
        if os.path.dirname(initrd) != imgdir.rstrip("/"):
            sys.exit("bench: provium booted %s, not the image %s" % (initrd, imgdir))
        gf = os.path.join(tmp, "guest-floor")
        subprocess.run(["gcc", "-O2", "-static", "-o", gf, os.path.join(HERE, "guest-floor.c")], check=True)
        gfb = open(gf, "rb").read()
        exe = stat.S_IFREG | 0o755
        boot_initrd, rt_initrd = os.path.join(tmp, "initrd-boot"), os.path.join(tmp, "initrd-rt")
        overlay_initrd(initrd, [("init", exe, gfb)], boot_initrd)
        overlay_initrd(initrd, [("init", exe, open(os.path.join(HERE, "floor-init.sh"), "rb").read()),
                                ("bench-floor", exe, gfb)], rt_initrd)

        raw = {"image": imgdir, "kernel": kernel, "append": append, "qemu_argv": spawn,
               "boots": BOOTS, "rounds": ROUNDS,
               "boot_provium_ms": [], "boot_floor_ms": [], "boot_provium_guest_clock_ms": [],
               "boot_floor_guest_clock_ms": [], "boot_provium_prespawn_ms": [],
               "roundtrip": [], "floor": []}
        if PEERS:
            # first, so a failed download or build says so before the long part
            try:
                import peers
                log("peers: building the peer image and booting it")
                raw["peers"] = peers.run(spawn, initrd, tmp, PEER_OPS, Guest, floor_argv,
                                         overlay_initrd, log)
            except Exception as e:  # measured what we could; the reason goes into the table
                log("peers: %s: %s" % (type(e).__name__, e))
                raw["peers"] = {"error": "%s" % e}
        for i in range(BOOTS):
            # alternate which goes first, so a slow spell does not land on one side only
            order = ("provium", "floor") if i % 2 == 0 else ("floor", "provium")
            for who in order:
                if who == "provium":
                    ms, guest, prespawn = boot_provium(provium, out, i)
                    raw["boot_provium_ms"].append(ms)
                    raw["boot_provium_prespawn_ms"].append(prespawn)
                    raw["boot_provium_guest_clock_ms"].append(guest)
                else:
                    ms, guest = boot_floor(spawn, boot_initrd, tmp)
                    raw["boot_floor_ms"].append(ms)
                    raw["boot_floor_guest_clock_ms"].append(guest)
            log("boot %d/%d: provium %.0f ms, floor %.0f ms" % (
                i + 1, BOOTS, raw["boot_provium_ms"][-1], raw["boot_floor_ms"][-1]))
        raw["boot_variants"] = boot_variants(provium, out, spawn, boot_initrd, gfb, exe, tmp)
        for r in range(ROUNDS):
            order = ("provium", "floor") if r % 2 == 0 else ("floor", "provium")
            for who in order:
                if who == "provium":
                    raw["roundtrip"].append(rt_provium(provium, out, r, gf))
                else:
                    raw["floor"].append(rt_floor(spawn, rt_initrd, tmp))
            p, f = raw["roundtrip"][-1], raw["floor"][-1]
            log("round trips %d/%d: read_file %.3f ms (echo %.3f, C read %.3f), run true %.2f ms "
                "(fork+exec %.2f)" % (r + 1, ROUNDS, med(p["read_file_ms"]), med(f["echo_cat_ms"]),
                                      med(f["c_read_4k_ms"]), med(p["exec_ms"]),
                                      med(f["forkexec_true_ms"])))
            if XFER:
                log("raw port: guest->host %.0f MB/s, host->guest %.0f MB/s" % (
                    XFER_BYTES / 1e3 / med(f["port_g2h_ms"]), XFER_BYTES / 1e3 / med(f["port_h2g_ms"])))
        if XFER:
            raw["xfer"] = xfer_provium(provium, out)
            log("transfers: write_file 64 MiB %.0f MB/s, read_file %.0f MB/s" % (
                XFER_BYTES / 1e3 / med(raw["xfer"]["write_64m_ms"]),
                XFER_BYTES / 1e3 / med(raw["xfer"]["read_64m_ms"])))
        if BUSY:
            raw["busy"] = busy_provium(provium, out)
            log("busy: read_file 4 KiB idle %.3f ms, 1 busy %.3f ms, 4 busy %.3f ms" % tuple(
                med(raw["busy"][k]["read_file_ms"]) for k in ("idle", "1 busy", "4 busy")))
        if FIXTURE:
            raw["fixture"] = fixture_provium(provium, out)
            log("fixtures: restore %.0f ms (back to back %.0f ms), cold boot %.0f ms" % (
                med([d["duration_ms"] for d in raw["fixture"]["restore"]]),
                med([d["duration_ms"] for d in raw["fixture"]["back"]]),
                med(raw["fixture"]["cold_boot_ms"])))
        if DISK:
            raw["disk"] = disk_provium(provium, out)
            log(disk.log_line(raw["disk"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cat = lambda key, src: [x for d in raw[src] for x in d[key]]
    boot_p, boot_f = med(raw["boot_provium_ms"]), med(raw["boot_floor_ms"])
    gclk = [x for x in raw["boot_provium_guest_clock_ms"] if x is not None]
    boot_pg = med(gclk) if gclk else float("nan")
    boot_fg = med(raw["boot_floor_guest_clock_ms"])
    pre = [x for x in raw["boot_provium_prespawn_ms"] if x is not None]
    prespawn = med(pre) if pre else float("nan")
    rd, echo = med(cat("read_file_ms", "roundtrip")), med(cat("echo_cat_ms", "floor"))
    c_echo, c_read = med(cat("echo_c_ms", "floor")), med(cat("c_read_4k_ms", "floor"))
    ex, fe = med(cat("exec_ms", "roundtrip")), med(cat("forkexec_true_ms", "floor"))
    fe_sh, ex_guest = med(cat("forkexec_sh_c_true_ms", "floor")), med(cat("exec_guest_ms", "roundtrip"))
    fe_invm = med(cat("invm_forkexec_sh_ms", "roundtrip"))
    insmod = med([d["insmod_ms"] for d in raw["floor"]])
    ports = med([d["ports_after_insmod_ms"] for d in raw["floor"]])
    per_mod = {m: med([d["insmod_per_module_ms"][m] for d in raw["floor"]])
               for m in raw["floor"][0]["insmod_per_module_ms"]}
    rd_batch = med([d["read_file_batch_mean_ms"] for d in raw["roundtrip"]])
    ex_batch = med([d["exec_batch_mean_ms"] for d in raw["roundtrip"]])
    summary = {
        "boot_ms": boot_p, "boot_floor_ms": boot_f, "boot_ratio": boot_p / boot_f,
        "boot_guest_clock_at_ready_ms": boot_pg, "boot_prespawn_ms": prespawn,
        "boot_floor_guest_clock_at_init_ms": boot_fg,
        "read_file_4k_ms": rd, "echo_cat_floor_ms": echo, "echo_c_floor_ms": c_echo,
        "c_read_4k_floor_ms": c_read, "read_file_batch_mean_ms": rd_batch,
        "run_true_ms": ex, "forkexec_true_floor_ms": fe, "forkexec_sh_c_true_floor_ms": fe_sh,
        "forkexec_sh_c_true_same_vm_ms": fe_invm,
        "run_true_guest_duration_ms": ex_guest, "run_true_batch_mean_ms": ex_batch,
        "floor_insmod_ms": insmod, "floor_insmod_per_module_ms": per_mod, "floor_ports_after_insmod_ms": ports,
        "wall_s": time.monotonic() - t_start,
    }
    raw["summary"] = summary

    def row(fig, v, floor, ratio, target, ok):
        return "%-34s %12s %-30s %7s %-18s %s" % (fig, v, floor, ratio, target, "PASS" if ok else "MISS")

    n_rt = ROUNDS
    lines = header(imgdir) + [
        "",
        "%-34s %12s %-30s %7s %-18s %s" % ("figure", "median", "floor (same run)", "ratio", "target", ""),
        row("boot to agent-ready (n=%d)" % BOOTS, "%.0f ms" % boot_p,
            "raw QEMU to /init: %.0f ms" % boot_f, "%.2fx" % (boot_p / boot_f), "<= 1.05x floor",
            boot_p / boot_f <= 1.05),
    ] + [row("boot, %s (n=%d)" % (VARIANT_NAMES[v], len(d["provium_ms"])), "%.0f ms" % med(d["provium_ms"]),
             VARIANT_FLOORS[v] % med(d["floor_ms"]), "%.2fx" % (med(d["provium_ms"]) / med(d["floor_ms"])),
             "<= 1.05x floor", med(d["provium_ms"]) <= 1.05 * med(d["floor_ms"]))
         for v, d in raw["boot_variants"].items()] + [
        row("read_file 4 KiB (n=%d)" % (READS * n_rt), "%.3f ms" % rd,
            "virtio-serial echo: %.3f ms" % echo, "%.1fx" % (rd / echo), "<= 1 ms", rd <= 1.0),
        row("", "", "C responder read 4K: %.3f ms" % c_read, "%.1fx" % (rd / c_read), "", True)[:-4],
        row('vm:run("true") (n=%d)' % (RUNS * n_rt), "%.2f ms" % ex,
            "fork+exec /bin/true: %.2f ms" % fe, "%.1fx" % (ex / fe), "", True)[:-4],
        row("", "", "fork+exec sh -c true: %.2f ms" % fe_sh, "%.1fx" % (ex / fe_sh), "<= 1.3x sh -c true",
            ex <= 1.3 * fe_sh),
        row("", "", "same, in Provium's VM: %.2f ms" % fe_invm, "%.1fx" % (ex / fe_invm), "", True)[:-4],
        "",
        "boot, by the guest's clock (CLOCK_MONOTONIC): init starts at %.0f ms (floor); the agent "
        "is ready at %.0f ms (+%.0f ms: mounts, modules, port, hello; medians of different "
        "boots); before the "
        "guest clock starts: %.0f ms (floor) vs %.0f ms (provium, of which %.0f ms from vm:boot() "
        "to QEMU's spawn); in the floor guest, busybox insmod of the same modules takes %.0f ms and "
        "the ports appear %.0f ms after (per-module timing below adds ~2 forks each)" % (boot_fg, boot_pg, boot_pg - boot_fg, boot_f - boot_fg,
                                            boot_p - boot_pg, prespawn, insmod, ports),
        "insmod per module in the floor guest (ms): " + ", ".join("%s %.0f" % kv for kv in per_mod.items()),
        "details: C responder echo %.3f ms; read_file batch mean %.3f ms/call; run(\"true\") batch "
        "mean %.2f ms/call, of which the guest measured %.2f ms (agent fork to exit)" % (
            c_echo, rd_batch, ex_batch, ex_guest),
    ]
    # the goals of issue 18 (docs/performance.md), where it set one
    misses = [boot_p / boot_f > 1.05, rd > 1.0, ex > 1.3 * fe_sh]
    head = "%-34s %12s %-30s %7s %-18s %s"
    info = lambda fig, v, floor, ratio="", target="": (head % (fig, v, floor, ratio, target, "")).rstrip()
    mbs = lambda nbytes, ms: nbytes / 1e3 / ms  # MB/s (10^6 bytes)

    if XFER:
        x = raw["xfer"]
        w64, r64 = mbs(XFER_BYTES, med(x["write_64m_ms"])), mbs(XFER_BYTES, med(x["read_64m_ms"]))
        h2g, g2h = mbs(XFER_BYTES, med(cat("port_h2g_ms", "floor"))), mbs(XFER_BYTES, med(cat("port_g2h_ms", "floor")))
        n_fx = FLOOR_XFER_REPS * ROUNDS
        big = 256 << 20
        one = lambda k: mbs(big, x[k][0]) if x[k] else float("nan")
        hw = {k: v / 1024 for k, v in x["hwm_kb"].items()}
        summary.update({"write_file_64m_mbs": w64, "read_file_64m_mbs": r64, "port_h2g_mbs": h2g,
                        "port_g2h_mbs": g2h, "write_256m_from_host_mbs": one("write_256m_from_host_ms"),
                        "read_256m_to_host_mbs": one("read_256m_to_host_ms"),
                        "write_256m_string_mbs": one("write_256m_string_ms"),
                        "read_256m_string_mbs": one("read_256m_string_ms"), "vmhwm_mib": hw})
        misses += [w64 < 0.8 * h2g, r64 < 0.9 * g2h]
        # the guest copies each byte from the port, then into its tmpfs, on its one vCPU: at
        # best one after the other, 1 / (1/port + 1/dd)
        wnull = mbs(XFER_BYTES, med(x["write_64m_devnull_ms"]))
        dd = mbs(XFER_BYTES, med(x["dd_tmpfs_64m_ms"]))
        bound = 1 / (1 / h2g + 1 / dd)
        summary.update({"write_file_64m_devnull_mbs": wnull, "guest_dd_tmpfs_mbs": dd,
                        "write_one_vcpu_bound_mbs": bound})
        lines += [
            "",
            head % ("throughput (MB/s = 10^6 B/s)", "median", "raw port, same run (n=%d)" % n_fx, "ratio", "target", ""),
            row("write_file 64 MiB (n=%d)" % XFER_REPS, "%.0f MB/s" % w64, "host->guest: %.0f MB/s" % h2g,
                "%.2fx" % (w64 / h2g), ">= 0.8x raw port", w64 >= 0.8 * h2g),
            info("  the same into /dev/null", "%.0f MB/s" % wnull, "host->guest: %.0f MB/s" % h2g,
                 "%.2fx" % (wnull / h2g)),
            info("  the guest's dd into tmpfs", "%.0f MB/s" % dd, "port, then dd, in turn: %.0f MB/s" % bound,
                 "%.2fx" % (w64 / bound)),
            row("read_file 64 MiB (n=%d)" % XFER_REPS, "%.0f MB/s" % r64, "guest->host: %.0f MB/s" % g2h,
                "%.2fx" % (r64 / g2h), ">= 0.9x raw port", r64 >= 0.9 * g2h),
            info("256 MiB write {from=host} (n=1)", "%.0f MB/s" % summary["write_256m_from_host_mbs"],
                 "host->guest: %.0f MB/s" % h2g, "%.2fx" % (summary["write_256m_from_host_mbs"] / h2g)),
            info("256 MiB read {to=host} (n=1)", "%.0f MB/s" % summary["read_256m_to_host_mbs"],
                 "guest->host: %.0f MB/s" % g2h, "%.2fx" % (summary["read_256m_to_host_mbs"] / g2h)),
            info("256 MiB write_file string (n=1)", "%.0f MB/s" % summary["write_256m_string_mbs"],
                 "host->guest: %.0f MB/s" % h2g, "%.2fx" % (summary["write_256m_string_mbs"] / h2g)),
            info("256 MiB read_file string (n=1)", "%.0f MB/s" % summary["read_256m_string_mbs"],
                 "guest->host: %.0f MB/s" % g2h, "%.2fx" % (summary["read_256m_string_mbs"] / g2h)),
            "",
            head % ("peak RSS (VmHWM, MiB)", "runner", "agent (PID 1 in the guest)", "", "", ""),
            info("after boot", "%.0f MiB" % hw["runner_boot_kb"], "%.1f MiB" % hw["agent_boot_kb"]),
            info("+ 256 MiB each way, host files", "%.0f MiB" % hw["runner_files_kb"], "%.1f MiB" % hw["agent_files_kb"]),
            info("+ 64 MiB x %d each way, strings" % (XFER_REPS + 1), "%.0f MiB" % hw["runner_64m_kb"], "%.1f MiB" % hw["agent_64m_kb"]),
            info("+ 256 MiB each way, strings", "%.0f MiB" % hw["runner_strings_kb"], "%.1f MiB" % hw["agent_strings_kb"]),
            "  (runner: the `provium __run-file` process that runs bench/transfer.lua; VmHWM only "
            "grows, so each line is the peak so far. Lua-side mean per 64 MiB call: write %.0f ms, "
            "read %.0f ms, vs op medians %.0f / %.0f ms)" % (
                x["write_64m_batch_mean_ms"], x["read_64m_batch_mean_ms"], med(x["write_64m_ms"]),
                med(x["read_64m_ms"])),
        ]
    else:
        lines += ["", "throughput and peak RSS: skipped (BENCH_XFER=0)"]

    if BUSY:
        b = raw["busy"]
        summary["busy"] = {k: {"stat_ms": med(v["stat_ms"]), "read_file_ms": med(v["read_file_ms"]),
                               "worker_loops": v["worker_loops"]} for k, v in b.items()}
        sb = summary["busy"]
        lines += [
            "",
            head % ("main connection, workers busy", "median", "same VM, no worker busy", "ratio", "worker loops", ""),
        ]
        for k, label in (("1 busy", "1 busy worker"), ("4 busy", "4 busy workers")):
            lines.append(info("read 4K, %s (n=%d)" % (label, BUSY_OPS), "%.3f ms" % sb[k]["read_file_ms"],
                              "idle: %.3f ms" % sb["idle"]["read_file_ms"],
                              "%.1fx" % (sb[k]["read_file_ms"] / sb["idle"]["read_file_ms"]),
                              "%d" % sb[k]["worker_loops"]))
            lines.append(info("stat, %s (n=%d)" % (label, BUSY_OPS), "%.3f ms" % sb[k]["stat_ms"],
                              "idle: %.3f ms" % sb["idle"]["stat_ms"],
                              "%.1fx" % (sb[k]["stat_ms"] / sb["idle"]["stat_ms"])))
        busy4 = sb["4 busy"]["read_file_ms"] / sb["idle"]["read_file_ms"]
        misses.append(busy4 > 2)
        lines.append(row("  read 4K, 4 busy workers vs idle", "", "", "%.1fx" % busy4, "<= 2x idle",
                         busy4 <= 2))
        lines.append("  (each busy worker loops read_file 4 KiB + run(\"true\") in its own "
                     "provium:parallel branch while the main connection does %d x (stat + read_file); "
                     "worker loops: how many the workers completed together meanwhile)" % BUSY_OPS)
    else:
        lines += ["", "latency with workers busy: skipped (BENCH_BUSY=0)"]

    if PEERS:
        pr = raw["peers"]
        lines += ["", head % ("against the peers", "provium", "peer (same run, n=%d)" % PEER_OPS,
                              "faster", "goal", "")]
        rows = [("read 4 KiB vs multiplexed ssh", rd, "ssh_read_4k_ms", "ssh -S, cat: %.2f ms", 10),
                ("read 4 KiB vs qemu-guest-agent", rd, "qga_read_4k_ms", "qga open+read+close: %.2f ms", 5),
                ("run true vs multiplexed ssh", ex, "ssh_true_ms", "ssh -S, true: %.2f ms", 2),
                ("run true vs qemu-guest-agent", ex, "qga_true_ms", "qga exec+status: %.2f ms", 2.5)]
        summary["peers"] = {}
        for fig, mine, key, fmt, goal in rows:
            if pr.get(key):
                pv = med(pr[key])
                summary["peers"][key] = pv
                misses.append(pv / mine < goal)
                lines.append(row(fig, "%.3f ms" % mine if mine < 1 else "%.2f ms" % mine, fmt % pv,
                                 ("%.1fx" if pv / mine < 10 else "%.0fx") % (pv / mine), ">= %gx faster" % goal, pv / mine >= goal))
            else:
                why = pr.get("error") or pr.get("qga_error") or "not measured"
                lines.append(info(fig, "", "NOT MEASURED: %s" % why))
        if pr.get("ssh_fresh_true_ms"):
            lines.append("  (ssh: OpenSSH client, one ControlMaster connection, a new `ssh -S` process per "
                         "operation; a new connection per command costs %.0f ms (n=%d). qemu-ga: JSON on the "
                         "chardev socket; exec is guest-exec of /bin/sh -c true, then guest-exec-status "
                         "polled without pause, median %d polls. Peer guest: %s)" % (
                             med(pr["ssh_fresh_true_ms"]), len(pr["ssh_fresh_true_ms"]),
                             med(pr.get("qga_true_polls") or [0]),
                             ", ".join(v.split("_")[0] + " " + v.split("_")[1] for v in pr.get("versions", []))))
    else:
        lines += ["", "peers: skipped (BENCH_PEERS=0)"]

    if FIXTURE:
        fl, fm, summary["fixture"] = fixture_report(raw["fixture"], head, row, info)
        lines += fl
        misses += fm
    else:
        lines += ["", "fixtures and snapshots: skipped (BENCH_FIXTURE=0)"]

    if DISK:
        dl, dm, summary["disk"] = disk.report(raw["disk"], head, row, info)
        lines += dl
        misses += dm
    else:
        lines += ["", "disks: skipped (BENCH_DISK=0)"]

    summary["wall_s"] = time.monotonic() - t_start
    lines += ["", "raw numbers: %s/raw.json; whole bench %.0f s" % (out, summary["wall_s"])]
    write_outputs(out, raw, lines)
    return 1 if any(misses) else 0


if __name__ == "__main__":
    sys.exit(main())
