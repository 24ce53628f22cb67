"""timesync: the flash floor, the SNTP client over real UDP on loopback, the
TLS gate (CPython and unix port). The responder here is the test itself:
it reads the board's request from its socket and writes the reply."""

import json
import os
import random
import socket
import time

import machine
from fakeclock import CLOCK
from transit import config, timesync

BUILD = timesync.BUILD_UNIX_S
T_NOW = BUILD + 40 * 86400  # "today" for the servers in these tests
NTP_DELTA = 2208988800
MP_HEAP = "256K"  # config validation and sockets on the 64-bit port


def cfg(servers=(), **tune):
    doc = {"device_id": "depot-t1", "role": "depot", "board": "sim", "broker": {"host": "h"},
           "time": dict(tune, sntp=list(servers))}
    return config.Config(config.validate(doc, {}), {})


def floor_path():
    p = "/tmp/ts_floor_%d.json" % random.getrandbits(24)
    try:
        os.remove(p)
    except OSError:
        pass
    return p


def rtc_now():
    return timesync.rtc_unix(machine.RTC())


class Server:
    """A UDP socket on loopback the test answers from by hand."""

    def __init__(self):
        while True:
            self.port = 40000 + random.getrandbits(14)
            self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.s.bind(socket.getaddrinfo("127.0.0.1", self.port)[0][-1])
                break
            except OSError:
                self.s.close()
        self.s.settimeout(2)

    def answer(self, unix_s, nonce_ok=True, stratum=2, mode=4):
        req, peer = self.s.recvfrom(64)
        assert len(req) == 48 and req[0] == 0x23  # version 4, client
        r = bytearray(48)
        r[0] = 0x20 | mode
        r[1] = stratum
        r[24:32] = req[40:48] if nonce_ok else bytes(8)
        secs = unix_s + NTP_DELTA
        for k in range(4):
            r[43 - k] = (secs >> (8 * k)) & 0xFF
        self.s.sendto(r, peer)

    def close(self):
        self.s.close()


def steps(ts, n=5):
    for _ in range(n):
        ts.step(True)
        time.sleep_ms(1)


def test_a_cold_board_never_believes_it_is_before_its_build_date_or_its_floor():
    CLOCK.set_virtual(0, utc_s=946684800)  # power-on: 2000-01-01
    p = floor_path()
    ts = timesync.TimeSync(cfg(), machine.RTC(), path=p)
    assert rtc_now() == BUILD and ts.source == "floor" and not ts.synced and ts.flags() == 1
    assert ts.gate() is None  # no server to wait for: try with what we have
    assert ts.status()["why"] == "no sntp servers in device.json (time.sntp)"
    with open(p, "w") as f:
        json.dump({"floor": BUILD + 86400 * 3, "src": "ntp", "synced": True, "why": ""}, f)
    CLOCK.set_virtual(0, utc_s=946684800)
    ts = timesync.TimeSync(cfg(), machine.RTC(), path=p)
    assert rtc_now() == BUILD + 86400 * 3 and ts.floor == BUILD + 86400 * 3
    CLOCK.set_virtual(0, utc_s=T_NOW)  # a soft reset keeps the RTC: it is left alone
    ts = timesync.TimeSync(cfg(), machine.RTC(), path=p)
    assert rtc_now() == T_NOW and ts.source == "rtc" and not ts.synced
    os.remove(p)


def test_sntp_sets_the_rtc_saves_the_floor_and_opens_the_gate():
    CLOCK.set_virtual(0, utc_s=946684800)
    p = floor_path()
    srv = Server()
    synced = []
    ts = timesync.TimeSync(cfg(["127.0.0.1:%d" % srv.port]), machine.RTC(), path=p)
    ts.on_sync = lambda: synced.append(1)
    assert ts.gate() == "time: waiting for sntp"
    ts.step(False)
    assert ts._sock is None  # a door is busy: no query (the name lookup may block)
    ts.step(True)
    srv.answer(T_NOW)
    steps(ts)
    assert ts.synced and ts.source == "ntp" and ts.gate() is None and synced == [1]
    assert abs(rtc_now() - T_NOW) <= 1 and ts.flags() == 0
    with open(p) as f:
        saved = json.load(f)
    assert saved["synced"] is True and abs(saved["floor"] - T_NOW) <= 1
    assert ts.stats["sntp_ok"] == 1 and ts.stats["floor_writes"] == 1
    steps(ts, 50)
    assert ts.stats["floor_writes"] == 1  # bounded wear: once at the sync ...
    time.sleep_ms(21600 * 1000)
    steps(ts, 2)
    assert ts.stats["floor_writes"] == 2  # ... then every floor_every_s (6 h)
    with open(p) as f:
        assert abs(json.load(f)["floor"] - (T_NOW + 21600)) <= 2
    srv.close()
    os.remove(p)


def test_sntp_answers_that_are_not_ours_or_not_sane_are_refused():
    p = floor_path()
    srv = Server()
    for bad in ({"nonce_ok": False}, {"stratum": 0}, {"mode": 3}, {"unix_s": BUILD - 86400}):
        CLOCK.set_virtual(0, utc_s=946684800)
        ts = timesync.TimeSync(cfg(["127.0.0.1:%d" % srv.port]), machine.RTC(), path=p)
        ts.step(True)
        srv.answer(bad.pop("unix_s", T_NOW), **bad)
        steps(ts)
        assert not ts.synced and ts.stats["rejected"] == 1 and rtc_now() == BUILD
        assert ts.rounds_failed == 1 and ts.gate() is None  # one round over: TLS may try
    assert ts.stats["before_floor"] == 1 and ts.why() == "sntp time is before the saved floor (data/time.json)"
    srv.close()
    os.remove(p)


def test_a_silent_server_is_given_up_after_the_timeout_and_the_next_one_asked():
    CLOCK.set_virtual(0, utc_s=946684800)
    p = floor_path()
    quiet, good = Server(), Server()
    ts = timesync.TimeSync(cfg(["127.0.0.1:%d" % quiet.port, "127.0.0.1:%d" % good.port], sntp_timeout_ms=500),
                           machine.RTC(), path=p)
    ts.step(True)
    steps(ts, 3)
    assert ts._sock is not None and ts.stats["sntp_fail"] == 0  # still waiting, never blocking
    time.sleep_ms(600)
    ts.step(True)  # timeout: the next server is asked at once
    assert ts.stats["sntp_fail"] == 1 and ts._sock is not None
    good.answer(T_NOW)
    steps(ts)
    assert ts.synced and ts.rounds_failed == 0
    quiet.close()
    good.close()
    os.remove(p)


def test_sntp_server_entries_are_validated():
    try:
        cfg([123])
    except config.ConfigError as e:
        assert "time.sntp[0]" in str(e)
    else:
        raise AssertionError("a number is not a server")
    assert timesync.parse_server("pool.ntp.org") == ("pool.ntp.org", 123)
    assert timesync.parse_server("10.0.0.1:1123") == ("10.0.0.1", 1123)

