"""The load generator against real Mosquittos: its buses publish, and move to the next node when theirs dies.

(The 1,000-bus figures come from bench/bench_city.py; this only proves the
tool counts right, in seconds.)
"""

import json
import os
import subprocess
import sys
import time

from city.state import FleetState
from city.statics import Static
from harness import paths

LOADGEN = os.path.join(paths.TOOLS, "city", "loadgen.py")


def test_buses_move_to_the_other_node_and_every_record_is_acknowledged(broker_factory, subscriber_factory, tmp_path):
    a, b = broker_factory(), broker_factory()
    subs = [subscriber_factory(a, ["phs/#"]), subscriber_factory(b, ["phs/#"])]
    out = str(tmp_path / "gen.json")
    gen = subprocess.Popen([sys.executable, LOADGEN, "--hosts", "127.0.0.1:%d,127.0.0.1:%d" % (a.port, b.port),
                            "--buses", "30", "--seconds", "8", "--batch-s", "2", "--out", out],
                           stdout=subprocess.PIPE, text=True)
    assert "30 buses connected" in gen.stdout.readline()
    time.sleep(3)
    a.kill()
    gen.wait(60)
    with open(out) as f:
        res = json.load(f)
    assert res["moves"]["reconnects"] == 15 and res["unacked"] == 0
    time.sleep(0.3)
    state = FleetState(Static())  # decodes and validates every message with the project's schema
    for s in subs:
        for topic, payload, qos, retain in s.messages:
            state.feed(topic, payload)
    assert state.stats["invalid"] == 0
    per_device = {d: v.records for d, v in state.vehicles.items() if v.records}
    assert per_device == res["acked"] and sum(per_device.values()) >= 30
    assert len(res["pubtimes"]) >= 30
