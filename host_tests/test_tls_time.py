"""TLS before the clock is set, under the unix port against a TLS Mosquitto.

The board starts as an ESP32 does after power-on: time.time() counts from
2000 and the RTC reads 2000-01-01. The fake TLS layer (host_tests/mpfakes/
ssl.py, fakes/certclock.py) judges the broker's certificate by that clock,
as mbedTLS on the board does, so nothing connects until the firmware sets
the clock: by its own SNTP client (talking to a real UDP responder on
loopback, host_tests/harness/sntp.py) or from a GPS fix. Certificates are
made at test time (valid from now for 30 days); the firmware's build date
(timesync.BUILD_UNIX_S) lies before them, so the floor alone never passes.
"""

import json
import os
import sys

import pytest

from harness import paths, tlsprobe
from harness.sntp import SntpServer, dead_port

sys.path.insert(0, paths.TOOLS)
import doctor  # noqa: E402

SECRETS = {"wifi": {"yard": "k"}, "mqtt_password": "s3cret"}  # TLS needs a password (transit.config)

SCRIPT = """
import json, time, machine, network, fakeclock, certclock
fakeclock.CLOCK.epoch_2000 = True  # an ESP32: time.time() counts from 2000-01-01
machine.RTC().datetime((2000, 1, 1, 5, 0, 0, 0, 0))  # and the RTC reads that after power-on
network.set_aps([{"ssid": "yard", "key": "k"}])
import transit.startup
from transit import app as appmod, records as R
from civil import civil_from_unix
GPS_AFTER_FAILS = %(gps_after_fails)d  # the fix comes after this many refused handshakes (-1: never)
LIMIT_MS = %(limit_ms)d
EXTRA = %(extra)d


def nmea(body):
    x = 0
    for c in body.encode():
        x ^= c
    return ("$%%s*%%02X\\r\\n" %% (body, x)).encode()


def feed_gps(uart, unix_s):
    y, mo, d, h, mi, s, _ = civil_from_unix(unix_s)
    hms = "%%02d%%02d%%02d.00" %% (h, mi, s)
    uart.push(nmea("GPRMC,%%s,A,1649.2740,N,10015.7407,E,0.1,0.0,%%02d%%02d%%02d,,,A" %% (hms, d, mo, y %% 100)))
    uart.push(nmea("GPGGA,%%s,1649.2740,N,10015.7407,E,1,09,0.9,45.0,M,-27.0,M,," %% hms))


def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    a.boot_event()
    for i in range(EXTRA):
        a.record(R.EVENT, R.pack_event(R.EV_BOOT, 1, i), 0, R.FLAG_TIME_UNKNOWN)
    appended = EXTRA + 1
    t0 = time.ticks_ms()
    first_up = None
    gps_s = 0
    gps_at = None
    while True:
        el = time.ticks_diff(time.ticks_ms(), t0)
        if el > LIMIT_MS:
            break
        if GPS_AFTER_FAILS >= 0 and a.uplink.stats["fail_tls"] >= GPS_AFTER_FAILS and gps_s < 4:
            # the receiver gets its fix: one epoch a second
            if gps_at is None:
                gps_at = el
            feed_gps(machine._UARTS[board.desc["gps"]["uart"]], fakeclock._host_epoch_s() + gps_s)
            gps_s += 1
        a.run(max_loops=1, loop_ms=20)
        if a.uplink.connected and first_up is None:
            first_up = el
        if first_up is not None and a.queue.depth() == 0 and a.uplink.stats["recs_acked"] >= appended:
            break
    doc = a.health.document()
    try:
        floor_file = json.load(open("data/time.json"))
    except OSError:
        floor_file = None
    print("@result " + json.dumps({"time": doc.get("time"), "uplink": a.uplink.stats, "depth": a.queue.depth(),
                                   "appended": appended, "first_up_ms": first_up, "gps_at_ms": gps_at,
                                   "checks": [c[4] for c in certclock.CHECKS], "floor_file": floor_file,
                                   "board_now": time.time()}))

transit.startup.main(run=run, board_dirs=(%(boards)r,))
"""


def _board(tmp_path, broker, role, sntp, **extra):
    dev = {"device_id": "%s-tls1" % role, "role": role, "board": "sim", "topic_root": "phs",
           "broker": {"host": "localhost", "port": broker.port, "tls": True, "ca": "ca.der"},
           "networks": [{"ssid": "yard"}], "time": {"sntp": sntp, "sntp_timeout_ms": 300, "retry_s": 10},
           "uplink": {"backoff_min_ms": 200, "backoff_max_ms": 400, "batch_s": 0}}
    dev.update(extra)
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    return dev


def _run(mp, tmp_path, gps_after_fails=-1, limit_ms=8000, extra=5):
    res = mp.run(SCRIPT % {"boards": paths.BOARDS, "gps_after_fails": gps_after_fails, "limit_ms": limit_ms, "extra": extra},
                 cwd=str(tmp_path), heap="512K", timeout=120)
    line = [ln for ln in res.lines if ln.startswith("@result ")]
    assert line, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(line[-1][8:])


@pytest.fixture
def tls_broker(broker_factory, tls_material, tmp_path):
    # As provisioned: each device its own user (the password file), an ACL.
    acl = "user watcher\ntopic read #\npattern write phs/+/%u/#\npattern read phs/+/%u/cmd\npattern read phs/+/%u/status\n"
    b = broker_factory(tls=tls_material, users={"depot-tls1": "s3cret", "bus-tls1": "s3cret", "watcher": "w"}, acl=acl)
    with open(tls_material.ca_der, "rb") as f:
        (tmp_path / "ca.der").write_bytes(f.read())
    return b


def test_depot_cold_start_at_2000_sets_its_clock_by_sntp_then_connects_over_tls(mp, tmp_path, tls_broker,
                                                                                subscriber_factory, tls_material):
    sntp = SntpServer()
    try:
        # First server dead (its datagrams refused), the second answers: the client moves on.
        _board(tmp_path, tls_broker, "depot", [dead_port(), sntp.address])
        sub = subscriber_factory(tls_broker, ["phs/#"], username="watcher", password="w", ca_cert=tls_material.ca_cert)
        r = _run(mp, tmp_path)
    finally:
        sntp.close()
    print("depot cold start: first TLS connect %s ms after boot" % r["first_up_ms"])
    up = r["uplink"]
    assert up["connects"] == 1 and up["fail_tls"] == 0, up  # the very first handshake already passed
    t = r["time"]
    assert t["src"] == "ntp" and t["synced"] is True, r
    assert t["sntp_ok"] == 1 and t["sntp_fail"] == 1
    import time as _t
    assert abs(r["board_now"] + 946684800 - _t.time()) < 5  # the board's clock is right (ESP32 epoch)
    assert r["depth"] == 0 and up["recs_acked"] >= r["appended"] == 6
    assert "FUTURE" not in r["checks"] and r["checks"]  # the fake TLS did judge the dates
    assert r["floor_file"]["synced"] is True and abs(r["floor_file"]["floor"] - _t.time()) < 10
    msgs = sub.wait_for(2, timeout=5, topic_prefix="phs/depot/depot-tls1/")
    status = [json.loads(p) for tp, p, _, _ in msgs if tp.endswith("/status")][0]
    assert status["time"]["src"] == "ntp" and status["time"]["synced"] is True


def test_bus_without_network_time_connects_after_its_gps_fix(mp, tmp_path, tls_broker):
    _board(tmp_path, tls_broker, "bus", [dead_port()])
    r = _run(mp, tmp_path, gps_after_fails=2, limit_ms=9000)
    up = r["uplink"]
    # Before the fix: handshakes refused as a board refuses them (clock at the build date).
    assert up["fail_tls"] >= 2 and r["checks"][0] == certclock_future(), r
    assert r["first_up_ms"] is not None and r["first_up_ms"] >= r["gps_at_ms"], r
    assert r["time"]["src"] == "gps" and r["time"]["synced"] is True
    assert up["connects"] == 1 and r["depth"] == 0 and up["recs_acked"] >= r["appended"]
    assert r["first_up_ms"] - r["gps_at_ms"] < 3000  # the fix re-opened the backoff at once
    print("bus: GPS fix at %s ms, connected at %s ms" % (r["gps_at_ms"], r["first_up_ms"]))


def certclock_future():
    return "The certificate validity starts in the future"


def test_board_with_an_unfixable_clock_keeps_its_records_and_says_why(mp, tmp_path, tls_broker):
    _board(tmp_path, tls_broker, "depot", [dead_port(), dead_port()])
    r = _run(mp, tmp_path, limit_ms=3000, extra=20)
    up = r["uplink"]
    assert up["connects"] == 0 and up["fail_tls"] >= 1
    assert "validity starts in the future" in up["last_error"]  # mbedTLS's own words reach the status
    assert r["depth"] == r["appended"] == 21  # nothing lost, nothing sent
    t = r["time"]
    assert t["synced"] is False and t["src"] == "floor" and t["sntp_fail"] >= 2
    assert t["why"] == "no answer from 2 sntp server(s)"
    assert t["rtc"] >= 1793491200  # never before the firmware's build date
    assert r["floor_file"]["synced"] is False and r["floor_file"]["why"] == t["why"]
    # make doctor, on the same flash: the technician reads the same reason.
    st = mp.run(doctor.STATUS, cwd=str(tmp_path), heap="256K")
    st = json.loads([ln for ln in st.lines if ln.startswith("{")][-1])
    lines = doctor.report(st)
    clock = [ln for ln in lines if ln.startswith("clock")]
    assert clock and "NOT SET" in clock[0] and "no answer from 2 sntp server(s)" in clock[0], lines


def test_doctor_clock_line_for_a_synced_board_and_a_board_never_run():
    ok = doctor.clock_line({"floor": 1795766400, "src": "ntp", "synced": True, "why": ""}, 1795766460)
    assert ok == "clock        board says 2026-11-27 08:01 UTC; last set by ntp"
    assert "no time record yet" in doctor.clock_line(None, 946684800)


FAKE_TLS = tlsprobe.DEF + """
import machine, fakeclock
fakeclock.CLOCK.epoch_2000 = True
for when in ((2000, 1, 1), None, (2040, 1, 1)):
    if when is None:
        fakeclock.CLOCK.set_unix_s(fakeclock._host_epoch_s())
    else:
        machine.RTC().datetime((when[0], when[1], when[2], 0, 0, 0, 0, 0))
    r = tls_probe(%(port)d, %(ca)r)
    print(r if r == 'ok' else repr(r))
"""


@pytest.mark.parametrize("esp32", [False, True])
def test_fake_tls_judges_certificate_dates_by_the_board_clock(mp, tls_broker, tls_material, esp32):
    res = mp.run(FAKE_TLS % {"port": tls_broker.port, "ca": tls_material.ca_der}, heap="256K",
                 path=[paths.ESP32NET] if esp32 else [])
    assert res.lines == ["'\\nThe certificate validity starts in the future\\n'", "ok",
                         "'\\nThe certificate validity has expired\\n'"]


def test_the_build_date_is_not_in_the_future():
    # Every board moves its clock up to BUILD_UNIX_S: a date ahead of today
    # would put a fleet in the future (and make it refuse certificates later).
    import time
    from transit import timesync
    assert timesync.BUILD_UNIX_S <= time.time()
