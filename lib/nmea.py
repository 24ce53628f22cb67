"""NMEA 0183 (2.x to 4.11) sentences to merged integer fixes, in place.

A sentence is parsed where it lies in a preallocated buffer: the checksum
and the comma positions in one pass, then only the fields a fix needs are
converted digit by digit, so a sentence costs no heap beyond its rare
epoch change. Sentences of one epoch (same UTC time of day: RMC, GGA, GNS,
GLL, VTG, GSA, GSV, ZDA) merge into one Fix. Units: degrees x 1e6,
decimetres, cm/s, tenths of a degree, HDOP x 10. Field conversion and the
Fix class live in nmea_fields.py; the UART side (line assembly,
resynchronisation) is NmeaReader in nmea_reader.py, re-exported.
"""

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from nmea_fields import Fields, Fix, check_ymd  # noqa: F401  Fix is part of this API

_MAX_FIELDS = const(40)
_RMC = const(0x524D43)
_GGA = const(0x474741)
_GNS = const(0x474E53)
_GLL = const(0x474C4C)
_VTG = const(0x565447)
_GSA = const(0x475341)
_GSV = const(0x475356)
_ZDA = const(0x5A4441)

# NMEA 4.11 system ids; 0 is the combined (GN) talker.
SYS_GPS = const(1)
SYS_GLONASS = const(2)
SYS_GALILEO = const(3)
SYS_BEIDOU = const(4)
SYS_QZSS = const(5)
SYS_NAVIC = const(6)
_TALKERS = {0x4750: 1, 0x474C: 2, 0x4741: 3, 0x4742: 4, 0x4244: 4,
            0x4751: 5, 0x515A: 5, 0x4749: 6, 0x474E: 0}
# One-character fields as shared strings (no allocation per sentence).
_CH = {65: "A", 67: "C", 68: "D", 69: "E", 70: "F", 77: "M", 78: "N",
       80: "P", 82: "R", 83: "S", 85: "U", 86: "V"}

# Sentence bits in Fix.sentences.
S_RMC = const(1)
S_GGA = const(2)
S_GNS = const(4)
S_GLL = const(8)
S_VTG = const(16)
S_GSA = const(32)
S_GSV = const(64)
S_ZDA = const(128)
_BAD = const(-2)  # nmea_fields.BAD: a field that is present but malformed


class NmeaParser(Fields):
    """Parses sentences lying in self._buf and merges them into epochs.

    parse(start, end) takes one sentence without its line ending ($ at start)
    and returns the previous epoch's Fix when this sentence opens a new one.
    The returned Fix stays valid until the next one is returned (two Fix
    objects are swapped; call .copy() to keep one longer)."""

    def __init__(self, allow_no_checksum=False, buf_size=512):
        Fields.__init__(self, buf_size)
        self.allow_no_checksum = allow_no_checksum
        self._work = Fix()
        self._done = Fix()
        self._date = 0  # last date seen as y*10000+m*100+d, carried to later epochs
        self._date_tod = 0
        self.stats = {"accepted": 0, "checksum_errors": 0, "no_checksum": 0, "too_long": 0,
                      "unknown": 0, "bad_fields": 0, "garbage": 0, "fixes": 0, "errors": 0}

    def parse(self, s, e):
        """Parse buf[s:e] ($ ... *hh, no CR LF); see the class docstring."""
        buf = self._buf
        st = self.stats
        star = buf.find(b"*", s, e)
        if star < 0:
            if not self.allow_no_checksum:
                st["no_checksum"] += 1
                return None
            star = e
        elif e - star != 3:
            st["checksum_errors"] += 1
            return None
        else:
            want = 0
            for k in range(star + 1, e):
                c = buf[k]
                if 48 <= c <= 57:
                    c -= 48
                elif 65 <= c <= 70:
                    c -= 55
                elif 97 <= c <= 102:
                    c -= 87
                else:
                    want = -1
                    break
                want = want * 16 + c
            x = 0
            for k in range(s + 1, star):
                x ^= buf[k]
            if x != want:
                st["checksum_errors"] += 1
                return None
        fs = self._fs
        n = 0
        p = s
        while p >= 0:
            if n >= _MAX_FIELDS:
                st["bad_fields"] += 1
                return None
            fs[n] = p + 1
            n += 1
            p = buf.find(b",", p + 1, star)
        fs[n] = star + 1
        self._nf = n
        if fs[1] - s != 7:  # address: talker (2) + type (3)
            st["unknown"] += 1
            return None
        sysid = _TALKERS.get((buf[s + 1] << 8) | buf[s + 2], -1)
        key = (buf[s + 3] << 16) | (buf[s + 4] << 8) | buf[s + 5]
        if sysid < 0:
            st["unknown"] += 1
            return None
        if key == _RMC or key == _GGA or key == _GNS or key == _GLL:
            r = self._position(key)
        elif key == _GSV:
            r = self._gsv(sysid)
        elif key == _GSA:
            r = self._gsa(sysid)
        elif key == _VTG:
            r = self._vtg()
        elif key == _ZDA:
            r = self._zda()
        else:
            st["unknown"] += 1
            return None
        if r is False:
            st["bad_fields"] += 1
            return None
        st["accepted"] += 1
        return r

    def _epoch(self, tod, untimed):
        """Close the open epoch when a sentence brings a different time.

        untimed: a time field present but empty (a receiver without a fix,
        at cold start or signal loss). Such sentences are an epoch of their
        own: joined to a timed one, their V / quality 0 would mark a real
        fix invalid, whichever burst comes first."""
        w = self._work
        closed = None
        if untimed:
            if w.tod_ms >= 0:
                closed = self.flush()
            self._work._untimed = True
        elif tod >= 0:
            if (w.tod_ms >= 0 and w.tod_ms != tod) or w._untimed:
                closed = self.flush()
                w = self._work
            w.tod_ms = tod
            w.ms = tod % 1000
            if tod >= 86400000:  # 23:59:60, a leap second
                w.hour, w.minute, w.second = 23, 59, 60
            else:
                w.hour = tod // 3600000
                w.minute = (tod // 60000) % 60
                w.second = (tod // 1000) % 60
        return closed

    def _set_date(self, w, ymd):
        w.year = ymd // 10000
        w.month = (ymd // 100) % 100
        w.day = ymd % 100
        self._date = ymd
        self._date_tod = w.tod_ms if w.tod_ms >= 0 else 0

    def flush(self):
        """Close the open epoch now (end of a burst); its Fix, or None if empty."""
        w = self._work
        if not w.sentences:
            return None
        w.valid = w.has_pos and w._yes and not w._no
        if w.year == 0 and self._date and w.tod_ms >= self._date_tod:
            self._set_date(w, self._date)  # date of an earlier epoch, same day
        if not w.sentences & (S_GGA | S_GNS):
            w.sats_used = sum(w.used)
        w.sats_in_view = sum(w.in_view)
        self._work = self._done
        self._done = w
        self._work.clear()
        self.stats["fixes"] += 1
        return w

    def _position(self, key):
        if key == _RMC:
            ti, la = 1, 3
        elif key == _GLL:
            ti, la = 5, 1
        else:
            ti, la = 1, 2
        tod = self._tod(ti)
        lat = self._coord(la, 90)
        lon = self._coord(la + 2, 180)
        if tod == _BAD or lat is False or lon is False or (lat is None) != (lon is None):
            return False
        yes = no = False
        q = sats = hdop = alt = geo = spd = crs = None
        ymd = -1
        mode = nav = 0
        if key == _RMC:
            stat = self._ch(2)
            spd = self._num(7, 2)
            crs = self._num(8, 1)
            ymd = self._date6(9)
            mode = self._ch(12)
            nav = self._ch(13)
            yes = stat == 65
            no = stat != 65
        elif key == _GLL:
            stat = self._ch(6)
            mode = self._ch(7)
            yes = stat == 65
            no = stat != 65
        else:
            n = 9 if key == _GGA else 10
            sats = self._uint(7)
            hdop = self._num(8, 1)
            alt = self._num(9, 1)
            geo = self._num(n + 2 if key == _GGA else n, 1)
            if key == _GGA:
                q = self._uint(6)
                if q is False or q is None or q > 8:
                    return False
                yes = q > 0
                no = q == 0
            else:
                a = self._fs[6] if self._nf > 6 else 0
                b = self._end(6) if self._nf > 6 else 0
                mode = 78
                for k in range(a, b):
                    c = self._buf[k]
                    if c != 78 and mode == 78:
                        mode = c
                nav = self._ch(13)
                yes = mode != 78
                no = not yes
        if (ymd == _BAD or spd is False or crs is False or sats is False or hdop is False
                or alt is False or geo is False or (crs is not None and not 0 <= crs <= 3600)
                or (spd is not None and spd < 0) or (sats is not None and not 0 <= sats <= 99)
                or (hdop is not None and not 0 <= hdop <= 9999)):
            return False
        if mode == 78:  # mode N: no fix. (4.1 nav status V means "not provided")
            no = True
        closed = self._epoch(tod, tod < 0 and ti < self._nf)
        w = self._work
        w._yes = w._yes or yes
        w._no = w._no or no
        if lat is not None:
            w.lat_e6 = lat
            w.lon_e6 = lon
            w.has_pos = True
        if spd is not None:
            w.speed_cmps = (spd * 5144 + 5000) // 10000  # knots x100 -> cm/s
        if crs is not None:
            w.course_ddeg = crs % 3600
        if ymd > 0:
            self._set_date(w, ymd)
        if mode:
            w.mode = _CH.get(mode, "?")
        if nav:
            w.nav_status = _CH.get(nav, "?")
        if q is not None:
            w.quality = q
        if sats is not None:
            w.sats_used = sats
        if hdop is not None:
            w.hdop_x10 = hdop
        if alt is not None:
            w.alt_dm = alt
            w.has_alt = True
        if geo is not None:
            w.geoid_dm = geo
        w.sentences |= S_RMC if key == _RMC else S_GGA if key == _GGA else S_GNS if key == _GNS else S_GLL
        return closed

    def _vtg(self):
        n = self._nf
        if n >= 9:  # 2.x+: course,T,course,M,knots,N,km/h,K[,mode]
            crs, kn, kmh, mode = self._num(1, 1), self._num(5, 2), self._num(7, 2), self._ch(9)
        elif n == 5:  # pre-2.0: course,course,knots,km/h
            crs, kn, kmh, mode = self._num(1, 1), self._num(3, 2), self._num(4, 2), 0
        else:
            return False
        if (crs is False or kn is False or kmh is False or (crs is not None and not 0 <= crs <= 3600)
                or (kn is not None and kn < 0) or (kmh is not None and kmh < 0)):
            return False
        w = self._work
        if kmh is not None:
            w.speed_cmps = (kmh * 5 + 9) // 18  # km/h x100 -> cm/s
        elif kn is not None:
            w.speed_cmps = (kn * 5144 + 5000) // 10000
        if crs is not None:
            w.course_ddeg = crs % 3600
        if mode == 78:
            w._no = True
        w.sentences |= S_VTG
        return None

    def _gsa(self, sysid):
        ft = self._uint(2)
        pdop, hdop, vdop = self._num(15, 1), self._num(16, 1), self._num(17, 1)
        sid = self._uint(18) if self._nf > 18 else None
        if (self._nf < 18 or ft is False or not _dop_ok(pdop) or not _dop_ok(hdop) or not _dop_ok(vdop)
                or sid is False):
            return False
        used = 0
        for i in range(3, 15):
            if self._ch(i):
                used += 1
        if sid is not None:
            sysid = sid if 0 < sid < 8 else 0
        elif sysid == 0 and used:
            prn = self._num(3, 0)
            sysid = SYS_GLONASS if prn and 65 <= prn <= 96 else SYS_GPS
        w = self._work
        if ft is not None and 0 < ft <= 3 and ft > w.fix_type:
            w.fix_type = ft
        w.used[sysid] = min(255, w.used[sysid] + used)
        if pdop is not None:
            w.pdop_x10 = pdop
        if vdop is not None:
            w.vdop_x10 = vdop
        if hdop is not None and not w.sentences & (S_GGA | S_GNS):
            w.hdop_x10 = hdop
        w.sentences |= S_GSA
        return None

    def _gsv(self, sysid):
        n = self._nf
        total, num, view = self._uint(1), self._uint(2), self._uint(3)
        extra = (n - 4) % 4
        if (n < 4 or extra > 1 or n > 21 or total is None or total is False or num is None
                or num is False or not 1 <= num <= total <= 9 or view is False
                or (view is not None and not 0 <= view <= 99)):
            return False
        if extra == 1:  # NMEA 4.1 signal id, one hex digit (a u-blox ZED-F9P may leave it empty)
            c = self._ch(n - 1)
            if c and not (48 <= c <= 57 or 65 <= c <= 70):
                return False
        w = self._work
        if view is not None and view > w.in_view[sysid]:
            w.in_view[sysid] = view  # several signals per system: satellites once
        w.sentences |= S_GSV
        return None

    def _zda(self):
        tod = self._tod(1)
        d, m, y = self._uint(2), self._uint(3), self._uint(4)
        if tod == _BAD or d is False or m is False or y is False:
            return False
        ymd = -1
        if d is not None and m is not None and y is not None:
            ymd = check_ymd(y, m, d)
            if ymd == _BAD:
                return False
        closed = self._epoch(tod, tod < 0 and self._nf > 1)
        if ymd > 0:
            self._set_date(self._work, ymd)
        self._work.sentences |= S_ZDA
        return closed



def _dop_ok(v):
    """A dilution of precision x 10: empty, or 0..999.9."""
    return v is None or (v is not False and 0 <= v <= 9999)


def NmeaReader(uart=None, **settings):
    """The UART-side reader (see nmea_reader.py), built here so callers need
    only `import nmea`: NmeaReader(uart, allow_no_checksum=False, ...)."""
    from nmea_reader import NmeaReader as _Reader
    return _Reader(uart, **settings)
