"""The status document: who we are, how we are, from sources the app registers.

Sources are callables returning small dicts of counters (uplink, queue,
link, parser, counters); `document()` calls each and puts its dict under
the source's name, next to identity, uptime, reset cause and free heap.
A failing source is counted and reported, never allowed to stop the status.
The uplink publishes the result retained on <root>/<role>/<id>/status.
"""

import gc
import time

from transit import schema

try:
    from transit import VERSION as FW_VERSION
except ImportError:
    FW_VERSION = "?"

# machine.reset_cause() values on the ESP32 port
RESET_NAMES = {1: "power_on", 2: "hard", 3: "watchdog", 4: "deepsleep", 5: "soft"}
EPOCH_2000_S = 946684800


def _mem_free():
    fn = getattr(gc, "mem_free", None)  # MicroPython only
    return fn() if fn is not None else -1


def unix_now():
    """Unix seconds whatever the port's epoch (the ESP32 counts from 2000)."""
    t = int(time.time())  # float on the unix port
    return t + EPOCH_2000_S if time.gmtime(0)[0] == 2000 else t


class Health:
    def __init__(self, device_id, reset_cause=None, ticks_ms=time.ticks_ms, utc_s=unix_now, epoch=0):
        self.device_id = device_id
        self.epoch = epoch  # the queue's epoch (transit.identity): status v2 "e"
        self.reset = RESET_NAMES.get(reset_cause, str(reset_cause)) if reset_cause is not None else "unknown"
        self._ticks = ticks_ms
        self._t0 = ticks_ms()
        self._up_ms = 0
        self._last = self._t0
        self._utc = utc_s
        self._sources = []
        self.errors = 0  # sources that raised

    def register(self, name, fn, sparse=False):
        """fn() -> dict of counters, shown under `name` in the status.

        sparse: leave out counters that are zero (0, all-zero lists, ""), so
        the retained status stays small on a cellular budget; an error
        counter appears the moment it is not zero."""
        self._sources.append((name, fn, sparse))

    def uptime_s(self):
        # Accumulated in steps so it survives the 2**30 ms tick wrap (12.4 days).
        now = self._ticks()
        self._up_ms += time.ticks_diff(now, self._last)
        self._last = now
        return self._up_ms // 1000

    def _head(self):
        return {"v": schema.VERSION, "d": self.device_id, "e": self.epoch, "on": True, "t": self._utc(),
                "fw": FW_VERSION, "up_s": self.uptime_s(), "rst": self.reset, "heap": _mem_free()}

    def _part(self, fn, sparse):
        try:
            part = fn()
            if sparse:
                part = {k: v for k, v in part.items() if not _zero(v)}
            return part
        except Exception as e:  # counted and shown: a broken source must not stop the status
            self.errors += 1
            return {"error": repr(e)}

    def document(self):
        doc = self._head()
        for name, fn, sparse in self._sources:
            doc[name] = self._part(fn, sparse)
        doc["health_errors"] = self.errors
        return doc

    def dump(self, out):
        """Write document() as JSON to the stream out, one source at a time:
        only one source's dict is on the heap at once, never the whole
        document (the uplink streams it into its transmit buffer;
        docs/memory.md). Errors of out (a full buffer) propagate."""
        import json
        out.write(b"{")
        for k, v in self._head().items():
            json.dump(k, out)
            out.write(b":")
            json.dump(v, out)
            out.write(b",")
        for name, fn, sparse in self._sources:
            part = self._part(fn, sparse)
            json.dump(name, out)
            out.write(b":")
            json.dump(part, out)
            part = None
            out.write(b",")
        out.write(b'"health_errors":')
        json.dump(self.errors, out)
        out.write(b"}")


def _zero(v):
    if isinstance(v, bool):
        return False
    if isinstance(v, list):
        for x in v:
            if x:
                return False
        return True
    return v == 0 or v == ""


def queue_source(q, utc_s=unix_now):
    """Depth, age of the oldest record and error counters of a DurableQueue."""
    def source():
        oldest = q.oldest_ts()
        st = q.stats
        return {"depth": q.depth(), "age_s": (utc_s() - oldest) if oldest is not None else 0,
                "last_seq": q.last_seq, "dropped": st.get("dropped_positions", 0) + st.get("dropped_priority", 0),
                "crc_errors": st.get("crc_errors", 0), "io_errors": st.get("io_errors", 0),
                "torn": st.get("torn_tails", 0)}
    return source
