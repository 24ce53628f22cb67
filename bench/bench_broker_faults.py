#!/usr/bin/env python3
"""What the simulated bus does while its broker is away: stopped, killed
(SIGKILL, persistent broker) or frozen (SIGSTOP: TCP still accepted, no
CONNACK or PUBACK ever). Real firmware under the unix port, a real Mosquitto.

For each fault, prints the freeze window in the bus's own time, records the
bus made inside it (all kinds, and positions), the longest gap between
positions in it, the longest single step of the firmware loop (a blocking
connect attempt shows here; it should stay near uplink.connect_ms), connect
attempts and timeouts, the end check (broker's view against the generated
passengers) and the wall time.

    .venv/bin/python bench/bench_broker_faults.py [--laps 2] [--connect-ms 10000] [--kinds stop,kill,freeze]
"""

import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import sim  # noqa: E402
from localbroker import Broker  # noqa: E402
from simrun import finish  # noqa: E402


def one(kind, a):
    device = "bus-fault-" + kind
    args = sim.parse(["--accel", "0", "--no-table", "--device", device, "--laps", str(a.laps),
                      "--outage-after", str(a.after), "--outage-stops", str(a.stops), "--outage-kind", kind,
                      "--connect-ms", str(a.connect_ms), "--gps-loss-at", "-1", "--timeout", str(a.timeout)])
    folder = os.path.join(ROOT, "build", "bench_faults", kind)
    shutil.rmtree(folder, ignore_errors=True)
    broker = Broker(folder, persistence=True).start()
    run = sim.Run(args, broker, out=None)
    rc, wall, t, v = finish(run, broker, device)
    if run.reset is not None:
        return ("%-6s the board RESETS (cause %d, 3 = watchdog) at second %d: one step took %d ms, watchdog_ms %d "
                "(uplink: %s); wall %.0f s" % (kind, run.reset["cause"], run.reset["t"], run.reset["step_ms"],
                                               run.reset["watchdog_ms"], run.reset["err"], wall))
    if not t or v is None or len(run.stops) < a.after + a.stops:
        return "%-6s did not finish (timed out: %s): %s" % (kind, run.timed_out, " | ".join(run.lines[-4:]))
    lo, hi = run.stops[a.after - 1][3], run.stops[a.after + a.stops - 1][3]
    inside = [(k, r["ts"]) for k, r in v.stream.records.values() if lo <= r["ts"] < hi]
    pos = sorted(ts for k, ts in inside if k == "pos")
    gap = max(b - x for x, b in zip([lo] + pos, pos + [hi]))
    c = t.get("connect", {})
    problems = run.check()
    return ("%-6s window %4d s: %3d records (%3d positions, %d stop visits), longest position gap %3d s, "
            "longest step %5d ms, connect attempts %d timeouts %d, end check %s, firmware exit %d, wall %.0f s"
            % (kind, hi - lo, len(inside), len(pos), sum(1 for k, _ in inside if k == "stop"), gap,
               t.get("longest_step_ms", -1), c.get("attempts", 0), c.get("fail_timeout", 0),
               "passed" if not problems else "FAILED: " + "; ".join(problems), rc, wall))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--laps", type=int, default=1)
    ap.add_argument("--after", type=int, default=3, help="the broker goes away after this stop")
    ap.add_argument("--stops", type=int, default=3, help="and comes back this many stops later")
    ap.add_argument("--connect-ms", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=900, help="real seconds before a run counts as hung")
    ap.add_argument("--kinds", default="stop,kill,freeze")
    a = ap.parse_args()
    print("broker faults, line 1 x %d, broker away from stop %d to stop %d, connect_ms %d"
          % (a.laps, a.after, a.after + a.stops, a.connect_ms))
    for kind in a.kinds.split(","):
        print(one(kind, a), flush=True)


if __name__ == "__main__":
    main()
