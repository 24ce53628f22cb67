"""UART, WDT, RTC and Timer of the fake `machine` (see machine.py); loaded lazily."""

from fakeclock import CLOCK, civil_from_unix, days_from_civil
from machine import stall, ResetRequested, WDT_RESET, _state


# --------------------------------------------------------------------------
# UART
# --------------------------------------------------------------------------


class _UartHw:
    """The driver's receive ring: preallocated, like the IDF buffer, so the
    fake does not fragment the MicroPython heap it shares with the firmware."""

    def __init__(self, uid):
        self.id = uid
        self.resize(256)
        self.overflow_bytes = 0
        self.tx = bytearray()
        self.schedule = []  # [t_us, bytes]
        CLOCK.add_listener(self.on_clock)

    def resize(self, rxbuf):
        self.rxbuf = rxbuf
        self.ring = bytearray(rxbuf)
        self.r = 0  # read index
        self.n = 0  # bytes held

    def push(self, data):
        cap = self.rxbuf
        for b in data:
            if self.n >= cap:
                self.overflow_bytes += 1
                continue
            self.ring[(self.r + self.n) % cap] = b
            self.n += 1

    def take(self, out, count):
        """Move up to count bytes into `out` (bytearray/memoryview); return the count."""
        count = min(count, self.n)
        cap = self.rxbuf
        for i in range(count):
            out[i] = self.ring[self.r]
            self.r = (self.r + 1) % cap
        self.n -= count
        return count

    def find_newline(self):
        cap = self.rxbuf
        for i in range(self.n):
            if self.ring[(self.r + i) % cap] == 10:
                return i
        return -1

    def on_clock(self, now):
        s = self.schedule
        i = 0
        while i < len(s) and s[i][0] <= now:
            self.push(s[i][1])
            i += 1
        if i:
            del s[:i]
        return s[0][0] if s else None


_UARTS = {}


class UART:
    INV_TX = 1
    INV_RX = 2

    def __init__(self, uid, baudrate=115200, **kw):
        hw = _UARTS.get(uid)
        if hw is None:
            hw = _UartHw(uid)
            _UARTS[uid] = hw
        self._hw = hw
        self.baudrate = baudrate
        self.timeout = 0
        self.init(baudrate, **kw)

    def init(self, baudrate=None, bits=8, parity=None, stop=1, tx=None, rx=None,
             rxbuf=None, txbuf=None, timeout=None, timeout_char=None, **kw):
        if baudrate:
            self.baudrate = baudrate
        if rxbuf is not None and rxbuf != self._hw.rxbuf:
            self._hw.resize(rxbuf)
        if timeout is not None:
            self.timeout = timeout

    def deinit(self):
        pass

    # --- firmware side -------------------------------------------------
    def _wait(self, n):
        """Blocking read: wait up to timeout ms for n bytes (no callbacks run)."""
        if self.timeout and self._hw.n < n:
            stall(self.timeout, 0)

    def any(self):
        return self._hw.n

    def read(self, n=None):
        hw = self._hw
        self._wait(n or 1)
        if not hw.n:
            return None
        out = bytearray(hw.n if n is None else min(n, hw.n))
        hw.take(out, len(out))
        return bytes(out)

    def readinto(self, buf, nbytes=None):
        hw = self._hw
        n = len(buf) if nbytes is None else nbytes
        self._wait(n)
        if not hw.n:
            return None
        return hw.take(buf, n)

    def readline(self):
        i = self._hw.find_newline()
        if i < 0:
            return self.read() if self._hw.n else None
        return self.read(i + 1)

    def write(self, data):
        self._hw.tx.extend(data)
        return len(data)

    def flush(self):
        pass

    def txdone(self):
        return True

    # --- test side -----------------------------------------------------
    def feed(self, data):
        """Bytes arrive now; beyond rxbuf they are lost, as on the ESP32."""
        self._hw.push(data)

    def feed_at(self, t_us, data):
        """Bytes arrive when virtual time reaches t_us."""
        self._hw.schedule.append([t_us, bytes(data)])
        self._hw.schedule.sort(key=lambda e: e[0])

    @property
    def overflow_bytes(self):
        return self._hw.overflow_bytes

    @property
    def sent(self):
        return bytes(self._hw.tx)


# --------------------------------------------------------------------------
# Watchdog and RTC
# --------------------------------------------------------------------------


class WDT:
    _active = None

    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        self.timeout_us = timeout * 1000
        self.last_feed = CLOCK.now_us()
        self.fired = False
        if WDT._active is not None:  # one watchdog; a second init re-arms it
            CLOCK.remove_listener(WDT._active._check)
        WDT._active = self
        CLOCK.add_listener(self._check)

    def feed(self):
        self.last_feed = CLOCK.now_us()

    def _check(self, now):
        due = self.last_feed + self.timeout_us
        if now > due and not self.fired:
            self.fired = True
            CLOCK.remove_listener(self._check)
            WDT._active = None
            _state.reset_cause = WDT_RESET
            raise ResetRequested(WDT_RESET)
        return due + 1


def wdt_disarm():
    """Test helper: forget the watchdog (a reset clears it on a board)."""
    if WDT._active is not None:
        CLOCK.remove_listener(WDT._active._check)
        WDT._active = None


class RTC:
    """Wall clock on top of the fake clock; setting it moves time.time()."""

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        if dt is None:
            y, mo, d, h, mi, s, wd = civil_from_unix(CLOCK.unix_s())
            return (y, mo, d, wd, h, mi, s, 0)
        y, mo, d, wd, h, mi, s = dt[:7]
        CLOCK.set_unix_s(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)

    def init(self, dt):
        self.datetime(dt)

    def memory(self, data=None):
        if data is None:
            return _RTC_MEM[0]
        _RTC_MEM[0] = bytes(data)


_RTC_MEM = [b""]


class Timer:
    """Periodic/one-shot timer; callbacks run as the clock passes (soft, like the ESP32's)."""
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, tid=0, **kw):
        self.callback = None
        self.period_us = 0
        self.due = None
        self.mode = Timer.PERIODIC
        self.fired = 0
        if kw:
            self.init(**kw)

    def init(self, mode=PERIODIC, period=1000, callback=None, freq=None):
        self.deinit()
        self.mode = mode
        self.period_us = int(1000000 // freq) if freq else int(period) * 1000
        self.callback = callback
        self.due = CLOCK.now_us() + self.period_us
        CLOCK.add_listener(self._on_clock)

    def deinit(self):
        CLOCK.remove_listener(self._on_clock)
        self.due = None

    def _on_clock(self, now):
        if self.due is None:
            return None
        while self.due is not None and now >= self.due:
            self.fired += 1
            if self.mode == Timer.PERIODIC:
                self.due += self.period_us
            else:
                self.due = None
                CLOCK.remove_listener(self._on_clock)
            if self.callback:
                self.callback(self)
        return self.due
