"""Fake `bluetooth` (ESP32 NimBLE) with scripted advertisers in range.

`set_advertisers([(addr_bytes, adv_data_bytes, rssi), ...])`; a gap_scan
delivers one _IRQ_SCAN_RESULT per advertiser spread over the scan window
(as soft callbacks, as the clock passes) and _IRQ_SCAN_DONE at its end.
"""

from fakeclock import CLOCK

_IRQ_SCAN_RESULT = 5
_IRQ_SCAN_DONE = 6
FLAG_READ = 0x0002

_ADVERTISERS = []


def set_advertisers(items):
    _ADVERTISERS[:] = list(items)


def adv_name(name):
    """Advertising payload with a Complete Local Name field."""
    b = name.encode()
    return bytes([len(b) + 1, 0x09]) + b


class BLE:
    _inst = None

    def __new__(cls):
        if BLE._inst is None:
            BLE._inst = object.__new__(cls)
            BLE._inst._init()
        return BLE._inst

    def _init(self):
        self._active = False
        self._irq = None
        self._events = []  # [t_us, event, data]
        self.advertising = None
        self.scans = 0
        CLOCK.add_listener(self._on_clock)

    def active(self, flag=None):
        if flag is None:
            return self._active
        self._active = bool(flag)

    def irq(self, handler):
        self._irq = handler

    def config(self, *a, **kw):
        return None

    def gap_advertise(self, interval_us, adv_data=None, **kw):
        self.advertising = None if interval_us is None else (interval_us, bytes(adv_data or b""))

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        if not self._active:
            raise OSError("BLE not active")
        if duration_ms is None:
            self._events = []
            return
        self.scans += 1
        now = CLOCK.now_us()
        n = len(_ADVERTISERS)
        for i, (addr, data, rssi) in enumerate(_ADVERTISERS):
            t = now + (i + 1) * duration_ms * 1000 // (n + 1)
            self._events.append([t, _IRQ_SCAN_RESULT, (0, addr, 0, rssi, data)])
        self._events.append([now + duration_ms * 1000, _IRQ_SCAN_DONE, ()])

    def _on_clock(self, now):
        ev = self._events
        while ev and ev[0][0] <= now:
            _, kind, data = ev.pop(0)
            if self._irq:
                self._irq(kind, data)
        return ev[0][0] if ev else None


def _reset():
    if BLE._inst is not None:
        CLOCK.remove_listener(BLE._inst._on_clock)
    BLE._inst = None
    _ADVERTISERS[:] = []
