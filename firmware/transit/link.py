"""Network link: Wi-Fi over several configured networks, cellular PPP as fallback.

Call `step(may_block)` every loop iteration. A scan blocks (1-2 s on an
ESP32), so it runs only when may_block; `wlan.connect()` returns at once and
the association is then polled step by step against `connect_ms`. Networks
in reach are tried strongest first; a failed round backs off exponentially
with jitter. With a modem (the board layer hands over a `network.PPP`
factory) the link falls back to PPP when no Wi-Fi is in reach, and goes back
to Wi-Fi (free) when a scan finds one again.
The interfaces come in from outside (board layer or tests): nothing here
touches `network` or `machine` directly.
"""

import random
import time

# network.WLAN.status() codes on the ESP32 port
STAT_GOT_IP = 1010
STAT_CONNECTING = 1001
STAT_WRONG_PASSWORD = 202
STAT_NO_AP_FOUND = 201

_IDLE = 0
_WIFI_JOIN = 1
_PPP_JOIN = 2
_UP_WIFI = 3
_UP_PPP = 4


class Link:
    def __init__(self, networks, key_for, wlan=None, ppp_factory=None, ticks_ms=time.ticks_ms,
                 connect_ms=15000, check_ms=1000, backoff_min_ms=2000, backoff_max_ms=120000,
                 wifi_retry_ms=300000):
        self.ssids = [n["ssid"] for n in networks]
        self.key_for = key_for
        self.wlan = wlan
        self.ppp_factory = ppp_factory
        self.ppp = None
        self._ticks = ticks_ms
        self.connect_ms = connect_ms
        self.check_ms = check_ms
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.wifi_retry_ms = wifi_retry_ms
        self.state = _IDLE
        self.ssid = None
        self._candidates = []
        self._since = ticks_ms()
        self._next_try = ticks_ms()
        self._next_check = ticks_ms()
        self._next_wifi_scan = ticks_ms()
        self._fails = 0
        self.stats = {"connects": 0, "drops": 0, "scans": 0, "fail_auth": 0, "fail_noap": 0,
                      "fail_timeout": 0, "ppp_connects": 0, "ppp_fail": 0, "errors": 0}

    def isconnected(self):
        return self.state == _UP_WIFI or self.state == _UP_PPP

    def kind(self):
        return "ppp" if self.state in (_PPP_JOIN, _UP_PPP) else ("wifi" if self.wlan is not None else "none")

    def rssi(self):
        if self.state != _UP_WIFI:
            return None
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError):
            self.stats["errors"] += 1
            return None

    def status(self):
        """The link's part of the status document."""
        doc = {"type": self.kind(), "up": self.isconnected(), "ssid": self.ssid if self.state == _UP_WIFI else None,
               "rssi": self.rssi()}
        for k, v in self.stats.items():
            if v:
                doc[k] = v
        return doc

    def step(self, may_block=True):
        now = self._ticks()
        try:
            if self.state == _IDLE:
                if may_block and time.ticks_diff(now, self._next_try) >= 0:
                    self._start(now)
            elif self.state == _WIFI_JOIN:
                self._poll_wifi(now)
            elif self.state == _PPP_JOIN:
                if self.ppp.isconnected():
                    self._up(_UP_PPP)
                    self.stats["ppp_connects"] += 1
                elif time.ticks_diff(now, self._since) > self.connect_ms:
                    self.stats["ppp_fail"] += 1
                    self._give_up(now)
            elif time.ticks_diff(now, self._next_check) >= 0:
                self._next_check = time.ticks_add(now, self.check_ms)
                self._check(now, may_block)
        except OSError:
            self.stats["errors"] += 1
            self._give_up(now)

    # --- internals ------------------------------------------------------
    def _scan(self):
        """Configured networks in reach, strongest first (blocks: may_block only)."""
        self.stats["scans"] += 1
        if not self.wlan.active():
            self.wlan.active(True)
        seen = {}
        for ap in self.wlan.scan():
            name = ap[0].decode() if isinstance(ap[0], bytes) else ap[0]
            if name in self.ssids and (name not in seen or ap[3] > seen[name]):
                seen[name] = ap[3]
        return sorted(seen, key=lambda n: -seen[n])

    def _start(self, now):
        self._candidates = self._scan() if (self.wlan is not None and self.ssids) else []
        if not self._next_candidate(now):
            self._start_ppp(now)

    def _next_candidate(self, now):
        if not self._candidates:
            return False
        self.ssid = self._candidates.pop(0)
        self.wlan.connect(self.ssid, self.key_for(self.ssid))
        self.state = _WIFI_JOIN
        self._since = now
        return True

    def _start_ppp(self, now):
        if self.ppp_factory is None:
            self._give_up(now)
            return
        if self.ppp is None:
            self.ppp = self.ppp_factory()
        self.ppp.active(True)
        self.ppp.connect()
        self.state = _PPP_JOIN
        self._since = now

    def _poll_wifi(self, now):
        st = self.wlan.status()
        if st == STAT_GOT_IP:
            self._up(_UP_WIFI)
            self.stats["connects"] += 1
            return
        failed = None
        if st == STAT_WRONG_PASSWORD:
            failed = "fail_auth"
        elif st == STAT_NO_AP_FOUND:
            failed = "fail_noap"
        elif time.ticks_diff(now, self._since) > self.connect_ms:
            failed = "fail_timeout"
        elif st != STAT_CONNECTING:
            failed = "fail_noap" if st < 1000 else None  # other radio errors
        if failed:
            self.stats[failed] += 1
            self.wlan.disconnect()
            if not self._next_candidate(now):
                self._start_ppp(now)

    def _up(self, state):
        self.state = state
        self._fails = 0
        self._next_check = time.ticks_add(self._ticks(), self.check_ms)
        self._next_wifi_scan = time.ticks_add(self._ticks(), self.wifi_retry_ms)

    def _check(self, now, may_block):
        if self.state == _UP_WIFI:
            if not self.wlan.isconnected():
                self.stats["drops"] += 1
                self.wlan.disconnect()
                self.state = _IDLE
                self._next_try = now  # rescan at once (when allowed)
            return
        if not self.ppp.isconnected():
            self.stats["drops"] += 1
            self.state = _IDLE
            self._next_try = now
            return
        # On cellular: look for a free Wi-Fi now and then.
        if (may_block and self.wlan is not None and self.ssids
                and time.ticks_diff(now, self._next_wifi_scan) >= 0):
            self._next_wifi_scan = time.ticks_add(now, self.wifi_retry_ms)
            found = self._scan()
            if found:
                self.ppp.disconnect()
                self._candidates = found
                self._next_candidate(now)

    def _give_up(self, now):
        self.state = _IDLE
        self._fails += 1
        base = min(self.backoff_min_ms << min(self._fails - 1, 16), self.backoff_max_ms)
        self._next_try = time.ticks_add(now, base // 2 + random.getrandbits(16) * base // 65536)
