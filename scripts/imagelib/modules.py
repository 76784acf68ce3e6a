"""modules.py: a kernel's loadable modules: the index of their files, their bytes
(decompressed), their depends= (read from the .modinfo section: Debian's package ships no
modules.dep), and the closure of a list of modules, dependencies first."""
import os
import re
import struct
import subprocess

from imagelib.common import Fail

_KO = re.compile(r"([^/]*)\.ko(\.xz|\.zst|\.gz)?$")


def index(kdir):
    """name (with '_') -> path of every loadable module of the kernel unpacked in kdir (see
    imagelib.kernel), or None for the built-in ones. Read from modules.order + modules.builtin
    (a walk of kernel/ when the package has no modules.order); paths may lack the
    .xz/.zst/.gz the file has (module_file finds it)."""
    idx = {}
    mdir = os.path.join(kdir, "modules")
    top = os.path.join(mdir, "kernel")
    if not os.path.isdir(top):
        raise Fail(None, "kernel modules not found in %s (build the base image first)" % top)
    try:
        for f in ("modules.builtin", "modules.order"):
            with open(os.path.join(mdir, f)) as fh:
                for rel in fh.read().split():
                    m = _KO.search(rel)
                    if m:
                        idx[m.group(1).replace("-", "_")] = (
                            None if f == "modules.builtin" else os.path.join(mdir, rel))
    except OSError:
        for d, _dirs, files in os.walk(top):
            for f in files:
                m = _KO.search(f)
                if m:
                    idx.setdefault(m.group(1).replace("-", "_"), os.path.join(d, f))
    return idx


def module_file(path):
    """The existing file for a module path from index() (compressed or not)."""
    for suffix in ("", ".xz", ".zst", ".gz"):
        if os.path.isfile(path + suffix):
            return path + suffix
    raise Fail(None, "module file %s is missing" % path)


def read(path):
    """The module's bytes, decompressed."""
    if path.endswith(".xz"):
        import lzma
        return lzma.open(path).read()
    if path.endswith(".gz"):
        import gzip
        return gzip.open(path).read()
    if path.endswith(".zst"):
        r = subprocess.run(["zstd", "-qdc", path], stdout=subprocess.PIPE)
        if r.returncode:
            raise Fail(None, "%s: zstd -d failed" % path)
        return r.stdout
    with open(path, "rb") as f:
        return f.read()


def depends(data):
    """depends= of a module (ELF64 little endian .modinfo section), as a list of names."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3a)
    secs = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    stroff = secs[shstrndx][4]
    for name, _t, _f, _a, off, size in secs:
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] == b".modinfo":
            for kv in data[off:off + size].split(b"\0"):
                if kv.startswith(b"depends="):
                    return [d for d in kv[8:].decode().split(",") if d]
    return []


class Module:
    """One module of a closure: its name, file, decompressed bytes and path in the guest."""

    __slots__ = ("name", "path", "data", "guest_path")

    def __init__(self, name, path, data, guest_path):
        self.name, self.path, self.data, self.guest_path = name, path, data, guest_path


class Kernel:
    """The modules of the kernel unpacked in kdir (release: its `uname -r`)."""

    def __init__(self, kdir, release):
        self.kdir, self.release = kdir, release
        self.idx = index(kdir)
        self.top = os.path.join(kdir, "modules")

    def has(self, name):
        return name.replace("-", "_") in self.idx

    def guest_path(self, path):
        """lib/modules/<release>/kernel/... of a module file, without compression suffix."""
        rel = re.sub(r"\.(xz|zst|gz)$", "", os.path.relpath(path, self.top))
        return "lib/modules/%s/%s" % (self.release, rel)

    def closure(self, names, seen, line=None):
        """The modules names need that are not in seen (a set of names, updated), depth first,
        dependencies before dependents; built-in ones are left out. Raises Fail (with line)
        for a name the kernel does not have."""
        out = []

        def visit(m):
            m = m.replace("-", "_")
            if m in seen:
                return
            seen.add(m)
            if m not in self.idx:
                raise Fail(line, "module '%s' is not in kernel %s" % (m, self.release))
            if self.idx[m] is None:
                return  # built into the kernel
            path = module_file(self.idx[m])
            data = read(path)
            for d in depends(data):
                visit(d)
            out.append(Module(m, path, data, self.guest_path(path)))

        for n in names:
            visit(n)
        return out
