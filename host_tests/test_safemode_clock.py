"""Safe mode reports over TLS from a cold start.

A board powered on straight into safe mode (the power-on retry after a crash
loop crashed again before the clock was set, a board swap, a broken board
file) has its RTC at 2000-01-01 (a reset keeps the RTC, a power-on does not), and
mbedTLS on the ESP32 refuses every certificate as "not yet valid" until the
clock is set. So safe mode, before its one TLS report, moves the clock up to
the floor kept in flash (data/time.json) and gives SNTP one bounded round,
exactly as the application does (transit/timesync.py), and never switches
certificate checks off. Real boot path under the MicroPython unix port, a real
TLS Mosquitto, the fake TLS that judges certificate dates by the board's
clock (fakes/certclock.py), a real UDP time server on loopback.
"""

import json
import socket
import time

import pytest

from harness import paths
from harness.sntp import SntpServer
from test_safemode import _assert_safe_mode
from test_safemode_speaks import CRASHED

EPOCH_2000 = 946684800
DEVICE = {"device_id": "bus-0107", "role": "bus", "board": "sim", "networks": [{"ssid": "depot-north"}]}
SECRETS = {"wifi": {"depot-north": "k1"}, "mqtt_password": "s3cret"}
# Safe mode, its clock and its TLS report on the 64-bit unix port (mbedTLS on the
# Python heap there): 128K measured; docs/telemetry.md promises 160K.
HEAP_TLS = "160K"

# Powered on: the ESP32's epoch (2000) and its RTC at 2000-01-01, in real time.
COLD_BOOT = """
import time, machine, network, fakeclock
fakeclock.CLOCK.epoch_2000 = True
machine.RTC().datetime((2000, 1, 1, 5, 0, 0, 0, 0))
network.set_aps([{"ssid": "depot-north", "key": "k1"}])
import transit.startup
t0 = time.ticks_ms()
result = transit.startup.main(board_dirs=(%(boards)r,))
print('main returned', result)
print('@safe_ms', time.ticks_diff(time.ticks_ms(), t0))
import gc, micropython
gc.collect()
print('@free', gc.mem_free())
micropython.qstr_info()  # interned names stay for good, on a board too
"""
REPL = "print(6 * 7)\nimport time\nprint('@board_now', time.time())\n"


@pytest.fixture
def tls_broker(broker_factory, tls_material):
    acl = "user ops\ntopic read #\npattern write phs/+/%u/#\npattern read phs/+/%u/cmd\n"
    return broker_factory(tls=tls_material, users={"bus-0107": "s3cret", "ops": "opspw"}, acl=acl)


def _layout(tmp_path, broker, tls_material, sntp=None, floor=None, sntp_timeout_ms=400, **extra):
    dev = dict(DEVICE, broker={"host": "localhost", "port": broker.port, "tls": True, "ca": "ca.der"}, **extra)
    if sntp is not None:
        dev["time"] = {"sntp": sntp, "sntp_timeout_ms": sntp_timeout_ms}
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    (tmp_path / "bootstate.json").write_text(json.dumps(CRASHED))
    with open(tls_material.ca_der, "rb") as src:
        (tmp_path / "ca.der").write_bytes(src.read())
    (tmp_path / "data").mkdir(exist_ok=True)  # the application ran on this board before
    if floor is not None:
        # What the application saved the last time it had the time (transit/timesync.py).
        (tmp_path / "data" / "time.json").write_text(json.dumps({"floor": floor, "src": "ntp", "synced": True,
                                                                "why": ""}))


def _boot(mp, tmp_path):
    res = mp.run(COLD_BOOT % {"boards": paths.BOARDS}, cwd=str(tmp_path), interactive=True, input=REPL,
                 heap=HEAP_TLS, env={"FAKE_RESET_CAUSE": "5"}, timeout=90)
    _assert_safe_mode(res, "the application failed 3 times in a row")
    vals = {}
    for ln in res.lines:
        if ln.startswith("@"):  # not the REPL's echo of the command
            key, _, val = ln.partition(" ")
            vals[key[1:]] = int(float(val))
        elif ln.startswith("qstr pool:"):
            vals["qstr"] = int(ln.rsplit("n_total_bytes=", 1)[1])
    return res, vals


def _received(sub):
    got = sub.wait_for(2, timeout=10, topic_prefix="phs/bus/bus-0107/")
    return {t.rsplit("/", 1)[1]: json.loads(p) for t, p, _, _ in got}


def test_cold_board_in_safe_mode_sets_its_clock_by_sntp_and_reports_over_tls(mp, tmp_path, tls_broker,
                                                                            tls_material, subscriber_factory):
    sntp = SntpServer()
    try:
        _layout(tmp_path, tls_broker, tls_material, sntp=[sntp.address])
        sub = subscriber_factory(tls_broker, ["phs/#"], username="ops", password="opspw",
                                 ca_cert=tls_material.ca_cert)
        res, vals = _boot(mp, tmp_path)
    finally:
        sntp.close()
    assert "safe mode: told the broker" in res.stdout, res.stdout[-3000:]
    assert sntp.requests == 1
    got = _received(sub)
    assert set(got) == {"status", "event"}, got
    assert got["status"]["time"]["src"] == "ntp" and got["status"]["time"]["synced"] is True
    assert abs(got["status"]["t"] - time.time()) < 10
    row = got["event"]["r"][0]
    assert row["k"] == 8 and "f" not in row and abs(row["t"] - time.time()) < 10  # a real time stamp
    assert abs(vals["board_now"] + EPOCH_2000 - time.time()) < 10  # the REPL keeps the right clock
    floor = json.loads((tmp_path / "data" / "time.json").read_text())
    assert floor["synced"] is True and abs(floor["floor"] - time.time()) < 10  # saved for the next cold start


def test_cold_board_without_time_servers_reports_with_the_floor_kept_in_flash(mp, tmp_path, tls_broker,
                                                                             tls_material, subscriber_factory):
    # The certificates were made before the application last saved the time.
    saved = int(time.time())
    _layout(tmp_path, tls_broker, tls_material, floor=saved)
    sub = subscriber_factory(tls_broker, ["phs/#"], username="ops", password="opspw", ca_cert=tls_material.ca_cert)
    res, vals = _boot(mp, tmp_path)
    assert "safe mode: told the broker" in res.stdout, res.stdout[-3000:]
    got = _received(sub)
    t = got["status"]["time"]
    assert t["src"] == "floor" and t["synced"] is False and t["floor"] == saved
    assert t["why"] == "no sntp servers in device.json (time.sntp)"
    row = got["event"]["r"][0]
    assert row["f"] == 1 and row["t"] < 3600  # a lower bound is not the time: seconds since boot, flagged
    assert vals["board_now"] + EPOCH_2000 >= saved


def test_cold_board_with_silent_time_servers_gives_up_in_bounded_time_and_keeps_checking_dates(
        mp, tmp_path, tls_broker, tls_material):
    # Four servers that take the request and never answer, 2 s each: the
    # round is cut at safe mode's bound, the handshake is refused as on a
    # board (the build date is before the certificates), and the REPL is free.
    silent = []
    for _ in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        silent.append(s)
    try:
        _layout(tmp_path, tls_broker, tls_material, sntp=["127.0.0.1:%d" % s.getsockname()[1] for s in silent],
                sntp_timeout_ms=2000)
        res, vals = _boot(mp, tmp_path)
    finally:
        for s in silent:
            s.close()
    assert "safe mode: clock not set" in res.stdout, res.stdout[-3000:]
    assert "safe mode: report failed" in res.stdout and "validity starts in the future" in res.stdout, \
        res.stdout[-3000:]
    # Wi-Fi (1.5 s with the fake), the clock's bound (4 s), the refused handshake:
    # not 4 servers x 2 s.
    assert vals["safe_ms"] < 7000, vals
    assert vals["board_now"] + EPOCH_2000 >= 1793491200  # never before the firmware's build date


def test_the_report_gives_its_heap_back_to_the_repl(mp, tmp_path, tls_broker, tls_material):
    # Safe mode unloads what its report imported (the report's modules, the
    # clock's, umqtt, TLS): the REPL has the heap of a board that stayed quiet,
    # but for the names the loaded code interned (qstrs are never freed).
    sntp = SntpServer()
    try:
        _layout(tmp_path, tls_broker, tls_material, sntp=[sntp.address])
        res, told = _boot(mp, tmp_path)
        assert "safe mode: told the broker" in res.stdout, res.stdout[-3000:]
        _layout(tmp_path, tls_broker, tls_material, sntp=[sntp.address], safe_mode_report=False)
        res, quiet = _boot(mp, tmp_path)
    finally:
        sntp.close()
    qstrs = told["qstr"] - quiet["qstr"]
    print("free heap after safe mode: %d quiet, %d after the report (%d in interned names)"
          % (quiet["free"], told["free"], qstrs))
    assert quiet["free"] - told["free"] - qstrs < 2048
