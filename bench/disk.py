"""disk.py: the disk figures of the bench (docs/performance.md, "Disks"), for bench/bench.py.

bench/disk.lua runs in one VM of the default image with two disks of the same size: one
attached plain (QEMU opens the raw file itself: the floor) and one served by Provium over NBD.
BENCH_DISK_ROUNDS rounds (5), each measuring both disks one after the other, the order swapped
every round: BENCH_DISK_MIB (64) MiB sequential write and read with O_DIRECT (MB/s), and
BENCH_DISK_READS (500) random 4 KiB O_DIRECT reads (per-read latency in the guest). Then
BENCH_DISK_TOGGLES (20) fault toggles on the NBD disk, read from the --events file: the time
d:eio_read{lba = 0, count = 8} plus the next read (which fails with EIO) take, beside two
healthy reads with nothing between them; and the host-side call of the fault and of its undo.
"""
import os
import statistics

KNOBS = {"ROUNDS": 5, "MIB": 64, "READS": 500, "TOGGLES": 20, "SIZE_MIB": 256}  # BENCH_DISK_*
KNOB = {k: int(os.environ.get("BENCH_DISK_" + k, str(v))) for k, v in KNOBS.items()}
ROUNDS, MIB, READS, TOGGLES, SIZE_MIB = (KNOB[k] for k in KNOBS)
KINDS = ("plain", "nbd")

med = statistics.median


def parse_figures(path):
    """BENCH_DISK_OUT of bench/disk.lua -> {"seq-write": {kind: [MB/s by round]}, "seq-read":
    ..., "rand-read": {kind: [{mean, p50, p99, max} in us by round]}, "warm": {kind: MB/s},
    "lat": {label: [us]}}"""
    fig = {"seq-write": {k: [] for k in KINDS}, "seq-read": {k: [] for k in KINDS},
           "rand-read": {k: [] for k in KINDS}, "warm": {}, "lat": {}}
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] in ("seq-write", "seq-read"):
                fig[w[0]][w[1]].append(float(w[3]))
            elif w[0] == "rand-read":
                fig["rand-read"][w[1]].append(dict(zip(("mean", "p50", "p99", "max"), map(float, w[3:7]))))
            elif w[0] == "warm":
                fig["warm"][w[1]] = float(w[2])
            elif w[0] == "lat" and w[3] != "-":
                fig["lat"].setdefault(w[1], []).append(float(w[3]))
    return fig


def toggle_times(ev):
    """Per "toggle N" test of the events: the four exec ops (healthy, healthy, faulted, undone)
    as (start_ns, end_ns), and the ts of its disk.fault and disk.heal events. Returns a list of
    dicts of ms: nothing (the gap between the two healthy reads), fault_gap (the gap around
    eio_read), undo_gap (around undo), healthy_read and faulted_read (the second and third ops),
    fault_to_error (disk.fault to QEMU's BLOCK_IO_ERROR)."""
    out, test, cur = [], None, None
    for e in ev:
        t = e.get("type")
        if t == "test.start":
            test = e.get("test", "")
            cur = {"ops": [], "fault": None, "heal": None, "error": None} if test.startswith("toggle ") else None
        elif cur is None:
            continue
        elif t == "op" and e.get("op") == "exec" and e.get("ok"):
            cur["ops"].append((e["ts"] - e["duration_ns"], e["ts"]))
        elif t == "disk.fault":
            cur["fault"] = e["ts"]
        elif t == "disk.heal":
            cur["heal"] = e["ts"]
        elif t == "vm.qmp_event" and e.get("event") == "BLOCK_IO_ERROR" and cur["error"] is None:
            cur["error"] = e["ts"]
        elif t == "test.end" and e.get("status") == "pass" and len(cur["ops"]) == 4:
            (s0, e0), (s1, e1), (s2, e2), (s3, e3) = cur["ops"]
            ms = lambda ns: ns / 1e6
            d = {"nothing": ms(s1 - e0), "fault_gap": ms(s2 - e1), "undo_gap": ms(s3 - e2),
                 "healthy_read": ms(e1 - s1), "faulted_read": ms(e2 - s2)}
            if cur["fault"] and cur["error"]:
                d["fault_to_error"] = ms(cur["error"] - cur["fault"])
            out.append(d)
            cur = None
    return out


def measure(provium_run, here, out):
    """Runs bench/disk.lua; its figures and toggle times."""
    fig_path = os.path.join(out, "disk.figures")
    if os.path.exists(fig_path):
        os.remove(fig_path)
    env = dict({"BENCH_DISK_" + k: str(v) for k, v in KNOB.items()}, BENCH_DISK_OUT=fig_path)
    ev = provium_run(os.path.join(here, "disk.lua"), os.path.join(out, "disk.events"), env)
    res = parse_figures(fig_path)
    res["toggle"] = toggle_times(ev)
    for what in ("seq-write", "seq-read", "rand-read"):
        for k in KINDS:
            if len(res[what][k]) != ROUNDS:
                raise SystemExit("bench: disk.lua: %d %s figures of the %s disk, expected %d" % (
                    len(res[what][k]), what, k, ROUNDS))
    if len(res["toggle"]) != TOGGLES:
        raise SystemExit("bench: disk.lua: %d fault toggles in the events, expected %d" % (
            len(res["toggle"]), TOGGLES))
    return res


def log_line(x):
    s = summarize(x)
    return "disks: seq write %.0f / %.0f MB/s, seq read %.0f / %.0f MB/s, rand 4K p50 %.0f / %.0f us " \
           "(nbd / plain); fault in +%.2f ms" % (
               s["seq_write_mbs"]["nbd"], s["seq_write_mbs"]["plain"], s["seq_read_mbs"]["nbd"],
               s["seq_read_mbs"]["plain"], s["rand_p50_us"]["nbd"], s["rand_p50_us"]["plain"],
               s["fault_in_ms"])


def summarize(x):
    tg = x["toggle"]
    col = lambda k: [d[k] for d in tg]
    rr = lambda stat: {k: med([d[stat] for d in x["rand-read"][k]]) for k in KINDS}
    s = {"seq_write_mbs": {k: med(x["seq-write"][k]) for k in KINDS},
         "seq_read_mbs": {k: med(x["seq-read"][k]) for k in KINDS},
         "rand_p50_us": rr("p50"), "rand_mean_us": rr("mean"), "rand_p99_us": rr("p99"),
         "rand_max_us": rr("max"),
         "gap_nothing_ms": med(col("nothing")), "gap_fault_ms": med(col("fault_gap")),
         "gap_undo_ms": med(col("undo_gap")), "healthy_read_ms": med(col("healthy_read")),
         "faulted_read_ms": med(col("faulted_read")),
         "with_fault_ms": med([d["fault_gap"] + d["faulted_read"] for d in tg]),
         "without_fault_ms": med([d["nothing"] + d["healthy_read"] for d in tg])}
    s["fault_in_ms"] = med([d["fault_gap"] - d["nothing"] for d in tg])
    s["undo_ms"] = med([d["undo_gap"] - d["nothing"] for d in tg])
    f2e = [d["fault_to_error"] for d in tg if "fault_to_error" in d]
    s["fault_to_error_ms"] = med(f2e) if f2e else None
    # the ratio of each round (both disks measured back to back), beside the ratio of medians
    s["round_ratios"] = {
        "seq_write": [n / p for n, p in zip(x["seq-write"]["nbd"], x["seq-write"]["plain"])],
        "seq_read": [n / p for n, p in zip(x["seq-read"]["nbd"], x["seq-read"]["plain"])],
        "rand_p50": [n["p50"] / p["p50"] for n, p in zip(x["rand-read"]["nbd"], x["rand-read"]["plain"])]}
    s["warm_mbs"] = x["warm"]
    lat = x["lat"]
    s["guest_lat_read_us"] = {k: med(v) for k, v in lat.items() if v}
    return s


def report(x, head, row, info):
    """(table lines, misses, summary) of the disk figures."""
    s = summarize(x)
    sw, sr, p50 = s["seq_write_mbs"], s["seq_read_mbs"], s["rand_p50_us"]
    wr, rd, lr = sw["nbd"] / sw["plain"], sr["nbd"] / sr["plain"], p50["nbd"] / p50["plain"]
    extra = s["with_fault_ms"] - s["without_fault_ms"]
    span = lambda v: "%.2f-%.2f" % (min(v), max(v))
    misses = [wr < 0.7, rd < 0.7, lr > 1.5, extra > 5, s["fault_in_ms"] > 5, s["undo_ms"] > 5]
    lines = [
        "",
        head % ("disks (%d MiB each, n=%d rounds)" % (SIZE_MIB, ROUNDS), "provium", "plain disk, same VM",
                "ratio", "target", ""),
        row("seq write %d MiB O_DIRECT" % MIB, "%.0f MB/s" % sw["nbd"], "%.0f MB/s" % sw["plain"],
            "%.2fx" % wr, ">= 0.7x plain", wr >= 0.7),
        row("seq read %d MiB O_DIRECT" % MIB, "%.0f MB/s" % sr["nbd"], "%.0f MB/s" % sr["plain"],
            "%.2fx" % rd, ">= 0.7x plain", rd >= 0.7),
        row("random 4 KiB read, p50 (x%d)" % READS, "%.0f us" % p50["nbd"], "%.0f us" % p50["plain"],
            "%.2fx" % lr, "<= 1.5x plain", lr <= 1.5),
        info("  mean / p99", "%.0f / %.0f us" % (s["rand_mean_us"]["nbd"], s["rand_p99_us"]["nbd"]),
             "%.0f / %.0f us" % (s["rand_mean_us"]["plain"], s["rand_p99_us"]["plain"]),
             "%.2fx" % (s["rand_mean_us"]["nbd"] / s["rand_mean_us"]["plain"])),
        row("fault in + read sees EIO (n=%d)" % len(x["toggle"]), "%.2f ms" % s["with_fault_ms"],
            "no fault, healthy read: %.2f ms" % s["without_fault_ms"], "%+.2f" % extra, "<= +5 ms",
            extra <= 5),
        row("  ops' gap around eio_read{}", "%.3f ms" % s["gap_fault_ms"],
            "nothing between two ops: %.3f ms" % s["gap_nothing_ms"], "%+.3f" % s["fault_in_ms"],
            "<= +5 ms", s["fault_in_ms"] <= 5),
        row("  ops' gap around undo()", "%.3f ms" % s["gap_undo_ms"],
            "nothing between two ops: %.3f ms" % s["gap_nothing_ms"], "%+.3f" % s["undo_ms"],
            "<= +5 ms", s["undo_ms"] <= 5),
        "  (MB/s = 10^6 B/s, measured in the guest by provium-diskio: 1 MiB pwrite/pread, the "
        "write then fdatasync; latency of each 4 KiB pread; medians of the rounds, the disks' "
        "order swapped every round. Ratio of each round: write %s, read %s, p50 %s. Untimed "
        "warm-up, the first write of the whole disk: %.0f MB/s provium, %.0f MB/s plain)" % (
            span(s["round_ratios"]["seq_write"]), span(s["round_ratios"]["seq_read"]),
            span(s["round_ratios"]["rand_p50"]),
            s["warm_mbs"].get("nbd", float("nan")), s["warm_mbs"].get("plain", float("nan"))),
        "  (fault: the ops' events around vm:run of one 512-byte O_DIRECT read of sector 0, from "
        "the end of the op before it to the end of the read, which fails with EIO; its floor is "
        "the same with no fault and a healthy read. The gaps: from the end of one op to the start "
        "of the next, i.e. the host-side call between them (ratio column: minus the gap with "
        "nothing between, median of the differences)%s)" % (
            "; from eio_read to QEMU's BLOCK_IO_ERROR event %.2f ms, the read's fork and exec "
            "included" % s["fault_to_error_ms"] if s["fault_to_error_ms"] is not None else ""),
    ]
    return lines, misses, s
