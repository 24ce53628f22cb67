"""Two bridge copies on a real Mosquitto: they share the load, one is killed, nothing is lost.

Each copy is a real `tools/city/bridge.py` process with the read-only
consumer account, a fixed client id, a persistent session and a shared
subscription. One copy is SIGKILLed while buses publish; the broker keeps
its share for its session; the copy restarted with the same id and folder
replays its journal and takes the rest. Both copies end with every record
(they read each other's journals).
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import paho.mqtt.client as mqtt
import telemetry

from city.fakefleet import SynthBus, load_route
from harness import paths
from harness.broker import free_port

BRIDGE = os.path.join(paths.TOOLS, "city", "bridge.py")
ACL = "user consumer\ntopic read phs/#\nuser fleet\ntopic write phs/#\n"
T0 = 1764550000


def start_copy(broker, tmp_path, name, port, peer_port, creds):
    return subprocess.Popen([sys.executable, BRIDGE, "--host", broker.host, "--port", str(broker.port),
                             "--credentials", creds, "--id", "city-" + name, "--share", "city",
                             "--data", str(tmp_path / name), "--http-port", str(port),
                             "--peer", "http://127.0.0.1:%d/" % peer_port],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stats(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/api/stats" % port, timeout=5) as r:
        return json.load(r)


def wait(cond, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def publish_all(pub, msgs):
    infos = [pub.publish(t, p, qos=1) for t, p in msgs]
    for i in infos:
        i.wait_for_publish(10)


def test_two_copies_share_the_load_and_a_killed_copy_loses_nothing(broker_factory, tmp_path):
    broker = broker_factory(users={"consumer": "read-pw", "fleet": "fleet-pw"}, acl=ACL)
    creds = str(tmp_path / "consumer.json")
    with open(creds, "w") as f:
        json.dump({"username": "consumer", "mqtt_password": "read-pw"}, f)
    pa, pb = free_port(), free_port()
    a = start_copy(broker, tmp_path, "a", pa, pb, creds)
    b = start_copy(broker, tmp_path, "b", pb, pa, creds)
    procs = [a, b]
    try:
        assert wait(lambda: stats(pa)["connects"] and stats(pb)["connects"]), "bridges did not connect"
        buses = [SynthBus("bus-%04d" % i, load_route(), phase_s=i * 97, seed=i) for i in range(12)]
        batches = {}
        msgs = []
        for t in range(T0, T0 + 900):
            for bus in buses:
                for topic, payload, qos, retain in bus.due(t):
                    if qos:  # batches; statuses are not records
                        msgs.append((topic, payload))
                        _, dev, recs, _ = telemetry.decode(topic, payload)
                        batches.setdefault(dev, set()).update(r["seq"] for r in recs)
        expected = {dev: len(s) for dev, s in batches.items()}
        total = sum(expected.values())
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet")
        pub.username_pw_set("fleet", "fleet-pw")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        half = len(msgs) // 2
        publish_all(pub, msgs[:half])
        assert wait(lambda: stats(pa)["journal_lines"] + stats(pb)["journal_lines"] >= half)
        sa, sb = stats(pa), stats(pb)
        assert sa["journal_lines"] > half // 4 and sb["journal_lines"] > half // 4, "the load is not shared"
        a.send_signal(signal.SIGKILL)  # no DISCONNECT, no clean-up: the session stays on the broker
        a.wait()
        publish_all(pub, msgs[half:])
        time.sleep(0.5)
        assert stats(pb)["records"] < total  # a's share waits in its session
        a = start_copy(broker, tmp_path, "a", pa, pb, creds)
        procs.append(a)
        for port in (pa, pb):
            assert wait(lambda: stats(port)["records"] == total), (port, stats(port)["records"], total, {d: (expected[d], stats(port)["per_device"].get(d)) for d in expected})
            s = stats(port)
            assert s["per_device"] == expected and s["invalid"] == 0
        pub.disconnect()
        pub.loop_stop()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
