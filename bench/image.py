#!/usr/bin/env python3
"""image.py: image recipes, each figure beside its peer measured in the same run.

Called by `bench/run image` (docs/performance.md, "Image recipes"):

    image.py PROVIUM OUT_DIR

1. Build time of a recipe with one mid-size package (redis-server: its dependency closure is
   52 packages, perl among them) through `provium image build`:
   - cold: the closure's .debs removed from the download cache first (download, unpack, pack);
   - warm: rebuilt with --force, the .debs cached (unpack and pack only);
   - cached: the image is in the cache (recipe evaluation, package resolution memo, key);
   beside the default image's own rebuild (--force, kernel cached), same run.
2. Boot to agent-ready (the vm.boot event of bench/boot.lua, one fresh provium a boot) of that
   image beside the default image's, interleaved, BENCH_IMG_BOOTS times each.
3. The packing threshold: the same two recipes (a small one, `hello`, and redis-server) packed
   both ways, initramfs and read-only root disk, booted interleaved. The tree size where the
   two curves cross is the threshold image.c uses (IMAGE_PACK_THRESHOLD).

Each recipe gets a new name every run (its key is new), and every image it builds is removed
at the end. Raw numbers go to OUT_DIR/raw-image.json, the table to OUT_DIR/table-image.txt.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from floor import events, write_report  # noqa: E402  (provium events FILE --json)

BOOTS = int(os.environ.get("BENCH_IMG_BOOTS", "5"))
BUILDS = int(os.environ.get("BENCH_IMG_BUILDS", "3"))
TAG = "%x" % (int(time.time()) & 0xffffff)


def log(msg):
    sys.stderr.write("bench image: %s\n" % msg)
    sys.stderr.flush()


def timed(argv, env=None):
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ms = (time.monotonic() - t0) * 1000
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace"))
        sys.exit("bench image: %s failed (exit %d)" % (" ".join(argv), r.returncode))
    return ms, r.stdout.decode()


def cache_dir():
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "provium")


def write_recipe(d, name, body):
    with open(os.path.join(d, name + ".lua"), "w") as f:
        f.write(body)


def built(provium, name, env, force=False):
    ms, out = timed([provium, "image", "build", name] + (["--force"] if force else []), env)
    last = out.strip().splitlines()[-1].split()
    return ms, last[2], "building" in out


def manifest(d):
    with open(os.path.join(d, "manifest")) as f:
        return dict(l.rstrip("\n").split("=", 1) for l in f if "=" in l)


def threshold():
    with open(os.path.join(HERE, "..", "src", "host", "image", "image.c")) as f:
        for line in f:
            if line.startswith("#define IMAGE_PACK_THRESHOLD"):
                return line.split(None, 2)[2].strip()
    return "?"


def boot_ms(provium, image, out, i, env):
    evfile = os.path.join(out, "image-boot-%s-%d.events" % (image, i))
    e = dict(env, BENCH_IMAGE=image)
    r = subprocess.run([provium, "--accel", "tcg", "--events", evfile, os.path.join(HERE, "boot.lua")],
                       env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace"))
        sys.exit("bench image: boot of %s failed" % image)
    b = [x for x in events(provium, evfile) if x.get("type") == "vm.boot" and x.get("ok")]
    return b[0]["duration_ns"] / 1e6


def main():
    provium, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rdir = tempfile.mkdtemp(prefix="provium-bench-images-")
    env = dict(os.environ, PROVIUM_IMAGE_PATH=rdir)
    names = {
        "redis": "bredis-" + TAG, "redis_i": "bredisi-" + TAG, "redis_d": "bredisd-" + TAG,
        "hello_i": "bhelloi-" + TAG, "hello_d": "bhellod-" + TAG,
    }
    write_recipe(rdir, names["redis"], 'packages { "redis-server" }\n')
    write_recipe(rdir, names["redis_i"], 'packages { "redis-server" }\npack "initramfs"\n')
    write_recipe(rdir, names["redis_d"], 'packages { "redis-server" }\npack "disk"\n')
    write_recipe(rdir, names["hello_i"], 'packages { "hello" }\npack "initramfs"\n')
    write_recipe(rdir, names["hello_d"], 'packages { "hello" }\npack "disk"\n')
    raw = {}
    try:
        # 1. build times
        spec_pkgs = None
        log("resolving %s" % names["redis"])
        ms, dirpath, _ = built(provium, names["redis"], env)
        with open(dirpath + ".spec.json") as f:
            spec_pkgs = json.load(f)["resolved"]
        downloads = os.path.join(cache_dir(), "downloads")
        removed = 0
        for p in spec_pkgs:
            for fn in os.listdir(downloads):
                if fn.startswith(p["name"] + "_"):
                    os.unlink(os.path.join(downloads, fn))
                    removed += 1
        log("cold build (%d .debs removed from the download cache)" % removed)
        raw["cold_ms"], dirpath, b = built(provium, names["redis"], env, force=True)
        raw["warm_ms"] = [built(provium, names["redis"], env, force=True)[0] for _ in range(BUILDS)]
        raw["cached_ms"] = [built(provium, names["redis"], env)[0] for _ in range(BUILDS + 2)]
        raw["default_ms"] = [built(provium, "default", env, force=True)[0] for _ in range(BUILDS)]
        m = manifest(dirpath)
        raw["redis_pack"] = m.get("pack")
        raw["redis_tree_bytes"] = int(m.get("tree_bytes", 0))
        raw["packages"] = len(spec_pkgs)

        # 2 and 3. boots, interleaved
        sizes = {}
        for k in ("redis_i", "redis_d", "hello_i", "hello_d"):
            log("building %s" % names[k])
            _, d, _ = built(provium, names[k], env)
            sizes[k] = int(manifest(d).get("tree_bytes", 0))
        raw["tree_bytes"] = sizes
        order = ["default", names["redis"], names["redis_i"], names["redis_d"], names["hello_i"],
                 names["hello_d"]]
        boots = {n: [] for n in order}
        for i in range(BOOTS):
            for n in order:
                boots[n].append(boot_ms(provium, n, out, i, env))
                log("boot %d %s: %.0f ms" % (i, n, boots[n][-1]))
        raw["boots_ms"] = boots
    finally:
        for n in names.values():
            subprocess.run([provium, "image", "rm", n], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(rdir, ignore_errors=True)

    med = statistics.median
    bd = med(boots["default"])
    mb = lambda k: sizes[k] / 2**20  # noqa: E731
    lines = [
        "Provium bench: image recipes, %s, load average %s" % (
            time.strftime("%Y-%m-%d %H:%M:%S %z"), " ".join("%.2f" % x for x in os.getloadavg())),
        "",
        "%-48s %10s  %s" % ("figure", "median", "beside (same run)"),
        "%-48s %10s  %s" % ("build, cold (%d packages, downloads)" % raw["packages"], "%.1f s" % (raw["cold_ms"] / 1000), ""),
        "%-48s %10s  %s" % ("build, warm (.debs cached, --force)", "%.1f s" % (med(raw["warm_ms"]) / 1000),
                            "default image rebuild: %.1f s" % (med(raw["default_ms"]) / 1000)),
        "%-48s %10s  %s" % ("lookup, cached (provium image build)", "%.0f ms" % med(raw["cached_ms"]), ""),
        "%-48s %10s  %s" % ("boot to agent-ready, redis (auto: %s, %.0f MiB)" % (raw["redis_pack"], raw["redis_tree_bytes"] / 2**20),
                            "%.0f ms" % med(boots[names["redis"]]), "default image: %.0f ms (%+.0f ms)" % (bd, med(boots[names["redis"]]) - bd)),
        "",
        "packing (boot to agent-ready, n=%d each, interleaved):" % BOOTS,
        "  %-46s %10s  %s" % ("default image (initramfs)", "%.0f ms" % bd, ""),
    ]
    for k, label in (("hello_i", "hello, initramfs"), ("hello_d", "hello, disk"),
                     ("redis_i", "redis-server, initramfs"), ("redis_d", "redis-server, disk")):
        v = med(boots[names[k]])
        lines.append("  %-46s %10s  %+.0f ms beside default" % ("%s (tree %.0f MiB)" % (label, mb(k)), "%.0f ms" % v, v - bd))
    # A root disk's boot does not depend on its size (only what is read is read): its cost is
    # the median of every disk boot. An initramfs's grows with its size (the kernel unpacks all
    # of it into RAM): the line through the two sizes. They cross at the threshold.
    disk = med(boots[names["hello_d"]] + boots[names["redis_d"]] + boots[names["redis"]])
    (s0, b0), (s1, b1) = [(sizes[k], med(boots[names[k]])) for k in ("hello_i", "redis_i")]
    slope = (b1 - b0) / max(1, s1 - s0)
    lines.append("  root disk, any size (all disk boots): %.0f ms; initramfs: %.1f ms per MiB" % (
        disk, slope * 2**20))
    if slope > 0:
        x = s0 + (disk - b0) / slope
        raw["crossover_bytes"] = x
        lines.append("  they cost the same at a tree of %.0f MiB (IMAGE_PACK_THRESHOLD in image.c: %s)" % (
            x / 2**20, threshold()))
    write_report(out, "image", "\n".join(lines) + "\n", raw)


if __name__ == "__main__":
    main()
