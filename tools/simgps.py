"""NMEA synthesiser for a bus driving a route (runs on CPython and MicroPython).

Drive(waypoints, ...) moves a vehicle along a polyline of (lat_e6, lon_e6)
points at 1 Hz: it accelerates to cruise speed, slows for sharp turns,
stops at the given waypoints for a dwell, and reports each second as a GN
receiver in NMEA 4.1 style would (RMC, GGA, one GSA per system with the
4.11 system id, one GSV per system with the signal id), with a slowly
wandering position error, noisy speed and course, and signal-loss windows
where the receiver reports status V. Everything is integer and seeded, so
both runtimes produce identical bytes.
"""

import geo
from civil import civil_from_unix

SYSTEMS = (  # talker, system id, signal id, PRNs
    ("GP", 1, 1, (2, 5, 12, 25)),
    ("GL", 2, 1, (66, 67, 76)),
    ("GA", 3, 7, (4, 11, 36)),
    ("GB", 4, 1, (8, 13, 27)),
)


class Rng:
    """xorshift32: the same sequence on every runtime."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def gauss(self, sigma):
        """About normal, integer, standard deviation sigma."""
        t = 0
        for _ in range(4):
            t += self.next() & 0xFFFF
        return (t - 131070) * sigma // 37837


def sentence(body):
    """'GPRMC,...' -> b'$GPRMC,...*hh\\r\\n'."""
    b = body.encode()
    x = 0
    for c in b:
        x ^= c
    return b"$" + b + b"*%02X\r\n" % x


def _coord(v_e6, width, pos, neg):
    a = v_e6 if v_e6 >= 0 else -v_e6
    mins_e5 = (a % 1000000) * 6  # minutes x 1e5
    fmt = "%02d%02d.%05d," if width == 2 else "%03d%02d.%05d,"
    return fmt % (a // 1000000, mins_e5 // 100000, mins_e5 % 100000) + (pos if v_e6 >= 0 else neg)


class Drive:
    """A 1 Hz drive along waypoints. stops: {waypoint index: dwell_s};
    outages: ((from_s, to_s), ...) of signal loss; speeds in cm/s."""

    def __init__(self, waypoints, cruise_cmps=1100, turn_cmps=450, stops=None, accel_cmps2=100,
                 decel_cmps2=130, noise_cm=150, outages=(), seed=1, start_unix=1767225600,
                 tail_s=5):
        self.wp = list(waypoints)
        self.cruise = cruise_cmps
        self.turn = turn_cmps
        self.stops = dict(stops or {})
        self.accel = accel_cmps2
        self.decel = decel_cmps2
        self.noise = noise_cm
        self.outages = outages
        self.rng = Rng(seed)
        self.start_unix = start_unix
        self.tail_s = tail_s
        self.seg_cm = []
        self.seg_ddeg = []
        for i in range(len(self.wp) - 1):
            a, b = self.wp[i], self.wp[i + 1]
            self.seg_cm.append(geo.distance_cm(a[0], a[1], b[0], b[1]))
            self.seg_ddeg.append(geo.bearing_ddeg(a[0], a[1], b[0], b[1]))

    def _limit(self, i):
        """Speed allowed at waypoint i: 0 at stops and the end, slow at turns."""
        if i >= len(self.wp) - 1 or i in self.stops:
            return 0
        turn = geo.angle_diff_ddeg(self.seg_ddeg[i - 1], self.seg_ddeg[i])
        return self.turn if -300 > turn or turn > 300 else self.cruise

    def truth(self):
        """Yield (t_s, lat_e6, lon_e6, speed_cmps, course_ddeg) each second."""
        seg, pos, v, t, dwell = 0, 0, 0, 0, 0
        n = len(self.seg_cm)
        end_wait = self.tail_s
        while True:
            a, b = self.wp[seg], self.wp[min(seg + 1, len(self.wp) - 1)]
            L = self.seg_cm[seg] if seg < n else 1
            f = pos * 1000 // L if L else 0
            lat = a[0] + (b[0] - a[0]) * f // 1000
            lon = a[1] + (b[1] - a[1]) * f // 1000
            yield t, lat, lon, v, self.seg_ddeg[min(seg, n - 1)]
            t += 1
            if dwell > 0:
                dwell -= 1
                continue
            if seg >= n:
                end_wait -= 1
                if end_wait < 0:
                    return
                continue
            # Fastest speed from which we can still brake for the next limits.
            allow = self.cruise
            d = L - pos
            j = seg + 1
            while j <= n and d < 60000:
                lim = self._limit(j)
                allow = min(allow, geo.isqrt(lim * lim + 2 * self.decel * d))
                if lim == 0:
                    break
                d += self.seg_cm[j] if j < n else 0
                j += 1
            nv = min(v + self.accel, allow) if v < allow else max(allow, v - 2 * self.decel)
            pos += (v + nv) // 2
            v = nv
            while seg < n and pos >= self.seg_cm[seg]:
                pos -= self.seg_cm[seg]
                seg += 1
                if seg in self.stops or seg >= n:
                    pos = 0
                    v = 0
                    dwell = self.stops.get(seg, 0)
                    break

    def epochs(self, pieces=False):
        """Yield (truth tuple, reported (lat_e6, lon_e6, speed_cmps, course_ddeg)
        or None during signal loss, NMEA bytes of the second); with pieces,
        the second's sentences as a list (no ~0.5 KB block per second: the
        memory harness runs the simulator in the firmware's heap)."""
        rng = self.rng
        ex = ey = 0
        for tr in self.truth():
            t, lat, lon, v, crs = tr
            ex = ex * 15 // 16 + rng.gauss(self.noise // 3)
            ey = ey * 15 // 16 + rng.gauss(self.noise // 3)
            rlat, rlon = geo.offset_e6(lat, lon, ey, ex)
            rv = max(0, v + rng.gauss(8)) if v else abs(rng.gauss(12))
            if v > 50:
                rc = (crs + rng.gauss(max(5, 3000 // v))) % 3600
            else:
                rc = rng.next() % 3600  # standing: the receiver's course is noise
            lost = False
            for o in self.outages:
                if o[0] <= t < o[1]:
                    lost = True
            rep = None if lost else (rlat, rlon, rv, rc)
            yield tr, rep, self.nmea(self.start_unix + t, rep, pieces)

    def nmea(self, unix_s, rep, pieces=False):
        """The sentences of one second (bytes; with pieces a list of them);
        rep None: no fix (cold start, tunnel)."""
        y, mo, d = civil_from_unix(unix_s)[:3]
        s = unix_s % 86400
        hms = "%02d%02d%02d.00" % (s // 3600, s // 60 % 60, s % 60)
        date = "%02d%02d%02d" % (d, mo, y % 100)
        rng = self.rng
        if rep is None:
            out = [sentence("GNRMC,%s,V,,,,,,,%s,,,N,V" % (hms, date)),
                   sentence("GNGGA,%s,,,,,0,00,99.99,,,,,," % hms)]
        else:
            la = _coord(rep[0], 2, "N", "S")
            lo = _coord(rep[1], 3, "E", "W")
            kn = rep[2] * 19438 // 1000  # knots x 1000
            out = [sentence("GNRMC,%s,A,%s,%s,%d.%03d,%d.%d,%s,,,A,V" % (
                hms, la, lo, kn // 1000, kn % 1000, rep[3] // 10, rep[3] % 10, date)),
                   sentence("GNGGA,%s,%s,%s,1,13,0.9,%d.%d,M,-27.8,M,," % (
                       hms, la, lo, 45 + rng.next() % 3, rng.next() % 10))]
        for talker, sysid, sig, prns in SYSTEMS:
            used = "" if rep is None else ",".join("%d" % p for p in prns)
            pad = "," * (12 - (len(prns) if rep is not None else 1))
            out.append(sentence("GNGSA,A,%d,%s%s,%s,%d" % (
                1 if rep is None else 3, used, pad, "99.99,99.99,99.99" if rep is None else "1.6,0.9,1.3",
                sysid)))
        for talker, sysid, sig, prns in SYSTEMS:
            body = "%sGSV,1,1,%02d" % (talker, len(prns))
            for p in prns:
                snr = "" if rep is None else "%02d" % (30 + rng.next() % 15)
                body += ",%02d,%02d,%03d,%s" % (p, 20 + p % 60, (p * 37) % 360, snr)
            out.append(sentence(body + ",%X" % sig))
        return out if pieces else b"".join(out)
