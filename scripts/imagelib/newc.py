#!/usr/bin/env python3
"""newc.py: a small deterministic reader and writer of newc ("070701") cpio archives.

Used by scripts/build-default-image (the initramfs), scripts/build-recipe-image (recipe
images: merging a base initramfs with a tree, or extracting it for a disk image) and the bench
(bench/bench.py, bench/raw-boot-floor.sh: the floor guests' initrds).

Command line (python3 scripts/imagelib/newc.py ...):
  newc.py write SPEC OUT   write the archive described by SPEC (one entry a line):
                             dir NAME MODE              (MODE in octal)
                             file NAME SRC MODE         (contents read from host file SRC)
                             slink NAME TARGET
                             nod NAME MODE c|b MAJ MIN  (device node: no root needed)
  newc.py list ARCHIVE     print "MODE UID GID SIZE NAME[ -> TARGET]" per entry (octal mode)

Every entry has mtime 0 and, unless the caller says otherwise, uid/gid 0; inode numbers count
up from 721; the archive ends with the TRAILER!!! entry and zero padding to a multiple of 512
bytes. Equal inputs give equal bytes. Names are stored without a leading "/".

Module API: Writer (entries out), overlay (a small archive to append), read_archive (entries
in, concatenated archives and the zero padding between them allowed), Entry.
"""
import stat
import sys

MAGIC = b"070701"
HEADER_LEN = 110
TRAILER = "TRAILER!!!"
FIRST_INO = 721


class Entry:
    """One archive member. data is bytes for regular files and symlinks (the target)."""

    __slots__ = ("name", "mode", "uid", "gid", "nlink", "ino", "rmaj", "rmin", "data")

    def __init__(self, name, mode, uid=0, gid=0, nlink=1, ino=0, rmaj=0, rmin=0, data=b""):
        self.name, self.mode, self.uid, self.gid = name, mode, uid, gid
        self.nlink, self.ino, self.rmaj, self.rmin, self.data = nlink, ino, rmaj, rmin, data

    def is_dir(self):
        return stat.S_ISDIR(self.mode)

    def is_reg(self):
        return stat.S_ISREG(self.mode)

    def is_link(self):
        return stat.S_ISLNK(self.mode)

    def is_dev(self):
        return stat.S_ISCHR(self.mode) or stat.S_ISBLK(self.mode)


class Writer:
    """Writes entries to a binary file object; call finish() once at the end."""

    def __init__(self, f, first_ino=FIRST_INO):
        self.f = f
        self.ino = first_ino - 1

    def _header(self, name, mode, size, nlink, uid, gid, rmaj, rmin, ino=None):
        if ino is None:
            self.ino += 1
            ino = self.ino
        n = name.lstrip("/").encode() + b"\0"
        fields = (ino, mode, uid, gid, nlink, 0, size, 0, 0, rmaj, rmin, len(n), 0)
        self.f.write(MAGIC + b"".join(b"%08X" % v for v in fields) + n)
        self.f.write(b"\0" * (-(HEADER_LEN + len(n)) % 4))

    def _data(self, b):
        self.f.write(b)
        self.f.write(b"\0" * (-len(b) % 4))

    def dir(self, name, mode, uid=0, gid=0):
        self._header(name, stat.S_IFDIR | mode, 0, 2, uid, gid, 0, 0)

    def file(self, name, data, mode, uid=0, gid=0, nlink=1, ino=None):
        self._header(name, stat.S_IFREG | mode, len(data), nlink, uid, gid, 0, 0, ino)
        self._data(data)

    def slink(self, name, target, uid=0, gid=0):
        b = target.encode() if isinstance(target, str) else target
        self._header(name, stat.S_IFLNK | 0o777, len(b), 1, uid, gid, 0, 0)
        self._data(b)

    def nod(self, name, mode, kind, rmaj, rmin, uid=0, gid=0):
        t = stat.S_IFCHR if kind == "c" else stat.S_IFBLK
        self._header(name, t | mode, 0, 1, uid, gid, rmaj, rmin)

    def other(self, name, mode, uid=0, gid=0):
        """FIFOs and sockets: a header only (mode carries the type)."""
        self._header(name, mode, 0, 1, uid, gid, 0, 0)

    def next_ino(self):
        self.ino += 1
        return self.ino

    def entry(self, e):
        """Writes an Entry as read by read_archive (type from e.mode)."""
        perm = stat.S_IMODE(e.mode)
        if e.is_dir():
            self.dir(e.name, perm, e.uid, e.gid)
        elif e.is_reg():
            self.file(e.name, e.data, perm, e.uid, e.gid)
        elif e.is_link():
            self.slink(e.name, e.data, e.uid, e.gid)
        elif e.is_dev():
            self.nod(e.name, perm, "c" if stat.S_ISCHR(e.mode) else "b", e.rmaj, e.rmin, e.uid, e.gid)
        else:
            self.other(e.name, e.mode, e.uid, e.gid)

    def finish(self):
        self._header(TRAILER, 0, 0, 1, 0, 0, 0, 0)
        self.f.write(b"\0" * (-self.f.tell() % 512))


def read_archive(buf):
    """Returns the entries of the newc archive(s) in buf (bytes), in order, without trailers.

    Hard links (nlink >= 2, same inode, data on one of them) all get the data. Raises
    ValueError on anything that is not an uncompressed newc archive."""
    out = []
    links = {}
    pos, end = 0, len(buf)
    while pos < end:
        if buf[pos] == 0:  # padding between concatenated archives
            pos += 1
            continue
        if buf[pos:pos + 6] != MAGIC:
            raise ValueError("offset %d: not a newc cpio header (compressed initrd?)" % pos)
        try:
            v = [int(buf[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise ValueError("offset %d: bad newc header" % pos) from None
        ino, mode, uid, gid, nlink, _mtime, size, dmaj, dmin, rmaj, rmin, namesize, _ = v
        npos = pos + HEADER_LEN
        name = buf[npos:npos + namesize - 1].decode("utf-8", "surrogateescape")
        dpos = npos + namesize
        dpos += -dpos % 4
        if dpos + size > end:
            raise ValueError("%s: truncated archive" % name)
        data = bytes(buf[dpos:dpos + size])
        pos = dpos + size
        pos += -pos % 4
        if name == TRAILER:
            links = {}
            continue
        if stat.S_ISREG(mode) and nlink >= 2:
            key = (dmaj, dmin, ino)
            group = links.setdefault(key, [])
            if size:
                for i in group:
                    out[i].data = data
            elif group:
                data = out[group[0]].data
            group.append(len(out))
        out.append(Entry(name, mode, uid, gid, nlink, ino, rmaj, rmin, data))
    return out


def overlay(entries, first_ino=99901):
    """An archive (bytes) of (name, mode, data) entries, directories and regular files, to
    append to an initrd: the kernel unpacks concatenated archives in order, later entries
    win. Its inode numbers start far above a base archive's."""
    import io
    buf = io.BytesIO()
    w = Writer(buf, first_ino)
    for name, mode, data in entries:
        if stat.S_ISDIR(mode):
            w.dir(name, stat.S_IMODE(mode))
        else:
            w.file(name, data, stat.S_IMODE(mode))
    w.finish()
    return buf.getvalue()


def write_spec(spec_path, out_path):
    with open(out_path, "wb") as f:
        w = Writer(f)
        for line in open(spec_path):
            x = line.split()
            if not x:
                continue
            kind, name = x[0], x[1]
            if kind == "dir":
                w.dir(name, int(x[2], 8))
            elif kind == "file":
                with open(x[2], "rb") as src:
                    w.file(name, src.read(), int(x[3], 8))
            elif kind == "slink":
                w.slink(name, x[2])
            elif kind == "nod":
                w.nod(name, int(x[2], 8), x[3], int(x[4]), int(x[5]))
            else:
                raise SystemExit("newc.py: bad spec line: " + line.rstrip("\n"))
        w.finish()


def list_archive(path):
    with open(path, "rb") as f:
        buf = f.read()
    for e in read_archive(buf):
        extra = " -> " + e.data.decode("utf-8", "surrogateescape") if e.is_link() else ""
        size = len(e.data) if e.is_reg() else 0
        print("%06o %d %d %d %s%s" % (e.mode, e.uid, e.gid, size, e.name, extra))


def main(argv):
    if len(argv) == 4 and argv[1] == "write":
        write_spec(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "list":
        list_archive(argv[2])
    else:
        sys.exit("usage: newc.py write SPEC OUT | newc.py list ARCHIVE")


if __name__ == "__main__":
    main(sys.argv)
