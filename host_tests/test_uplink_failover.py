"""A board that loses its broker node reconnects to the next one.

A cluster behind no load balancer (or one node of it dying) must not strand
the fleet: device.json's broker.host lists the nodes ("a,b:port"), the uplink moves to the next
one after each failed or lost connection, and every record still arrives
(over the two brokers together), in order. Runs the real uplink under the
MicroPython unix port against two real Mosquittos.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "uplink_scripts"))

from harness import paths  # noqa: E402,F401
from scenario import Run, device, rebuild  # noqa: E402

FAST = {"batch_s": 0, "ack_ms": 500, "connect_ms": 500, "backoff_min_ms": 100, "backoff_max_ms": 300}


def test_broker_host_lists_cluster_nodes_in_order(mp):
    # transit.uplink needs MicroPython's sockets: list the hosts under the unix port.
    res = mp.run(code="""
from transit import config
from transit.uplink import broker_hosts
for host in ("10.0.0.1", "10.0.0.1,10.0.0.2,mq3.example:8884", "10.0.0.1,mq:x,,:5,mq4", "mq1:8884,mq2"):
    doc = {"device_id": "bus-001", "role": "bus", "board": "sim", "broker": {"host": host, "port": 1883}}
    print(broker_hosts(config.Config(config.validate(doc, {}), {})))
""", heap="256K")
    assert res.stdout.split("\n")[:4] == [
        "[('10.0.0.1', 1883)]",
        "[('10.0.0.1', 1883), ('10.0.0.2', 1883), ('mq3.example', 8884)]",
        "[('10.0.0.1', 1883), ('mq4', 1883)]",  # malformed entries skipped (counted: uplink bad_hosts)
        "[('mq2', 1883)]"]  # the first node takes broker.port


def test_board_moves_to_the_next_broker_when_its_node_dies(mp, broker_factory, subscriber_factory, tmp_path):
    a, b = broker_factory(), broker_factory()
    sub_a = subscriber_factory(a, ["phs/#"])
    sub_b = subscriber_factory(b, ["phs/#"])
    dev = device(a)
    dev["broker"]["host"] = "127.0.0.1,127.0.0.1:%d" % b.port
    run = Run(mp, tmp_path, dev, rate_ms=10, total=300, settings=FAST, duration_ms=30000)
    assert run.acked_at_least(60)
    a.kill()  # the node dies: no DISCONNECT, the port refuses from now on
    res = run.result()
    time.sleep(0.3)
    assert res["depth"] == 0 and res["stats"]["reconnects"] >= 1
    assert sub_b.messages, "nothing reached the second broker"
    st, _ = rebuild(sub_a.messages + sub_b.messages)
    assert st.gaps(1, res["last_seq"]) == []
