"""The board's wall clock before the first TLS handshake: SNTP, GPS, a floor in flash.

mbedTLS on the ESP32 checks certificate dates against the RTC, and the RTC
reads 2000-01-01 after power-on: until the clock is set every handshake
fails as "not yet valid". Certificate checks stay on; instead the clock is
set from the best source at hand:
- GPS time on a bus (transit/gpsclock.py writes the RTC at the first fix);
- SNTP over UDP once the link is up: the configured servers in turn
  (`time.sntp`, "host" or "host:port"), one request in flight, its answer
  polled without blocking and given up after `time.sntp_timeout_ms`; only
  the name lookup blocks, so a query starts only while no door is busy;
- a floor kept in flash (`data/time.json`): the last synced time, saved at
  the first sync of a boot and then every `time.floor_every_s`, never below
  BUILD_UNIX_S. At boot an RTC behind the floor is moved up to it, so the
  board never believes it is before its own last record.
`gate()` holds the first TLS handshake until SNTP had its chance; `status()`
says in the status document where the time came from and, when it is not
synced, why (the same words go into data/time.json for `make doctor`).
"""

import json
import os
import random
import socket
import time

from civil import civil_from_unix, days_from_civil

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# The firmware's build date (2026-11-01): no board clock is ever set before it.
# Bumped with transit.VERSION at each release; never later than the release day.
BUILD_UNIX_S = 1793491200  # plain int: above the ESP32's 31-bit small ints
_NTP_UNIX_DELTA = 2208988800  # seconds from 1900 (NTP era 0) to 1970; a big int on a board
_MIN_YEAR = const(2024)
_SNTP_PORT = const(123)
_EAGAIN = (11, 115, 119)  # EAGAIN / EINPROGRESS on Linux and lwIP
DEFAULTS = {"sntp_timeout_ms": 1500, "sntp_every_s": 21600, "retry_s": 30, "floor_every_s": 21600}
FLOOR_FILE = "data/time.json"

SRC_FLOOR = "floor"  # RTC moved up to the floor: a lower bound, not the time
SRC_RTC = "rtc"  # RTC kept across a soft reset, not confirmed this boot
SRC_NTP = "ntp"
SRC_GPS = "gps"


def rtc_unix(rtc):
    """Unix seconds the RTC holds (its tuple is the same on every port)."""
    dt = rtc.datetime()
    return days_from_civil(dt[0], dt[1], dt[2]) * 86400 + dt[4] * 3600 + dt[5] * 60 + dt[6]


def set_rtc(rtc, unix_s):
    y, mo, d, h, mi, s, wd = civil_from_unix(unix_s)
    rtc.datetime((y, mo, d, wd, h, mi, s, 0))


def parse_server(text):
    """("host", port) of "host" or "host:port"."""
    host, _, port = text.partition(":")
    return host, int(port) if port else _SNTP_PORT


class TimeSync:
    """step(may_block) each loop; gate() before a TLS connect; status()."""

    def __init__(self, cfg, rtc, link=None, clock=None, path=FLOOR_FILE, ticks_ms=time.ticks_ms,
                 build_s=BUILD_UNIX_S):
        s = dict(DEFAULTS)
        s.update(cfg.group("time"))
        self.s = s
        self.servers = [parse_server(x) for x in cfg.get("time.sntp") or ()]
        self.rtc = rtc
        self.link = link
        self.clock = clock  # the bus's GpsClock (records' time), or None on a depot
        self.on_sync = None  # called once when the clock becomes synced (uplink.retry_now)
        self.path = path
        self._ticks = ticks_ms
        self.stats = {"sntp_ok": 0, "sntp_fail": 0, "rejected": 0, "before_floor": 0, "floor_writes": 0, "errors": 0}
        self.source = SRC_FLOOR
        self.synced = False
        self.rounds_failed = 0  # complete rounds over every server without an answer
        self._i = 0  # next server
        self._sock = None
        self._buf = bytearray(48)
        self._nonce = 0
        self._sent_ms = 0
        self._next_ms = ticks_ms()
        self._saved_ms = None
        self._noted = False  # "not synced" written to the floor file this boot
        self.floor = max(build_s, self._read_floor())
        self._boot_clock()

    # --- floor -----------------------------------------------------------
    def _read_floor(self):
        try:
            with open(self.path) as f:
                return int(json.load(f)["floor"])
        except OSError:
            return 0  # first boot: no file yet
        except (ValueError, KeyError, TypeError):
            self.stats["errors"] += 1  # a torn or foreign file: the build date stands
            return 0

    def _boot_clock(self):
        try:
            now = rtc_unix(self.rtc)
        except (OSError, ValueError, AttributeError):
            self.stats["errors"] += 1
            now = 0
        if now < self.floor:
            set_rtc(self.rtc, self.floor)
        else:
            self.source = SRC_RTC

    def _write(self, synced):
        """Atomic tiny write (tmp + rename): a power cut leaves one or the other."""
        doc = {"floor": self.floor, "src": self.source, "synced": synced, "why": self.why()}
        try:
            with open(self.path + ".tmp", "w") as f:
                json.dump(doc, f)
            os.rename(self.path + ".tmp", self.path)
            self.stats["floor_writes"] += 1
        except OSError:
            self.stats["errors"] += 1

    def _save_floor(self, now_ms):
        if self._saved_ms is not None and time.ticks_diff(now_ms, self._saved_ms) < self.s["floor_every_s"] * 1000:
            return
        try:
            t = rtc_unix(self.rtc)
        except (OSError, ValueError):
            self.stats["errors"] += 1
            return
        if t > self.floor:
            self.floor = t
        self._saved_ms = now_ms
        self._write(True)

    # --- what the main loop calls ---------------------------------------
    def step(self, may_block=True):
        """Bounded: polls an answer without waiting; a new query (name
        lookup) starts only when may_block."""
        now = self._ticks()
        if self._sock is not None:
            self._poll(now)
        c = self.clock
        if c is not None and c.source == SRC_GPS and self.source != SRC_GPS:
            self._synced(SRC_GPS, now)
        if self.synced:
            self._save_floor(now)
        if (self._sock is None and may_block and self.servers and time.ticks_diff(now, self._next_ms) >= 0
                and (self.link is None or self.link.isconnected()) and (c is None or c.want_ntp(now))):
            self._query(now)

    def gate(self):
        """None when a TLS handshake may go now, else why it waits: the first
        one waits for SNTP's first round (the RTC may still be 2000-01-01)."""
        if self.synced or not self.servers or self.rounds_failed:
            return None
        return "time: waiting for sntp"

    def close(self):
        """Drop a query in flight (safe mode stops waiting for an answer)."""
        if self._sock is not None:
            self._close()

    def flags(self):
        """Record flags for a record stamped from the RTC now: 1 (time unknown) until synced."""
        return 0 if self.synced else 1

    def why(self):
        if self.synced:
            return ""
        if not self.servers:
            w = "no sntp servers in device.json (time.sntp)"
        elif self.rounds_failed and self.stats["before_floor"]:
            w = "sntp time is before the saved floor (data/time.json)"
        elif self.rounds_failed:
            w = "no answer from %d sntp server(s)" % len(self.servers)
        else:
            w = "sntp pending"
        if self.clock is not None:
            w += "; no gps fix yet"
        return w

    def status(self):
        """The status document's `time` section."""
        try:
            now = rtc_unix(self.rtc)
        except (OSError, ValueError):
            now = 0
        doc = {"src": self.source, "synced": self.synced, "rtc": now, "floor": self.floor}
        if not self.synced:
            doc["why"] = self.why()
        for k, v in self.stats.items():
            if v:
                doc[k] = v
        return doc

    # --- SNTP ------------------------------------------------------------
    def _query(self, now):
        host, port = self.servers[self._i]
        b = self._buf
        for k in range(48):
            b[k] = 0
        b[0] = 0x23  # LI 0, version 4, mode 3 (client)
        # Transmit timestamp: a random nonce the server must echo as "originate".
        self._nonce = random.getrandbits(30)
        n = self._nonce
        for k in range(4):
            b[47 - k] = n & 0xFF
            n >>= 8
        s = None
        try:
            addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.sendto(b, addr)
        except (OSError, IndexError):
            if s is not None:
                s.close()
            self._failed(now)
            return
        self._sock = s
        self._sent_ms = now

    def _poll(self, now):
        try:
            data = self._sock.recv(64)
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                if time.ticks_diff(now, self._sent_ms) >= self.s["sntp_timeout_ms"]:
                    self._close()
                    self._failed(now)
                return
            self._close()
            self._failed(now)
            return
        self._close()
        unix_s = self._answer(data, time.ticks_diff(now, self._sent_ms))
        if unix_s is None:
            self.stats["rejected"] += 1
            self._failed(now)
            return
        set_rtc(self.rtc, unix_s)
        if self.clock is not None:
            self.clock.from_ntp(unix_s, now)
        self.stats["sntp_ok"] += 1
        self.rounds_failed = 0
        self._next_ms = time.ticks_add(now, self.s["sntp_every_s"] * 1000)
        self._synced(SRC_NTP, now)

    def _answer(self, d, rtt_ms):
        """Unix seconds from a server's reply, or None when it is not a
        usable answer to our request."""
        if len(d) < 48 or d[0] & 7 != 4 or d[0] >> 6 == 3 or not 0 < d[1] < 16:
            return None  # not a server reply, clock unsynchronised, or kiss-o'-death
        n = self._nonce
        for k in range(4):
            if d[31 - k] != n & 0xFF:
                return None  # not the answer to our request
            n >>= 8
        secs = (d[40] << 24) | (d[41] << 16) | (d[42] << 8) | d[43]
        if not d[40] & 0x80:
            secs += 0x100000000  # NTP era 1 (from 2036-02-07)
        unix_s = secs - _NTP_UNIX_DELTA + (rtt_ms // 2 + (d[44] * 1000 >> 8)) // 1000
        if civil_from_unix(unix_s)[0] < _MIN_YEAR:
            return None
        if unix_s < self.floor:
            self.stats["before_floor"] += 1  # before our own last good time: a wrong server (or floor)
            return None
        return unix_s

    def _close(self):
        try:
            self._sock.close()
        except OSError:
            self.stats["errors"] += 1
        self._sock = None

    def _failed(self, now):
        self.stats["sntp_fail"] += 1
        self._i += 1
        if self._i < len(self.servers):
            self._next_ms = now  # next server at once
            return
        self._i = 0
        self.rounds_failed += 1
        retry = min(self.s["retry_s"] << min(self.rounds_failed - 1, 5), 900)
        self._next_ms = time.ticks_add(now, retry * 1000)
        if not self.synced and not self._noted:
            self._noted = True
            self._write(False)  # once a boot: make doctor shows why there is no time

    def _synced(self, source, now):
        first = not self.synced
        self.source = source
        self.synced = True
        if first:
            self._saved_ms = None
            self._save_floor(now)
            if self.on_sync is not None:
                self.on_sync()
