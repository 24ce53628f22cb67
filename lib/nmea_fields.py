"""NMEA field conversion in place, and the merged Fix they fill.

The parser (nmea.py) finds the commas of a sentence lying in a
preallocated buffer; these helpers convert one field at a time digit by
digit, without making strings or floats, so a sentence costs no heap.
Empty fields read as None (or -1), malformed ones as False (or _BAD), and
counts must be plain digits: a sign or a fraction is malformed. Units:
degrees x 1e6, milliseconds since midnight, y*10000+m*100+d for dates.
"""

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from civil import days_from_civil

_MAX_FIELDS = const(40)
_BAD = const(-2)  # a field that is present but malformed
_MDAYS = b"\x1f\x1c\x1f\x1e\x1f\x1e\x1f\x1f\x1e\x1f\x1e\x1f"
BAD = _BAD


def _days_in_month(y, m):
    if m == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
        return 29
    return _MDAYS[m - 1]


def check_ymd(y, m, d):
    """y*10000+m*100+d for a real date from 1980 to 2099, else BAD."""
    if not (1980 <= y <= 2099 and 1 <= m <= 12) or not 1 <= d <= _days_in_month(y, m):
        return _BAD
    return y * 10000 + m * 100 + d


class Fix:
    """One merged epoch. Unknown values: tod_ms -1, year 0, speed_cmps and
    course_ddeg -1, hdop_x10 0, has_alt False. Per-system satellite counts
    are indexed by SYS_* (index 0 counts satellites of unknown system)."""

    def __init__(self):
        self.used = bytearray(8)
        self.in_view = bytearray(8)
        self.clear()

    def clear(self):
        self.valid = False  # a position fix the receiver vouches for
        self.has_pos = False
        self.lat_e6 = 0
        self.lon_e6 = 0
        self.has_alt = False
        self.alt_dm = 0  # above mean sea level
        self.geoid_dm = 0
        self.speed_cmps = -1
        self.course_ddeg = -1  # true course over ground, 0..3599
        self.year = 0
        self.month = 0
        self.day = 0
        self.tod_ms = -1  # UTC milliseconds since midnight
        self.hour = 0
        self.minute = 0
        self.second = 0
        self.ms = 0
        self.quality = 0  # GGA: 0 none, 1 GPS, 2 DGPS, 4 RTK, 5 float, 6 DR
        self.mode = ""  # A autonomous, D differential, E estimated, N none...
        self.nav_status = ""  # NMEA 4.1: S safe, C caution, U unsafe, V invalid
        self.fix_type = 0  # GSA: 1 none, 2 2D, 3 3D
        self.sats_used = 0
        self.sats_in_view = 0
        self.hdop_x10 = 0
        self.pdop_x10 = 0
        self.vdop_x10 = 0
        self.sentences = 0  # S_* bits of what was merged
        self._untimed = False  # holds sentences whose time field was empty
        self._yes = False
        self._no = False
        u = self.used
        v = self.in_view
        for i in range(8):
            u[i] = 0
            v[i] = 0

    def has_time(self):
        return self.tod_ms >= 0

    def has_date(self):
        return self.year > 0

    def unix_s(self):
        """Unix seconds (UTC) of this epoch, or None without date and time."""
        if self.year <= 0 or self.tod_ms < 0:
            return None
        return days_from_civil(self.year, self.month, self.day) * 86400 + self.tod_ms // 1000

    def copy(self):
        """A detached copy (the reader reuses its Fix objects)."""
        c = Fix()
        for k in ("valid", "has_pos", "lat_e6", "lon_e6", "has_alt", "alt_dm", "geoid_dm",
                  "speed_cmps", "course_ddeg", "year", "month", "day", "tod_ms", "hour",
                  "minute", "second", "ms", "quality", "mode", "nav_status", "fix_type",
                  "sats_used", "sats_in_view", "hdop_x10", "pdop_x10", "vdop_x10", "sentences"):
            setattr(c, k, getattr(self, k))
        c.used[:] = self.used
        c.in_view[:] = self.in_view
        return c

    def __repr__(self):
        return "Fix(valid=%s lat_e6=%d lon_e6=%d t=%d %04d-%02d-%02d)" % (
            self.valid, self.lat_e6, self.lon_e6, self.tod_ms, self.year, self.month, self.day)


class Fields:
    """One sentence in self._buf: field i runs from self._fs[i] to
    self._fs[i + 1] - 1 (the comma), for i < self._nf (0 is the address)."""

    def __init__(self, buf_size):
        self._buf = bytearray(buf_size)
        self._fs = [0] * (_MAX_FIELDS + 1)
        self._nf = 0

    def _end(self, i):
        """End (exclusive) of field i < self._nf; it starts at self._fs[i]."""
        return self._fs[i + 1] - 1

    def _ch(self, i):
        """First byte of field i, 0 when empty or absent."""
        if i >= self._nf:
            return 0
        a = self._fs[i]
        return self._buf[a] if a < self._fs[i + 1] - 1 else 0

    def _num(self, i, nd):
        """Field i as an int x 10**nd (rounded); None empty, False malformed."""
        if i >= self._nf:
            return None
        buf = self._buf
        a = self._fs[i]
        b = self._fs[i + 1] - 1
        if a >= b:
            return None
        if b - a > 12:
            return False
        neg = buf[a] == 45
        if neg or buf[a] == 43:
            a += 1
        v = 0
        frac = -1
        digits = 0
        while a < b:
            c = buf[a]
            a += 1
            if 48 <= c <= 57:
                digits += 1
                if frac < nd:
                    v = v * 10 + c - 48
                    if frac >= 0:
                        frac += 1
                elif frac == nd:
                    if c >= 53:
                        v += 1
                    frac += 1
            elif c == 46 and frac < 0:
                frac = 0
            else:
                return False
        if digits == 0:
            return False
        if frac < 0:
            frac = 0
        while frac < nd:
            v *= 10
            frac += 1
        return -v if neg else v

    def _uint(self, i):
        """Field i as a whole number of digits only; None empty, False otherwise."""
        if i >= self._nf:
            return None
        buf = self._buf
        a = self._fs[i]
        b = self._fs[i + 1] - 1
        if a >= b:
            return None
        if b - a > 9:
            return False
        v = 0
        while a < b:
            c = buf[a] - 48
            if c < 0 or c > 9:
                return False
            v = v * 10 + c
            a += 1
        return v

    def _coord(self, i, deg_max):
        """ddmm.mmmm / dddmm.mmmm plus hemisphere field i+1 -> degrees x 1e6;
        None when empty, False when malformed or out of range."""
        a = self._fs[i] if i < self._nf else 0
        b = self._end(i) if i < self._nf else 0
        if a >= b:
            return None
        buf = self._buf
        dot = buf.find(b".", a, b)
        if dot < 0:
            dot = b
        if dot - a < 3 or dot - a > 5 or b - dot > 11:
            return False
        deg = 0
        for k in range(a, dot):
            c = buf[k] - 48
            if c < 0 or c > 9:
                return False
            deg = deg * 10 + c
        mins = deg % 100
        deg //= 100
        frac = 0
        n = 0
        for k in range(dot + 1, b):
            c = buf[k] - 48
            if c < 0 or c > 9:
                return False
            if n < 6:
                frac = frac * 10 + c
                n += 1
        while n < 6:
            frac *= 10
            n += 1
        if mins >= 60:
            return False
        v = deg * 1000000 + (mins * 1000000 + frac + 30) // 60
        if v > deg_max * 1000000:
            return False
        h = self._ch(i + 1)
        if h == 83 or h == 87:  # S, W
            return -v
        if h == 78 or h == 69:  # N, E
            return v
        return False

    def _tod(self, i):
        """hhmmss[.sss] -> ms since midnight; -1 empty, _BAD malformed."""
        a = self._fs[i] if i < self._nf else 0
        b = self._end(i) if i < self._nf else 0
        if a >= b:
            return -1
        if b - a < 6:
            return _BAD
        buf = self._buf
        v = 0
        for k in range(a, a + 6):
            c = buf[k] - 48
            if c < 0 or c > 9:
                return _BAD
            v = v * 10 + c
        hh = v // 10000
        mm = (v // 100) % 100
        ss = v % 100
        if hh > 23 or mm > 59 or ss > 60 or (ss == 60 and hh * 100 + mm != 2359):
            return _BAD  # a leap second only at 23:59:60
        ms = 0
        if b > a + 6:
            if buf[a + 6] != 46:
                return _BAD
            scale = 100
            for k in range(a + 7, b):
                c = buf[k] - 48
                if c < 0 or c > 9:
                    return _BAD
                ms += c * scale
                scale //= 10
        return ((hh * 60 + mm) * 60 + ss) * 1000 + ms

    # --- sentences --------------------------------------------------------
    def _date6(self, i):
        """ddmmyy -> y*10000+m*100+d; -1 empty, _BAD malformed."""
        a = self._fs[i] if i < self._nf else 0
        b = self._end(i) if i < self._nf else 0
        if a >= b:
            return -1
        if b - a != 6:
            return _BAD
        v = 0
        for k in range(a, b):
            c = self._buf[k] - 48
            if c < 0 or c > 9:
                return _BAD
            v = v * 10 + c
        y = v % 100
        return check_ymd(y + (2000 if y < 80 else 1900), (v // 100) % 100, v // 10000)
