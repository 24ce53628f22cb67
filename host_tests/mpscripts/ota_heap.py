# The heap an over-the-air update takes, on the 32-bit frozen build
# (`make mp32`: ESP32 object sizes, firmware code frozen, so only module
# objects and data cost heap). Run by host_tests/test_ota.py and
# bench/bench_ota.py with MICROPYPATH=.frozen.
#
# Usage: micropython ota_heap.py MODE URL PUBKEY_HEX CAP [KIND]
#   MODE "measure": print the baseline (BASE <bytes in use>) and, after each
#                   agent step and a collection, the live extra's peak
#   MODE <bytes>:   leave at most that many bytes free above the baseline
#                   (printed as FREE; a ballast takes the rest),
#                   cap every free hole at CAP bytes (tools/heapcap.py, again
#                   after every step when CAP > 0), and run the whole update;
#                   "PINS <caps> <pinned bytes> <holes>" counts the caps and
#                   the times a hole above CAP had formed between two caps
#   KIND "image":   the release at URL is a firmware image, written into the
#                   next OTA partition through the `esp32` fake (from
#                   host_tests/fakes on MICROPYPATH). On a board `esp32` is
#                   a built-in module that costs no heap, so the fake is
#                   imported before the baseline (printed as FAKE <bytes>,
#                   part of BASE); as
#                   the ESP32's, its block I/O takes no heap for the data
#                   (a file object and a path for a moment; that counts).
#
# The baseline is what a bus board holds before an `ota` command: the
# loader (boot.py imports otaboot on every board) and the application's
# module objects (transit.app and everything it imports; the OTA agent
# itself is imported only when an update starts, so it is part of the extra).
# Prints "SWITCHED <steps>" when the agent asked for its planned reboot.
import gc
import sys

gc.collect()
MODE, URL, KEY, CAP = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), int(sys.argv[4])
ballast = None
if sys.argv[5:] == ["image"]:  # (no new global: the script's own dict is part of BASE, kept comparable)
    gc.collect()
    ballast = gc.mem_alloc()
    __import__("esp32")  # built in on a board (see above)
    gc.collect()
    print("FAKE", gc.mem_alloc() - ballast)

import otaboot  # noqa: E402,F401 - boot.py's
import transit.app  # noqa: E402,F401 - the bus role's module objects
from heapcap import Lattice  # noqa: E402


class Rebooted(Exception):
    pass


class Env:
    def chip(self):
        return "sim"

    def version(self):
        return "0.1.0"

    def public_key(self):
        return KEY

    def tls_context(self):
        return None

    def may_switch(self, at):
        return True

    def reboot(self, why=""):
        raise Rebooted()


env = Env()
lat = Lattice(CAP, slots=64, check=CAP > 0) if CAP else None
cmd = {"id": "h1", "op": "ota", "url": URL, "at": "now"}
ballast = None
gc.collect()
base = gc.mem_alloc()
if MODE == "measure":
    print("BASE", base)
else:
    want = int(MODE)
    # The surplus above the budget goes into a ballast, largest pieces first:
    # the budget left is the baseline's small holes plus what the big pieces
    # leave over (stricter than one contiguous budget would be).
    ballast = []
    size = gc.mem_free() - want
    while gc.mem_free() - want > 48:
        size = min(size, gc.mem_free() - want - 32)  # each piece: a 16-byte object and its data
        try:
            ballast.append(bytearray(size))
        except MemoryError:
            size //= 2
            if size < 16:
                break
    gc.collect()
    print("FREE", gc.mem_free())
    if lat is not None:
        lat.pin()

from transit import ota  # noqa: E402 - the app imports it with the first `ota` command

agent = ota.Agent(env)
agent.start(cmd)
cmd = None
steps = 0
peak = 0
try:
    while steps < 20000:
        agent.step(True)
        steps += 1
        job = agent.job
        if job is not None and job.get("st") == "failed":
            print("FAILED", job["err"])
            break
        if job is not None and job.get("short"):  # the agent caught a MemoryError: this budget is too small
            print("MemoryError (caught by the agent:", job["err"] + ")")
            break
        job = None
        if MODE == "measure":
            gc.collect()
            peak = max(peak, gc.mem_alloc() - base)
        elif lat is not None:
            gc.collect()
            lat.probe()  # a hole above CAP formed since the last pin? (counted)
            lat.pin()
except Rebooted:
    print("SWITCHED", steps)
except MemoryError:
    import micropython
    micropython.mem_info(1)  # where the heap stood (printed without allocating)
    raise
if MODE == "measure":
    print("LIVE_PEAK", peak)
if lat is not None:
    print("PINS", lat.pins, lat.pinned_bytes(), lat.holes)
