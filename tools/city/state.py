"""The bridge's memory: the latest state of every vehicle, rebuilt from broker messages.

Every message is decoded and validated with the project's own schema code
(tools/telemetry.py over firmware/transit/schema.py). Records are
de-duplicated by (device, e, seq), the key of docs/telemetry.md: `e` is the
board's queue epoch (schema v2); a v1 message without `e` counts as epoch 0.
Ordering follows "live first, backlog behind": only a `pos` batch without
`bl` moves a vehicle, and only forward in seq within an epoch (a new epoch,
a board with a fresh queue, moves it when its fix is not older). Backlog and
duplicates still count for records and stop visits, never for the map.

All methods are called under `lock` by the MQTT thread; readers (feed, page,
export) take the same lock for a consistent snapshot.
"""

import bisect
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import telemetry  # noqa: E402
from transit import schema  # noqa: E402

LOCAL_UTC_OFFSET_S = 7 * 3600  # Asia/Bangkok: "today" for per-stop counts
STALE_S = 180  # a bus with no message for this long is stale on the page


class SeqSet:
    """Seen sequence numbers of one (device, epoch) as sorted disjoint ranges
    [lo, hi]: memory grows with the gaps, not the records, and any order of
    arrival (live, backlog, another copy's journal) gives the same set."""

    __slots__ = ("lo", "hi")

    def __init__(self):
        self.lo = []  # range starts, ascending
        self.hi = []  # range ends (inclusive)

    def add(self, seq):
        """True when seq is new."""
        lo, hi = self.lo, self.hi
        i = bisect.bisect_right(lo, seq)  # ranges 0..i-1 start at or below seq
        if i and seq <= hi[i - 1]:
            return False
        join_left = i and hi[i - 1] == seq - 1
        join_right = i < len(lo) and lo[i] == seq + 1
        if join_left and join_right:
            hi[i - 1] = hi[i]
            del lo[i], hi[i]
        elif join_left:
            hi[i - 1] = seq
        elif join_right:
            lo[i] = seq
        else:
            lo.insert(i, seq)
            hi.insert(i, seq)
        return True

    def __len__(self):
        return sum(h - l + 1 for l, h in zip(self.lo, self.hi))


class Vehicle:
    """Latest known state of one board (bus or depot)."""

    def __init__(self, device_id, role, route, plate):
        self.id = device_id
        self.role = role
        self.route = route
        self.plate = plate
        self.seen = {}  # epoch -> SeqSet
        self.records = 0  # unique records received
        self.e = None  # epoch of the live position
        self.live_seq = -1
        self.pos = None  # newest live position record (dict from schema.decode_batch)
        self.pos_rx = 0.0  # wall time the live position arrived
        self.visit = None  # newest stop visit: (stop_id, record)
        self.direction = 0
        self.load = None
        self.occupancy = None
        self.status = {}
        self.online = None
        self.last_seen = 0.0
        self.ver = 0

    def summary(self, now):
        """A plain dict for the page and the JSON views."""
        st = self.status
        p = self.pos
        return {"id": self.id, "role": self.role, "route": self.route, "plate": self.plate,
                "lat": p["lat_e6"] / 1e6 if p else None, "lon": p["lon_e6"] / 1e6 if p else None,
                "kmh": round(p["speed_cmps"] * 0.036, 1) if p else None,
                "bearing": p["course_ddeg"] / 10 if p else None, "ts": p["ts"] if p else None,
                "load": self.load, "occupancy": self.occupancy,
                "stop": self.visit[0] if self.visit else None,
                "online": self.online, "stale": (now - self.last_seen) > STALE_S,
                "age_s": int(now - self.last_seen), "safe": (st.get("safe") or {}).get("why"),
                "fw": st.get("fw"), "queue": (st.get("queue") or {}).get("depth"),
                "link": (st.get("link") or {}).get("type"), "errors": _errors(st), "records": self.records}


def _errors(st):
    """Error counters a dispatcher should see, summed from the status document."""
    n = st.get("health_errors", 0) or 0
    for part in ("queue", "uplink"):
        for k, v in (st.get(part) or {}).items():
            if isinstance(v, int) and (k.endswith("errors") or k.startswith("fail_")):
                n += v
    return n


def local_day(ts):
    """Local (Asia/Bangkok) date of a Unix time, as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts + LOCAL_UTC_OFFSET_S))


class FleetState:
    """Vehicles, stop visits and counters; fed one MQTT message at a time."""

    def __init__(self, static, validate=True, clock=time.time):
        self.static = static
        self.validate = validate
        self.clock = clock
        self.lock = threading.Lock()
        self.vehicles = {}
        self.visits = []  # (device, route, stop_id, e, record) in arrival order
        self.per_stop = {}  # local day -> stop_id -> [boardings, alightings]
        self.version = 0
        self.stats = {"messages": 0, "records": 0, "duplicates": 0, "invalid": 0, "foreign": 0,
                      "live_moves": 0, "backlog_msgs": 0, "last_error": ""}
        self.on_live = None  # fn(vehicle) after a live move (the bench's latency probe)

    def vehicle(self, device_id, role):
        v = self.vehicles.get(device_id)
        if v is None:
            v = self.vehicles[device_id] = Vehicle(device_id, role, self.static.route_of(device_id),
                                                   self.static.plate_of(device_id))
        return v

    def feed(self, topic, payload, now=None):
        """Apply one message (received at wall time `now`, default the clock);
        invalid ones are counted (stats), never raised. Applying the same
        message twice, or two messages in either order, gives the same state,
        so journals of several bridges can be replayed into one."""
        with self.lock:
            try:
                self._feed(topic, payload, now)
            except Exception as e:  # a bad board must not stop the bridge: count and show it
                self.stats["invalid"] += 1
                self.stats["last_error"] = "%s: %s" % (topic, str(e).splitlines()[0][:160] if str(e) else repr(e))

    def _feed(self, topic, payload, now):
        st = self.stats
        try:
            _, role, device_id, kind = schema.parse_topic(topic)
        except ValueError:
            st["foreign"] += 1
            return
        st["messages"] += 1
        now = self.clock() if now is None else now
        if kind in ("cmd", "ack"):
            return
        if self.validate:
            kind, doc = telemetry.validate(topic, payload)
        else:
            import json
            doc = json.loads(payload)
        v = self.vehicle(device_id, role)
        v.last_seen = max(v.last_seen, now)
        self.version += 1
        v.ver = self.version
        if kind == "status":
            if not doc.get("on"):  # the last will: no time stamp of its own
                v.online = False
            elif doc.get("t", 0) >= v.status.get("t", 0):
                v.online = True
                v.status = doc
            return
        if kind not in telemetry.BATCH_KINDS:
            return
        e = doc.get("e", 0)
        recs = schema.decode_batch(schema.TYPE_OF_KIND[kind], doc)
        seen = v.seen.get(e)
        if seen is None:
            seen = v.seen[e] = SeqSet()
        new = [r for r in recs if seen.add(r["seq"])]
        st["duplicates"] += len(recs) - len(new)
        st["records"] += len(new)
        v.records += len(new)
        if kind == "pos":
            if doc.get("bl"):
                st["backlog_msgs"] += 1
            elif recs:
                self._move(v, e, recs[-1], now)
        elif kind == "stop":
            for r in sorted(new, key=lambda r: r["seq"]):
                self._visit(v, e, r)

    def _move(self, v, e, rec, now):
        forward = rec["seq"] > v.live_seq if e == v.e else (v.pos is None or rec["ts"] >= v.pos["ts"])
        if not forward:
            return
        v.e, v.live_seq, v.pos, v.pos_rx = e, rec["seq"], rec, now
        self.stats["live_moves"] += 1
        if self.on_live:
            self.on_live(v)

    def _visit(self, v, e, r):
        sid, _ = self.static.nearest_stop(v.route, r["la"] / 1e6, r["lo"] / 1e6)
        sid = sid or ""
        self.visits.append((v.id, v.route, sid, e, r))
        if v.visit is None or r["tc"] >= v.visit[1]["tc"]:
            prev = v.visit[0] if v.visit else None
            if prev and sid and prev != sid:
                order = self.static.order.get((v.route, 0), [])
                if prev in order and sid in order:
                    v.direction = 0 if order.index(sid) > order.index(prev) else 1
            v.visit = (sid, r)
            v.load = r["ld"]
            v.occupancy = r["oc"]
        day = self.per_stop.setdefault(local_day(r["to"]), {})
        c = day.setdefault(sid, [0, 0])
        for b, a in r["dr"]:
            c[0] += b
            c[1] += a

    # --- readers (call with self.lock held) ------------------------------
    def service_day(self):
        """The local day the page shows: today by the clock, or the latest day
        with stop visits when today has none yet (after midnight; a replay)."""
        day = local_day(self.clock())
        if day in self.per_stop or not self.per_stop:
            return day
        return max(self.per_stop)

    def today(self):
        """{stop_id: [boardings, alightings]} for service_day()."""
        return self.per_stop.get(self.service_day(), {})

    def changes(self, since):
        """Summaries of vehicles changed after version `since`."""
        now = self.clock()
        return [v.summary(now) for v in self.vehicles.values() if v.ver > since]
