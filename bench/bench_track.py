"""Track acquisition rules on a 1 Hz city-bus drive (simgps route, unix port).

Runs the reader + Track under the MicroPython unix port with a 64K heap on a
synthetic Phitsanulok route (turns, curves, bus stops, traffic lights, a
signal loss), then measures on the host: the share of fixes kept, and the
largest distance between the kept polyline and the 1 Hz track (each fix
against the segment joining the records around it in time).
Targets: at most 25 % kept, at most 15 m deviation. Usage: python bench/bench_track.py
"""

import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "host_tests"))

from harness.mpy import MicroPython  # noqa: E402
from harness import paths  # noqa: E402

MP_CODE = r"""
import gc, time
import geo, simgps, nmea
from transit import track
from fakeclock import CLOCK

def route():
    p = (16821100, 100265900)
    pts = [p]
    legs = ((0, 80000), (60000, 0), (0, 45000), (30000, 30000), (52000, 8000), (0, -70000),
            (-20000, -2000), (-20000, -6000), (-20000, -10000), (-15000, -15000), (-10000, -20000),
            (0, -40000), (-40000, 0), (0, 30000))
    for north, east in legs:
        p = geo.offset_e6(p[0], p[1], north, east)
        pts.append(p)
    return pts

pts = route()
drive = simgps.Drive(pts, stops={1: 35, 3: 45, 6: 25, 11: 60, 13: 30}, outages=((400, 430),), seed=%(seed)d)
CLOCK.set_virtual(0)
r = nmea.NmeaReader(None)
t = track.Track(%(settings)s)
gc.collect()
for tr, rep, data in drive.epochs():
    fixes = r.feed(data)
    CLOCK.advance_us(1000000)
    for f in fixes:
        why = t.update(f, time.ticks_ms())
        if f.valid:
            print("F", f.lat_e6, f.lon_e6, why)
f = r.flush()
print("ODO", t.odometer_m, "TRUE", sum(drive.seg_cm) // 100, "STATS", t.stats)
"""


def project(lat0, lat, lon):
    k = math.cos(math.radians(lat0 / 1e6))
    return lon / 1e6 * 111195.08 * k, lat / 1e6 * 111195.08


def seg_dist(p, a, b):
    ax, ay = a
    bx, by = b
    px, py = p
    dx, dy = bx - ax, by - ay
    L = dx * dx + dy * dy
    u = 0 if L == 0 else max(0, min(1, ((px - ax) * dx + (py - ay) * dy) / L))
    return math.hypot(px - ax - u * dx, py - ay - u * dy)


def run(settings="None", seed=1):
    mp = MicroPython()
    res = mp.run(MP_CODE % {"settings": settings, "seed": seed}, heap="64K", path=[_simgps_dir()])
    fixes, kept = [], []
    odo = None
    for line in res.lines:
        if line.startswith("F "):
            _, lat, lon, why = line.split()
            fixes.append((int(lat), int(lon)))
            if int(why):
                kept.append(len(fixes) - 1)
        elif line.startswith("ODO"):
            odo = line
    lat0 = fixes[0][0]
    pts = [project(lat0, a, b) for a, b in fixes]
    worst = 0.0
    for j in range(len(kept) - 1):
        a, b = pts[kept[j]], pts[kept[j + 1]]
        for i in range(kept[j], kept[j + 1] + 1):
            worst = max(worst, seg_dist(pts[i], a, b))
    return len(fixes), len(kept), worst, odo


def _simgps_dir():
    """Only simgps.py goes on the unix port's path (tools/ holds host programs)."""
    dest = os.path.join(ROOT, "build", "bench_simgps")
    os.makedirs(dest, exist_ok=True)
    src = os.path.join(paths.TOOLS, "simgps.py")
    dst = os.path.join(dest, "simgps.py")
    if not os.path.exists(dst) or open(dst).read() != open(src).read():
        with open(src) as f, open(dst, "w") as g:
            g.write(f.read())
    return dest


def main():
    print("track rules on a 1 Hz city-bus drive (unix port, 64K heap)")
    for seed in (1, 2, 3):
        n, k, worst, odo = run(seed=seed)
        print("seed %d: %d fixes, %d kept = %.1f %% (target <= 25 %%), max deviation %.1f m (target <= 15 m); %s"
              % (seed, n, k, 100.0 * k / n, worst, odo))


if __name__ == "__main__":
    main()
