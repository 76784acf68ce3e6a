"""soak.py: the soak (`bench/run soak`; not in CI): SOAK_STARTS (1000) VM starts, cold boots and
fixture restores alternating, spread over SOAK_FILES (8) files run SOAK_JOBS (2) at once, with
scripts/check-leaks around the run. Each test starts one VM, runs a command in it, checks its
answer, and kills it (power loss), so that the file's VMs do not pile up.

Passes when every test passed, every start was ok and nothing leaked. Prints the starts of each
kind with their median and 99th percentile (the vm.boot and vm.restore events' duration_ns),
the wall time, and the failures and leaks, each named; docs/reliability.md records the figures.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from floor import events  # noqa: E402  (provium events FILE --json)

HERE = os.path.dirname(os.path.abspath(__file__))
KNOB = {k: int(os.environ.get("SOAK_" + k, str(v)))
        for k, v in {"STARTS": 1000, "FILES": 8, "JOBS": 2}.items()}

FILE = """-- soak file {index}: {n} tests, each one VM start
for i = 1, {n} do
    if (i + {index}) % 2 == 0 then
        test("cold boot " .. i, function(t)
            local vm = provium:vm("cold" .. i):boot()
            t:eq(vm:run("echo " .. i):assert_ok().stdout, i .. "\\n")
            vm:kill()
        end)
    else
        test("fixture restore " .. i, function(t)
            local vm = provium:vm_fixture("soak", function(vm) vm:write_file("/root/mark", "soak") end)
            t:eq(vm:read_file("/root/mark"), "soak")
            vm:kill()
        end)
    end
end
"""


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else 0


def main():
    provium, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="provium-soak-")
    per = [KNOB["STARTS"] // KNOB["FILES"] + (1 if i < KNOB["STARTS"] % KNOB["FILES"] else 0)
           for i in range(KNOB["FILES"])]
    for i, n in enumerate(per):
        with open(os.path.join(work, "soak%d.test.lua" % i), "w") as f:
            f.write(FILE.format(index=i, n=n))
    leaks = os.path.join(HERE, "..", "scripts", "check-leaks")
    before = os.path.join(out, "soak-leaks-before.json")
    subprocess.run([leaks, "snapshot", before], check=True)
    ev = os.path.join(out, "soak.mp")
    t0 = time.monotonic()
    r = subprocess.run([provium, "--accel", os.environ.get("BENCH_ACCEL", "auto"), "--progress",
                        "never", "-j", str(KNOB["JOBS"]), "--events", ev, work],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    leak = subprocess.run([leaks, "compare", before], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    subprocess.run(["rm", "-rf", work])
    report = r.stdout.decode(errors="replace")
    evs = events(provium, ev)
    kinds = {"vm.boot": "cold boots", "vm.restore": "fixture restores"}
    starts = {k: [e["duration_ns"] for e in evs if e["type"] == k and e.get("ok")] for k in kinds}
    bad = [e for e in evs if e["type"] in kinds and not e.get("ok")]
    failed = [e for e in evs if e["type"] == "test.end" and e.get("status") == "fail"]
    print("soak: %d files, %d at once, %.0f s" % (KNOB["FILES"], KNOB["JOBS"], wall))
    for k, name in kinds.items():
        xs = starts[k]
        print("  %-17s %5d   median %7.1f ms   p99 %7.1f ms" %
              (name, len(xs), statistics.median(xs) / 1e6 if xs else 0, pct(xs, 99) / 1e6))
    print("  %-17s %5d" % ("starts in all", sum(len(x) for x in starts.values())))
    print("  %-17s %5d" % ("failed starts", len(bad)))
    print("  %-17s %5d" % ("failed tests", len(failed)))
    print("  %-17s %5s" % ("leaks", "none" if leak.returncode == 0 else "SEE BELOW"))
    print("  run's last line: " + (report.strip().splitlines() or [""])[-1])
    for e in bad[:20]:
        print("  start failed: %s %s: %s" % (e.get("file"), e.get("vm"), e.get("error")))
    for e in failed[:20]:
        print("  test failed: %s: %s: %s" % (e.get("file"), e.get("test"), e.get("message", "")))
    if leak.returncode != 0:
        print(leak.stdout.decode(errors="replace"), end="")
    ok = r.returncode == 0 and not bad and not failed and leak.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
