"""kernel.py: the guest kernel, Debian's cloud kernel: which package (apt-cache, no download),
and that package unpacked once per version into the cache's kernels/<package>_<version>/
(vmlinux, bzImage, modules/, config, release, done)."""
import os
import shutil
import struct
import subprocess
import tempfile

from imagelib import debs
from imagelib.common import Fail, cache_dir, log, run

META_PACKAGE = "linux-image-cloud-amd64"

# The first bytes of a bzImage's compressed payload -> the tool that decompresses it.
_DECOMPRESSORS = ((b"\x02\x21\x4c\x18", "lz4"), (b"\x28\xb5\x2f\xfd", "zstd"),
                  (b"\xfd\x37\x7a\x58", "xz"), (b"\x1f\x8b", "gzip"))


def resolve_package(meta=META_PACKAGE):
    """{"kernel_package", "kernel_version", "kernel_sha256"} of the linux-image package meta
    depends on, as apt's lists say (no download). Raises Fail."""
    r = run(["apt-cache", "show", "--no-all-versions", meta])
    dep = None
    for line in r.stdout.splitlines():
        if line.startswith("Depends: "):
            for d in line[len("Depends: "):].split(","):
                w = d.split()
                if w and w[0].startswith("linux-image-"):
                    dep = w[0]
                    break
            break
    if r.returncode != 0 or not r.stdout.strip():
        raise Fail(None, "apt-cache show %s: package unknown (apt-get update? Debian sources?)"
                   % meta)
    if not dep:
        raise Fail(None, "%s has no linux-image dependency" % meta)
    r = run(["apt-cache", "show", "--no-all-versions", dep])
    if r.returncode != 0:
        raise Fail(None, "apt-cache show %s failed" % dep)
    f = {}
    for line in r.stdout.splitlines():
        k, sep, v = line.partition(": ")
        if sep and k in ("Package", "Version", "SHA256"):
            f.setdefault(k, v.strip())
    if len(f) != 3:
        raise Fail(None, "apt-cache show %s: no Package/Version/SHA256" % dep)
    return {"kernel_package": f["Package"], "kernel_version": f["Version"],
            "kernel_sha256": f["SHA256"]}


def kernel_dir(package, version):
    return os.path.join(cache_dir(), "kernels", "%s_%s" % (package, version))


def extract_vmlinux(bz, out):
    """Writes the ELF vmlinux inside bzImage bz to out. The setup header gives the payload's
    offset and length (0x248, 0x24c, relative to the protected-mode code at
    (setup_sects+1)*512); the payload ends with its 4-byte uncompressed size, which the
    decompressors do not expect."""
    with open(bz, "rb") as f:
        b = f.read()
    ss = b[0x1f1]
    po, pl = struct.unpack_from("<II", b, 0x248)
    start = (ss + 1) * 512 + po
    payload = b[start:start + pl - 4]
    tool = next((t for magic, t in _DECOMPRESSORS if payload.startswith(magic)), None)
    if not tool:
        raise Fail(None, "%s: unknown payload compression (magic %s)" % (bz, payload[:4].hex()))
    with open(out, "wb") as f:
        r = subprocess.run([tool, "-dc"], input=payload, stdout=f, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise Fail(None, "%s: decompressing the payload with %s failed" % (bz, tool))
    with open(out, "rb") as f:
        if f.read(4) != b"\x7fELF":
            raise Fail(None, "%s: payload is not an ELF vmlinux" % bz)


def unpacked(package, version, sha256):
    """The directory of the kernel package unpacked (downloading it first when needed):
    vmlinux, bzImage, modules/ (lib/modules/<release>), config, release. Raises Fail."""
    kdir = kernel_dir(package, version)
    if os.path.isfile(os.path.join(kdir, "done")):
        return kdir
    os.makedirs(os.path.dirname(kdir), exist_ok=True)
    deb, = debs.fetch([{"name": package, "version": version, "arch": "amd64"}],
                      shas={(package, version): sha256})
    log("unpacking %s %s" % (package, version))
    tmp = tempfile.mkdtemp(prefix=os.path.basename(kdir) + ".tmp.", dir=os.path.dirname(kdir))
    try:
        root = os.path.join(tmp, "root")
        debs.unpack([deb], root)
        boot = os.path.join(root, "boot")
        bz = sorted(n for n in os.listdir(boot) if n.startswith("vmlinuz-")) \
            if os.path.isdir(boot) else []
        if not bz:
            raise Fail(None, "%s: no /boot/vmlinuz-*" % deb)
        release = bz[0][len("vmlinuz-"):]
        os.rename(os.path.join(boot, bz[0]), os.path.join(tmp, "bzImage"))
        extract_vmlinux(os.path.join(tmp, "bzImage"), os.path.join(tmp, "vmlinux"))
        os.rename(os.path.join(root, "lib", "modules", release), os.path.join(tmp, "modules"))
        try:
            os.rename(os.path.join(boot, "config-" + release), os.path.join(tmp, "config"))
        except OSError:
            pass
        shutil.rmtree(root)
        with open(os.path.join(tmp, "release"), "w") as f:
            f.write(release + "\n")
        open(os.path.join(tmp, "done"), "w").close()
        try:
            os.rename(tmp, kdir)
        except OSError:
            if not os.path.isfile(os.path.join(kdir, "done")):  # else another build won
                raise Fail(None, "cannot rename %s to %s" % (tmp, kdir))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return kdir


def release(kdir):
    with open(os.path.join(kdir, "release")) as f:
        return f.read().strip()
