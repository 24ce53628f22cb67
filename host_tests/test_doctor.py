"""`make doctor`: a board's status over mpremote, without secrets."""

import json
import os
import subprocess
import sys

import pytest

from harness import paths

sys.path.insert(0, paths.TOOLS)
import deploy  # noqa: E402
from vboard import VBoard  # noqa: E402

DEVICE = {"device_id": "bus-0107", "role": "bus", "board": "sim", "topic_root": "phs",
          "broker": {"host": "127.0.0.1", "port": 1883, "tls": False},
          "networks": [{"ssid": "phs-depot-central"}], "bus": {"plate": "10-2207 PL", "route": "3"}}
SECRETS = {"wifi": {"phs-depot-central": "central-key-123"}, "mqtt_password": "s3cret-broker-pw"}


@pytest.fixture
def board(board_fs):
    b = VBoard(fs=board_fs)
    b.reset_cause = 3  # the last reset was the watchdog
    b.start()
    yield b
    b.stop()


@pytest.fixture
def board_fs(tmp_path):
    """A board folder laid out as a deploy leaves it (staged straight into the folder)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "device.json").write_text(json.dumps(DEVICE))
    (dev / "secrets.json").write_text(json.dumps(SECRETS))
    fs = str(tmp_path / "flash")
    cfg = deploy.load_device(str(dev))
    files = deploy.stage_files(cfg, str(dev), fs, mpy=True)
    deploy.write_manifest(fs, cfg, files, True, {"version": [1, 29, 0]})
    (tmp_path / "flash" / "bootstate.json").write_text(json.dumps(
        {"crashes": 1, "boots": 7, "last_error": "OSError: [Errno 113] EHOSTUNREACH", "reset_cause": 3}))
    return fs


def doctor(board, *args):
    return subprocess.run([sys.executable, os.path.join(paths.TOOLS, "doctor.py"), "--port", board.url] + list(args),
                          capture_output=True, text=True, timeout=60)


def test_doctor_reports_status_without_secrets(board):
    res = doctor(board)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    lines = dict((ln[:12].strip(), ln[13:]) for ln in out.splitlines())
    assert lines["MicroPython"] == "1.29.0 (.mpy 6.3) on linux"
    assert lines["reset cause"] == "watchdog"
    assert lines["last error"] == "OSError: [Errno 113] EHOSTUNREACH"
    assert lines["safe mode"] == "no"
    assert lines["umqtt.simple"] == "/lib/umqtt/simple.mpy"
    assert lines["device"] == "bus-0107 (bus) board sim"
    assert lines["bus"] == "plate 10-2207 PL, route 3"
    assert lines["secrets"] == "Wi-Fi keys for phs-depot-central; broker password set"
    assert lines["deployed"].endswith("files (.mpy): all files match")
    assert "KiB free" in lines["heap"] and "records waiting" in lines["queue"]
    assert "central-key-123" not in out and "s3cret-broker-pw" not in out


def test_doctor_flags_a_changed_file_and_safe_mode(board_fs):
    with open(os.path.join(board_fs, "transit", "startup.mpy"), "ab") as f:
        f.write(b"\0")
    doc = dict(DEVICE, broker={"host": "127.0.0.1", "port": "1883"})
    with open(os.path.join(board_fs, "device.json"), "w") as f:
        json.dump(doc, f)  # a technician's typo: the board boots into safe mode
    b = VBoard(fs=board_fs)
    b.start()
    try:
        res = doctor(b, "--stay")
    finally:
        b.stop()
    assert res.returncode == 3
    deployed = [ln for ln in res.stdout.splitlines() if ln.startswith("deployed")][0]
    assert "2 file(s) differ: " in deployed and "transit/startup.mpy" in deployed and "device.json" in deployed
    assert 'safe mode    configuration: broker.port: expected an integer 1..65535, got "1883"' in res.stdout


def test_doctor_without_a_board_says_so():
    res = subprocess.run([sys.executable, os.path.join(paths.TOOLS, "doctor.py"), "--port", "socket://127.0.0.1:9"],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.startswith("doctor: FAILED: no board answers at socket://127.0.0.1:9")


def _board_with(tmp_path, secrets, setup=None):
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "device.json").write_text(json.dumps(DEVICE))
    (dev / "secrets.json").write_text(json.dumps(secrets))
    fs = str(tmp_path / "flash")
    cfg = deploy.load_device(str(dev))
    files = deploy.stage_files(cfg, str(dev), fs, mpy=True)
    deploy.write_manifest(fs, cfg, files, True, {"version": [1, 29, 0]})
    return VBoard(fs=fs, setup=setup)


def test_doctor_fails_when_the_broker_password_is_missing(tmp_path):
    b = _board_with(tmp_path, {"wifi": SECRETS["wifi"]})
    b.start()
    try:
        res = doctor(b, "--stay")
    finally:
        b.stop()
    assert res.returncode == 3, res.stdout + res.stderr
    assert "broker password missing" in res.stdout
    assert "problem      secrets.json has no broker password: the board cannot log in" in res.stdout


SETUP_APS = ("import network\n"
             "network.set_aps([{'ssid': 'phs-depot-central', 'key': 'another-key', 'rssi': -71}])\n")


def test_doctor_says_why_a_board_is_offline(tmp_path):
    setup = tmp_path / "setup.py"
    setup.write_text(SETUP_APS)
    b = _board_with(tmp_path, SECRETS, setup=str(setup))
    b.start()
    try:
        res = doctor(b, "--stay")
    finally:
        b.stop()
    lines = dict((ln[:12].strip(), ln[13:]) for ln in res.stdout.splitlines() if len(ln) > 13)
    assert lines["link"].startswith("Wi-Fi not connected"), res.stdout
    assert "in range: phs-depot-central (-71 dBm)" in lines["link"]
    assert lines["offline why"].startswith("no network link"), res.stdout


def test_doctor_shows_what_the_broker_last_heard_from_the_board(board, broker_factory, tmp_path):
    b = broker_factory(users={"consumer": "c-pw", "bus-0107": "b-pw"},
                       acl="user consumer\ntopic read phs/#\n\nuser bus-0107\ntopic write phs/bus/bus-0107/status\n")
    status = {"v": 2, "d": "bus-0107", "e": 9, "on": True, "t": 1795766400, "fw": "0.3", "up_s": 50,
              "rst": "power", "heap": 40000, "link": {"type": "wifi", "up": True, "ssid": "phs-depot-central",
                                                      "rssi": -67},
              "uplink": {"connects": 3, "reconnects": 2, "fail_auth": 4, "last_error": "connack 5"}}
    import paho.mqtt.publish as publish
    publish.single("phs/bus/bus-0107/status", json.dumps(status), qos=1, retain=True, hostname=b.host,
                   port=b.port, auth={"username": "bus-0107", "password": "b-pw"})
    creds = tmp_path / "consumer.json"
    creds.write_text(json.dumps({"username": "consumer", "mqtt_password": "c-pw", "host": b.host, "port": b.port,
                                 "tls": False}))
    res = doctor(board, "--creds", str(creds))
    lines = dict((ln[:12].strip(), ln[13:]) for ln in res.stdout.splitlines() if len(ln) > 13)
    assert lines["broker view"] == ("online (status of 2026-11-27T08:00:00Z): wifi up, phs-depot-central, "
                                    "-67 dBm; uplink connects 3, fail_auth 4, last error: connack 5"), res.stdout
