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
  level the pin has when it runs, not the level of its edge. Every pin with
  a handler goes through the same queue: door switches (which interrupt
  like the beams) are delivered late inside a stall too, and share the
  one-per-tick service with the beams.
- UART: `feed` / `feed_at` put bytes into a receive buffer of `rxbuf` bytes;
  an overflow drops the newest bytes and counts them.
- WDT: a missed feed raises `ResetRequested(WDT_RESET)` as virtual time passes.
"""

import os
from fakeclock import CLOCK

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


def drive(pin_id, level):
    """Something outside the chip holds the line at level (a pressed button,
    a sensor output); a pull-up set later does not change it."""
    hw = _PINS.get(pin_id)
    if hw is None:
        hw = _PinHw(pin_id)
        _PINS[pin_id] = hw
    hw.level = 1 if level else 0
    hw.driven = True


def inject_edges(pin_id, edges):
    """Schedule external level changes: edges is [(t_us, level), ...] in
    absolute virtual microseconds (unwrapped)."""
    if pin_id not in _PINS:
        _PINS[pin_id] = _PinHw(pin_id)
    _PINS[pin_id].driven = True
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
        self.driven = False  # True once something outside the chip drives the line


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
            if pull == Pin.PULL_UP and mode == Pin.IN and not hw.driven:
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


# UART, WDT, RTC and Timer live in machine_periph.py and load on first use,
# so a test that needs only pins keeps the 64K heap for the code under test.
_LAZY = ("UART", "WDT", "RTC", "Timer", "wdt_disarm", "_UARTS", "_RTC_MEM")


def __getattr__(name):
    if name in _LAZY:
        import machine_periph
        return getattr(machine_periph, name)
    raise AttributeError(name)


# --------------------------------------------------------------------------
# PCNT quadrature decoder (machine.Encoder, ESP32 firmware 1.27+)
# --------------------------------------------------------------------------

_QUAD_POS = (0, 1, 3, 2)  # position on the quadrature cycle of level a | b << 1


class Encoder:
    """Counts every transition of (phase_a, phase_b) in hardware, straight
    from the injected timeline: never through the callback queue, so stalls
    cannot lose its edges. phases=4: +1 per transition along A, A+B, B,
    none (A leads), -1 the other way; a jump of both lines at once is not
    counted (`errors`)."""

    def __init__(self, id, phase_a=None, phase_b=None, phases=4, **kw):
        self.id = id
        self._a = phase_a._hw
        self._b = phase_b._hw
        self._last = self._a.level | (self._b.level << 1)
        self._count = 0
        self.errors = 0
        CLOCK.add_listener(self._watch)

    def _watch(self, now):
        s = self._a.level | (self._b.level << 1)
        if s != self._last:
            d = (_QUAD_POS[s] - _QUAD_POS[self._last]) & 3
            if d == 1:
                self._count += 1
            elif d == 3:
                self._count -= 1
            else:
                self.errors += 1
            self._last = s
        return None

    def value(self, value=None):
        v = self._count
        if value is not None:
            self._count = value
        return v

    def deinit(self):
        CLOCK.remove_listener(self._watch)
