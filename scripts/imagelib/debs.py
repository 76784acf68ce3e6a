"""debs.py: Debian packages as files: fetched once with `apt-get download` into the cache's
downloads/, verified against the SHA256 apt's lists give, and unpacked with `dpkg-deb -x`
(never installed: no maintainer scripts, the host's dpkg untouched)."""
import os
import re
import shutil
import tempfile

from imagelib.common import Fail, apt_errors, cache_dir, log, run, sha256_file


def filename(p):
    """The cache's file name of package p ({"name", "version", "arch"})."""
    return "%s_%s_%s.deb" % (p["name"], p["version"].replace(":", "%3a"), p["arch"])


def apt_sha256s(pkgs):
    """(name, version) -> SHA256 of each package, from ONE apt-cache show call."""
    r = run(["apt-cache", "show"] + ["%s=%s" % (p["name"], p["version"]) for p in pkgs])
    shas = {}
    for stanza in r.stdout.split("\n\n"):
        f = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", stanza, re.M))
        if "Package" in f and "SHA256" in f:
            shas.setdefault((f["Package"], f.get("Version")), f["SHA256"])
    missing = [p for p in pkgs if (p["name"], p["version"]) not in shas]
    if missing:
        errs = "; ".join(apt_errors(r.stderr)) or "not in apt's lists"
        raise Fail(None, "package %s=%s: apt-cache show: %s (apt-get update changed the "
                   "lists? resolve again)" % (missing[0]["name"], missing[0]["version"], errs))
    return shas


def fetch(pkgs, lines=None, shas=None):
    """The .deb paths of pkgs ([{"name", "version", "arch"}]) in order, downloading the ones
    the cache lacks or holds with another SHA256. shas: (name, version) -> SHA256 when the
    caller knows them (else apt-cache is asked); lines: name -> recipe line, for errors.
    Raises Fail."""
    if not pkgs:
        return []
    dl = os.path.join(cache_dir(), "downloads")
    os.makedirs(dl, exist_ok=True)
    if shas is None or any((p["name"], p["version"]) not in shas for p in pkgs):
        shas = apt_sha256s(pkgs)
    want = {}
    for p in pkgs:
        want[p["name"]] = (p, os.path.join(dl, filename(p)), shas[(p["name"], p["version"])])
    missing = [p for p, path, sha in want.values()
               if not (os.path.isfile(path) and sha256_file(path) == sha)]
    if missing:
        download(missing, dl, want, lines or {})
    return [want[p["name"]][1] for p in pkgs]


def download(missing, dl, want, lines):
    log("downloading %d package(s): %s" % (len(missing), " ".join(p["name"] for p in missing)))
    tmp = tempfile.mkdtemp(prefix=".dl.", dir=dl)
    try:
        r = run(["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download"]
                + ["%s=%s" % (p["name"], p["version"]) for p in missing], cwd=tmp)
        if r.returncode != 0:
            errs = apt_errors(r.stdout + r.stderr) or [r.stderr.strip()[-300:]]
            bad = next((p for p in missing for e in errs if "'%s" % p["name"] in e
                        or "/%s_" % p["name"] in e), missing[0])
            raise Fail(lines.get(bad["name"]), "package %s=%s: apt-get download failed: %s"
                       % (bad["name"], bad["version"], errs[0]))
        for p in missing:
            _, path, sha = want[p["name"]]
            got = os.path.join(tmp, filename(p))
            if not os.path.isfile(got):
                raise Fail(None, "package %s=%s: apt-get download left no %s"
                           % (p["name"], p["version"], filename(p)))
            if sha256_file(got) != sha:
                raise Fail(None, "package %s=%s: SHA256 differs from apt-cache's %s"
                           % (p["name"], p["version"], sha))
            os.rename(got, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unpack(debs, root):
    """dpkg-deb -x of each .deb into root, in order. Raises Fail."""
    for deb in debs:
        r = run(["dpkg-deb", "-x", deb, root])
        if r.returncode != 0:
            raise Fail(None, "dpkg-deb -x %s: %s" % (os.path.basename(deb), r.stderr.strip()))
