"""peers.py: the peers of bench/run (figure 7 of docs/performance.md), measured in the same run.

A bench-only image: the default image's initrd plus one more cpio segment with Debian's
dropbear-bin (+ libtomcrypt1, libtommath1) and qemu-guest-agent, fetched with `apt-get
download` (never installed on the host), unpacked with `dpkg-deb -x`, their other shared
libraries and the dynamic loader copied from the host (`ldd`; the guest is Debian 12 like the
host), bench/peer-init.sh as /init and an authorized key made here. The guest boots with plain
QEMU (Provium's command line, as the floor guests: bench/floor.py) plus QEMU user networking
with a host forward to its port 22, and a virtio-serial port org.qemu.guest_agent.0 on a unix
socket.

Measured: reading a 4 KiB file and running `true` through
  - multiplexed ssh: one OpenSSH master (ControlMaster), then `ssh -S ctl ... cat /tmp/f4k`
    and `ssh -S ctl ... true` (each a new ssh client process, as a script would do it);
  - qemu-guest-agent: JSON on the chardev socket, guest-file-open/read/close of 4 KiB, and
    guest-exec of `/bin/sh -c true` (what vm:run("true") runs) then guest-exec-status polled
    with no pause until it has exited.
run() returns a dict of samples (ms), or {"error": reason} for what could not be done.
"""
import base64, glob, json, os, select, shutil, socket, stat, subprocess, time

DEBS = ["dropbear-bin", "libtomcrypt1", "libtommath1", "qemu-guest-agent"]
BINS = ["usr/sbin/dropbear", "usr/bin/dropbearkey", "usr/sbin/qemu-ga"]
MULTIARCH = "lib/x86_64-linux-gnu"
LOADER = "lib64/ld-linux-x86-64.so.2"


class PeerError(Exception):
    pass


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    d = os.path.join(base, "provium", "bench", "debs")
    os.makedirs(d, exist_ok=True)
    return d


def fetch_debs():
    """The .deb of each package in DEBS (apt-get download into the cache, once)."""
    d = cache_dir()
    missing = [p for p in DEBS if not glob.glob(os.path.join(d, p + "_*.deb"))]
    if missing:
        r = subprocess.run(["apt-get", "download"] + missing, cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise PeerError("apt-get download %s failed: %s" % (
                " ".join(missing), r.stdout.decode(errors="replace").strip().splitlines()[-1:]))
    return [sorted(glob.glob(os.path.join(d, p + "_*.deb")))[-1] for p in DEBS]


def peer_entries(root, pubkey, init_script):
    """The cpio entries (name, mode, data) of the peer segment, directories first."""
    files = {}
    for b in BINS:
        files[b] = (0o755, open(os.path.join(root, b), "rb").read())
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "usr", MULTIARCH))
    for b in BINS:
        r = subprocess.run(["ldd", os.path.join(root, b)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        out = r.stdout.decode(errors="replace")
        if r.returncode != 0 or "not found" in out:
            raise PeerError("ldd %s: %s" % (b, out.strip().replace("\n", "; ")))
        for line in out.splitlines():
            w = line.split()
            if "=>" in w and len(w) >= 3 and w[2].startswith("/"):
                files[MULTIARCH + "/" + os.path.basename(w[2])] = (0o755, open(w[2], "rb").read())
            elif w and w[0].startswith("/") and "ld-linux" in w[0]:
                files[LOADER] = (0o755, open(w[0], "rb").read())
    files["root/.ssh/authorized_keys"] = (0o600, pubkey)
    files["init"] = (0o755, init_script)
    dirs = set()
    for f in files:
        p = os.path.dirname(f)
        while p:
            dirs.add(p)
            p = os.path.dirname(p)
    ents = [(d, stat.S_IFDIR | (0o700 if d.startswith("root") else 0o755), b"") for d in sorted(dirs)]
    return ents + [(f, stat.S_IFREG | m, data) for f, (m, data) in sorted(files.items())]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Qga:
    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""
        # qemu-ga may still be starting: guest-sync until it answers with our id
        end = time.monotonic() + timeout
        n = 1000
        while True:
            n += 1
            self.s.sendall(json.dumps({"execute": "guest-sync", "arguments": {"id": n}}).encode() + b"\n")
            try:
                while True:
                    r = self.reply(timeout=1)
                    if r.get("return") == n:
                        return
            except TimeoutError:
                if time.monotonic() > end:
                    raise PeerError("qemu-ga did not answer guest-sync within %d s" % timeout)

    def reply(self, timeout=30):
        while b"\n" not in self.buf:
            if not select.select([self.s], [], [], timeout)[0]:
                raise TimeoutError()
            c = self.s.recv(65536)
            if not c:
                raise PeerError("qemu-ga closed the socket")
            self.buf += c
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.strip(b"\xff \r")
        return json.loads(line) if line else self.reply(timeout)

    def call(self, cmd, **args):
        self.s.sendall(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
        r = self.reply()
        if "error" in r:
            raise PeerError("qemu-ga %s: %s" % (cmd, r["error"]))
        return r["return"]

    def read_4k(self):
        t = time.monotonic_ns()
        h = self.call("guest-file-open", path="/tmp/f4k", mode="r")
        d = self.call("guest-file-read", handle=h, count=4096)
        self.call("guest-file-close", handle=h)
        ms = (time.monotonic_ns() - t) / 1e6
        if len(base64.b64decode(d["buf-b64"])) != 4096:
            raise PeerError("qemu-ga read %d bytes" % d["count"])
        return ms

    def run_true(self):
        t = time.monotonic_ns()
        pid = self.call("guest-exec", path="/bin/sh", arg=["-c", "true"])["pid"]
        polls = 0
        while True:
            polls += 1
            st = self.call("guest-exec-status", pid=pid)
            if st.get("exited"):
                break
        ms = (time.monotonic_ns() - t) / 1e6
        if st.get("exitcode") != 0:
            raise PeerError("qemu-ga guest-exec: %r" % st)
        return ms, polls


def run(spawn, initrd, tmp, n, Guest, floor_argv, overlay_initrd, log):
    """Samples of the peers; n measured operations of each kind (after n/10 warm-ups). spawn:
    Provium's QEMU argv (bench/floor.py floor_argv turns it into the peer guest's)."""
    res = {}
    d = os.path.join(tmp, "peers")
    os.makedirs(d, exist_ok=True)
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        raise PeerError("no OpenSSH client on the host (bench/run installs openssh-client)")
    debs = fetch_debs()
    root = os.path.join(d, "root")
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    key = os.path.join(d, "id")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    here = os.path.dirname(os.path.abspath(__file__))
    ents = peer_entries(root, open(key + ".pub", "rb").read(),
                        open(os.path.join(here, "peer-init.sh"), "rb").read())
    pinitrd = os.path.join(d, "initrd")
    overlay_initrd(initrd, ents, pinitrd)
    res["versions"] = [os.path.basename(x) for x in debs]
    port = free_port()
    argv = floor_argv(spawn, pinitrd, d, ["org.qemu.guest_agent.0"]) + [
        "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22" % port,
        "-device", "virtio-net-pci,netdev=n0,romfile="]
    g = Guest(argv)
    ctl = os.path.join(d, "ctl")
    ssh = ["ssh", "-F", "/dev/null", "-i", key, "-p", str(port), "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=ERROR"]
    master = False
    try:
        line = g.wait_for(b"PEER-")
        if not line.startswith("READY"):
            raise PeerError("peer guest: PEER-%s" % line)
        res["ready_s"] = g.t_mark - g.t0
        # the master connection; dropbear may need a moment after PEER-READY
        end = time.monotonic() + 60
        while True:
            r = subprocess.run(ssh + ["-M", "-S", ctl, "-o", "ControlPersist=yes", "-f", "-N",
                                      "root@127.0.0.1"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                master = True
                break
            if time.monotonic() > end:
                raise PeerError("ssh master connection failed: %s" % r.stdout.decode(errors="replace").strip())
            time.sleep(0.5)

        def ssh_mux(cmd, want):
            t = time.monotonic_ns()
            r = subprocess.run(ssh + ["-S", ctl, "root@127.0.0.1", cmd], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            ms = (time.monotonic_ns() - t) / 1e6
            if r.returncode != 0 or (want is not None and len(r.stdout) != want):
                raise PeerError("ssh %s: exit %d, %d bytes: %s" % (
                    cmd, r.returncode, len(r.stdout), r.stderr.decode(errors="replace").strip()))
            return ms

        for _ in range(max(1, n // 10)):
            ssh_mux("cat /tmp/f4k", 4096)
            ssh_mux("true", 0)
        res["ssh_read_4k_ms"] = [ssh_mux("cat /tmp/f4k", 4096) for _ in range(n)]
        res["ssh_true_ms"] = [ssh_mux("true", 0) for _ in range(n)]

        def ssh_fresh():
            t = time.monotonic_ns()
            r = subprocess.run(ssh + ["root@127.0.0.1", "true"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise PeerError("ssh (new connection): %s" % r.stderr.decode(errors="replace").strip())
            return (time.monotonic_ns() - t) / 1e6

        res["ssh_fresh_true_ms"] = [ssh_fresh() for _ in range(5)]
        log("peers: ssh read 4 KiB %.1f ms, true %.1f ms (multiplexed), new connection %.0f ms" % (
            sorted(res["ssh_read_4k_ms"])[n // 2], sorted(res["ssh_true_ms"])[n // 2],
            sorted(res["ssh_fresh_true_ms"])[2]))
        try:
            q = Qga(os.path.join(d, "p0.sock"))
            for _ in range(max(1, n // 10)):
                q.read_4k()
                q.run_true()
            res["qga_read_4k_ms"] = [q.read_4k() for _ in range(n)]
            ex = [q.run_true() for _ in range(n)]
            res["qga_true_ms"] = [e[0] for e in ex]
            res["qga_true_polls"] = [e[1] for e in ex]
            log("peers: qemu-ga read 4 KiB %.1f ms, true %.1f ms" % (
                sorted(res["qga_read_4k_ms"])[n // 2], sorted(res["qga_true_ms"])[n // 2]))
        except (PeerError, OSError) as e:
            res["qga_error"] = str(e)
    finally:
        if master:
            subprocess.run(ssh + ["-S", ctl, "-O", "exit", "root@127.0.0.1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        g.stop()
    return res
