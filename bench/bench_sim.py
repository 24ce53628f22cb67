#!/usr/bin/env python3
"""End-to-end figures from the simulated bus (real firmware, unix port, Mosquitto).

Drives Phitsanulok line 1 back and forth for the given hours as fast as the
host allows, with a broker outage, and prints: simulation speed, messages
and bytes on the wire per record kind (MQTT payload only, TCP/TLS
excluded), bytes per position, duplicates, and the firmware's live heap.

    .venv/bin/python bench/bench_sim.py [--hours 2]
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

import sim  # noqa: E402
from localbroker import Broker  # noqa: E402
from simrun import finish  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--busy", type=int, default=1)
    ap.add_argument("--batch-s", type=int, default=60, help="uplink.batch_s (the firmware's default is 60)")
    a = ap.parse_args()
    laps = int(a.hours * 3600 // 1400) + 2  # one way along line 1 takes about 1,400 s
    args = sim.parse(["--accel", "0", "--no-table", "--device", "bus-bench", "--laps", str(laps), "--hours", str(a.hours),
                      "--busy", str(a.busy), "--batch-s", str(a.batch_s), "--heap", "+262144", "--outage-after", "6", "--outage-stops", "3"])
    broker = Broker(os.path.join(os.path.dirname(HERE), "build", "bench_sim_broker"), persistence=True).start()
    run = sim.Run(args, broker, out=None)
    wire = {}
    feed = run.fleet.feed

    def counting_feed(topic, payload):
        kind = topic.rsplit("/", 1)[-1]
        n, b = wire.get(kind, (0, 0))
        wire[kind] = (n + 1, b + len(payload))
        feed(topic, payload)
    run.fleet.feed = counting_feed
    rc, wall, t, v = finish(run, broker, "bus-bench")
    if v is None or not t:
        print("bench_sim: the simulated bus did not finish:\n" + "\n".join(run.lines[-20:]))
        return 1
    print("simulated bus, %.1f h of driving in %.0f s wall: %.0fx real time (firmware exit %d)"
          % (t.get("seconds", 0) / 3600, wall, t.get("seconds", 0) / max(wall, 1e-9), rc))
    recs = {}
    for k, _ in v.stream.records.values():
        recs[k] = recs.get(k, 0) + 1
    for kind in sorted(wire):
        n, b = wire[kind]
        per = " (%.1f bytes per record)" % (b / recs[kind]) if recs.get(kind) else ""
        print("  %-7s %5d messages %8d bytes %5d records%s" % (kind, n, b, recs.get(kind, 0), per))
    print("  duplicates removed by sequence number: %d" % v.stream.duplicates)
    print("  stop visits %d, boardings %d (truth %d), alightings %d (truth %d)"
          % (v.visits, v.boardings, sum(s[1] for s in t.get("stops", [])), v.alightings,
             sum(s[2] for s in t.get("stops", []))))
    if run.run_baseline:
        hourly = [h - run.run_baseline for h in run.hourly]
        print("  firmware live data: peak %d bytes, at each hour %s (unix port, 64-bit)"
              % (t.get("peak_heap", 0) - run.run_baseline, hourly))
    qs = t.get("queue") or {}
    print("  queue: %d appended, %d commits, %d bytes written to flash, %d records acked before any commit"
          % (qs.get("appended", 0), qs.get("commits", 0), qs.get("bytes_written", 0), qs.get("acked_in_ram", 0)))
    problems = run.check()
    print("  checks: %s" % ("all delivered, counts within tolerance" if not problems else "; ".join(problems)))


if __name__ == "__main__":
    sys.exit(main())
