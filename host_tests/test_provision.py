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
        ["bus-0101", "bus-0102", "bus-0107", "bus-0211", "consumer", "depot-central", "operator"])
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
        self.c.disconnect()  # before loop_stop(), which would wait out the network thread's 1 s select()
        self.c.loop_stop()


def test_one_device_can_neither_publish_into_nor_read_another_devices_topics(fleet, broker_factory):
    b = fleet / "broker"
    tls = types.SimpleNamespace(ca_cert=str(b / "ca.crt"), server_cert=str(b / "server.crt"),
                                server_key=str(b / "server.key"))
    users = {d: _secret(fleet, d) for d in ("bus-0101", "bus-0102")}
    ops_pw = json.loads((b / "operator.json").read_text())["mqtt_password"]
    users["operator"] = ops_pw
    broker = broker_factory(users=users, acl=(b / "acl").read_text(), tls=tls)
    ca = str(b / "ca.crt")
    ops = Client(broker, "operator", ops_pw, ca)
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


# --------------------------------------------------------------------------
# Issue 19: the generated broker configuration on a real Mosquitto
# --------------------------------------------------------------------------

import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from localbroker import free_port  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


@pytest.fixture
def open_tmp():
    """A folder the broker's own user (mosquitto) can reach: pytest's tmp_path is 0700 under root."""
    d = tempfile.mkdtemp(prefix="phs-prov-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def provision_plain(folder, *extra, inventory=EXAMPLE):
    """Provision without TLS on a free port; returns (rc, out folder, port)."""
    port = free_port()
    keys = os.path.join(folder, "wifi.json")
    with open(keys, "w") as f:
        json.dump(WIFI, f)
    out = os.path.join(folder, "fleet")
    rc = provision.main(["--inventory", inventory, "--out", out, "--broker-host", "127.0.0.1", "--no-tls",
                         "--broker-port", str(port), "--wifi-keys", keys] + list(extra))
    return rc, out, port


class GeneratedBroker:
    """`mosquitto -c <out>/broker/mosquitto.conf`, exactly as provisioning wrote it."""

    def __init__(self, out, port, as_user=None):
        self.conf = os.path.join(out, "broker", "mosquitto.conf")
        self.port = port
        cmd = [MOSQUITTO, "-c", self.conf]
        if as_user:
            cmd = ["runuser", "-u", as_user, "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("mosquitto exited at start: %s" % self.proc.stdout.read())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not open port %d" % port
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stdout.read()


class Board:
    """A paho client standing in for a board: its last will is the retained "offline" status."""

    def __init__(self, port, user, password, client_id=None, will=True, ca=None):
        import paho.mqtt.client as mqtt
        self.connected = threading.Event()
        self.dropped = threading.Event()
        self.rc = None
        self.got = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or user, protocol=mqtt.MQTTv311)
        self.c.username_pw_set(user, password)
        if ca:
            self.c.tls_set(ca_certs=ca)
        if will:
            self.c.will_set("phs/bus/%s/status" % user, b'{"on":false}', qos=1, retain=True)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, f, rc, p=None: self.dropped.set()
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def _on_connect(self, c, u, flags, rc, props=None):
        self.rc = rc
        (self.connected if not rc.is_failure else self.dropped).set()

    def close(self):
        self.c.disconnect()  # before loop_stop(), which would wait out the network thread's 1 s select()
        self.c.loop_stop()


def _password(out, user):
    if user in ("consumer", "operator"):
        return json.load(open(os.path.join(out, "broker", user + ".json")))["mqtt_password"]
    return json.load(open(os.path.join(out, user, "secrets.json")))["mqtt_password"]


def test_a_stolen_password_cannot_knock_another_board_off(open_tmp):
    rc, out, port = provision_plain(open_tmp)
    assert rc == 0
    assert "use_username_as_clientid true" in open(os.path.join(out, "broker", "mosquitto.conf")).read()
    broker = GeneratedBroker(out, port)
    watcher = victim = thief = None
    try:
        watcher = Board(port, "consumer", _password(out, "consumer"), will=False)
        assert watcher.connected.wait(5)
        watcher.c.subscribe("phs/bus/bus-0102/status", 1)
        victim = Board(port, "bus-0102", _password(out, "bus-0102"))
        assert victim.connected.wait(5)
        time.sleep(0.3)
        # bus-0101's password, read out of a stolen board's flash, with bus-0102's client id
        thief = Board(port, "bus-0101", _password(out, "bus-0101"), client_id="bus-0102", will=False)
        thief.connected.wait(5)
        time.sleep(1.0)
        assert not victim.dropped.is_set(), "the real bus-0102 was disconnected"
        assert watcher.got == [], "an 'offline' last will was published for bus-0102"
    finally:
        for c in (thief, victim, watcher):
            if c:
                c.close()
        broker.stop()


def test_revoke_refuses_a_stolen_board_and_reloads_the_broker(open_tmp, capsys):
    rc, out, port = provision_plain(open_tmp)
    assert rc == 0
    broker = GeneratedBroker(out, port)
    stolen = other = None
    try:
        stolen = Board(port, "bus-0101", _password(out, "bus-0101"), will=False)
        assert stolen.connected.wait(5)
        old_pw = _password(out, "bus-0101")
        assert provision.main(["--out", out, "--revoke", "bus-0101"]) == 0
        printed = capsys.readouterr().out
        assert "revoked bus-0101" in printed and "reloaded the broker" in printed
        assert stolen.dropped.wait(5), "the revoked board stayed connected"
        stolen.close()
        passwd = open(os.path.join(out, "broker", "passwd")).read()
        acl = open(os.path.join(out, "broker", "acl")).read()
        assert "bus-0101" not in passwd and "bus-0101" not in acl and "bus-0102" in acl
        assert not os.path.exists(os.path.join(out, "bus-0101", "secrets.json"))
        again = Board(port, "bus-0101", old_pw, will=False)
        assert again.dropped.wait(5) and not again.connected.is_set()
        assert again.rc is not None and again.rc.is_failure  # not authorised
        again.close()
        other = Board(port, "bus-0102", _password(out, "bus-0102"), will=False)
        assert other.connected.wait(5)
        # a re-run of provisioning does not bring the stolen board's credentials back
        rc, _, _ = provision_plain(open_tmp)
        assert rc == 0
        assert "bus-0101" not in open(os.path.join(out, "broker", "passwd")).read()
    finally:
        for c in (other, stolen):
            if c:
                c.close()
        broker.stop()


def test_revoke_of_an_unknown_device_is_refused(open_tmp, capsys):
    rc, out, _ = provision_plain(open_tmp)
    assert provision.main(["--out", out, "--revoke", "bus-9999"]) == 1
    assert "bus-9999 is not provisioned" in capsys.readouterr().err


def test_consumer_only_reads_and_operator_sends_commands(open_tmp):
    rc, out, port = provision_plain(open_tmp)
    assert rc == 0
    assert not os.path.exists(os.path.join(out, "broker", "ops.json"))
    users = [ln.split(":")[0] for ln in open(os.path.join(out, "broker", "passwd")).read().splitlines()]
    assert "consumer" in users and "operator" in users and "ops" not in users
    broker = GeneratedBroker(out, port)
    cons = oper = bus = None
    try:
        bus = Board(port, "bus-0102", _password(out, "bus-0102"), will=False)
        cons = Board(port, "consumer", _password(out, "consumer"), will=False)
        oper = Board(port, "operator", _password(out, "operator"), will=False)
        for c in (bus, cons, oper):
            assert c.connected.wait(5)
        bus.c.subscribe("phs/bus/bus-0102/cmd", 1)
        cons.c.subscribe("phs/#", 1)
        time.sleep(0.3)
        cons.c.publish("phs/bus/bus-0102/cmd", b"from-consumer", qos=1).wait_for_publish(5)
        cons.c.publish("phs/bus/bus-0102/pos", b"fake-pos", qos=1).wait_for_publish(5)
        oper.c.publish("phs/bus/bus-0102/cmd", b"from-operator", qos=1).wait_for_publish(5)
        time.sleep(0.7)
        assert bus.got == [("phs/bus/bus-0102/cmd", b"from-operator")]
        assert ("phs/bus/bus-0102/cmd", b"from-operator") in cons.got  # the consumer reads everything
        assert all(p != b"fake-pos" for t, p in cons.got)
    finally:
        for c in (bus, cons, oper):
            if c:
                c.close()
        broker.stop()


@pytest.mark.parametrize("bad", ["../../tmp/pwn", "ops", "consumer", "operator", "broker", "Bus 01", "a/b", ".hidden"])
def test_unsafe_or_reserved_device_ids_are_refused(tmp_path, capsys, bad):
    inv = tmp_path / "inv.csv"
    inv.write_text("device_id,role,board,plate,route,depot,networks\n%s,bus,esp32_devkitc,x,1,d,phs-depot-central\n"
                   % bad)
    rc, out = run(tmp_path, "--no-tls", inventory=str(inv))
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("provision: FAILED: inventory line 2: device id %r" % bad)
    assert not os.path.exists(tmp_path.parent / "tmp" / "pwn")
    assert not (out / "broker" / "passwd").exists()


@pytest.mark.parametrize("zone,why", [
    ({"id": 1, "kind": "depot", "name": "x", "at": [16821234], "radius_m": 80}, "geofences[0]"),
    ({"id": 2, "kind": "garage", "name": "x", "at": [16821234, 100262345], "radius_m": 80}, "geofences[0]"),
    ({"id": 3, "kind": "depot", "name": "x", "at": ["n", "e"], "radius_m": 80}, "geofences[0]"),
])
def test_a_malformed_geofence_is_refused_by_provisioning(tmp_path, capsys, zone, why):
    gf = tmp_path / "zones.json"
    gf.write_text(json.dumps({"geofences": [zone]}))
    rc, out = run(tmp_path, "--no-tls", "--geofences", str(gf))
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("provision: FAILED: ") and why in err
    assert not (out / "bus-0101" / "device.json").exists()


def _owner(path):
    import pwd
    return pwd.getpwuid(os.stat(path).st_uid).pw_name


@pytest.mark.skipif(os.getuid() != 0, reason="starting the broker as root needs root")
@pytest.mark.parametrize("tls", [False, True])
def test_generated_broker_config_starts_as_root_and_as_its_user(open_tmp, tls):
    if tls:
        port = free_port()
        keys = os.path.join(open_tmp, "wifi.json")
        with open(keys, "w") as f:
            json.dump(WIFI, f)
        out = os.path.join(open_tmp, "fleet")
        rc = provision.main(["--out", out, "--broker-host", "127.0.0.1", "--broker-port", str(port),
                             "--wifi-keys", keys, "--broker-user", "mosquitto"])
    else:
        rc, out, port = provision_plain(open_tmp, "--broker-user", "mosquitto")
    assert rc == 0
    conf = open(os.path.join(out, "broker", "mosquitto.conf")).read()
    assert "user mosquitto" in conf and "pid_file " in conf
    for name in ("passwd", "acl"):
        assert _owner(os.path.join(out, "broker", name)) == "mosquitto"
    for as_user in (None, "mosquitto"):  # as root (drops to mosquitto), then started as that user
        broker = GeneratedBroker(out, port, as_user=as_user)
        try:
            bus = Board(port, "bus-0102", _password(out, "bus-0102"), will=False,
                        ca=os.path.join(out, "broker", "ca.crt") if tls else None)
            assert bus.connected.wait(5), "as %s: %s" % (as_user or "root", broker.stop())
            bus.close()
        finally:
            log = broker.stop()
        assert "Unable to open" not in log and "Error" not in log, log


class CertBoard(Board):
    """A board that logs in with its TLS client certificate (no password)."""

    def __init__(self, port, folder, cn, ca, client_id=None, will=True):
        import paho.mqtt.client as mqtt
        self.connected = threading.Event()
        self.dropped = threading.Event()
        self.rc = None
        self.got = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or cn, protocol=mqtt.MQTTv311)
        self.c.tls_set(ca_certs=ca, certfile=os.path.join(folder, "client.crt"),
                       keyfile=os.path.join(folder, "client.key"))
        if will:
            self.c.will_set("phs/bus/%s/status" % cn, b'{"on":false}', qos=1, retain=True)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, f, rc, p=None: self.dropped.set()
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        try:
            self.c.connect("127.0.0.1", port, keepalive=30)
        except OSError:  # the TLS handshake refused (revoked certificate)
            self.dropped.set()
            return
        self.c.loop_start()


def test_client_certificates_identify_devices_and_a_revoked_one_is_refused(open_tmp, capsys):
    port = free_port()
    keys = os.path.join(open_tmp, "wifi.json")
    with open(keys, "w") as f:
        json.dump(WIFI, f)
    out = os.path.join(open_tmp, "fleet")
    assert provision.main(["--out", out, "--broker-host", "127.0.0.1", "--broker-port", str(port),
                           "--wifi-keys", keys, "--client-certs"]) == 0
    conf = open(os.path.join(out, "broker", "mosquitto.conf")).read()
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf and "crlfile" in conf
    ca = os.path.join(out, "broker", "ca.crt")
    for dev in ("bus-0101", "bus-0102"):
        assert os.path.exists(os.path.join(out, dev, "client.crt.der"))
    broker = GeneratedBroker(out, port)
    victim = thief = again = None
    try:
        victim = CertBoard(port, os.path.join(out, "bus-0102"), "bus-0102", ca)
        assert victim.connected.wait(5), broker.stop()
        thief = CertBoard(port, os.path.join(out, "bus-0101"), "bus-0101", ca, client_id="bus-0102", will=False)
        assert thief.connected.wait(5)
        time.sleep(1.0)
        assert not victim.dropped.is_set(), "bus-0101's certificate knocked bus-0102 off"
        thief.close()
        stolen = os.path.join(open_tmp, "stolen")  # the thief keeps the board's certificate and key
        shutil.copytree(os.path.join(out, "bus-0101"), stolen)
        assert provision.main(["--out", out, "--revoke", "bus-0101"]) == 0
        assert "certificate (CRL)" in capsys.readouterr().out
        assert not os.path.exists(os.path.join(out, "bus-0101", "client.key"))
        again = CertBoard(port, stolen, "bus-0101", ca, will=False)
        assert again.dropped.wait(5) and not again.connected.is_set(), "a revoked certificate was accepted"
        assert not victim.dropped.is_set()
    finally:
        for c in (again, thief, victim):
            if c:
                c.close()
        broker.stop()


def test_an_old_ops_account_is_retired(tmp_path, capsys):
    rc, out = run(tmp_path, "--no-tls")
    (out / "broker" / "ops.json").write_text(json.dumps({"username": "ops", "mqtt_password": "old"}))
    rc, out = run(tmp_path, "--no-tls")
    assert rc == 0 and not (out / "broker" / "ops.json").exists()
    assert "retired the old ops account" in capsys.readouterr().out
    assert "ops:" not in (out / "broker" / "passwd").read_text()


def test_revoke_without_a_running_broker_says_so_and_exits_3(tmp_path, capsys):
    rc, out = run(tmp_path, "--no-tls")
    capsys.readouterr()
    assert provision.main(["--out", str(out), "--revoke", "bus-0102"]) == 3
    printed = capsys.readouterr().out
    assert "revoked bus-0102" in printed and "no running broker found" in printed and "kill -HUP" in printed
    assert "user bus-0102" not in (out / "broker" / "acl").read_text()


def test_time_servers_and_the_release_key_reach_every_device(tmp_path, capsys):
    key = "ab" * 32
    rc, out = run(tmp_path, "--sntp", "10.0.0.1", "--sntp", "time.example:123", "--ota-key", key)
    assert rc == 0
    if paths.FIRMWARE not in sys.path:
        sys.path.insert(0, paths.FIRMWARE)
    from transit import config
    seen = 0
    for dev in sorted(os.listdir(out)):
        path = os.path.join(out, dev, "device.json")
        if not os.path.exists(path):
            continue
        seen += 1
        with open(path) as f:
            doc = json.load(f)
        assert doc["time"] == {"sntp": ["10.0.0.1", "time.example:123"]} and doc["ota_key"] == key
        cfg = config.load(path, os.path.join(out, dev, "secrets.json"))  # the firmware accepts both
        assert cfg.get("ota_key") == key and cfg.get("time.sntp") == ["10.0.0.1", "time.example:123"]
    assert seen >= 2


def test_without_time_servers_or_release_key_provisioning_says_what_that_means(tmp_path, capsys):
    rc, out = run(tmp_path, "--ota-key", "none")
    said = capsys.readouterr().out
    assert rc == 0
    assert "no --sntp server: depot boards (no GPS) cannot set their clock" in said
    assert "boards will refuse over-the-air updates" in said
    for name in os.listdir(out):
        path = os.path.join(out, name, "device.json")
        if os.path.exists(path):
            with open(path) as f:
                doc = json.load(f)
            assert "ota_key" not in doc and "time" not in doc


def test_a_malformed_release_key_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--ota-key: 64 hex digits"):
        run(tmp_path, "--ota-key", "abc")
