#!/usr/bin/env python3
"""Where the bridge itself saturates: its CPU cost per message and per feed build, without a network.

The fleet runs (bench_city.py) share two cores between the load generator,
Mosquitto, the bridge and the poller, so past a few thousand buses they
measure the machine, not the bridge. This takes the bridge alone: messages
from N synthetic buses (the firmware's encoder, default cadence) fed
straight into the fleet state (decode, JSON Schema validation,
de-duplication), then the GTFS-Realtime feed built for N vehicles. One
Python process uses at most one core, so 1 / (CPU s per message) is the
most messages per second a copy can take, and buses = that / the per-bus
rate measured by bench_city.py.

    .venv/bin/python bench/bench_city_bridge.py [--buses 1000] [--minutes 20]
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

from city import feed as feedmod  # noqa: E402
from city.fakefleet import SynthBus, load_route  # noqa: E402
from city.state import FleetState  # noqa: E402
from city.statics import Static  # noqa: E402

T0 = 1764550000


def messages(buses, minutes):
    route = load_route()
    fleet = [SynthBus("bus-%05d" % i, route, phase_s=i * 37 % 3000, seed=i) for i in range(buses)]
    out = []
    for t in range(T0, T0 + int(minutes * 60)):
        for b in fleet:
            for topic, payload, qos, retain in b.due(t):
                out.append((topic, payload))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buses", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=20)
    a = ap.parse_args(argv)
    msgs = messages(a.buses, a.minutes)
    per_bus_s = len(msgs) / (a.buses * a.minutes * 60)
    print("bench_city_bridge: %d messages from %d buses over %.0f min (%.4f msgs/s per bus, %.0f bytes avg)"
          % (len(msgs), a.buses, a.minutes, per_bus_s, sum(len(p) for _, p in msgs) / len(msgs)))
    static = Static()
    for validate in (True, False):
        state = FleetState(static, validate=validate)
        c0 = time.process_time()
        for topic, payload in msgs:
            state.feed(topic, payload)
        cpu = time.process_time() - c0
        rate = len(msgs) / cpu
        print("bench_city_bridge: validate=%s: %.3f ms CPU per message -> one core takes %.0f msgs/s "
              "= about %.0f buses at the firmware's defaults (invalid %d)"
              % (validate, cpu / len(msgs) * 1000, rate, rate / per_bus_s, state.stats["invalid"]))
    for n in (1000, 5000, 10000, 20000):
        state = FleetState(static, validate=False)
        for topic, payload in messages(n, 1.5):
            state.feed(topic, payload)
        f = feedmod.Feed(state)
        times = []
        for _ in range(5):
            state.version += 1
            c0 = time.process_time()
            pb = f.protobuf()
            times.append(time.process_time() - c0)
        print("bench_city_bridge: feed of %d vehicles: %.1f ms CPU per build, %d bytes"
              % (len(state.vehicles), min(times) * 1000, len(pb)))


if __name__ == "__main__":
    main()
