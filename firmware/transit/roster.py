"""Depot yard roster: which buses are in the yard, from BLE or geofence events.

Buses advertise a BLE name "<prefix><device_id>"; a depot board with BLE
scans in short windows (aioble-style endless scans keep every phone on a
bus in memory) and counts a bus as arrived when it is heard above
`min_rssi`, as left when it has not been heard for `away_s`. Boards without
BLE feed the buses' own depot geofence events instead (`seen`/`gone`). Each
change leaves as a roster record through `pop()`.
"""

from time import ticks_ms, ticks_diff

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

ARRIVED = const(1)
LEFT = const(2)
SRC_BLE = const(1)
SRC_GEOFENCE = const(2)
_IRQ_SCAN_RESULT = const(5)
_IRQ_SCAN_DONE = const(6)

DEFAULTS = {"scan_ms": 3000, "scan_every_s": 30, "away_s": 600, "min_rssi": -90, "max_buses": 64,
            "prefix": "PHS-"}


def adv_name(data):
    """The Complete/Short Local Name in an advertising payload, or None."""
    i = 0
    n = len(data)
    while i + 1 < n:
        ln = data[i]
        if ln == 0 or i + 1 + ln > n:
            return None
        if data[i + 1] in (0x08, 0x09):
            return bytes(data[i + 2:i + 1 + ln])
        i += 1 + ln
    return None


class Roster:
    def __init__(self, config=None):
        c = config or {}
        self.away_ms = c.get("away_s", DEFAULTS["away_s"]) * 1000
        self.min_rssi = c.get("min_rssi", DEFAULTS["min_rssi"])
        self.max_buses = c.get("max_buses", DEFAULTS["max_buses"])
        self.prefix = c.get("prefix", DEFAULTS["prefix"]).encode()
        self.last_seen = {}  # bus id -> ticks_ms
        self.rssi = {}
        self.outbox = []  # (kind, rssi, source, bus_id)
        self.overflow = 0
        self.ignored = 0

    def seen(self, bus_id, rssi=0, source=SRC_GEOFENCE, now_ms=None):
        now = ticks_ms() if now_ms is None else now_ms
        if bus_id not in self.last_seen:
            if len(self.last_seen) >= self.max_buses:
                self.overflow += 1
                return
            self.outbox.append((ARRIVED, rssi, source, bus_id))
        self.last_seen[bus_id] = now
        self.rssi[bus_id] = rssi

    def gone(self, bus_id, source=SRC_GEOFENCE):
        if bus_id in self.last_seen:
            del self.last_seen[bus_id]
            self.outbox.append((LEFT, self.rssi.pop(bus_id, 0), source, bus_id))

    def expire(self, now_ms=None):
        """Buses not heard for away_s have left (BLE only hears, never sees them go)."""
        now = ticks_ms() if now_ms is None else now_ms
        for bus_id in [b for b, t in self.last_seen.items() if ticks_diff(now, t) > self.away_ms]:
            self.gone(bus_id, SRC_BLE)

    def on_advert(self, data, rssi, now_ms=None):
        name = adv_name(data)
        if name is None or not name.startswith(self.prefix) or rssi < self.min_rssi:
            self.ignored += 1
            return
        self.seen(name[len(self.prefix):].decode(), rssi, SRC_BLE, now_ms)

    def in_yard(self):
        return sorted(self.last_seen)

    def pop(self):
        return self.outbox.pop(0) if self.outbox else None


class BleScanner:
    """Short scan windows every scan_every_s; results go straight to the roster.

    The IRQ handler only copies the advertisement into a small preallocated
    list, the main loop hands it to the roster (no work in the callback)."""

    def __init__(self, ble, roster, config=None):
        c = config or {}
        self.ble = ble
        self.roster = roster
        self.scan_ms = c.get("scan_ms", DEFAULTS["scan_ms"])
        self.every_ms = c.get("scan_every_s", DEFAULTS["scan_every_s"]) * 1000
        self.pending = []
        self.dropped = 0
        self.scanning = False
        self.last_ms = None
        ble.active(True)
        ble.irq(self._irq)

    def _irq(self, event, data):
        if event == _IRQ_SCAN_RESULT:
            if len(self.pending) < 16:
                self.pending.append((bytes(data[4]), data[3]))
            else:
                self.dropped += 1
        elif event == _IRQ_SCAN_DONE:
            self.scanning = False

    def step(self, now_ms=None):
        now = ticks_ms() if now_ms is None else now_ms
        while self.pending:
            data, rssi = self.pending.pop(0)
            self.roster.on_advert(data, rssi, now)
        if not self.scanning and (self.last_ms is None or ticks_diff(now, self.last_ms) >= self.every_ms):
            self.scanning = True
            self.last_ms = now
            self.ble.gap_scan(self.scan_ms, 30000, 30000)
        self.roster.expire(now)


def advertise(ble, device_id, prefix=DEFAULTS["prefix"], interval_us=500000):
    """What a bus does: advertise its name so depot boards can hear it."""
    name = (prefix + device_id).encode()
    ble.active(True)
    ble.gap_advertise(interval_us, bytes([len(name) + 1, 0x09]) + name)
