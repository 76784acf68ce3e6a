"""lean.py: the lean kernel (a recipe's `kernel "lean"`): Linux built from Debian's
linux-source-6.1 package with what a test guest uses built in and no modules, cached in the
cache's kernels/lean_<version>_<config hash>/ (vmlinux, config, release, done).

The source comes like every other package (apt-get download, checked against apt's SHA256,
dpkg-deb -x), never installed. The build: `make tinyconfig`, FRAGMENT merged with
scripts/kconfig/merge_config.sh, `make olddefconfig`, a check that every line of FRAGMENT is in
the final .config (an option whose dependencies are missing silently drops out otherwise),
`make vmlinux` at nice 19 (a first build meets running tests) with one job per CPU. About five
and a half minutes on our 2-core machines (docs/performance.md, "A lean kernel"). One build per
directory at a time (flock); the source tree is removed afterwards.
"""
import fcntl
import hashlib
import os
import shutil
import tempfile
import time

from imagelib import debs
from imagelib.common import Fail, cache_dir, log, run

SOURCE_PACKAGE = "linux-source-6.1"
LOCALVERSION = "-provium-lean"

# Built in, on top of tinyconfig: the guest's devices (virtio PCI with ACPI hot-plug, console,
# blk, net, rng, the ACPI power button), the file systems (ext4, overlay, tmpfs, devtmpfs),
# netem and its friends, dummy, veth, tun and bridge links, namespaces and cgroups, PVH (QEMU
# enters the ELF vmlinux directly).
FRAGMENT = """
CONFIG_64BIT=y
CONFIG_SMP=y
CONFIG_PRINTK=y
CONFIG_BUG=y
CONFIG_MULTIUSER=y
CONFIG_FUTEX=y
CONFIG_EPOLL=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_EVENTFD=y
CONFIG_SHMEM=y
CONFIG_AIO=y
CONFIG_POSIX_TIMERS=y
CONFIG_FILE_LOCKING=y
CONFIG_ADVISE_SYSCALLS=y
CONFIG_MEMBARRIER=y
CONFIG_FHANDLE=y
CONFIG_INOTIFY_USER=y
CONFIG_PROC_SYSCTL=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_TTY=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_PCI=y
CONFIG_PCI_MSI=y
CONFIG_HOTPLUG_PCI=y
CONFIG_HOTPLUG_PCI_ACPI=y
CONFIG_ACPI=y
CONFIG_ACPI_BUTTON=y
CONFIG_INPUT=y
CONFIG_INPUT_EVDEV=y
CONFIG_RTC_CLASS=y
CONFIG_RTC_DRV_CMOS=y
CONFIG_VIRTIO_MENU=y
CONFIG_VIRTIO=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_CONSOLE=y
CONFIG_BLK_DEV=y
CONFIG_BLOCK=y
CONFIG_VIRTIO_BLK=y
CONFIG_MSDOS_PARTITION=y
CONFIG_NETDEVICES=y
CONFIG_NET_CORE=y
CONFIG_VIRTIO_NET=y
CONFIG_DUMMY=y
CONFIG_VETH=y
CONFIG_TUN=y
CONFIG_BRIDGE=y
CONFIG_HW_RANDOM=y
CONFIG_HW_RANDOM_VIRTIO=y
CONFIG_NET=y
CONFIG_INET=y
CONFIG_IPV6=y
CONFIG_UNIX=y
CONFIG_PACKET=y
CONFIG_NET_SCHED=y
CONFIG_NET_SCH_NETEM=y
CONFIG_NET_SCH_TBF=y
CONFIG_NET_SCH_HTB=y
CONFIG_NET_CLS_U32=y
CONFIG_NET_CLS_ACT=y
CONFIG_NET_SCH_INGRESS=y
CONFIG_NET_CLS_MATCHALL=y
CONFIG_NET_ACT_MIRRED=y
CONFIG_IFB=y
CONFIG_DEVTMPFS=y
CONFIG_DEVTMPFS_MOUNT=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_TMPFS=y
CONFIG_EXT4_FS=y
CONFIG_EXT4_USE_FOR_EXT2=y
CONFIG_OVERLAY_FS=y
CONFIG_UNIX98_PTYS=y
CONFIG_NAMESPACES=y
CONFIG_UTS_NS=y
CONFIG_IPC_NS=y
CONFIG_PID_NS=y
CONFIG_NET_NS=y
CONFIG_USER_NS=y
CONFIG_CGROUPS=y
CONFIG_MEMCG=y
CONFIG_CGROUP_PIDS=y
CONFIG_SYSVIPC=y
CONFIG_POSIX_MQUEUE=y
CONFIG_HIGH_RES_TIMERS=y
CONFIG_NO_HZ_IDLE=y
CONFIG_HYPERVISOR_GUEST=y
CONFIG_PARAVIRT=y
CONFIG_KVM_GUEST=y
CONFIG_PVH=y
CONFIG_FTRACE=y
CONFIG_LOCALVERSION="%s"
""" % LOCALVERSION


def resolve():
    """{"name", "version", "arch"} of the source package apt would fetch. Raises Fail."""
    r = run(["apt-cache", "show", "--no-all-versions", SOURCE_PACKAGE])
    f = {}
    for line in r.stdout.splitlines():
        k, sep, v = line.partition(": ")
        if sep and k in ("Package", "Version", "Architecture"):
            f.setdefault(k, v.strip())
    if r.returncode != 0 or len(f) != 3:
        raise Fail(None, "kernel \"lean\": apt-cache show %s: not in apt's lists (apt-get "
                   "update? Debian's main archive in the sources?)" % SOURCE_PACKAGE)
    return {"name": f["Package"], "version": f["Version"], "arch": f["Architecture"]}


def fragment_hash():
    return hashlib.sha256(FRAGMENT.encode()).hexdigest()[:12]


def kernel_dir(source):
    return os.path.join(cache_dir(), "kernels", "lean_%s_%s" % (
        source["version"].replace(":", "%3a"), fragment_hash()))


def release(kdir):
    with open(os.path.join(kdir, "release")) as f:
        return f.read().strip()


def _make(src, args, logf, what):
    """Runs make in src at nice 19, its output appended to logf. Raises Fail with its tail."""
    jobs = str(max(1, len(os.sched_getaffinity(0))))
    cmd = ["nice", "-n", "19", "make", "-C", src, "-j", jobs, "ARCH=x86_64"] + args
    logf.write("$ %s\n" % " ".join(cmd))
    logf.flush()
    r = run(cmd)
    logf.write(r.stdout + r.stderr)
    logf.flush()
    if r.returncode != 0:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-4:])
        raise Fail(None, "kernel \"lean\": %s failed (make %s, exit %d): %s" % (
            what, " ".join(args), r.returncode, tail[-400:]))


def _check_config(config):
    """Every line of FRAGMENT in the final .config, or Fail naming the first that dropped."""
    with open(config) as f:
        have = set(l.strip() for l in f)
    for want in FRAGMENT.split():
        if want.startswith("CONFIG_") and want not in have:
            raise Fail(None, "kernel \"lean\": %s did not stay in the configuration (an "
                       "option it depends on is missing from imagelib/lean.py)" % want)


def _tools():
    need = ("make", "gcc", "flex", "bison", "bc", "xz", "tar", "perl")
    missing = [t for t in need if not shutil.which(t)]
    if missing:
        raise Fail(None, "kernel \"lean\": building it needs %s on the host (scripts/bootstrap "
                   "installs them: make check does)" % ", ".join(missing))


def _build(source, tmp):
    deb, = debs.fetch([source])
    t0 = time.monotonic()
    root = os.path.join(tmp, "pkg")
    debs.unpack([deb], root)
    usr_src = os.path.join(root, "usr", "src")
    tars = [n for n in os.listdir(usr_src) if n.endswith(".tar.xz")] \
        if os.path.isdir(usr_src) else []
    if len(tars) != 1:
        raise Fail(None, "kernel \"lean\": %s: expected one /usr/src/*.tar.xz, found %d"
                   % (os.path.basename(deb), len(tars)))
    log("kernel \"lean\": unpacking %s %s" % (source["name"], source["version"]))
    r = run(["tar", "-xJf", os.path.join(usr_src, tars[0]), "-C", tmp])
    if r.returncode != 0:
        raise Fail(None, "kernel \"lean\": tar -xJf %s: %s" % (tars[0], r.stderr.strip()[-300:]))
    shutil.rmtree(root)
    src = os.path.join(tmp, tars[0][:-len(".tar.xz")])
    frag = os.path.join(tmp, "lean.config")
    with open(frag, "w") as f:
        f.write(FRAGMENT.lstrip())
    t1 = time.monotonic()
    log("kernel \"lean\": configuring and building (about five minutes on two cores)")
    with os.fdopen(os.dup(2), "w") as logf:  # the image's build log
        _make(src, ["tinyconfig"], logf, "tinyconfig")
        r = run(["sh", os.path.join(src, "scripts", "kconfig", "merge_config.sh"), "-m",
                 "-O", src, os.path.join(src, ".config"), frag], cwd=src)
        logf.write(r.stdout + r.stderr)
        if r.returncode != 0:
            raise Fail(None, "kernel \"lean\": merge_config.sh failed: %s"
                       % r.stderr.strip()[-300:])
        _make(src, ["olddefconfig"], logf, "olddefconfig")
        _check_config(os.path.join(src, ".config"))
        _make(src, ["vmlinux"], logf, "the build")
    rel = run(["make", "-s", "-C", src, "ARCH=x86_64", "kernelrelease"]).stdout.strip()
    if not rel.endswith(LOCALVERSION):
        raise Fail(None, "kernel \"lean\": unexpected release %r" % rel)
    os.rename(os.path.join(src, "vmlinux"), os.path.join(tmp, "vmlinux"))
    os.rename(os.path.join(src, ".config"), os.path.join(tmp, "config"))
    shutil.rmtree(src)
    os.unlink(frag)
    with open(os.path.join(tmp, "release"), "w") as f:
        f.write(rel + "\n")
    log("kernel \"lean\": %s built in %.0f s (unpacking %.0f s), vmlinux %d MB" % (
        rel, time.monotonic() - t0, t1 - t0, os.path.getsize(os.path.join(tmp, "vmlinux")) >> 20))


def built(source):
    """The directory of the lean kernel from source ({"name", "version", "arch"}), building it
    first when the cache lacks it: vmlinux, config, release. Raises Fail."""
    kdir = kernel_dir(source)
    if os.path.isfile(os.path.join(kdir, "done")):
        return kdir
    _tools()
    os.makedirs(os.path.dirname(kdir), exist_ok=True)
    with open(kdir + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another builder of the same kernel: wait for it
        if os.path.isfile(os.path.join(kdir, "done")):
            return kdir
        tmp = tempfile.mkdtemp(prefix=os.path.basename(kdir) + ".tmp.", dir=os.path.dirname(kdir))
        try:
            _build(source, tmp)
            open(os.path.join(tmp, "done"), "w").close()
            if os.path.lexists(kdir):
                shutil.rmtree(kdir)  # a build that never finished (no "done")
            os.rename(tmp, kdir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return kdir
