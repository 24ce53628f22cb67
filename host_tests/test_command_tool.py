"""tools/command.py, the operator's command line, against the real firmware uplink
(host_tests/uplink_scripts/drive.py under the MicroPython unix port) on a
Mosquitto with the production ACL shape: the board reads only its own cmd,
the operator account writes every board's cmd and reads everything."""

import json
import os
import subprocess
import sys
import time

from harness import paths

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "uplink_scripts"))

from scenario import Run, device  # noqa: E402

TOOL = os.path.join(paths.ROOT, "tools", "command.py")
ACL = ("user operator\ntopic read phs/#\ntopic write phs/+/+/cmd\n"
       "pattern write phs/+/%u/#\npattern read phs/+/%u/cmd\npattern read phs/+/%u/status\n")
USERS = {"bus-001": "s3cret", "operator": "oppw", "bus-002": "other"}


def creds(tmp_path, b, user="operator", pw="oppw"):
    p = tmp_path / ("%s.json" % user)
    p.write_text(json.dumps({"username": user, "mqtt_password": pw, "host": "127.0.0.1", "port": b.port}))
    return str(p)


def cmd(*argv, timeout=60):
    p = subprocess.run([sys.executable, TOOL] + list(argv), capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_commands_reach_a_running_board_and_its_answers_come_back(mp, broker_factory, tmp_path):
    b = broker_factory(users=USERS, acl=ACL)
    cfg_path = str(tmp_path / "device.json")
    run = Run(mp, tmp_path, device(b), secrets={"mqtt_password": "s3cret"}, cfg_path=cfg_path, rate_ms=50,
              total=400, until_drained=False, duration_ms=30000, settings={"batch_s": 0})
    try:
        assert run.wait_for(lambda s: s == "@up 1"), "the board never connected"
        op = creds(tmp_path, b)
        rc, out, err = cmd("--creds", op, "bus-001", "ping")
        assert (rc, out.strip()) == (0, 'bus-001: ok "pong"'), err
        rc, out, err = cmd("--creds", op, "bus-001", "set", "bus.route", "R7")
        assert (rc, out.strip()) == (0, 'bus-001: ok "R7"'), err
        rc, out, err = cmd("--creds", op, "bus-001", "get", "bus.route")
        assert (rc, out.strip()) == (0, 'bus-001: ok "R7"'), err
        # A value the board refuses: exit 1 and the board's own reason; nothing changes.
        rc, out, err = cmd("--creds", op, "bus-001", "set", "status_period_s", "1")
        assert rc == 1
        assert out.strip() == "bus-001: refused: status_period_s: expected an integer 30..3600, got 1"
        # One board answers, the other was never seen: exit 3, and the output says which and why.
        rc, out, err = cmd("--creds", op, "--role", "bus", "--timeout-s", "2", "bus-001", "bus-002", "ping")
        assert rc == 3
        lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
        assert lines["bus-001"] == 'ok "pong"'
        assert lines["bus-002"].startswith("no answer within 2 s; no status from this board")
    finally:
        run.stop()
    res = run.result()
    with open(cfg_path) as f:
        assert json.load(f)["bus"]["route"] == "R7"
    assert res["stats"]["lost"] == 0
    assert res["stats"]["cmd_ok"] == 4 and res["stats"]["cmd_err"] == 1  # each command ran exactly once


def test_clear_retained_removes_a_command_the_broker_would_replay(broker_factory, tmp_path):
    import paho.mqtt.publish as publish
    import paho.mqtt.subscribe as subscribe
    b = broker_factory(users=USERS, acl=ACL)
    auth = {"username": "operator", "password": "oppw"}
    publish.single("phs/bus/bus-001/cmd", '{"id":"x","op":"reboot","exp":1}', qos=1, retain=True,
                   hostname="127.0.0.1", port=b.port, auth=auth)
    held = subscribe.simple("phs/bus/bus-001/cmd", hostname="127.0.0.1", port=b.port, auth=auth, retained=True)
    assert held.retain and b"reboot" in held.payload
    rc, out, err = cmd("--creds", creds(tmp_path, b), "--role", "bus", "--find-s", "0.5", "--clear-retained",
                       "bus-001")
    assert (rc, out.strip()) == (0, "bus-001: retained command cleared"), err
    got = []
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.username_pw_set("operator", "oppw")
    c.on_message = lambda cl, u, m: got.append(m)
    c.connect("127.0.0.1", b.port)
    c.subscribe("phs/bus/bus-001/cmd", qos=1)
    c.loop_start()
    time.sleep(1.0)
    c.loop_stop()
    c.disconnect()
    assert got == []


def test_errors_are_one_clear_sentence_and_exit_2(broker_factory, tmp_path):
    b = broker_factory(users=USERS, acl=ACL)
    rc, out, err = cmd("--creds", creds(tmp_path, b, pw="wrong"), "--role", "bus", "bus-001", "ping")
    assert rc == 2 and "refused the login as operator" in err
    rc, out, err = cmd("--creds", str(tmp_path / "missing.json"), "bus-001", "ping")
    assert rc == 2 and "cannot use the credential file" in err
    rc, out, err = cmd("--creds", creds(tmp_path, b), "--find-s", "0.5", "bus-001", "ping")
    assert rc == 2 and "no retained status on the broker" in err and "--role" in err
    rc, out, err = cmd("--creds", creds(tmp_path, b), "bus-001", "get")
    assert rc == 2 and "get takes a setting's key" in err
    rc, out, err = cmd("--creds", creds(tmp_path, b), "bus-001")
    assert rc == 2 and "give a command" in err
