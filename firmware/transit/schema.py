"""Telemetry schema v2: topics and the JSON wire form of record batches.

Defined once here and used by the firmware, the host tools and the tests
(docs/telemetry.md explains it; docs/schema/*.json validate it). Batches are
written straight into a preallocated bytearray by `Writer`, so encoding a
message allocates little more than the queue's own records. Positions go as
columns of deltas (about 30 bytes per position); the rare priority records
(stops, counts, events, roster) go as rows with short keys.

v2 (from v1): every batch and the status carry "e", the board's epoch (a
random 32-bit number made with its queue, transit/identity.py), so the
de-duplication key (device, e, seq) stays unique across a wiped queue or a
swapped board; commands need "id" and "exp" (transit/commands.py).
"""

import json

try:
    from micropython import const
except ImportError:  # CPython (host tools)
    def const(x):
        return x

from transit import records as R

VERSION = const(2)

# Topic leaves under <root>/<role>/<device_id>/
KIND_POS = "pos"
KIND_STOP = "stop"
KIND_COUNT = "count"
KIND_EVENT = "event"
KIND_ROSTER = "roster"
KIND_STATUS = "status"
KIND_CMD = "cmd"
KIND_ACK = "ack"
ROLES = ("bus", "depot")
KIND_OF_TYPE = {R.POS: KIND_POS, R.STOP: KIND_STOP, R.COUNT: KIND_COUNT, R.EVENT: KIND_EVENT,
                R.ROSTER: KIND_ROSTER}
TYPE_OF_KIND = {v: k for k, v in KIND_OF_TYPE.items()}

# Position columns: (key, running sum?) in records.unpack_position order.
# A running-sum column starts from 0, so its first entry is the absolute value.
POS_COLUMNS = (("la", 1), ("lo", 1), ("sp", 0), ("co", 1), ("al", 1), ("sa", 0), ("hd", 0),
               ("rs", 0), ("od", 1))
POS_FIELDS = ("lat_e6", "lon_e6", "speed_cmps", "course_ddeg", "alt_dm", "sats", "hdop_x10",
              "reason", "odometer_m")
# Row keys per record type, in records.unpack_* order (the last of STOP and
# COUNT is a list of [a, b] pairs).
ROW_KEYS = {
    R.STOP: ("id", "to", "tc", "la", "lo", "od", "dw", "ld", "oc", "qf", "dr"),
    R.COUNT: ("ps", "pl", "cf", "g"),
    R.EVENT: ("k", "i", "va", "la", "lo"),
    R.ROSTER: ("k", "rs", "src", "bus"),
}
# The same keys as bytes, for writing without encoding them per message.
# Literal constant tuples: frozen, they stay in flash and cost the heap
# nothing (built at import they took ~1 KB; docs/memory.md). Indexed by
# column, and by record type (records.STOP=2 .. ROSTER=5).
# host_tests/dual/test_schema.py checks they match POS_COLUMNS and ROW_KEYS.
_POS_KEYS_B = (b',"la":', b',"lo":', b',"sp":', b',"co":', b',"al":', b',"sa":', b',"hd":', b',"rs":', b',"od":')
_ROW_KEYS_B = (None, None,
               (b"id", b"to", b"tc", b"la", b"lo", b"od", b"dw", b"ld", b"oc", b"qf", b"dr"),
               (b"ps", b"pl", b"cf", b"g"),
               (b"k", b"i", b"va", b"la", b"lo"),
               (b"k", b"rs", b"src", b"bus"))


def topic(root, role, device_id, kind):
    """'<root>/<role>/<device_id>/<kind>', e.g. 'phs/bus/bus-001/pos'."""
    return "%s/%s/%s/%s" % (root, role, device_id, kind)


def parse_topic(t):
    """-> (root, role, device_id, kind); raises ValueError for a foreign topic."""
    parts = t.split("/")
    if len(parts) != 4 or parts[1] not in ROLES or not parts[2] or not parts[3]:
        raise ValueError("not a telemetry topic: " + t)
    return parts[0], parts[1], parts[2], parts[3]


# Writer lives in its own small module so the bounded MQTT transport (and
# safe mode's report through it) does not load the whole schema.
from transit.jsonw import Writer  # noqa: E402,F401 - re-exported: schema.Writer


def _header(w, device_id, epoch, rec0, backlog):
    w.raw(b'{"v":2,"d":')
    w.str(device_id)
    w.raw(b',"e":')
    if isinstance(epoch, int):
        w.int(epoch)
    else:  # digits rendered once (an epoch above 2**30 is a big int on the ESP32)
        w.raw(epoch)
    w.raw(b',"s":')
    w.int(rec0[0])
    w.raw(b',"t":')
    w.int(rec0[3])
    if backlog:
        w.raw(b',"bl":1')


def encode_batch(w, device_id, rtype, recs, backlog=False, epoch=0):
    """Write one message for recs, a list of queue tuples (seq, rtype, flags,
    ts, payload) all of type rtype, oldest first; epoch: the queue's epoch
    (1..0xFFFFFFFF; transit.identity), an int or its decimal digits as bytes."""
    if not recs:
        raise ValueError("empty batch")
    _header(w, device_id, epoch, recs[0], backlog)
    if rtype == R.POS:
        _pos_columns(w, recs)
    else:
        _rows(w, rtype, recs)
    w.byte(125)  # '}'


def _same(vals, n):
    v = vals[0]
    for i in range(1, n):
        if vals[i] != v:
            return False
    return True


def _column(w, key, vals, n, running):
    # A column whose values are all equal goes as one number (the value).
    w.raw(key)
    if _same(vals, n):
        w.int(vals[0])
        return
    w.byte(91)
    prev = 0
    for i in range(n):
        if i:
            w.byte(44)
        w.int(vals[i] - prev if running else vals[i])
        prev = vals[i]
    w.byte(93)


def _deltas(w, recs, k):
    """[x0-x0, x1-x0, x2-x1, ...] of field k of the queue records (first 0)."""
    w.byte(91)
    prev = recs[0][k]
    for i in range(len(recs)):
        if i:
            w.byte(44)
        w.int(recs[i][k] - prev)
        prev = recs[i][k]
    w.byte(93)


def _pos_columns(w, recs):
    n = len(recs)
    w.raw(b',"n":')
    w.int(n)
    seq0 = recs[0][0]
    if recs[n - 1][0] - seq0 != n - 1:  # not contiguous: seq deltas
        w.raw(b',"q":')
        _deltas(w, recs, 0)
    ts0 = recs[0][3]
    step = recs[1][3] - ts0 if n > 1 else 0
    regular = True
    for i in range(n):
        if recs[i][3] - ts0 != i * step:
            regular = False
            break
    w.raw(b',"dt":')
    if regular:  # evenly spaced: one number, the interval
        w.int(step)
    else:
        _deltas(w, recs, 3)
    col = [0] * n  # one column at a time, read from the payloads in place
    for c in range(len(POS_COLUMNS)):
        for i in range(n):
            col[i] = R.position_field(recs[i][4], c)
        _column(w, _POS_KEYS_B[c], col, n, POS_COLUMNS[c][1])
    for i in range(n):
        col[i] = recs[i][2]
    if not (col[0] == 0 and _same(col, n)):
        _column(w, b',"f":', col, n, 0)


def _value(w, v):
    if isinstance(v, int):
        w.int(v)
    elif isinstance(v, str):
        w.str(v)
    else:  # list of pairs
        w.byte(91)
        for i in range(len(v)):
            if i:
                w.byte(44)
            w.byte(91)
            w.int(v[i][0])
            w.byte(44)
            w.int(v[i][1])
            w.byte(93)
        w.byte(93)


def _rows(w, rtype, recs):
    keys = _ROW_KEYS_B[rtype]
    w.raw(b',"r":[')
    for i in range(len(recs)):
        seq, _, flags, ts, payload = recs[i]
        if i:
            w.byte(44)
        w.raw(b'{"q":')
        w.int(seq)
        w.raw(b',"t":')
        w.int(ts)
        if flags:
            w.raw(b',"f":')
            w.int(flags)
        vals = R.unpack(rtype, payload)
        for k in range(len(keys)):
            w.raw(b',"')
            w.raw(keys[k])
            w.raw(b'":')
            _value(w, vals[k])
        w.byte(125)
    w.byte(93)


# --- small documents (built rarely, plain json) -------------------------


def offline_doc(device_id):
    """The last will: retained, marks the device offline."""
    return json.dumps({"v": VERSION, "d": device_id, "on": False})


def ack_doc(device_id, cmd_id, op, ok, result=None, error=None):
    doc = {"v": VERSION, "d": device_id, "id": cmd_id, "op": op, "ok": ok}
    if ok:
        doc["r"] = result
    else:
        doc["err"] = error
    return json.dumps(doc)


# --- decoding (host tools and tests; not used on the board) -------------


def decode_batch(rtype, doc):
    """Expand a batch document into a list of record dicts with seq, ts and
    e (the epoch; 0 for a v1 message, which has none)."""
    out = []
    e = doc.get("e", 0)
    seq = doc["s"]
    ts = doc["t"]
    if rtype == R.POS:
        dt = doc["dt"]
        n = doc["n"]
        q = doc.get("q")
        sums = [0] * len(POS_COLUMNS)
        for i in range(n):
            seq = (seq + q[i]) if q else doc["s"] + i
            ts = (ts + dt[i]) if isinstance(dt, list) else doc["t"] + i * dt
            f = doc.get("f", 0)
            rec = {"seq": seq, "e": e, "ts": ts, "flags": f[i] if isinstance(f, list) else f}
            for c in range(len(POS_COLUMNS)):
                key, running = POS_COLUMNS[c]
                v = doc[key]
                if not isinstance(v, list):
                    rec[POS_FIELDS[c]] = v
                    continue
                if running:
                    sums[c] += v[i]
                    rec[POS_FIELDS[c]] = sums[c]
                else:
                    rec[POS_FIELDS[c]] = v[i]
            out.append(rec)
        return out
    for row in doc["r"]:
        rec = {"seq": row["q"], "e": e, "ts": row["t"], "flags": row.get("f", 0)}
        for k in ROW_KEYS[rtype]:
            rec[k] = row[k]
        out.append(rec)
    return out
