#!/usr/bin/env python3
"""machine-floor.py: what QEMU's machine type costs the guest's module loading at boot (issue
18, point 5; docs/performance.md, "Where a hot-plug VM's boot goes").

  bench/machine-floor.py [ROUNDS]     (default 3; about 10 s a boot)

Boots the round-trip floor guest (bench/floor-init.sh: busybox insmod of the default image's
modules, each timed by the guest's clock) under Provium's own QEMU command line, alternately
with `-machine pc` (Provium's until stop 29) and `-machine q35` (Provium's since), and prints
each boot's time per module and the medians. On pc, virtio_pci's probe looks up the device's
interrupt in ACPI's _PRT, which QEMU's i440fx tables compute in an AML loop of 128 rounds;
q35's _PRT is a constant package.
"""
import os
import shutil
import stat
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from floor import Guest, floor_argv, option, overlay_initrd, provium_argv, run_dir  # noqa: E402


def machine_argv(spawn, machine):
    """spawn with -machine MACHINE; on pc without q35's PCIe-to-PCI bridge (the floor has no
    card or disk on it)."""
    out, i = [], 0
    while i < len(spawn):
        a = spawn[i]
        if a == "-machine":
            out += [a, machine + "," + spawn[i + 1].split(",", 1)[1]]
            i += 2
        elif a == "-device" and spawn[i + 1].startswith("pcie-pci-bridge,") and machine == "pc":
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    provium = os.path.join(os.environ.get("BUILD", os.path.join(HERE, "..", "build")), "provium")
    tmp = run_dir("provium-machine-floor.")
    try:
        spawn = provium_argv(provium, tmp)
        gf = os.path.join(tmp, "guest-floor")
        subprocess.run(["gcc", "-O2", "-static", "-o", gf, os.path.join(HERE, "guest-floor.c")],
                       check=True)
        exe = stat.S_IFREG | 0o755
        initrd = os.path.join(tmp, "initrd-rt")
        overlay_initrd(option(spawn, "-initrd"),
                       [("init", exe, open(os.path.join(HERE, "floor-init.sh"), "rb").read()),
                        ("bench-floor", exe, open(gf, "rb").read())], initrd)
        per = {"pc": [], "q35": []}
        for r in range(rounds):
            for machine in ("pc", "q35") if r % 2 == 0 else ("q35", "pc"):
                argv = machine_argv(spawn, machine)
                for f in ("p0.sock", "p1.sock"):
                    if os.path.exists(os.path.join(tmp, f)):
                        os.unlink(os.path.join(tmp, f))
                g = Guest(floor_argv(argv, initrd, tmp, ["bench.echo", "bench.c"]))
                try:
                    g.wait_for(b"FLOOR-CLOCK")
                    mods = {w.split(":")[0]: int(w.split(":")[1]) / 1e6
                            for w in g.wait_for(b"FLOOR-INSMOD").split()}
                finally:
                    g.stop()
                per[machine].append(mods)
                print("%-4s round %d: %s" % (machine, r + 1, ", ".join(
                    "%s %.0f" % kv for kv in mods.items())), flush=True)
        print("medians (ms, busybox insmod's fork+exec included):")
        for machine, runs in per.items():
            names = list(runs[0])
            total = statistics.median(sum(m.values()) for m in runs)
            print("  %-4s all %.0f; %s" % (machine, total, ", ".join(
                "%s %.0f" % (n, statistics.median(m[n] for m in runs)) for n in names)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
