"""floor.py: what the bench's floor and peer guests share with Provium, taken from Provium
itself rather than copied: its QEMU command line (the argv of a vm.spawn event) minus
Provium's own parts, the events read with `provium events FILE --json`, and initrds extended
with scripts/imagelib's newc writer. Used by bench/bench.py, bench/image.py, bench/peers.py
(through bench.py) and bench/raw-boot-floor.sh.
"""
import json
import os
import select
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
from imagelib import newc  # noqa: E402

TIMEOUT = 120
# QEMU options without a value (the others Provium passes take one).
FLAGS = {"-nodefaults", "-no-user-config", "-no-reboot", "-nographic", "-S", "-snapshot"}


def events(provium, path):
    """The events of an --events file, as dicts, decoded by `provium events FILE --json`."""
    r = subprocess.run([provium, "events", path, "--json"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("provium events %s: %s" % (path, r.stderr.decode(errors="replace").strip()))
    return [json.loads(l) for l in r.stdout.splitlines()]


def write_report(out, key, text, raw):
    """Prints a bench's table and keeps it as OUT/table-KEY.txt, its raw numbers as
    OUT/raw-KEY.json."""
    sys.stdout.write(text)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table-%s.txt" % key), "w") as f:
        f.write(text)
    with open(os.path.join(out, "raw-%s.json" % key), "w") as f:
        json.dump(raw, f, indent=1)


def run_dir(prefix):
    """A temporary directory where Provium keeps a VM's RAM file: /dev/shm when it can be
    written (as src/host/base/paths.c), else the default temporary directory."""
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix=prefix, dir=shm)


def provium_argv(provium, out, env=None):
    """QEMU's argv as Provium starts it for a VM of the default image: one boot of
    bench/boot.lua (not counted), its vm.spawn event."""
    evfile = os.path.join(out, "argv.events")
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([provium, "--accel", "tcg", "--events", evfile, os.path.join(HERE, "boot.lua")],
                       env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace"))
        raise RuntimeError("%s bench/boot.lua failed (exit %d)" % (provium, r.returncode))
    sp = [x for x in events(provium, evfile) if x.get("type") == "vm.spawn" and x.get("argv")]
    if not sp:
        raise RuntimeError("%s: no vm.spawn event with argv" % evfile)
    return sp[0]["argv"]


def option(argv, name):
    """The value after the first `name` in argv, or None."""
    return argv[argv.index(name) + 1] if name in argv else None


def floor_argv(spawn, initrd, tmp, ports, kernel=None, append=None):
    """Provium's QEMU argv (spawn) for a floor guest, minus Provium's own parts: its QMP
    socket and its agent ports (their chardevs and virtserialports), which become the
    bench's ports (unix sockets tmp/p<i>.sock named as in ports). Guest RAM is a fresh file
    tmp/ram (Provium's lives in its run directory); initrd, and kernel and append when given,
    replace the image's."""
    ram = os.path.join(tmp, "ram")
    if os.path.exists(ram):
        os.unlink(ram)  # a fresh file for every guest, as Provium's
    a, i = [spawn[0]], 1
    while i < len(spawn):
        opt = spawn[i]
        if opt in FLAGS or i + 1 == len(spawn):
            a.append(opt)
            i += 1
            continue
        val = spawn[i + 1]
        i += 2
        if opt == "-qmp" or (opt == "-chardev" and ",id=agent" in "," + val) or \
                (opt == "-device" and val.startswith("virtserialport,") and ",chardev=agent" in val):
            continue
        if opt == "-object" and val.startswith("memory-backend-file,"):
            val = ",".join("mem-path=" + ram if f.startswith("mem-path=") else f
                           for f in val.split(","))
        val = {"-name": "provium-floor", "-initrd": initrd, "-kernel": kernel or val,
               "-append": val if append is None else append}.get(opt, val)
        a += [opt, val]
        if opt == "-device" and val.startswith("virtio-serial-pci"):
            bus = dict(f.split("=", 1) for f in val.split(",")[1:] if "=" in f).get("id", "vser0")
            for k, name in enumerate(ports):
                a += ["-chardev", "socket,id=p%d,path=%s/p%d.sock,server=on,wait=off" % (k, tmp, k),
                      "-device", "virtserialport,bus=%s.0,chardev=p%d,name=%s" % (bus, k, name)]
    return a


def overlay_initrd(initrd, entries, out):
    """The image's initrd followed by a newc archive of (name, mode, data) entries (the
    kernel unpacks them in order: later entries win)."""
    with open(initrd, "rb") as f:
        base = f.read()
    if base[:6] not in (b"070701", b"070702"):
        sys.exit("bench: %s is compressed; the bench handles the default uncompressed initrd" % initrd)
    with open(out, "wb") as f:
        f.write(base + newc.overlay(entries))


class Guest:
    """A floor QEMU whose console (stdout) is watched for markers."""

    def __init__(self, argv):
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        self.buf = b""

    def wait_for(self, marker, timeout=TIMEOUT):
        """The text after marker to the end of its line, once that line is complete; sets
        self.t_mark to when the marker was first read (time.monotonic())."""
        fd, end = self.p.stdout.fileno(), self.t0 + timeout
        self.t_mark = time.monotonic() if marker in self.buf else None
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                j = self.buf.find(b"\n", i)
                if j >= 0:
                    line = self.buf[i + len(marker):j].decode(errors="replace").strip()
                    self.buf = self.buf[:i] + self.buf[j + 1:]
                    return line
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError("no %r from the floor guest within %d s; console tail:\n%s" % (
                    marker, timeout, self.buf[-2000:].decode(errors="replace")))
            if select.select([fd], [], [], min(left, 1))[0]:
                c = os.read(fd, 65536)
                if not c:
                    raise RuntimeError("floor QEMU exited before %r; console tail:\n%s" % (
                        marker, self.buf[-2000:].decode(errors="replace")))
                self.buf += c
                if self.t_mark is None and marker in self.buf:
                    self.t_mark = time.monotonic()

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.p.stdout.close()
