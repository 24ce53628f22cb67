"""UTC for records: from GPS once a fix is valid, from NTP when online
without GPS, and flagged as unknown before either.

Time is kept as an anchor (Unix seconds at a ticks_ms value), so unix_now()
is ticks arithmetic, independent of the port's epoch (ESP32: 2000-01-01,
unix port: 1970). The RTC is set from the first good source and again every
rtc_every_s, so a soft reset keeps a usable wall clock (trust_rtc=True takes
it at boot). GPS time is used only from a valid fix in a plausible year:
an old receiver after a week-number rollover reports dates 19.6 years back.
"""

import time

from civil import civil_from_unix, days_from_civil  # noqa: F401  (re-exported for callers)

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

EPOCH_2000_S = const(946684800)  # Unix seconds at 2000-01-01
FLAG_TIME_UNKNOWN = const(1)  # record stamped before GPS or NTP gave the time

SOURCE_NONE = "none"
SOURCE_RTC = "rtc"
SOURCE_NTP = "ntp"
SOURCE_GPS = "gps"


def port_epoch_offset_s():
    """Seconds to add to time.time() for Unix time (946684800 on an ESP32)."""
    return EPOCH_2000_S if time.gmtime(0)[0] == 2000 else 0


class GpsClock:
    """clock.from_fix(fix) on every fix; clock.unix_now(); clock.time_known()."""

    def __init__(self, rtc=None, trust_rtc=False, min_year=2024, rtc_every_s=3600,
                 gps_stale_s=600, ntp_every_s=3600):
        self.rtc = rtc
        self.min_year = min_year
        self.rtc_every_ms = rtc_every_s * 1000
        self.gps_stale_ms = gps_stale_s * 1000
        self.ntp_every_ms = ntp_every_s * 1000
        self.source = SOURCE_NONE
        self._anchor_s = 0  # Unix seconds ...
        self._anchor_ms = 0  # ... at this ticks_ms
        self._gps_ms = None  # ticks of the last GPS time
        self._ntp_ms = None
        self._rtc_ms = None  # ticks of the last RTC write
        self.stats = {"gps_sets": 0, "ntp_sets": 0, "rejected": 0, "rtc_writes": 0}
        if trust_rtc and rtc is not None:
            s = self._rtc_unix()
            if s is not None and civil_from_unix(s)[0] >= min_year:
                self._anchor(s, time.ticks_ms(), SOURCE_RTC)

    def _anchor(self, unix_s, now_ms, source):
        self._anchor_s = unix_s
        self._anchor_ms = now_ms
        self.source = source

    def _rtc_unix(self):
        try:
            dt = self.rtc.datetime()
        except Exception:  # a broken RTC read: count it, time stays unknown
            self.stats["rejected"] += 1
            return None
        return days_from_civil(dt[0], dt[1], dt[2]) * 86400 + dt[4] * 3600 + dt[5] * 60 + dt[6]

    def _write_rtc(self, unix_s, now_ms):
        if self.rtc is None:
            return
        if self._rtc_ms is not None and time.ticks_diff(now_ms, self._rtc_ms) < self.rtc_every_ms:
            return
        y, mo, d, h, mi, s, wd = civil_from_unix(unix_s)
        self.rtc.datetime((y, mo, d, wd, h, mi, s, 0))
        self._rtc_ms = now_ms
        self.stats["rtc_writes"] += 1

    def from_fix(self, fix, now_ms=None):
        """Take UTC from a valid fix with date and time; True when taken."""
        if fix is None or not fix.valid:
            return False
        secs = fix.unix_s()
        if secs is None:
            return False
        if fix.year < self.min_year:
            self.stats["rejected"] += 1
            return False
        if now_ms is None:
            now_ms = time.ticks_ms()
        # The epoch began fix.ms before its second; the reader returns it a
        # burst later (< 1 s): anchoring at now_ms is good to a second.
        self._anchor(secs, now_ms, SOURCE_GPS)
        self._gps_ms = now_ms
        self.stats["gps_sets"] += 1
        self._write_rtc(secs, now_ms)
        return True

    def want_ntp(self, now_ms=None):
        """True when an NTP query is worth making (no recent GPS time)."""
        if now_ms is None:
            now_ms = time.ticks_ms()
        if self._gps_ms is not None and time.ticks_diff(now_ms, self._gps_ms) < self.gps_stale_ms:
            return False
        return self._ntp_ms is None or time.ticks_diff(now_ms, self._ntp_ms) >= self.ntp_every_ms

    def from_ntp(self, unix_s, now_ms=None):
        """Take Unix seconds from NTP (convert ntptime.time() with
        port_epoch_offset_s()); ignored while GPS time is fresh."""
        if now_ms is None:
            now_ms = time.ticks_ms()
        if unix_s is None or civil_from_unix(unix_s)[0] < self.min_year:
            self.stats["rejected"] += 1
            return False
        self._ntp_ms = now_ms
        if self._gps_ms is not None and time.ticks_diff(now_ms, self._gps_ms) < self.gps_stale_ms:
            return False
        self._anchor(unix_s, now_ms, SOURCE_NTP)
        self.stats["ntp_sets"] += 1
        self._write_rtc(unix_s, now_ms)
        return True

    def time_known(self):
        return self.source != SOURCE_NONE

    def unix_at(self, ticks_ms):
        """Unix seconds at an earlier or later ticks_ms (within ~6 days), or
        None while time is unknown: re-dates records stamped before a fix."""
        if self.source == SOURCE_NONE:
            return None
        return self._anchor_s + time.ticks_diff(ticks_ms, self._anchor_ms) // 1000

    def unix_now(self, now_ms=None):
        """Unix seconds now: the anchor when known, else the RTC's guess
        (stamp such records with flags())."""
        if now_ms is None:
            now_ms = time.ticks_ms()
        if self.source != SOURCE_NONE:
            return self.unix_at(now_ms)
        if self.rtc is not None:
            s = self._rtc_unix()
            if s is not None:
                return s
        return 0

    def flags(self):
        """Record flags for a record made now: FLAG_TIME_UNKNOWN or 0."""
        return 0 if self.source != SOURCE_NONE else FLAG_TIME_UNKNOWN

