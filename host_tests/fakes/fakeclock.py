"""Controllable clock behind the fake `time` functions and the fake peripherals.

Runs under CPython and the MicroPython unix port. In real mode the ticks
follow the host's monotonic clock; in virtual mode time only moves when the
firmware sleeps or a test advances it, so a test can drive hours of service
in milliseconds. Ticks wrap at 2**30 like every MicroPython port, so code
that subtracts ticks instead of calling ticks_diff breaks here as on a board.

Peripherals (pins, UARTs, the watchdog) register listeners; every advance of
virtual time walks through the events due on the way, in time order.
"""

try:
    import utime as _host_time  # MicroPython: the built-in, even when time.py is shadowed

    def _host_us():
        return _host_time.ticks_us()

    def _host_diff(a, b):
        return _host_time.ticks_diff(a, b)

    def _host_sleep_us(us):
        _host_time.sleep_us(us)

    def _host_epoch_s():
        return _host_time.time()
except ImportError:  # CPython
    import time as _host_time

    def _host_us():
        return _host_time.monotonic_ns() // 1000

    def _host_diff(a, b):
        return a - b

    def _host_sleep_us(us):
        _host_time.sleep(us / 1000000)

    def _host_epoch_s():
        return int(_host_time.time())


TICKS_PERIOD = 1 << 30
TICKS_MAX = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD // 2
EPOCH_2000_OFFSET_S = 946684800  # seconds from 1970-01-01 to 2000-01-01


def ticks_diff(a, b):
    """Signed difference of two wrapped tick values, as on a board."""
    return ((a - b + TICKS_HALF) & TICKS_MAX) - TICKS_HALF


class Clock:
    """Microsecond clock with a real and a virtual mode."""

    def __init__(self):
        self.virtual = False
        self.now = 0  # virtual microseconds since start (unwrapped)
        self.pace = 0  # virtual mode: real seconds slept per virtual second (0 = free-running)
        self.utc_base_s = _host_epoch_s()  # wall clock at virtual time 0
        self.epoch_2000 = False  # True: time.time() counts from 2000 like an ESP32
        self.utc_adjust_s = 0  # real mode: RTC minus host wall clock
        self._listeners = []
        self._real_start = _host_us()
        self._real_acc = 0
        self._real_last = self._real_start
        self._advancing = False

    # --- configuration -------------------------------------------------
    def set_virtual(self, start_us=0, utc_s=None, pace=0):
        """Switch to virtual time starting at start_us (unwrapped)."""
        self.virtual = True
        self.now = start_us
        self.pace = pace
        if utc_s is not None:
            self.utc_base_s = utc_s - start_us // 1000000

    def set_real(self):
        self.virtual = False

    def add_listener(self, fn):
        """fn(now_us) is called at every step of virtual time; it may return
        the next time it wants to be woken, or None."""
        if fn not in self._listeners:
            self._listeners.append(fn)

    def remove_listener(self, fn):
        if fn in self._listeners:
            self._listeners.remove(fn)

    # --- reading -------------------------------------------------------
    def now_us(self):
        if self.virtual:
            return self.now
        cur = _host_us()
        self._real_acc += _host_diff(cur, self._real_last)
        self._real_last = cur
        return self._real_acc

    def ticks_us(self):
        return self.now_us() & TICKS_MAX

    def ticks_ms(self):
        return (self.now_us() // 1000) & TICKS_MAX

    def unix_s(self):
        """Wall-clock seconds since 1970 (what an RTC set from GPS would say)."""
        if self.virtual:
            return self.utc_base_s + self.now // 1000000
        return _host_epoch_s() + self.utc_adjust_s

    def utc_s(self):
        """time.time(): seconds since the port's epoch (1970, or 2000 when
        epoch_2000, like an ESP32)."""
        s = self.unix_s()
        return s - EPOCH_2000_OFFSET_S if self.epoch_2000 else s

    def set_unix_s(self, secs):
        """Set the wall clock (machine.RTC().datetime(...) lands here)."""
        if self.virtual:
            self.utc_base_s = secs - self.now // 1000000
        else:
            self.utc_adjust_s = secs - _host_epoch_s()

    # --- moving --------------------------------------------------------
    def _next_wake(self, limit):
        nxt = limit
        for fn in self._listeners:
            w = fn(self.now)
            if w is not None and self.now < w < nxt:
                nxt = w
        return nxt

    def advance_us(self, us):
        """Move virtual time forward by us, stopping at every listener event."""
        if not self.virtual:
            if us > 0:
                _host_sleep_us(us)
            self.now_us()
            return
        target = self.now + us
        if self._advancing:  # a listener slept: just move, no nested walk
            self.now = target
            return
        self._advancing = True
        try:
            while True:
                nxt = self._next_wake(target)
                if self.pace and nxt > self.now:
                    _host_sleep_us(int((nxt - self.now) * self.pace))
                self.now = nxt
                if nxt >= target:
                    self._next_wake(target)  # let listeners act at the target itself
                    break
        finally:
            self._advancing = False

    def waited_us(self, us):
        """Virtual mode: real time already spent waiting (on a socket) moves
        virtual time by us, listeners included, without the pace's sleep."""
        if not self.virtual or us <= 0:
            return
        pace = self.pace
        self.pace = 0
        try:
            self.advance_us(us)
        finally:
            self.pace = pace

    def sleep_ms(self, ms):
        self.advance_us(int(ms) * 1000)

    def sleep_us(self, us):
        self.advance_us(int(us))


CLOCK = Clock()


class VirtualPoll:
    """A select.poll object whose waits move the virtual clock, as time
    passes on a board while the firmware waits on a socket.

    poll(ms) waits up to ms of real time (the network is real), then moves
    virtual time by what it waited: all of ms when nothing happened, so a
    deadline the firmware checks against ticks_ms() is reached; the real
    time taken (at most ms) when a socket became ready. In real mode it is
    the plain poll. Used by the simulator (tools/simnet/select.py)."""

    def __init__(self, real):
        self._p = real

    def register(self, obj, mask=None):
        if mask is None:
            self._p.register(obj)
        else:
            self._p.register(obj, mask)

    def modify(self, obj, mask):
        self._p.modify(obj, mask)

    def unregister(self, obj):
        self._p.unregister(obj)

    def poll(self, timeout=-1):
        if not CLOCK.virtual:
            return self._p.poll(timeout)
        t0 = _host_us()
        ready = self._p.poll(timeout)
        took = _host_diff(_host_us(), t0)
        if timeout is not None and timeout >= 0:
            took = min(took, timeout * 1000) if ready else timeout * 1000
        CLOCK.waited_us(took)
        return ready


def install_cpython_time():
    """Give CPython's time module the MicroPython ticks API, backed by CLOCK.

    Only names CPython lacks are added; pytest and the host keep their own
    time.time/monotonic untouched.
    """
    import time as t
    t.ticks_ms = CLOCK.ticks_ms
    t.ticks_us = CLOCK.ticks_us
    t.ticks_diff = ticks_diff
    t.ticks_add = lambda a, d: (a + d) & TICKS_MAX
    t.sleep_ms = CLOCK.sleep_ms
    t.sleep_us = CLOCK.sleep_us


def days_from_civil(y, m, d):
    """Days since 1970-01-01 for a proleptic Gregorian date (integer maths)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_unix(secs):
    """(year, month, day, hour, minute, second, weekday 0=Monday) from Unix seconds."""
    days, rem = divmod(secs, 86400)
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y += m <= 2
    wd = (days + 3) % 7  # 1970-01-01 was a Thursday
    return (y, m, d, rem // 3600, (rem // 60) % 60, rem % 60, wd)
