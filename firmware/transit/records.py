"""Record types and their compact binary payloads in the durable queue.

Readings are packed with `struct` into small fixed layouts (integers only),
so a week of positions fits in flash and the uplink can turn a payload into
its wire form without parsing text. The queue header (length, type, seq,
time, CRC) is the queue's business; these are only the payloads.
Layouts are little-endian and documented in docs/telemetry.md.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# Record types (queue `rtype`). Stop visits, gate counts, events and roster
# changes are priority records: flushed at once, sent first, dropped last.
POS = const(1)
STOP = const(2)
COUNT = const(3)
EVENT = const(4)
ROSTER = const(5)
PRIORITY_TYPES = (STOP, COUNT, EVENT, ROSTER)
TYPE_NAMES = {POS: "pos", STOP: "stop", COUNT: "count", EVENT: "event", ROSTER: "roster"}

# Queue header flags.
FLAG_TIME_UNKNOWN = const(1)  # ts is seconds since boot, not Unix time

# Position: lat_e6, lon_e6, speed_cmps, course_ddeg, alt_dm, sats, hdop_x10,
# reason (track.REASON_* bits, u16), odometer_m
_POS_FMT = "<iiHHhBBHI"
POS_SIZE = struct.calcsize(_POS_FMT)  # 22 bytes

# Event kinds.
EV_BOOT = const(1)
EV_GEOFENCE_ENTER = const(2)
EV_GEOFENCE_EXIT = const(3)
EV_IGNITION_ON = const(4)
EV_IGNITION_OFF = const(5)
EV_LOAD_RESET = const(6)
EV_SENSOR_FAULT = const(7)
EV_SAFE_MODE = const(8)
EVENT_NAMES = {EV_BOOT: "boot", EV_GEOFENCE_ENTER: "geofence_enter", EV_GEOFENCE_EXIT: "geofence_exit",
               EV_IGNITION_ON: "ignition_on", EV_IGNITION_OFF: "ignition_off",
               EV_LOAD_RESET: "load_reset", EV_SENSOR_FAULT: "sensor_fault", EV_SAFE_MODE: "safe_mode"}
# Event: kind, zone/door index, value, lat_e6, lon_e6
_EVENT_FMT = "<BBhii"

# Stop visit: visit_id, t_open, t_close, lat_e6, lon_e6, odometer_m, dwell_s,
# load_departure, occupancy_status, quality flags, door count; then per door
# (boardings, alightings) as u16 pairs.
_STOP_FMT = "<IIIiiIHHBBB"
_STOP_SIZE = struct.calcsize(_STOP_FMT)
_PAIR_FMT = "<HH"

# Gate count: period start (Unix s), period length s, flags, gate count; then
# per gate (in, out) as u16 pairs.
_COUNT_FMT = "<IHBB"
_COUNT_SIZE = struct.calcsize(_COUNT_FMT)

# Roster: kind (1 arrived, 2 left), rssi dBm, source (1 BLE, 2 geofence), then the bus id (ASCII).
_ROSTER_FMT = "<BbB"


def _u16(x):
    return 0 if x < 0 else (65535 if x > 65535 else x)


def _u8(x):
    return 0 if x < 0 else (255 if x > 255 else x)


def pack_position(lat_e6, lon_e6, speed_cmps, course_ddeg, alt_dm, sats, hdop_x10, reason, odometer_m):
    if alt_dm < -32768:
        alt_dm = -32768
    elif alt_dm > 32767:
        alt_dm = 32767
    return struct.pack(_POS_FMT, lat_e6, lon_e6, _u16(speed_cmps), _u16(course_ddeg), alt_dm,
                       _u8(sats), _u8(hdop_x10), _u16(reason), odometer_m & 0xFFFFFFFF)


def unpack_position(payload):
    """-> (lat_e6, lon_e6, speed_cmps, course_ddeg, alt_dm, sats, hdop_x10, reason, odometer_m)"""
    return struct.unpack(_POS_FMT, payload)


# Byte offset, width and signedness of each field of _POS_FMT, for reading
# one column of a batch without a tuple per record (the encoder's working
# set while a backlog drains; docs/memory.md).
_POS_AT = ((0, 4, 1), (4, 4, 1), (8, 2, 0), (10, 2, 0), (12, 2, 1), (14, 1, 0), (15, 1, 0), (16, 2, 0), (18, 4, 0))


def position_field(payload, c):
    """Field c of unpack_position(payload), read from the bytes in place."""
    at, n, signed = _POS_AT[c]
    v = payload[at + n - 1]
    for k in range(n - 2, -1, -1):
        v = (v << 8) | payload[at + k]
    if signed and v >> (8 * n - 1):
        v -= 1 << (8 * n)
    return v


def pack_stop(visit_id, t_open, t_close, lat_e6, lon_e6, odometer_m, dwell_s, load_departure,
              occupancy, quality, doors):
    """doors: sequence of (boardings, alightings), one per door."""
    out = _with_pairs(_STOP_SIZE, doors)
    struct.pack_into(_STOP_FMT, out, 0, visit_id & 0xFFFFFFFF, t_open, t_close, lat_e6, lon_e6,
                     odometer_m & 0xFFFFFFFF, _u16(dwell_s), _u16(load_departure), _u8(occupancy),
                     _u8(quality), len(doors))
    return bytes(out)


def _with_pairs(head_size, pairs):
    """A buffer of head_size bytes (filled by the caller) then u16 pairs."""
    out = bytearray(head_size + 4 * len(pairs))
    off = head_size
    for x, y in pairs:
        struct.pack_into(_PAIR_FMT, out, off, _u16(x), _u16(y))
        off += 4
    return out


def _pairs(payload, head_size, n):
    return [struct.unpack_from(_PAIR_FMT, payload, head_size + 4 * i) for i in range(n)]


def unpack_stop(payload):
    """-> (visit_id, t_open, t_close, lat_e6, lon_e6, odometer_m, dwell_s, load_departure,
    occupancy, quality, [(boardings, alightings), ...])"""
    head = struct.unpack_from(_STOP_FMT, payload, 0)
    return head[:10] + (_pairs(payload, _STOP_SIZE, head[10]),)


def pack_count(period_start, period_s, flags, gates):
    """gates: sequence of (in, out), one per gate."""
    out = _with_pairs(_COUNT_SIZE, gates)
    struct.pack_into(_COUNT_FMT, out, 0, period_start, _u16(period_s), _u8(flags), len(gates))
    return bytes(out)


def unpack_count(payload):
    """-> (period_start, period_s, flags, [(in, out), ...])"""
    start, period_s, flags, n = struct.unpack_from(_COUNT_FMT, payload, 0)
    return (start, period_s, flags, _pairs(payload, _COUNT_SIZE, n))


def pack_event(kind, index=0, value=0, lat_e6=0, lon_e6=0):
    if value < -32768:
        value = -32768
    elif value > 32767:
        value = 32767
    return struct.pack(_EVENT_FMT, kind, _u8(index), value, lat_e6, lon_e6)


def unpack_event(payload):
    """-> (kind, index, value, lat_e6, lon_e6)"""
    return struct.unpack(_EVENT_FMT, payload)


def pack_roster(kind, rssi, source, bus_id):
    if rssi < -128:
        rssi = -128
    elif rssi > 127:
        rssi = 127
    return struct.pack(_ROSTER_FMT, kind, rssi, source) + bus_id.encode()[:32]


def unpack_roster(payload):
    """-> (kind, rssi, source, bus_id)"""
    kind, rssi, source = struct.unpack_from(_ROSTER_FMT, payload, 0)
    return (kind, rssi, source, bytes(payload[3:]).decode())


_UNPACK = {POS: unpack_position, STOP: unpack_stop, COUNT: unpack_count, EVENT: unpack_event,
           ROSTER: unpack_roster}


def unpack(rtype, payload):
    """Decode any payload; raises ValueError for an unknown type or a short payload."""
    fn = _UNPACK.get(rtype)
    if fn is None:
        raise ValueError("unknown record type %d" % rtype)
    try:
        return fn(payload)
    except Exception as e:  # struct.error on CPython, ValueError/IndexError on MicroPython
        raise ValueError("bad %s payload (%d bytes): %s" % (TYPE_NAMES[rtype], len(payload), e))
