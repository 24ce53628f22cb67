"""Safe mode speaks (issue 19, finding 3): a board in safe mode whose
configuration loaded still connects once and leaves a retained status saying
safe mode and why, plus the safe-mode event (kind 8), so the back office can
tell it from a bus that is switched off. Also finding 6: secrets.json
without the broker password is safe mode with a clear reason.

Real boot path under the MicroPython unix port, real Mosquitto."""

import json
import os
import sys

from harness import paths
from test_safemode import _assert_safe_mode

sys.path.insert(0, paths.TOOLS)
import telemetry  # noqa: E402

DEVICE = {"device_id": "bus-0107", "role": "bus", "board": "sim", "networks": [{"ssid": "depot-north"}]}
SECRETS = {"wifi": {"depot-north": "k1"}, "mqtt_password": ""}

BOOT = """
import machine, network, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=%(utc)d)  # today: the TLS test's certificates are made today
network.set_aps([{"ssid": "depot-north", "key": "k1"}])
import transit.startup
result = transit.startup.main(board_dirs=(%(boards)r,))
print('main returned', result)
"""


def _layout(tmp_path, broker, device=None, secrets=SECRETS, state=None):
    dev = dict(device or DEVICE, broker={"host": broker.host, "port": broker.port, "tls": False})
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    if state is not None:
        (tmp_path / "bootstate.json").write_text(json.dumps(state))


# Safe mode plus its report (umqtt, the bounded Conn, Wi-Fi) on the 64-bit unix
# port, with the code loaded into the heap as .mpy and the fakes: 144K measured
# (128K boots safe mode but cannot report). Objects are about twice their
# ESP32 size; the application itself needs 512K here. The real budget is
# measured on the 32-bit frozen build (docs/memory.md).
HEAP = "160K"
HEAP_TLS = "192K"  # plus mbedTLS, which the unix port allocates on the Python heap


def _boot(mp, tmp_path, cause=5, heap=HEAP):
    import time
    return mp.run(BOOT % {"boards": paths.BOARDS, "utc": int(time.time())}, cwd=str(tmp_path), interactive=True, input="print(6 * 7)\n",
                  heap=heap, env={"FAKE_RESET_CAUSE": str(cause)}, timeout=60)


CRASHED = {"crashes": 3, "boots": 12, "last_error": "OSError: 28 (File \"transit/app.py\", line 88, in record)",
           "reset_cause": 5}


def test_a_board_in_safe_mode_leaves_a_retained_status_and_the_safe_mode_event(mp, tmp_path, broker,
                                                                              subscriber_factory):
    _layout(tmp_path, broker, state=CRASHED)
    sub = subscriber_factory(broker, ["phs/#"])
    res = _boot(mp, tmp_path)
    _assert_safe_mode(res, "the application failed 3 times in a row; last error: OSError: 28")
    got = sub.wait_for(2, timeout=10, topic_prefix="phs/bus/bus-0107/")
    kinds = {t.rsplit("/", 1)[1]: (json.loads(p), retain) for t, p, _, retain in got}
    assert set(kinds) == {"status", "event"}, got
    for t, p, _, _ in got:
        telemetry.validate(t, p)
    status = kinds["status"][0]
    assert status["on"] is True and status["safe"]["why"].startswith(
        "the application failed 3 times in a row; last error: OSError: 28")
    assert status["fw"] and status["rst"] == "soft"
    ev = telemetry.decode("phs/bus/bus-0107/event", json.dumps(kinds["event"][0]))[2]
    assert [r["k"] for r in ev] == [8] and ev[0]["va"] == 3  # kind 8 safe mode; va: the crash count
    # Retained, and not replaced by the last will: a dashboard that connects later sees why.
    late = subscriber_factory(broker, ["phs/bus/bus-0107/status"])
    seen = late.wait_for(1, timeout=5)
    assert seen and seen[-1][3] is True and json.loads(seen[-1][1])["safe"]["why"] == status["safe"]["why"]


def test_every_safe_mode_event_has_its_own_sequence_number(mp, tmp_path, broker, subscriber_factory):
    _layout(tmp_path, broker, state=CRASHED)
    sub = subscriber_factory(broker, ["phs/bus/bus-0107/event"])
    _boot(mp, tmp_path)
    _boot(mp, tmp_path)
    got = sub.wait_for(2, timeout=10)
    st = telemetry.Stream()
    for t, p, _, _ in got:
        st.feed(t, p)
    assert len(st.records) == 2 and st.duplicates == 0, got


def test_safe_mode_stays_quiet_when_the_configuration_says_so(mp, tmp_path, broker, subscriber_factory):
    _layout(tmp_path, broker, device=dict(DEVICE, safe_mode_report=False), state=CRASHED)
    sub = subscriber_factory(broker, ["phs/#"])
    res = _boot(mp, tmp_path)
    _assert_safe_mode(res, "the application failed 3 times in a row")
    assert sub.wait_for(1, timeout=1.5) == []


def test_secrets_without_the_broker_password_is_safe_mode_with_a_clear_reason(mp, tmp_path, broker):
    _layout(tmp_path, broker, secrets={"wifi": {"depot-north": "k1"}})
    res = _boot(mp, tmp_path, cause=1)
    _assert_safe_mode(res, "configuration: secrets.json: mqtt_password missing")
    assert os.path.exists(tmp_path / "safemode.txt")


def test_an_empty_broker_password_over_tls_is_safe_mode(mp, tmp_path, broker):
    dev = dict(DEVICE, broker={"host": "mq.example", "port": 8883, "tls": True})
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    res = _boot(mp, tmp_path, cause=1)
    _assert_safe_mode(res, "configuration: secrets.json: mqtt_password is empty")


def test_safe_mode_reports_over_tls_with_the_device_account(mp, tmp_path, broker_factory, subscriber_factory,
                                                           tls_material):
    # As provisioned: TLS with the CA checked, the device's own user and password, an ACL.
    acl = "user ops\ntopic read #\npattern write phs/+/%u/#\npattern read phs/+/%u/cmd\n"
    b = broker_factory(tls=tls_material, users={"bus-0107": "s3cret", "ops": "opspw"}, acl=acl)
    dev = dict(DEVICE, broker={"host": "localhost", "port": b.port, "tls": True, "ca": "ca.der"})
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "secrets.json").write_text(json.dumps({"wifi": {"depot-north": "k1"}, "mqtt_password": "s3cret"}))
    (tmp_path / "bootstate.json").write_text(json.dumps(CRASHED))
    with open(tls_material.ca_der, "rb") as src:
        (tmp_path / "ca.der").write_bytes(src.read())
    sub = subscriber_factory(b, ["phs/#"], username="ops", password="opspw", ca_cert=tls_material.ca_cert)
    res = _boot(mp, tmp_path, heap=HEAP_TLS)
    _assert_safe_mode(res, "the application failed 3 times in a row")
    assert "safe mode: told the broker" in res.stdout, res.stdout[-2000:]
    got = sub.wait_for(2, timeout=10, topic_prefix="phs/bus/bus-0107/")
    assert sorted(t.rsplit("/", 1)[1] for t, _, _, _ in got) == ["event", "status"]


def test_a_malformed_geofence_is_safe_mode_with_its_reason_not_a_crash_loop(mp, tmp_path, broker):
    # Finding 6: it used to pass the boot checks and crash the application on every boot.
    bad = [{"id": 1, "kind": "depot", "at": [16821234], "radius_m": 150}]
    _layout(tmp_path, broker, device=dict(DEVICE, geofences=bad, safe_mode_report=False))
    res = _boot(mp, tmp_path, cause=1)
    _assert_safe_mode(res, "configuration: geofences[0]: expected {id, kind (depot|terminus|stop), "
                           "at: [lat_e6, lon_e6], radius_m}")
    assert "Traceback" not in res.stdout
