#!/usr/bin/env python3
"""Over-the-air update figures: signature check cost and a whole update.

Prints, under the MicroPython unix port (64-bit, and the 32-bit frozen build
when `make mp32` has made one): the time and heap one Ed25519 check of a
release manifest takes, and the time for a board agent to fetch, verify and
stage the application release built from this tree over loopback HTTP.
"""

import glob
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))

import release  # noqa: E402
import ota as ota_tool  # noqa: E402
from harness.mpy import MicroPython  # noqa: E402

VERIFY = """
import ed25519, time, gc
k = bytes.fromhex(%r); m = bytes.fromhex(%r); s = bytes.fromhex(%r)
gc.collect(); f0 = gc.mem_free()
t = time.ticks_us()
for i in range(%d):
    ok = ed25519.verify(k, m, s)
dt = time.ticks_diff(time.ticks_us(), t) / %d
print('VERIFY', ok, dt / 1000, f0 - gc.mem_free())
"""


def main():
    tmp = tempfile.mkdtemp(prefix="bench_ota_")
    key = os.path.join(tmp, "k.pem")
    pub = release.init_key(key)
    digest = os.urandom(32)
    sig = release.load_key(key).sign(digest).hex()
    mp = MicroPython()
    binaries = [("unix port 64-bit", mp.binary)]
    binaries += [("unix port 32-bit (mp32)", b) for b in sorted(glob.glob(
        os.path.expanduser("~/.cache/phs-transit/mp32-*/micropython")))[:1]]
    print("== Ed25519 check of a release manifest (SHA-256 digest signed)")
    for name, binary in binaries:
        m = MicroPython(binary=binary)
        out = m.run(VERIFY % (pub, digest.hex(), sig, 5, 5), heap="64K").stdout.split()
        print("%-26s %s, %.1f ms per check, %d bytes of heap churned" % (name, out[1], float(out[2]), int(out[3])))
    print("ESP32 estimate: long-int arithmetic about 100-200x slower than this host's 64-bit port,\n"
          "i.e. about 1-3 s per update check; it runs once per update, between loop steps.")
    rel_dir = os.path.join(tmp, "rel")
    t0 = time.monotonic()
    path = release.build(rel_dir, key, version="99.0.0", build_id="bench", chip="sim", say=lambda *_: None)
    t_build = time.monotonic() - t0
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(path, "**", "*.mpy"), recursive=True))
    srv = ota_tool.serve(rel_dir)
    url = "http://127.0.0.1:%d/%s/" % (srv.server_port, os.path.basename(path))
    fs = os.path.join(tmp, "fs")
    os.makedirs(fs)
    code = """
import time
from transit import ota
class Env:
    def chip(self): return 'sim'
    def version(self): return '0.1.0'
    def public_key(self): return bytes.fromhex(%r)
    def may_switch(self, at): return True
    def reboot(self, why=''): raise SystemExit
a = ota.Agent(Env())
a.start({'id': 'b', 'op': 'ota', 'url': %r, 'at': 'now'})
t = time.ticks_ms(); steps = 0
try:
    while steps < 100000:
        a.step(True); steps += 1
except SystemExit:
    pass
print('UPDATE', steps, time.ticks_diff(time.ticks_ms(), t))
""" % (pub, url)
    out = mp.run(code, cwd=fs, heap="128K").stdout.split()
    srv.shutdown()
    print("== A whole application release over loopback HTTP")
    print("release: %d bytes of .mpy, built and signed in %.1f s" % (size, t_build))
    print("board agent: %s loop steps, %s ms to fetch, verify and stage (4 KiB per step)" % (out[1], out[2]))


if __name__ == "__main__":
    main()
