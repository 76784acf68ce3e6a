#!/usr/bin/env python3
"""bench/run accel: what choosing the accelerator costs a run (docs/performance.md,
"Choosing the accelerator"). Every figure is a median of interleaved runs, beside its floor:

  1. a run that boots nothing, --accel tcg (no probe: the floor)
  2. the same with --accel auto and a cached verdict (the cost every later run pays)
  3. the probe itself on a fresh cache, when KVM hangs the kernel (the bound)
  4. the probe on a fresh cache, when KVM works (played by TCG here: an upper bound)
  5. beside them, a run that cold-boots one VM with --accel tcg

KVM is played by tests/lib/fake-kvm-qemu with PROVIUM_KVM_DEVICE=/dev/null, so the figures
mean the same on hosts with and without a /dev/kvm.

usage: bench/accel.py PROVIUM IMAGE_DIR OUTDIR
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from floor import write_report  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ACCEL_ROUNDS", "9"))


def timed(cmd, env):
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("bench accel: %s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stdout))
    return dt * 1000


def main():
    provium, image_dir, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
    here = os.path.dirname(os.path.abspath(__file__))
    fake = os.path.join(here, "..", "tests", "lib", "fake-kvm-qemu")
    work = tempfile.mkdtemp(prefix="provium-bench-accel-")
    try:
        empty = os.path.join(work, "empty.test.lua")
        with open(empty, "w") as f:
            f.write('test("nothing", function(t) t:ok(true) end)\n')
        boot = os.path.join(work, "boot.test.lua")
        with open(boot, "w") as f:
            f.write('test("boot", function(t) provium:vm("a"):boot():run("true") end)\n')
        cached = os.path.join(work, "cached")
        # a fresh cache must not mean a fresh default image: the dispatcher takes this one
        base = dict(os.environ, PROVIUM_QEMU=fake, PROVIUM_KVM_DEVICE="/dev/null",
                    PROVIUM_IMAGE_DIR_default=image_dir)
        env_cached = dict(base, FAKE_KVM="silent", XDG_CACHE_HOME=cached)
        # fill the cached verdict once
        timed([provium, "--accel", "auto", empty], env_cached)
        fig = {k: [] for k in ("floor", "cached", "probe_hangs", "probe_works", "boot")}
        for i in range(ROUNDS):
            fig["floor"].append(timed([provium, "--accel", "tcg", empty], base))
            fig["cached"].append(timed([provium, "--accel", "auto", empty], env_cached))
            for kind in ("hangs", "works"):
                fresh = os.path.join(work, "fresh-%s-%d" % (kind, i))
                env = dict(base, FAKE_KVM="silent" if kind == "hangs" else "works",
                           XDG_CACHE_HOME=fresh, PROVIUM_KVM_PROBE_TIMEOUT="60" if kind == "works" else "8")
                fig["probe_" + kind].append(timed([provium, "--accel", "auto", empty], env))
                shutil.rmtree(fresh, ignore_errors=True)
            fig["boot"].append(timed([provium, "--accel", "tcg", boot], base))
        med = {k: statistics.median(v) for k, v in fig.items()}
        rows = [
            ("run, no VM, --accel tcg (floor)", med["floor"], ""),
            ("run, no VM, --accel auto, cached verdict", med["cached"],
             "+%.1f ms over the floor" % (med["cached"] - med["floor"])),
            ("run, no VM, --accel auto, probe: KVM hangs", med["probe_hangs"],
             "+%.0f ms (the 8 s bound)" % (med["probe_hangs"] - med["floor"])),
            ("run, no VM, --accel auto, probe: KVM works (TCG plays it)", med["probe_works"],
             "+%.0f ms (TCG to init: an upper bound)" % (med["probe_works"] - med["floor"])),
            ("run, one cold boot, --accel tcg", med["boot"], "beside: one boot"),
        ]
        lines = ["Choosing the accelerator (medians of %d interleaved rounds)" % ROUNDS]
        lines += ["  %-58s %9.1f ms  %s" % r for r in rows]
        write_report(outdir, "accel", "\n".join(lines) + "\n", fig)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
