"""The broker-side listener: validated, de-duplicated records to JSON lines
and CSV, and a fleet table that only live positions move."""

import csv
import json
import subprocess
import sys
import threading
import time

from harness import paths

sys.path.insert(0, paths.TOOLS)
import listen  # noqa: E402

POS_LIVE = {"v": 1, "d": "bus-0107", "s": 10, "t": 1795766400, "n": 2, "dt": 15,
            "la": [16821234, 300], "lo": [100262345, -200], "sp": [833, 900], "co": [900, 0], "al": 450,
            "sa": 9, "hd": 12, "rs": 1, "od": [1000, 40]}
POS_BACKLOG = dict(POS_LIVE, s=4, t=1795766000, n=1, bl=1, la=[16800000], lo=[100200000], sp=[0], co=[0],
                   od=[900])
STOP = {"v": 1, "d": "bus-0107", "s": 12, "t": 1795766460,
        "r": [{"q": 12, "t": 1795766460, "id": 65537, "to": 1795766420, "tc": 1795766460, "la": 16821534,
               "lo": 100262145, "od": 1040, "dw": 40, "ld": 17, "oc": 1, "qf": 0, "dr": [[5, 2], [3, 0]]}]}


def test_fleet_moves_a_bus_only_with_live_positions_and_drops_duplicates():
    fleet = listen.Fleet()
    fleet.feed("phs/bus/bus-0107/pos", json.dumps(POS_LIVE).encode())
    fleet.feed("phs/bus/bus-0107/pos", json.dumps(POS_BACKLOG).encode())  # older, backlog: must not move the bus
    fleet.feed("phs/bus/bus-0107/stop", json.dumps(STOP).encode())
    fleet.feed("phs/bus/bus-0107/stop", json.dumps(STOP).encode())  # a resend after a lost PUBACK
    fleet.feed("phs/bus/bus-0107/pos", b'{"v":1,"d":"bus-0107"}')  # invalid: counted, not fatal
    v = fleet.vehicles["bus-0107"]
    assert (v.pos["lat_e6"], v.pos["lon_e6"]) == (16821534, 100262145)
    assert (v.visits, v.boardings, v.alightings, v.load) == (1, 8, 2, 17)
    assert v.stream.duplicates == 1 and fleet.invalid == 1
    table = "\n".join(fleet.table())
    assert "16.82153,100.26215" in table and "many seats" in table and "invalid messages: 1" in table


def test_listener_cli_writes_json_lines_and_csv(broker, tmp_path):
    jsonl, csvf = tmp_path / "out.jsonl", tmp_path / "out.csv"
    proc = subprocess.Popen([sys.executable, paths.TOOLS + "/listen.py", "--port", str(broker.port),
                             "--jsonl", str(jsonl), "--csv", str(csvf), "--seconds", "4", "--every", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)
    import paho.mqtt.publish as publish
    for topic, doc in (("phs/bus/bus-0107/pos", POS_LIVE), ("phs/bus/bus-0107/stop", STOP)):
        publish.single(topic, json.dumps(doc), qos=1, hostname=broker.host, port=broker.port)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    rows = [json.loads(l) for l in jsonl.read_text().splitlines()]
    assert [(r["kind"], r["seq"]) for r in rows] == [("pos", 10), ("pos", 11), ("stop", 12)]
    assert rows[2]["boardings"] == 8 and rows[2]["load"] == 17
    with open(csvf) as f:
        assert len(list(csv.DictReader(f))) == 3
    assert "bus-0107" in out


def test_listener_says_clearly_when_the_broker_is_unreachable():
    from localbroker import free_port
    proc = subprocess.run([sys.executable, paths.TOOLS + "/listen.py", "--port", str(free_port()), "--seconds", "1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "cannot reach the broker" in proc.stderr


def _creds(tmp_path, broker, user, password):
    path = tmp_path / ("%s.json" % user)
    path.write_text(json.dumps({"username": user, "mqtt_password": password, "host": broker.host,
                                "port": broker.port, "tls": False}))
    return str(path)


ACL = "user consumer\ntopic read phs/#\n\nuser bus-0107\ntopic write phs/bus/bus-0107/pos\n"


def test_listener_logs_in_with_a_provisioned_credential_file(broker_factory, tmp_path):
    b = broker_factory(users={"consumer": "c-pw", "bus-0107": "b-pw"}, acl=ACL)
    creds = _creds(tmp_path, b, "consumer", "c-pw")
    jsonl = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, paths.TOOLS + "/listen.py", "--creds", creds, "--jsonl", str(jsonl),
                             "--seconds", "3", "--every", "1", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    import paho.mqtt.publish as publish
    publish.single("phs/bus/bus-0107/pos", json.dumps(POS_LIVE), qos=1, hostname=b.host, port=b.port,
                   auth={"username": "bus-0107", "password": "b-pw"})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert [json.loads(ln)["seq"] for ln in jsonl.read_text().splitlines()] == [10, 11]


def test_listener_fails_loudly_when_the_broker_refuses_the_login(broker_factory, tmp_path):
    b = broker_factory(users={"consumer": "c-pw"}, acl=ACL)
    creds = _creds(tmp_path, b, "consumer", "wrong")
    proc = subprocess.run([sys.executable, paths.TOOLS + "/listen.py", "--creds", creds, "--seconds", "2",
                           "--every", "1"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the broker refused the login as consumer" in proc.stderr
    assert "device" not in proc.stdout  # no empty table


def test_listener_fails_loudly_when_not_allowed_to_read(broker_factory, tmp_path):
    b = broker_factory(users={"consumer": "c-pw", "bus-0107": "b-pw"}, acl=ACL)
    creds = _creds(tmp_path, b, "bus-0107", "b-pw")  # a device's credentials cannot read phs/#
    import paho.mqtt.publish as publish
    publish.single("phs/bus/bus-0107/pos", json.dumps(POS_LIVE), qos=1, retain=True, hostname=b.host,
                   port=b.port, auth={"username": "bus-0107", "password": "b-pw"})
    proc = subprocess.run([sys.executable, paths.TOOLS + "/listen.py", "--creds", creds, "--seconds", "2",
                           "--every", "1"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "bus-0107 is not allowed to read phs/#" in proc.stderr
    assert "device" not in proc.stdout  # no empty table


def test_a_replacement_board_starting_at_seq_1_is_not_dropped_as_duplicates():
    # Finding 4: the old board sent seqs 10..12 in epoch 111; its replacement
    # starts again at 10 in epoch 222. Keyed by seq alone, those were dropped.
    rows = []
    fleet = listen.Fleet(on_record=lambda v, k, r: rows.append(listen.record_row(v, k, r)))
    old = dict(POS_LIVE, v=2, e=111)
    new = dict(POS_LIVE, v=2, e=222, t=POS_LIVE["t"] + 600)
    fleet.feed("phs/bus/bus-0107/pos", json.dumps(old).encode())
    fleet.feed("phs/bus/bus-0107/pos", json.dumps(new).encode())
    fleet.feed("phs/bus/bus-0107/pos", json.dumps(new).encode())  # a resend: dropped
    assert [(r["e"], r["seq"]) for r in rows] == [(111, 10), (111, 11), (222, 10), (222, 11)]
    assert fleet.vehicles["bus-0107"].stream.duplicates == 2
    assert fleet.vehicles["bus-0107"].pos["ts"] == POS_LIVE["t"] + 600 + 15  # the new board moves the bus


def test_fleet_table_shows_safe_mode_and_why():
    fleet = listen.Fleet()
    st = {"v": 2, "d": "bus-0107", "e": 7, "on": True, "t": 1795766400, "fw": "0.3", "up_s": 5, "rst": "power",
          "heap": 40000,
          "safe": {"why": "configuration: broker.port: expected an integer 1..65535"}}
    fleet.feed("phs/bus/bus-0107/status", json.dumps(st).encode())
    table = "\n".join(fleet.table())
    assert "SAFE" in table and "safe mode bus-0107: configuration: broker.port" in table
