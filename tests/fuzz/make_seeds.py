#!/usr/bin/env python3
"""make_seeds.py: writes the hand-made seeds of the frame decoder's corpus (corpus/frames/),
frames as the host and the agent send them, built by hand (no msgpack module needed): a byte
that says how reads are cut, then frames (u32 little-endian length + one msgpack map); and of
the QMP client's (corpus/qmp/) and the host's reply dispatch (corpus/agent_client/, frames
again): a byte (bit 0: the peer greets and negotiates first, so that
calls 2 to 4 are in flight; the rest: the write size less one), then what QEMU would write."""
import os
import struct
import sys


def s(x):
    b = x.encode()
    return bytes([0xa0 | len(b)]) + b if len(b) < 32 else b"\xd9" + bytes([len(b)]) + b


def bin_(b):
    return b"\xc4" + bytes([len(b)]) + b


def mp(d):
    out = bytes([0x80 | len(d)])
    for k, v in d.items():
        out += s(k)
        if isinstance(v, bool):
            out += b"\xc3" if v else b"\xc2"
        elif isinstance(v, int):
            out += bytes([v]) if 0 <= v < 128 else b"\xd0" + struct.pack("b", v)
        elif isinstance(v, bytes):
            out += bin_(v)
        elif isinstance(v, list):
            out += bytes([0x90 | len(v)]) + b"".join(s(x) for x in v)
        else:
            out += s(v)
    return out


def frame(body):
    return struct.pack("<I", len(body)) + body


SEEDS = {
    "request": b"\x00" + frame(mp({"id": 1, "op": "run", "argv": ["sh", "-c", "true"]})),
    "reply-ok": b"\x07" + frame(mp({"id": 1, "ok": True, "code": 0})),
    "reply-error": b"\x01" + frame(mp({"id": 2, "ok": False, "errno": 2, "error": "ENOENT",
                                       "msg": "no such file"})),
    "chunks": b"\x03" + frame(mp({"id": 3, "chunk": "stdout", "data": b"hello\n"}))
    + frame(mp({"id": 3, "chunk": "data", "data": b"\x00" * 40}))
    + frame(mp({"id": 3, "ok": True})),
    "not-a-map": b"\x00" + frame(b"\x93\x01\x02\x03"),
    "two-objects": b"\x00" + frame(mp({"id": 1}) + b"\xc0"),
    "too-big": b"\x00" + struct.pack("<I", 5 << 20) + b"\x80",
    "deep": b"\x00" + frame(b"\x81\xa1a" + b"\x91" * 40 + b"\xc0"),
    "cut": b"\x02" + frame(mp({"id": 9, "ok": True}))[:-2],
}

GREET = b"{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}\r\n"
QMP_SEEDS = {
    "replies": b"\xff" + b'{"return": {"status": "running"}, "id": 2}\r\n'
               b'{"error": {"class": "GenericError", "desc": "no"}, "id": 3}\r\n'
               b'{"event": "STOP", "data": {}, "timestamp": {"seconds": 1}}\r\n{"return": 5, "id": 4}\r\n',
    "greeting-in-data": b"\x10" + GREET + b'{"return": {}, "id": 1}\r\n{"event": "RESUME"}\r\n',
    "no-greeting": b"\x00" + b'{"return": {}, "id": 1}\r\n',
    "not-json": b"\x01" + b"{not json\r\n",
    "array": b"\x01" + b"[1, 2, 3]\r\n",
    "odd-ids": b"\x05" + b'{"return": {}, "id": 99}\n{"return": {}, "id": "2"}\n{"return": {}, "id": -1}\n'
               b'{"return": {}, "id": 18446744073709551615}\n{"return": {}}\n{"id": 2}\n',
    "twice": b"\x03" + b'{"return": {}, "id": 2}\n{"return": {}, "id": 2}\n',
    "odd-events": b"\x07" + b'{"event": 5}\n{"event": null, "data": 1}\n{"event": "X", "data": [1]}\n',
    "cut": b"\x09" + b'{"return": {}, "id": 2',
    "deep": b"\x01" + b'{"return": ' + b"[" * 3000 + b"]" * 3000 + b', "id": 2}\n',
}

F = lambda d: frame(mp(d))  # noqa: E731
AGENT_SEEDS = {  # ids under 16 are relative to the hello's: the requests in flight are 1 to 3
    "replies": b"\xff" + F({"id": 1, "chunk": "stdout", "data": b"hi\n"}) + F({"id": 1, "ok": True, "code": 0})
               + F({"id": 2, "chunk": "started", "pid": 5}) + F({"id": 2, "ok": False, "error": "ENOENT", "msg": "x"})
               + F({"id": 3, "chunk": "data", "data": b"\x00" * 32}) + F({"id": 3, "ok": True}),
    "twice": b"\x05" + F({"id": 1, "ok": True}) + F({"id": 1, "ok": True}) + F({"id": 1, "chunk": "stdout", "data": b"late"}),
    "unknown-ids": b"\x07" + F({"id": 99, "ok": True}) + F({"id": 9, "ok": True}) + F({"id": 0, "ok": True}),
    "no-id": b"\x01" + F({"ok": True}),
    "no-ok": b"\x01" + F({"id": 1, "code": 1}),
    "long-kind": b"\x01" + F({"id": 1, "chunk": "a-kind-longer-than-15", "data": b""}),
    "chunk-no-data": b"\x01" + F({"id": 2, "chunk": "stderr"}),
    "no-hello": b"\x00" + F({"id": 0, "ok": True, "version": 1}),
    "cut": b"\x03" + F({"id": 1, "ok": True})[:-1],
    "bad-then-good": b"\x01" + frame(b"\x93\x01\x02\x03") + F({"id": 1, "ok": True}),
}

here = os.path.dirname(os.path.abspath(sys.argv[0]))
for corpus, seeds in (("frames", SEEDS), ("qmp", QMP_SEEDS), ("agent_client", AGENT_SEEDS)):
    out = os.path.join(here, "corpus", corpus)
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
