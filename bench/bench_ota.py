#!/usr/bin/env python3
"""Over-the-air update figures: signature check cost and a whole update.

Prints, under the MicroPython unix port (64-bit, and the 32-bit frozen build
when `make mp32` has made one): the time and heap one Ed25519 check of a
release manifest takes, an ESP32 estimate of that time from its operation
count, the time for a board agent to fetch, verify and stage the application
release built from this tree over loopback HTTP, and (32-bit build) the
smallest extra heap a whole update completes in with every free hole
capped at 4 KiB, for a file release and for a firmware image
(host_tests/mpscripts/ota_heap.py; the tests hold both to 8 KiB).
"""

import glob
import os
import shutil
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


COUNT = """
import ed25519, time
k = bytes.fromhex(%r); m = bytes.fromhex(%r); s = bytes.fromhex(%r)
n = {'add': 0, 'dbl': 0}
add, dbl = ed25519._add, ed25519._double
def cadd(a, b):
    n['add'] += 1
    return add(a, b)
def cdbl(a):
    n['dbl'] += 1
    return dbl(a)
ed25519._add, ed25519._double = cadd, cdbl
ed25519.verify(k, m, s)
ed25519._add, ed25519._double = add, dbl
P = ed25519._P
a = 0x4a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9
b = 0x3a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f7
t = time.ticks_us()
for i in range(2000):
    c = a * b %% P + 0
dt = time.ticks_diff(time.ticks_us(), t) / 2000
print('COUNT', n['add'], n['dbl'], dt)
"""
# Products modulo p per call (tools: lib/ed25519.py): an addition has 9
# long-int products and 10 reductions, a doubling 9 and 9; each of the two
# point decodings runs two modular powers of ~255 squarings and ~250
# products, done in C; about 1,000 products per decode.
MULS_ADD, MULS_DBL, MULS_DECODES = 10, 9, 2 * 1000


def heap_figure(binary, url, pub, cap=4096, kind="files"):
    """Smallest budget above the baseline the whole update completes in
    (within 64 bytes), as host_tests/test_ota.py runs it; `kind` "image" for
    an image release (the esp32 fake's module objects are in the baseline)."""
    script = os.path.join(ROOT, "host_tests", "mpscripts", "ota_heap.py")
    env = dict(os.environ, MICROPYPATH=".frozen" + (":" + os.path.join(ROOT, "host_tests", "fakes")
                                                     if kind == "image" else ""), MALLOC_MMAP_THRESHOLD_="524288")

    def run(mode, heap, cap=cap):
        fs = tempfile.mkdtemp(prefix="bench_ota_heap_")
        try:
            r = subprocess.run([binary, "-X", "heapsize=%d" % heap, script, str(mode), url, pub, str(cap)]
                               + ([kind] if kind != "files" else []),
                               cwd=fs, env=env, capture_output=True, text=True, timeout=120)
            return r.stdout + r.stderr
        finally:
            shutil.rmtree(fs, ignore_errors=True)

    out = run("measure", 1 << 20, 0)  # (no cap: a 1 MiB heap's addresses are no small ints)
    if "BASE " not in out:
        raise SystemExit("ota_heap.py failed:\n" + out[-2000:])
    base = int(out.split("BASE ")[1].split()[0])
    live = int(out.split("LIVE_PEAK ")[1].split()[0])

    def fits(budget):
        want = budget + 32 * (budget // 4096 + 3)
        out = run(want, -(-(base + want + max(2048, 10240 - want)) * 65536 // 64000))
        free = int(out.split("FREE ")[1].split()[0]) - (want - budget)
        return "SWITCHED" in out and free <= budget + 64

    lo, hi = 2048, 16384
    if not fits(hi):
        return base, live, None
    while hi - lo > 64:
        mid = (lo + hi) // 2 // 16 * 16
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return base, live, hi


def main():
    tmp = tempfile.mkdtemp(prefix="bench_ota_")
    key = os.path.join(tmp, "k.pem")
    pub = release.init_key(key)
    digest = os.urandom(32)
    sig = release.load_key(key).sign(digest).hex()
    mp = MicroPython()
    binaries = [("unix port 64-bit", mp.binary)]
    import mp32  # tools/mp32.py: the build of this tree's frozen firmware (built here if needed)
    try:
        binaries.append(("unix port 32-bit (mp32)", mp32.ensure(say=lambda s: print(s, file=sys.stderr))))
    except mp32.BuildError as e:
        print("(no 32-bit build: %s)" % str(e).splitlines()[0])
    print("== Ed25519 check of a release manifest (SHA-256 digest signed)")
    for name, binary in binaries:
        m = MicroPython(binary=binary)
        out = m.run(VERIFY % (pub, digest.hex(), sig, 5, 5), heap="64K").stdout.split()
        print("%-26s %s, %.1f ms per check, %d bytes of heap churned" % (name, out[1], float(out[2]), int(out[3])))
    if len(binaries) > 1:
        out = MicroPython(binary=binaries[1][1]).run(COUNT % (pub, digest.hex(), sig), heap="64K").stdout.split()
        adds, dbls, mul_us = int(out[1]), int(out[2]), float(out[3])
        muls = adds * MULS_ADD + dbls * MULS_DBL + MULS_DECODES
        print("operation count: %d point additions, %d doublings, two decodes: about %d products mod p "
              "of 255-bit numbers;\n  one costs %.1f us here (32-bit build: 16-bit digits, as on an ESP32)"
              % (adds, dbls, muls, mul_us))
        # ESP32 at 240 MHz: each product mod p is ~530 16-bit digit steps
        # (16 x 16 for the product, about as many for the reduction) at
        # 8-12 cycles each (20-27 us), plus 3 allocations and ~10 bytecodes
        # (10-30 us): 30-60 us per product.
        print("ESP32 estimate (240 MHz; 30-60 us per product: ~530 digit steps at 8-12 cycles, plus\n"
              "  allocations and bytecodes): %.1f-%.1f s per update check (not measured on a board);\n"
              "  the host-ratio view (this core ~30-40x an ESP32 core per operation) gives %.1f-%.1f s"
              % (muls * 30e-6, muls * 60e-6, muls * mul_us * 30e-6, muls * mul_us * 40e-6))
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
    print("== A whole application release over loopback HTTP")
    print("release: %d bytes of .mpy, built and signed in %.1f s" % (size, t_build))
    print("board agent: %s loop steps, %s ms to fetch, verify and stage (4 KiB per step)" % (out[1], out[2]))
    if len(binaries) > 1:
        base, live, need = heap_figure(binaries[1][1], url, pub)
        print("== Heap of the update on the 32-bit frozen build (every free hole capped at 4 KiB)")
        print("baseline (loader and bus modules loaded): %d bytes; live extra between steps: up to %d bytes"
              % (base, live))
        print("smallest extra heap the whole update completes in: %s bytes (goal 8192)"
              % (need if need is not None else "more than 16384"))
        img = os.path.join(tmp, "fw.bin")
        with open(img, "wb") as f:
            f.write(bytes((i * 7 + i // 251) & 0xFF for i in range(64 * 4096 + 300)))  # 257 KiB, 65 blocks
        ipath = release.build(rel_dir, key, version="99.0.1", build_id="bench-img", chip="sim", image=img,
                              say=lambda *_: None)
        iurl = "http://127.0.0.1:%d/%s/" % (srv.server_port, os.path.basename(ipath))
        base, live, need = heap_figure(binaries[1][1], iurl, pub, kind="image")
        print("image release (%d bytes into the next OTA partition): baseline with the esp32 fake %d bytes; "
              "live extra between steps up to %d bytes;\n  smallest extra heap it completes in: %s bytes (goal 8192)"
              % (os.path.getsize(img), base, live, need if need is not None else "more than 16384"))
    srv.shutdown()


if __name__ == "__main__":
    main()
