"""Provisioning: inventory -> configurations, per-device credentials, the ACL
and TLS material; the ACL checked against a real Mosquitto over TLS."""

import json
import os
import stat
import sys
import threading
import types

import pytest

from harness import paths

sys.path.insert(0, paths.TOOLS)
import provision  # noqa: E402

WIFI = {"phs-depot-central": "central-key-123", "phs-depot-wangthong": "wt-key-456"}
EXAMPLE = os.path.join(paths.TOOLS, "fleet", "inventory.example.csv")


def run(tmp_path, *extra, inventory=EXAMPLE):
    keys = tmp_path / "wifi.json"
    keys.write_text(json.dumps(WIFI))
    out = tmp_path / "fleet"
    rc = provision.main(["--inventory", inventory, "--out", str(out), "--broker-host", "127.0.0.1",
                         "--wifi-keys", str(keys)] + list(extra))
    return rc, out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prov")
    rc, out = run(tmp)
    assert rc == 0
    return out


def _secret(out, dev):
    return json.loads((out / dev / "secrets.json").read_text())["mqtt_password"]


def test_every_inventory_row_gets_a_valid_configuration(fleet):
    sys.path.insert(0, paths.FIRMWARE)
    from transit.config import load
    for dev in ("bus-0101", "bus-0102", "bus-0107", "bus-0211", "depot-central"):
        cfg = load(str(fleet / dev / "device.json"), str(fleet / dev / "secrets.json"))
        assert cfg["device_id"] == dev and cfg["broker.tls"] and cfg["broker.port"] == 8883
        assert (fleet / dev / "ca.der").read_bytes() == (fleet / "broker" / "ca.der").read_bytes()
        assert stat.S_IMODE(os.stat(fleet / dev / "secrets.json").st_mode) == 0o600
    bus = load(str(fleet / "bus-0211" / "device.json"), str(fleet / "bus-0211" / "secrets.json"))
    assert (bus["bus.plate"], bus["bus.route"], bus["networks"]) == ("11-0411 PL", "8", [{"ssid": "phs-depot-wangthong"}])
    assert len({_secret(fleet, d) for d in ("bus-0101", "bus-0102", "bus-0107")}) == 3


def test_password_file_is_hashed_and_rerun_keeps_passwords(tmp_path, capsys):
    rc, out = run(tmp_path)
    before = {d: _secret(out, d) for d in ("bus-0101", "bus-0102")}
    rc2, _ = run(tmp_path, "--rotate", "bus-0101")
    assert rc == rc2 == 0
    assert _secret(out, "bus-0102") == before["bus-0102"]
    assert _secret(out, "bus-0101") != before["bus-0101"]
    passwd = (out / "broker" / "passwd").read_text()
    assert [ln.split(":")[0] for ln in passwd.splitlines()] == sorted(
        ["bus-0101", "bus-0102", "bus-0107", "bus-0211", "depot-central", "ops"])
    assert all(ln.split(":", 1)[1].startswith("$7$") for ln in passwd.splitlines())
    printed = capsys.readouterr()
    for dev in ("bus-0101", "bus-0102"):
        assert _secret(out, dev) not in passwd and _secret(out, dev) not in printed.out + printed.err
    assert "central-key-123" not in printed.out + printed.err


def test_missing_wifi_key_is_a_clear_error(tmp_path, capsys):
    inv = tmp_path / "inv.csv"
    inv.write_text("device_id,role,board,plate,route,depot,networks\nbus-9,bus,esp32_devkitc,x,1,d,unknown-ssid\n")
    rc, _ = run(tmp_path, inventory=str(inv))
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err == "provision: FAILED: inventory line 2: no Wi-Fi key for unknown-ssid (device bus-9): add it to the --wifi-keys file"


def test_acl_gives_each_device_only_its_own_topics(fleet):
    text = (fleet / "broker" / "acl").read_text()
    block = text.split("user bus-0107\n")[1].split("\n\n")[0].splitlines()
    assert block == ["topic write phs/bus/bus-0107/%s" % k for k in ("pos", "stop", "count", "event", "roster", "status", "ack")] + [
        "topic read phs/bus/bus-0107/cmd", "topic read phs/bus/bus-0107/status"]


class Client:
    """A paho client that records what it receives and which publishes the broker accepted."""

    def __init__(self, broker, user, password, ca):
        import paho.mqtt.client as mqtt
        self.got = []
        self.event = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311)
        self.c.username_pw_set(user, password)
        self.c.tls_set(ca_certs=ca)
        self.c.on_message = lambda c, u, m: (self.got.append((m.topic, m.payload)), self.event.set())
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()

    def sub(self, topic):
        r = self.c.subscribe(topic, 1)
        import time
        time.sleep(0.3)
        return r

    def pub(self, topic, payload):
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_one_device_can_neither_publish_into_nor_read_another_devices_topics(fleet, broker_factory):
    b = fleet / "broker"
    tls = types.SimpleNamespace(ca_cert=str(b / "ca.crt"), server_cert=str(b / "server.crt"),
                                server_key=str(b / "server.key"))
    users = {d: _secret(fleet, d) for d in ("bus-0101", "bus-0102")}
    ops_pw = json.loads((b / "ops.json").read_text())["mqtt_password"]
    users["ops"] = ops_pw
    broker = broker_factory(users=users, acl=(b / "acl").read_text(), tls=tls)
    ca = str(b / "ca.crt")
    ops = Client(broker, "ops", ops_pw, ca)
    a = Client(broker, "bus-0101", users["bus-0101"], ca)
    v = Client(broker, "bus-0102", users["bus-0102"], ca)
    try:
        ops.sub("phs/#")
        a.sub("phs/bus/bus-0102/cmd")  # A tries to read B's commands
        v.sub("phs/bus/bus-0102/cmd")
        a.pub("phs/bus/bus-0102/pos", b"spoofed")  # A tries to write as B
        a.pub("phs/bus/bus-0101/cmd", b"self-command")  # ... or to command itself
        a.pub("phs/bus/bus-0101/pos", b"own")
        ops.pub("phs/bus/bus-0102/cmd", b"reboot")
        assert v.event.wait(5), "B did not get its own command"
        import time
        time.sleep(0.5)
        assert v.got == [("phs/bus/bus-0102/cmd", b"reboot")]
        assert a.got == []
        seen = [t for t, p in ops.got]
        assert "phs/bus/bus-0101/pos" in seen
        assert "phs/bus/bus-0102/pos" not in seen and "phs/bus/bus-0101/cmd" not in seen
    finally:
        for c in (ops, a, v):
            c.close()
