"""Synthetic buses that publish what a board publishes, made by the firmware's own encoder.

Used by the load generator (bench/bench_city.py) and the tests. Each bus
drives a route back and forth at town speed and emits, at the firmware's
defaults: a position record about every 15 s (track.period_moving_s 30 plus
the heading and distance triggers), one `pos` batch per uplink.batch_s (60 s),
a stop visit when it passes a stop (with per-door boardings/alightings, load
and GTFS-RT occupancy), and its retained status every status_period_s (300
s). Messages are encoded with firmware/transit/schema.py and
records.pack_*, exactly as the board does.
"""

import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (os.path.join(ROOT, "firmware"),):
    if p not in sys.path:
        sys.path.insert(0, p)

from transit import records as R  # noqa: E402
from transit import schema  # noqa: E402

POS_EVERY_S = 15
BATCH_S = 60
STATUS_S = 300
KMH = 30
CAPACITY = 80


def occupancy(load, capacity=CAPACITY):
    """GTFS-RT occupancy_status for a load (the firmware's thresholds are close to these)."""
    f = load * 100 // max(1, capacity)
    return 0 if load == 0 else 1 if f < 40 else 2 if f < 70 else 3 if f < 90 else 5 if f >= 100 else 4


class SynthBus:
    """One bus; `due(now)` returns the (topic, payload bytes, qos, retain) to publish now."""

    def __init__(self, device_id, route, phase_s=0, seed=1, root="phs", epoch=None):
        self.id = device_id
        # schema v2: the queue's epoch, a 32-bit number made when the queue was created
        self.epoch = epoch if epoch is not None else (seed * 2654435761) % 0xFFFFFFFF + 1
        self.wps = route["waypoints"]
        self.stops = route["stops"]
        self.phase = phase_s
        self.seed = seed
        self.seq = 1
        self.pending = []  # queue tuples (seq, rtype, flags, ts, payload) waiting for the batch
        self.t_pos = self.t_batch = self.t_status = None
        self.load = 0
        self.visit_id = 0
        self.odo = 0
        self.last_stop = None
        self.topics = {k: schema.topic(root, "bus", device_id, k) for k in ("pos", "stop", "status")}
        self.buf = bytearray(4096)
        self.seg_m = [0.0]
        for i in range(1, len(self.wps)):
            self.seg_m.append(self.seg_m[-1] + _m(self.wps[i - 1], self.wps[i]))

    def where(self, t):
        """(lat_e6, lon_e6, course_ddeg, metres along) at time t: back and forth along the route."""
        total = self.seg_m[-1]
        d = ((t + self.phase) * KMH / 3.6) % (2 * total)
        back = d > total
        d = 2 * total - d if back else d
        i = 1
        while i < len(self.seg_m) - 1 and self.seg_m[i] < d:
            i += 1
        a, b = self.wps[i - 1], self.wps[i]
        f = (d - self.seg_m[i - 1]) / max(1e-6, self.seg_m[i] - self.seg_m[i - 1])
        lat, lon = int(a[0] + (b[0] - a[0]) * f), int(a[1] + (b[1] - a[1]) * f)
        co = int(math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])) * 10) % 3600
        return lat, lon, (co + 1800) % 3600 if back else co, d

    def _rec(self, rtype, ts, payload):
        r = (self.seq, rtype, 0, ts, payload)
        self.seq += 1
        return r

    def _encode(self, rtype, recs):
        w = schema.Writer(self.buf)
        schema.encode_batch(w, self.id, rtype, recs, epoch=self.epoch)
        return w.text()

    def due(self, now):
        out = []
        t = int(now)
        if self.t_pos is None:
            self.t_pos, self.t_batch = t, t + BATCH_S - 1 - (self.seed % BATCH_S)
            self.t_status = t + self.seed % STATUS_S
        while t >= self.t_pos:
            lat, lon, co, along = self.where(self.t_pos)
            self.odo += POS_EVERY_S * KMH * 10 // 36
            self.pending.append(self._rec(R.POS, self.t_pos, R.pack_position(
                lat, lon, KMH * 1000 // 36, co, 450, 9, 11, 1, self.odo)))
            s = self._stop_near(lat, lon)
            if s is not None and s["id"] != self.last_stop:
                out.append(self._visit(s, self.t_pos))
            self.last_stop = s["id"] if s is not None else self.last_stop
            self.t_pos += POS_EVERY_S
        if t >= self.t_batch and self.pending:
            out.append((self.topics["pos"], self._encode(R.POS, self.pending), 1, False))
            self.last_batch = (self.pending[-1][3], len(self.pending))
            self.pending = []
            self.t_batch += BATCH_S
        if t >= self.t_status:
            out.append((self.topics["status"], json.dumps(self.status(t)).encode(), 0, True))
            self.t_status += STATUS_S
        return out

    def _stop_near(self, lat, lon):
        for s in self.stops:
            if _m(s["at"], (lat, lon)) < 130:
                return s
        return None

    def _visit(self, s, ts):
        self.visit_id += 1
        k = (self.seed * 7 + self.visit_id * 13) % 11
        b, a = k % 6, min(self.load, (k * 3) % 5)
        self.load += b - a
        rec = self._rec(R.STOP, ts, R.pack_stop(self.visit_id, ts - 20, ts + 10, s["at"][0], s["at"][1], self.odo,
                                                30, self.load, occupancy(self.load), 0, ((b, a), (0, 0))))
        return (self.topics["stop"], self._encode(R.STOP, [rec]), 1, False)

    def status(self, t):
        return {"v": schema.VERSION, "d": self.id, "e": self.epoch, "on": True, "t": t, "fw": "0.1.0", "up_s": t % 86400,
                "rst": "power_on", "heap": 48000, "health_errors": 0,
                "queue": {"depth": len(self.pending), "age_s": 0, "last_seq": self.seq - 1, "dropped": 0,
                          "crc_errors": 0, "io_errors": 0, "torn": 0},
                "link": {"type": "ppp", "up": True, "connects": 1, "drops": 0},
                "uplink": {"connects": 1, "reconnects": 0, "tx_bytes": 1000,
                           "umqtt": {"file": "/lib/umqtt/simple.mpy", "api": "1.4+"}}}


def _m(a, b):
    lat = math.radians((a[0] + b[0]) / 2e6)
    return math.hypot((b[0] - a[0]) / 1e6 * 111320.0, (b[1] - a[1]) / 1e6 * 111320.0 * math.cos(lat))


def load_route(path=os.path.join(ROOT, "tools", "routes", "phitsanulok_line1.json")):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
