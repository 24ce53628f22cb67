"""Fake `network` module: an ESP32 station interface with scripted radio.

Tests describe the access points in reach (`set_aps`) and script outages
(`set_reachable`, `outage`); a connect takes `CONNECT_MS` of clock time, as
association and DHCP do on a board, and status() follows the ESP32 codes.
"""

from fakeclock import CLOCK

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

CONNECT_MS = 1500


class _Radio:
    def __init__(self):
        self.aps = {}  # ssid -> {"key", "rssi", "channel", "bssid", "up"}
        self.outages = []  # [(start_us, end_us)] when nothing is in reach
        self.connects = 0
        self.cell_up = True  # PPP: the cellular network answers
        self.ppp_connects = 0

    def in_reach(self, ssid, now):
        ap = self.aps.get(ssid)
        if ap is None or not ap["up"]:
            return None
        for start, end in self.outages:
            if start <= now < end:
                return None
        return ap


_RADIO = _Radio()


def set_aps(aps):
    """aps: [{"ssid": .., "key": .., "rssi": -60, "channel": 6}]"""
    _RADIO.aps = {}
    for i, ap in enumerate(aps):
        _RADIO.aps[ap["ssid"]] = {
            "key": ap.get("key", ""), "rssi": ap.get("rssi", -60),
            "channel": ap.get("channel", 1 + i % 11), "up": True,
            "bssid": bytes([0x02, 0, 0, 0, 0, i + 1]),
        }


def set_reachable(ssid, up):
    _RADIO.aps[ssid]["up"] = bool(up)


def set_rssi(ssid, rssi):
    _RADIO.aps[ssid]["rssi"] = rssi


def outage(start_ms, duration_ms):
    """No access point is in reach from start_ms (clock ms) for duration_ms."""
    s = start_ms * 1000
    _RADIO.outages.append((s, s + duration_ms * 1000))


def radio():
    return _RADIO


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __init__(self, interface_id=STA_IF):
        self._if = interface_id
        self._active = False
        self._ssid = None
        self._key = None
        self._since = 0
        self._hostname = "esp32"

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._ssid = None

    def scan(self):
        if not self._active:
            raise OSError("Wifi Not Started")
        now = CLOCK.now_us()
        out = []
        for ssid, ap in _RADIO.aps.items():
            if _RADIO.in_reach(ssid, now):
                out.append((ssid.encode(), ap["bssid"], ap["channel"], ap["rssi"], 3, False))
        CLOCK.advance_us(0)
        return out

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        self._ssid = ssid
        self._key = key or ""
        self._since = CLOCK.now_us()
        _RADIO.connects += 1

    def disconnect(self):
        self._ssid = None

    def status(self, param=None):
        if param == "rssi":
            ap = self._ap()
            if ap is None:
                raise OSError("not connected")
            return ap["rssi"]
        if param is not None:
            raise ValueError("unknown status param")
        if not self._active or self._ssid is None:
            return STAT_IDLE
        now = CLOCK.now_us()
        ap = _RADIO.aps.get(self._ssid)
        if now - self._since < CONNECT_MS * 1000:
            return STAT_CONNECTING
        if ap is None:
            return STAT_NO_AP_FOUND
        if ap["key"] != self._key:
            return STAT_WRONG_PASSWORD
        if not _RADIO.in_reach(self._ssid, now):
            return STAT_BEACON_TIMEOUT
        return STAT_GOT_IP

    def _ap(self):
        if self.status() != STAT_GOT_IP:
            return None
        return _RADIO.aps[self._ssid]

    def isconnected(self):
        return self.status() == STAT_GOT_IP

    def ifconfig(self, cfg=None):
        if cfg is not None:
            return None
        if self.isconnected():
            return ("10.77.0.12", "255.255.255.0", "10.77.0.1", "10.77.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kw):
        if args:
            name = args[0]
            if name == "mac":
                return b"\x24\x0a\xc4\x12\x34\x56"
            if name in ("hostname", "dhcp_hostname"):
                return self._hostname
            if name == "ssid":
                return self._ssid or ""
            raise ValueError("unknown config param")
        if "hostname" in kw:
            self._hostname = kw["hostname"]
        if "dhcp_hostname" in kw:
            self._hostname = kw["dhcp_hostname"]


def hostname(name=None):
    return "esp32" if name is None else None


def set_cellular(up):
    """PPP fake: whether the modem's network answers."""
    _RADIO.cell_up = bool(up)


class PPP:
    """Fake `network.PPP(stream)` (MicroPython 1.24+): connect() returns at
    once, the link comes up CONNECT_MS later if the cellular network answers."""

    def __init__(self, stream=None):
        self.stream = stream
        self._active = False
        self._since = None

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._since = None

    def connect(self, authmode=0, username="", password=""):
        if not self._active:
            raise OSError("PPP not active")
        self._since = CLOCK.now_us()
        _RADIO.ppp_connects += 1

    def disconnect(self):
        self._since = None

    def isconnected(self):
        return (self._since is not None and _RADIO.cell_up
                and CLOCK.now_us() - self._since >= CONNECT_MS * 1000)

    def status(self):
        return 1 if self.isconnected() else 0

    def ifconfig(self, cfg=None):
        if self.isconnected():
            return ("100.64.3.7", "255.255.255.255", "100.64.0.1", "8.8.8.8")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
