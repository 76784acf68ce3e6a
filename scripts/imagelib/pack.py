"""pack.py: a recipe image's tree packed over its base image's initramfs entries: as ONE
newc archive (pack_initramfs), or as a read-only ext4 root disk made by mkfs.ext4 -d
(pack_disk) with fixed UUID, hash seed and times, so equal inputs give equal bytes."""
import os
import stat
import subprocess

from imagelib import newc
from imagelib.common import Fail, log

MIB = 1 << 20



def walk_tree(root):
    """[(name, host path, lstat)] of everything under root, parents first, sorted."""
    out = []

    def rec(d, prefix):
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            st = os.lstat(p)
            name = prefix + n
            out.append((name, p, st))
            if stat.S_ISDIR(st.st_mode):
                rec(p, name + "/")

    rec(root, "")
    return out


def tree_bytes(entries, tree):
    """Bytes of regular files: the base's entries and the tree's (hard links once)."""
    n = sum(len(e.data) for e in entries if e.is_reg())
    seen = set()
    for _name, _p, st in tree:
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            n += st.st_size
    return n


def write_tree_entry(w, name, path, st, hard):
    perm, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    m = st.st_mode
    if stat.S_ISDIR(m):
        w.dir(name, perm, uid, gid)
    elif stat.S_ISREG(m):
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in hard:
                w.file(name, b"", perm, uid, gid, nlink=st.st_nlink, ino=hard[key])
                return
            hard[key] = w.next_ino()
            with open(path, "rb") as f:
                w.file(name, f.read(), perm, uid, gid, nlink=st.st_nlink, ino=hard[key])
        else:
            with open(path, "rb") as f:
                w.file(name, f.read(), perm, uid, gid)
    elif stat.S_ISLNK(m):
        w.slink(name, os.fsencode(os.readlink(path)), uid, gid)
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
        w.nod(name, perm, "c" if stat.S_ISCHR(m) else "b", os.major(st.st_rdev),
              os.minor(st.st_rdev), uid, gid)
    else:
        w.other(name, m, uid, gid)


def pack_initramfs(entries, tree, out):
    """ONE newc archive: the base's entries, each replaced in place by the tree's entry of the
    same name, then the tree's other entries (parents always before children)."""
    by_name = {name: (p, st) for name, p, st in tree}
    emitted, hard = set(), {}
    replaced_nondir = {n for n, (_p, st) in by_name.items() if not stat.S_ISDIR(st.st_mode)}
    with open(out, "wb") as f:
        w = newc.Writer(f)
        for e in entries:
            if e.name in by_name:
                p, st = by_name[e.name]
                write_tree_entry(w, e.name, p, st, hard)
                emitted.add(e.name)
                continue
            parts = e.name.split("/")
            if any("/".join(parts[:i]) in replaced_nondir for i in range(1, len(parts))):
                continue  # under a base directory the tree replaced by a file or link
            w.entry(e)
        for name, p, st in tree:
            if name not in emitted:
                write_tree_entry(w, name, p, st, hard)
        w.finish()


def extract_base_under(entries, root):
    """Adds the base's entries that the tree lacks (device nodes skipped)."""
    for e in entries:
        if e.is_dev():
            continue
        p = os.path.join(root, e.name)
        parent = os.path.dirname(p)
        if os.path.lexists(p) or not (os.path.isdir(parent) and not os.path.islink(parent)):
            continue
        perm = stat.S_IMODE(e.mode)
        if e.is_dir():
            os.mkdir(p)
            os.chmod(p, perm)
        elif e.is_reg():
            with open(p, "wb") as f:
                f.write(e.data)
            os.chmod(p, perm)
        elif e.is_link():
            os.symlink(os.fsdecode(e.data), p)
        else:
            continue
        os.lchown(p, e.uid, e.gid)


def zero_mtimes(root):
    os.utime(root, (0, 0))
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            os.utime(os.path.join(d, n), (0, 0), follow_symlinks=False)


def pack_disk(entries, root, out, nbytes, spec_hash):
    """Writes root (with the base's entries it lacks) as a read-only ext4 image out, sized
    for nbytes of files; returns its size. The UUID and hash seed come from spec_hash."""
    extract_base_under(entries, root)
    zero_mtimes(root)
    tree = walk_tree(root)
    # blocks used with 4 KiB blocks, as a floor under the sizing rule
    alloc = sum(-(-st.st_size // 4096) * 4096 for _n, _p, st in tree
                if stat.S_ISREG(st.st_mode)) + 4096 * len(tree) // 4
    inodes = len(tree) + len(tree) // 4 + 1024
    size = max(int(nbytes * 1.15), int(alloc * 1.15) + inodes * 256) + 16 * MIB
    size = -(-size // MIB) * MIB
    uuid = "%s-%s-4%s-8%s-%s" % (spec_hash[0:8], spec_hash[8:12], spec_hash[13:16],
                                 spec_hash[17:20], spec_hash[20:32])
    env = dict(os.environ, E2FSPROGS_FAKE_TIME="1", SOURCE_DATE_EPOCH="0", LC_ALL="C")
    cmd = ["mkfs.ext4", "-q", "-F", "-L", "provium-root", "-O", "^has_journal", "-b", "4096",
           "-I", "256", "-N", str(inodes), "-m", "0", "-U", uuid, "-E", "hash_seed=" + uuid,
           "-d", root, out, str(size // 1024) + "k"]
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise Fail(None, "mkfs.ext4 -d failed (%d bytes for %d bytes of files): %s"
                   % (size, nbytes, r.stdout.strip()))
    zero_ctimes(out, inodes, env)
    return size


def zero_ctimes(image, inodes, env):
    """mkfs.ext4 -d copies each file's ctime (which cannot be set on the host) and atime (its
    own reads update it): zero both with debugfs (one batch, ~0.2 s) so equal specs give
    equal images."""
    cmds = "".join("sif <%d> ctime 0\nsif <%d> atime 0\n" % (i, i)
                   for i in range(1, inodes + 1)).encode()
    r = subprocess.run(["debugfs", "-w", "-f", "-", image], input=cmds, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        log("warning: debugfs could not zero the ctimes (image not reproducible)")
