"""local.py: the local VM figures of the bench (docs/performance.md, "Local VMs"), run by
`bench/run local`.

bench/local.lua runs twice in one bench run, under --vmm local and under --vmm qemu (the
default image, the same accelerator as the rest of the bench): BENCH_STARTS starts (20 local,
BENCH_QEMU_STARTS 3 QEMU cold boots), then on one VM BENCH_READS (200) read_file calls of
4 KiB and BENCH_RUNS (100) vm:run("true"), after 20 of each to warm up. The figures are medians
of the events' duration_ns: vm.boot (the boot call to the agent's answer) and the `op` events
(the host side of one call). Beside them, measured in the same run on this host, the floors
bench/local-floor.c gives: fork+exec+wait of `/bin/sh -c true`, and a Unix socket round trip
with a 4 KiB answer.

Targets (the issue's): a local start in at most 20 ms; vm:run("true") and read_file 4 KiB
within 1.5x of their floors.
"""
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from floor import events  # noqa: E402  (provium events FILE --json)

HERE = os.path.dirname(os.path.abspath(__file__))
KNOBS = {"STARTS": 20, "QEMU_STARTS": 3, "READS": 200, "RUNS": 100, "FLOOR": 500}
KNOB = {k: int(os.environ.get("BENCH_" + k, str(v))) for k, v in KNOBS.items()}
ms = lambda ns: ns / 1e6  # noqa: E731


def run(provium, vmm, out):
    """bench/local.lua under vmm: {start, read, exec: [ns]}."""
    ev = os.path.join(out, "local-%s.mp" % vmm)
    env = dict(os.environ, BENCH_STARTS=str(KNOB["STARTS"] if vmm == "local" else KNOB["QEMU_STARTS"]),
               BENCH_READS=str(KNOB["READS"]), BENCH_RUNS=str(KNOB["RUNS"]))
    r = subprocess.run([provium, "--accel", os.environ.get("BENCH_ACCEL", "auto"), "--vmm", vmm,
                        "--progress", "never", "--events", ev, os.path.join(HERE, "local.lua")],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("bench/local.lua under --vmm %s:\n%s" % (vmm, r.stdout.decode(errors="replace")))
    fig = {"start": [], "read": [], "exec": []}
    for e in events(provium, ev):
        if e["type"] == "vm.boot" and e["vm"].startswith("start") and e["ok"]:
            fig["start"].append(e["duration_ns"])
        elif e["type"] == "op" and e["ok"] and e.get("test") == "read_file 4 KiB" and e["op"] == "read_file":
            fig["read"].append(e["duration_ns"])
        elif e["type"] == "op" and e["ok"] and e.get("test") == "run true" and e["op"] == "exec":
            fig["exec"].append(e["duration_ns"])
    return fig


def floors(out):
    """local-floor.c, built here: {spawn, socket} in ns."""
    exe = os.path.join(out, "local-floor")
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe,
                    os.path.join(HERE, "local-floor.c")], check=True)
    r = subprocess.run([exe, str(KNOB["FLOOR"])], stdout=subprocess.PIPE, check=True)
    return {w[0]: int(w[1]) for w in (l.split() for l in r.stdout.decode().splitlines())}


def main():
    provium, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    loc = run(provium, "local", out)
    fl = floors(out)
    qemu = run(provium, "qemu", out)
    med = {vmm: {k: statistics.median(v) for k, v in f.items() if v} for vmm, f in
           (("local", loc), ("qemu", qemu))}
    rows, missed = [], False

    def row(what, local_ns, qemu_ns, floor_name, floor_ns, target, met):
        nonlocal missed
        missed = missed or not met
        rows.append("%-22s %10.3f %10.3f %-22s %10s %8s  %s %s" % (
            what, ms(local_ns), ms(qemu_ns), floor_name, "%.3f" % ms(floor_ns) if floor_ns else "-",
            "%.2fx" % (local_ns / floor_ns) if floor_ns else "-", target, "ok" if met else "MISS"))

    row("start to agent-ready", med["local"]["start"], med["qemu"]["start"], "", None,
        "<= 20 ms", med["local"]["start"] <= 20e6)
    row('vm:run("true")', med["local"]["exec"], med["qemu"]["exec"], "fork+exec+wait sh",
        fl["spawn"], "<= 1.5x floor", med["local"]["exec"] <= 1.5 * fl["spawn"])
    row("read_file 4 KiB", med["local"]["read"], med["qemu"]["read"], "unix socket 4 KiB",
        fl["socket"], "<= 1.5x floor", med["local"]["read"] <= 1.5 * fl["socket"])
    head = "%-22s %10s %10s %-22s %10s %8s  %s" % ("figure (medians, ms)", "local", "qemu",
                                                   "floor (this host)", "floor", "local/fl", "target")
    table = "\n".join([head] + rows) + "\n"
    sys.stdout.write(table)
    with open(os.path.join(out, "table-local.txt"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "raw-local.json"), "w") as f:
        json.dump({"local": loc, "qemu": qemu, "floor": fl, "knobs": KNOB}, f)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
