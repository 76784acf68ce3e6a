#!/usr/bin/env python3
"""Unit tests for scripts/imagelib/newc.py and the parts of scripts/build-recipe-image that need no
network: newc round trip (spec writer, tree entries, hard links, concatenated archives),
--resolve errors found without apt, and build errors caught before any download.

  python3 tests/unit/recipe_build_test.py
"""
import json
import os
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "..", "scripts")
sys.path.insert(0, SCRIPTS)
from imagelib import newc  # noqa: E402

RECIPE = os.path.join(SCRIPTS, "build-recipe-image")


def slurp(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


class NewcTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_spec_round_trip(self):
        src = os.path.join(self.d, "f")
        with open(src, "wb") as f:
            f.write(b"hello\n")
        spec = os.path.join(self.d, "spec")
        with open(spec, "w") as f:
            f.write("dir /etc 0755\nfile /etc/f %s 0640\nslink /init /sbin/x\n"
                    "nod /dev/null 0666 c 1 3\ndir /tmp 1777\n" % src)
        out = os.path.join(self.d, "a.cpio")
        newc.write_spec(spec, out)
        buf = slurp(out, "rb")
        self.assertEqual(len(buf) % 512, 0)
        es = newc.read_archive(buf)
        self.assertEqual([e.name for e in es], ["etc", "etc/f", "init", "dev/null", "tmp"])
        self.assertEqual(es[1].data, b"hello\n")
        self.assertEqual(stat.S_IMODE(es[1].mode), 0o640)
        self.assertEqual(es[2].data, b"/sbin/x")
        self.assertEqual((es[3].rmaj, es[3].rmin), (1, 3))
        self.assertEqual(stat.S_IMODE(es[4].mode), 0o1777)
        self.assertEqual(es[0].ino, 721)
        # deterministic: equal input, equal bytes
        newc.write_spec(spec, out + "2")
        self.assertEqual(slurp(out + "2", "rb"), buf)

    def test_hard_links_and_concatenation(self):
        path = os.path.join(self.d, "b.cpio")
        with open(path, "wb") as f:
            w = newc.Writer(f)
            ino = w.next_ino()
            w.file("a", b"data", 0o755, uid=5, gid=6, nlink=2, ino=ino)
            w.file("b", b"", 0o755, uid=5, gid=6, nlink=2, ino=ino)
            w.finish()
            w = newc.Writer(f)
            w.file("a", b"new", 0o644)
            w.finish()
        es = newc.read_archive(slurp(path, "rb"))
        self.assertEqual([(e.name, e.data) for e in es], [("a", b"data"), ("b", b"data"),
                                                           ("a", b"new")])
        self.assertEqual((es[0].uid, es[0].gid), (5, 6))

    def test_not_newc(self):
        with self.assertRaises(ValueError):
            newc.read_archive(b"\x1f\x8b\x08\x00garbage")


class RecipeScriptTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name
        self.env = dict(os.environ, PROVIUM_CACHE_DIR=os.path.join(self.d, "cache"))
        # a fake base image: manifest + an initrd with /etc/passwd and /etc/group
        self.base = os.path.join(self.d, "base")
        os.mkdir(self.base)
        with open(os.path.join(self.base, "manifest"), "w") as f:
            f.write("format=1\nkernel=vmlinux\ninitrd=initrd\nkernel_package=k\n"
                    "kernel_version=1\nkernel_release=6.1.0-test\n")
        with open(os.path.join(self.base, "initrd"), "wb") as f:
            w = newc.Writer(f)
            w.dir("etc", 0o755)
            w.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
            w.file("etc/group", b"root:x:0:\n", 0o644)
            w.finish()

    def tearDown(self):
        self.tmp.cleanup()

    def spec(self, **kw):
        s = {"format": 1, "name": "t", "recipe": "images/t.lua",
             "base": {"name": "default", "dir": self.base}, "packages": [], "resolved": [],
             "copies": [], "writes": [], "dirs": [], "users": [], "groups": [],
             "modules": [], "hostname": "t", "cmdline": "console=ttyS0",
             "pack": "initramfs", "pack_threshold": 1 << 26}
        s.update(kw)
        path = os.path.join(self.d, "spec.json")
        with open(path, "w") as f:
            json.dump(s, f)
        return path

    def run_script(self, *args):
        return subprocess.run([sys.executable, RECIPE] + list(args), env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_resolve_errors_without_apt(self):
        r = self.run_script("--resolve", self.spec(packages=[
            {"name": "hello:arm64", "line": 3}, {"name": "Bad_Name", "line": 4}]))
        self.assertEqual(r.returncode, 0, r.stderr)
        res = json.loads(r.stdout)
        self.assertFalse(res["ok"])
        self.assertEqual([e["line"] for e in res["errors"]], [3, 4])
        self.assertIn("arm64", res["errors"][0]["reason"])
        self.assertIn("amd64", res["errors"][0]["reason"])

    def test_resolve_nothing(self):
        r = self.run_script("--resolve", self.spec())
        self.assertEqual(json.loads(r.stdout), {"ok": True, "packages": []})

    def check_build_fails(self, spec, expect):
        out = os.path.join(self.d, "out", "img")
        r = self.run_script(spec, out)
        self.assertEqual(r.returncode, 1)
        self.assertIn(expect, r.stderr)
        self.assertEqual(os.listdir(os.path.join(self.d, "out")), [])

    def test_build_missing_copy_source(self):
        self.check_build_fails(self.spec(copies=[
            {"src": "/nonexistent/x", "dst": "/etc/x", "mode": None, "owner": None,
             "group": None, "line": 7}]),
            "images/t.lua:7: copy /etc/x: source /nonexistent/x: No such file or directory")

    def test_build_unknown_owner(self):
        self.check_build_fails(self.spec(dirs=[
            {"dst": "/srv", "mode": None, "owner": "ghost", "group": None, "line": 9}]),
            "images/t.lua:9: dir /srv: owner 'ghost'")

    def test_build_tiny_image(self):
        # no packages: the tree is only the /etc basics, users, writes and dirs
        with open(os.path.join(self.base, "vmlinux"), "wb") as f:
            f.write(b"kernel")
        out = os.path.join(self.d, "out", "img")
        r = self.run_script(self.spec(
            users=[{"name": "svc", "uid": None, "gid": None, "home": None, "shell": None,
                    "line": 2}],
            writes=[{"dst": "/etc/motd", "content": "hi\n", "mode": 0o600, "owner": "svc",
                     "group": None, "line": 3}],
            dirs=[{"dst": "/var/lib/svc", "mode": 0o750, "owner": "svc", "group": None,
                   "line": 4}]), out)
        self.assertEqual(r.returncode, 0, r.stderr)
        es = {e.name: e for e in newc.read_archive(slurp(os.path.join(out, "initrd"), "rb"))}
        self.assertIn(b"svc:x:100:100:svc:/nonexistent:/bin/false", es["etc/passwd"].data)
        self.assertEqual((es["etc/motd"].uid, es["etc/motd"].gid), (100, 100))
        self.assertEqual(stat.S_IMODE(es["var/lib/svc"].mode), 0o750)
        self.assertEqual(es["etc/hostname"].data, b"t\n")
        manifest = slurp(os.path.join(out, "manifest"))
        self.assertIn("pack=initramfs\n", manifest)
        self.assertEqual(slurp(os.path.join(out, "cmdline")), "console=ttyS0\n")


if __name__ == "__main__":
    unittest.main()
