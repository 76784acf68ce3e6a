"""common.py: what every image-building step needs: failures tied to a recipe line, progress
lines, the cache directory, running tools, apt's stamp, manifests and atomic writes."""
import hashlib
import os
import sys

PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "imagelib"
GUEST_ARCH = "amd64"
# apt's view of the archive: a memo of apt's answers is valid while these are unchanged.
APT_STAMP_PATHS = ("/var/lib/apt/lists", "/etc/apt/sources.list", "/etc/apt/sources.list.d",
                   "/etc/apt/preferences.d")


class Fail(Exception):
    """A build failure, tied to a recipe line (or None)."""

    def __init__(self, line, msg):
        super().__init__(msg)
        self.line = line
        self.msg = msg


def log(msg):
    print("%s: %s" % (PROG, msg), file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def cache_dir():
    """$PROVIUM_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/provium (as src/host/base/paths.c)."""
    d = os.environ.get("PROVIUM_CACHE_DIR")
    if not d:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(xdg, "provium")
    return d


def run(cmd, **kw):
    """Runs cmd with LC_ALL=C; returns the CompletedProcess (text, stdout and stderr kept)."""
    import subprocess
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(cmd, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, **kw)


def apt_errors(text):
    """apt's "E: ..." lines, without the prefix."""
    return [l[3:].strip() for l in text.splitlines() if l.startswith("E: ")]


def apt_stamp(extra=()):
    """The mtimes and sizes of apt's lists and sources (and of extra paths), as one string."""
    parts = []
    for p in APT_STAMP_PATHS + tuple(extra):
        try:
            st = os.stat(p)
            parts.append("%s %d %d" % (p, st.st_mtime_ns, st.st_size))
        except OSError:
            parts.append("%s -" % p)
    return ";".join(parts)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path):
    """An image's manifest (key=value lines) as a dict; the first of a repeated key wins."""
    out = {}
    with open(path) as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                out.setdefault(k, v)
    return out


def write_manifest(path, fields):
    """Writes (key, value) pairs as key=value lines."""
    with open(path, "w") as f:
        f.write("".join("%s=%s\n" % kv for kv in fields))


def write_atomic(path, data):
    """Writes bytes to path through a temporary file in its directory and a rename."""
    import tempfile
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def link_or_copy(src, dst):
    """A hard link when src and dst share a file system, else a copy."""
    import shutil
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
