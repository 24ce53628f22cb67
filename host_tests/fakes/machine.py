"""Fake `machine` module that behaves like MicroPython's ESP32 port.

Runs under CPython (installed into sys.modules by conftest.py) and under the
MicroPython unix port (host_tests/fakes on the import path shadows the
built-in). Tests drive it from the outside:

- Pins: a test injects edges at their true times (`inject_edges`). As on the
  ESP32, a pin interrupt only schedules a soft callback; up to 8 may be
  pending (one queue for all pins) and further edges are dropped silently.
  Callbacks run as soon as the interpreter is free, but inside a blocking
  call (`stall`) only one is serviced per service period (100 ms for a socket
  wait) or none at all (TLS handshake, flash commit). The handler sees the
  level the pin has when it runs, not the level of its edge.
- UART: `feed` / `feed_at` put bytes into a receive buffer of `rxbuf` bytes;
  an overflow drops the newest bytes and counts them.
- WDT: a missed feed raises `ResetRequested(WDT_RESET)` as virtual time passes.
"""

import os
from fakeclock import CLOCK, civil_from_unix, days_from_civil

# ESP32 reset causes (machine.reset_cause()).
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

SCHED_DEPTH = 8  # MICROPY_SCHEDULER_DEPTH on the ESP32
SOCKET_SERVICE_PERIOD_MS = 100  # ESP32 socket waits run pending callbacks every 100 ms


def _getenv(name):
    try:
        return os.getenv(name)
    except AttributeError:  # CPython keeps getenv in os too, but be safe
        return os.environ.get(name)


class ResetRequested(BaseException):
    """The board resets: watchdog expiry or machine.reset(). Not an Exception,
    so firmware `except Exception` cannot swallow it."""

    @property
    def cause(self):
        return self.args[0]


class _State:
    def __init__(self):
        env = _getenv("FAKE_RESET_CAUSE")
        self.reset_cause = int(env) if env else PWRON_RESET
        uid = _getenv("FAKE_UNIQUE_ID")
        self.unique_id = bytes(int(uid[i:i + 2], 16) for i in range(0, len(uid), 2)) if uid else b"\x24\x0a\xc4\x12\x34\x56"
        self.reset_count = 0


_state = _State()


def reset_cause():
    return _state.reset_cause


def unique_id():
    return _state.unique_id


def reset():
    _state.reset_count += 1
    raise ResetRequested(SOFT_RESET)


def soft_reset():
    raise ResetRequested(SOFT_RESET)


def freq(hz=None):
    return 240000000 if hz is None else None


def idle():
    CLOCK.advance_us(1000)


def disable_irq():
    return 0


def enable_irq(state=0):
    return None


# --------------------------------------------------------------------------
# Pins and the soft-IRQ scheduler
# --------------------------------------------------------------------------


class _Scheduler:
    """The ESP32's pending-callback queue and the edges still to come."""

    def __init__(self):
        self.timeline = []  # [t_us, pin_id, level], sorted by time
        self.pending = []  # pins whose callback is scheduled
        self.dropped = 0  # callbacks lost because the queue was full
        self.delivered = 0
        self.service_period_us = None  # None: running; 0: blocked; >0: socket wait
        self.next_service_us = 0
        self.in_handler = False

    def on_clock(self, now):
        tl = self.timeline
        i = 0
        while i < len(tl) and tl[i][0] <= now:
            t, pid, level = tl[i]
            i += 1
            hw = _PINS.get(pid)
            if hw is None:
                continue
            old = hw.level
            hw.level = level
            if old == level or hw.handler is None:
                continue
            if (level and hw.trigger & Pin.IRQ_RISING) or (not level and hw.trigger & Pin.IRQ_FALLING):
                if len(self.pending) < SCHED_DEPTH:
                    self.pending.append(hw)
                else:
                    self.dropped += 1
        if i:
            del tl[:i]
        period = self.service_period_us
        if period is None:
            self.run_pending()
        elif period > 0 and now >= self.next_service_us:
            if self.pending:
                self.run_one()
            while self.next_service_us <= now:
                self.next_service_us += period
        nxt = tl[0][0] if tl else None
        if period:
            if nxt is None or self.next_service_us < nxt:
                nxt = self.next_service_us
        return nxt

    def run_one(self):
        hw = self.pending.pop(0)
        self.delivered += 1
        self.in_handler = True
        try:
            hw.handler(hw.pin_obj)
        finally:
            self.in_handler = False

    def run_pending(self):
        if self.in_handler:
            return
        while self.pending:
            self.run_one()


_SCHED = _Scheduler()
CLOCK.add_listener(_SCHED.on_clock)


def scheduler():
    """Test access to the callback queue (pending, dropped, delivered)."""
    return _SCHED


def inject_edges(pin_id, edges):
    """Schedule external level changes: edges is [(t_us, level), ...] in
    absolute virtual microseconds (unwrapped)."""
    for t, level in edges:
        _SCHED.timeline.append([t, pin_id, 1 if level else 0])
    _SCHED.timeline.sort(key=lambda e: e[0])


def inject_timeline(events):
    """Schedule [(t_us, pin_id, level), ...] for several pins at once."""
    for t, pid, level in events:
        _SCHED.timeline.append([t, pid, 1 if level else 0])
    _SCHED.timeline.sort(key=lambda e: e[0])


def stall(ms, service_period_ms=SOCKET_SERVICE_PERIOD_MS):
    """Model a blocking call of ms milliseconds in virtual time.

    service_period_ms=100 is a socket wait (one pending callback every
    100 ms); 0 is a TLS handshake or flash commit (none until it returns).
    When it returns the interpreter runs everything still pending."""
    period = int(service_period_ms) * 1000
    _SCHED.service_period_us = period
    _SCHED.next_service_us = CLOCK.now + period if period else 0
    try:
        CLOCK.advance_us(int(ms) * 1000)
    finally:
        _SCHED.service_period_us = None
    _SCHED.run_pending()


class _PinHw:
    def __init__(self, pid):
        self.id = pid
        self.level = 0
        self.mode = -1
        self.pull = -1
        self.handler = None
        self.trigger = 0
        self.pin_obj = None


_PINS = {}


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5

    def __init__(self, pid, mode=-1, pull=-1, value=None):
        hw = _PINS.get(pid)
        if hw is None:
            hw = _PinHw(pid)
            _PINS[pid] = hw
        self._hw = hw
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None):
        hw = self._hw
        if mode != -1:
            hw.mode = mode
        if pull != -1:
            hw.pull = pull
            if pull == Pin.PULL_UP and mode == Pin.IN:
                hw.level = 1
        if value is not None:
            hw.level = 1 if value else 0

    def value(self, v=None):
        if v is None:
            return self._hw.level
        self._hw.level = 1 if v else 0

    __call__ = value

    def on(self):
        self._hw.level = 1

    def off(self):
        self._hw.level = 0

    def irq(self, handler=None, trigger=3, hard=False, wake=None):
        if hard:
            raise TypeError("hard IRQ not supported on ESP32 GPIO")
        hw = self._hw
        hw.handler = handler
        hw.trigger = trigger if handler else 0
        hw.pin_obj = self
        return self

    def __repr__(self):
        return "Pin(%s)" % (self._hw.id,)


def pin_level(pid):
    """Test helper: the current level of a pin."""
    hw = _PINS.get(pid)
    return hw.level if hw else None


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
