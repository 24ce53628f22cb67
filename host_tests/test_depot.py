"""Depot role end to end under the unix port: gate counters make periodic
count records, the yard roster hears buses by BLE and follows the buses' own
depot geofence events through the broker, everything reaches Mosquitto."""

import json
import os
import shutil
import sys

from harness import paths

sys.path.insert(0, paths.TOOLS)
import telemetry  # noqa: E402

DEPOT = {"device_id": "depot-central", "role": "depot", "board": "sim_ble", "topic_root": "phs",
         "broker": {"host": "127.0.0.1", "port": 0, "tls": False}, "networks": [{"ssid": "depot-wifi"}],
         "depot": {"name": "Phitsanulok Central", "zone_id": 1}, "counting": {"period_s": 60},
         "roster": {"scan_every_s": 20, "scan_ms": 2000}, "uplink": {"batch_s": 5}}
SECRETS = {"wifi": {"depot-wifi": "k"}, "mqtt_password": ""}

SCRIPT = """
import machine, network, bluetooth, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
network.set_aps([{"ssid": "depot-wifi", "key": "k"}])
bluetooth.set_advertisers([(b"\\x01" * 6, bluetooth.adv_name("PHS-bus-0101"), -68),
                           (b"\\x02" * 6, bluetooth.adv_name("a phone"), -40)])
import passenger_gen as pg
rng = pg.Rng(3)
t0 = 5000000
events = []
truth = []
for gate, (a, b, n_in, n_out) in enumerate(((25, 26, 5, 3), (32, 33, 2, 0))):
    people = [pg.random_person(rng, pg.IN, pg.CLEAN) for _ in range(n_in)]
    people += [pg.random_person(rng, pg.OUT, pg.CLEAN) for _ in range(n_out)]
    edges, tin, tout, end = pg.door_edges(people, t0, rng, pg.CLEAN)
    events += pg.to_pins(edges, a, b, True)
    truth.append((tin, tout))
machine.inject_timeline(events)
print("truth", truth)
import transit.startup
from transit import app as appmod

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    a.boot_event()
    a.run(max_loops=%(loops)d, loop_ms=20)
    # Drain at 20x real time: free-running virtual time would outrun the
    # broker's real round trips on a busy machine and time out its PUBACKs.
    fakeclock.CLOCK.pace = 0.05
    for i in range(20000):
        if a.queue.depth() == 0:
            break
        a.run(max_loops=1, loop_ms=20)
    print("yard", a.roster.in_yard(), "depth", a.queue.depth(), "bad", a.bad_events)

transit.startup.main(run=run, board_dirs=("boards",))
"""


def test_depot_counts_gates_and_keeps_a_yard_roster(mp, tmp_path, broker_factory, subscriber_factory):
    broker = broker_factory()
    sub = subscriber_factory(broker, ["phs/#"])
    # A bus entered the depot's geofence (zone 1) and said so on its event topic;
    # retained, so the depot board receives it as soon as it subscribes.
    import paho.mqtt.publish as publish
    ev = {"v": 1, "d": "bus-0202", "s": 41, "t": 1795766390,
          "r": [{"q": 41, "t": 1795766390, "k": 2, "i": 1, "va": 1, "la": 16812800, "lo": 100265800}]}
    publish.single("phs/bus/bus-0202/event", json.dumps(ev), qos=1, retain=True, hostname=broker.host,
                   port=broker.port)
    dev = dict(DEPOT, broker={"host": broker.host, "port": broker.port, "tls": False})
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    os.makedirs(tmp_path / "boards")
    board = json.load(open(os.path.join(paths.BOARDS, "sim.json")))
    board.update(name="sim_ble", ble=True)
    (tmp_path / "boards" / "sim_ble.json").write_text(json.dumps(board))
    tools = os.path.join(paths.ROOT, "build", "depot_tools")
    os.makedirs(tools, exist_ok=True)
    shutil.copy(os.path.join(paths.TOOLS, "passenger_gen.py"), tools)
    res = mp.run(SCRIPT % {"loops": 7000}, cwd=str(tmp_path), heap="512K", path=[tools], timeout=300)
    truth = json.loads(res.stdout.split("truth ")[1].splitlines()[0].replace("(", "[").replace(")", "]"))
    yard = [l for l in res.stdout.splitlines() if l.startswith("yard")][0]
    assert "'bus-0101'" in yard and "'bus-0202'" in yard and "depth 0" in yard and "bad 0" in yard, yard

    msgs = sub.wait_for(4, timeout=10, topic_prefix="phs/depot/depot-central/")
    stream = telemetry.Stream()
    for topic, payload, _, _ in sub.messages:
        if topic.startswith("phs/depot/"):
            stream.feed(topic, payload)  # validates every message against its JSON Schema
    counts = [r for k, r in stream.records.values() if k == "count"]
    roster = [r for k, r in stream.records.values() if k == "roster"]
    assert counts, msgs
    per_gate = [[sum(c["g"][g][0] for c in counts), sum(c["g"][g][1] for c in counts)] for g in range(2)]
    assert per_gate == truth
    arrived = sorted((r["bus"], r["src"]) for r in roster if r["k"] == 1)
    assert arrived == [("bus-0101", 1), ("bus-0202", 2)]  # 1 = BLE, 2 = geofence events
    import time
    deadline = time.monotonic() + 10
    while True:  # the last will follows the board's exit: wait for it
        statuses = [json.loads(p) for t, p, _, _ in sub.messages if t == "phs/depot/depot-central/status"]
        if statuses[-1].get("on") is False or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert statuses[0]["on"] is True and "yard" in statuses[0]
    assert statuses[-1] == {"v": 2, "d": "depot-central", "on": False}  # the last will: the board went away
