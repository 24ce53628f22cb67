"""NMEA parser throughput and allocation under the unix port (64K heap).

A realistic 1 Hz mix from tools/simgps.py (RMC, GGA, GSA and four GSV per
second: GPS + GLONASS + Galileo + BeiDou, NMEA 4.1 style) is parsed in the
same MicroPython run by nmea (in place, from a preallocated buffer) and by a
naive baseline that splits the line and converts every field, as common
MicroPython GPS libraries do. Prints sentences/s, bytes allocated per
sentence (gc disabled, gc.mem_alloc() difference) and the ratios.
Targets: >= 15,000 sentences/s and <= 200 bytes per sentence.
Usage: python bench/bench_nmea.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from harness.mpy import MicroPython  # noqa: E402
import simgps  # noqa: E402

MP_CODE = r"""
import gc, time, nmea
LINES = []
with open(DATA, "rb") as fh:
    for ln in fh:
        LINES.append(ln.rstrip())

def naive(line):
    # What a typical pure-Python parser does: strings, split, float().
    s = line.decode()
    body, _, cs = s[1:].partition("*")
    x = 0
    for ch in body:
        x ^= ord(ch)
    if x != int(cs[:2], 16):
        return None
    f = body.split(",")
    out = {"type": f[0]}
    for i, v in enumerate(f[1:]):
        try:
            out[i] = float(v) if "." in v else int(v)
        except ValueError:
            out[i] = v
    return out

r = nmea.NmeaReader(None)
buf = r._buf
ends = [len(l) for l in LINES]

def ours(k=0):
    n = 0
    for i in range(k or len(LINES)):
        l = LINES[i]
        e = ends[i]
        buf[0:e] = l
        r.parse(0, e)
        n += 1
    return n

def base(k=0):
    n = 0
    for i in range(k or len(LINES)):
        naive(LINES[i])
        n += 1
    return n

def speed(fn):
    fn()
    gc.collect()
    t = time.ticks_us()
    n = 0
    for _ in range(100):
        n += fn()
    return n * 1000000 // time.ticks_diff(time.ticks_us(), t)

def alloc(fn):
    # One second of the mix (7 sentences): the baseline would fill the heap
    # with the collector off if it ran over more.
    fn(7)
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    n = fn(7)
    b = gc.mem_alloc()
    gc.enable()
    gc.collect()
    return (b - a) // n

class Uart:
    def __init__(self, data):
        self.mv = memoryview(data)
        self.pos = 0
    def any(self):
        return len(self.mv) - self.pos
    def readinto(self, b, n):
        n = min(n, len(self.mv) - self.pos)
        b[:n] = self.mv[self.pos:self.pos + n]
        self.pos += n
        return n

stream = b"\r\n".join(LINES) + b"\r\n"
def via_reader():
    rd = nmea.NmeaReader(Uart(stream))
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(200):
        rd.step(256)
    b = gc.mem_alloc()
    gc.enable()
    return (b - a) // rd.stats["accepted"], rd.stats["accepted"]

print("OURS", speed(ours), alloc(ours))
print("BASE", speed(base), alloc(base))
print("READER", *via_reader())
print("STATS", r.stats)
"""

KEEP = (b"$GNRMC", b"$GNGGA", b"$GPGSV", b"$GLGSV", b"$GAGSV", b"$GBGSV")


def mix(seconds=5):
    route = [(16821100, 100265900), (16821100, 100290900), (16841100, 100290900)]
    lines = []
    for _, _, data in simgps.Drive(route, stops={1: 5}).epochs():
        gsa_done = False
        for ln in data.split(b"\r\n"):
            if ln.startswith(KEEP) or (ln.startswith(b"$GNGSA") and not gsa_done):
                gsa_done = gsa_done or ln.startswith(b"$GNGSA")
                lines.append(ln)
        if len(lines) >= seconds * 7:
            break
    return lines


def main():
    lines = mix()
    work = os.path.join(ROOT, "build", "bench_nmea")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "mix.nmea")
    with open(data, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    with open(os.path.join(work, "bench_nmea_mp.py"), "w") as f:  # compiled to .mpy like a deploy
        f.write("DATA = %r\n" % data + MP_CODE)
    mp = MicroPython()
    res = mp.run("import bench_nmea_mp\n", heap="64K", fakes=False, path=[work])
    got = {ln.split()[0]: ln.split()[1:] for ln in res.lines}
    ours_s, ours_b = int(got["OURS"][0]), int(got["OURS"][1])
    base_s, base_b = int(got["BASE"][0]), int(got["BASE"][1])
    print("NMEA parser, unix port, 64K heap, %d sentences/epoch mix (RMC, GGA, GSA, 4 GSV)" % 7)
    print("  nmea.parse      : %6d sentences/s, %5d bytes allocated/sentence" % (ours_s, ours_b))
    print("  naive baseline  : %6d sentences/s, %5d bytes allocated/sentence" % (base_s, base_b))
    print("  ratio           : %.1fx faster, %s less allocation" % (
        ours_s / base_s, ("%.0fx" % (base_b / ours_b)) if ours_b else "all"))
    print("  through NmeaReader.step from a UART-like object: %s bytes/sentence over %s sentences"
          % tuple(got["READER"]))
    print("  targets: >= 15000 sentences/s (%s), <= 200 bytes/sentence (%s)" % (
        "met" if ours_s >= 15000 else "MISSED", "met" if ours_b <= 200 else "MISSED"))


if __name__ == "__main__":
    main()
