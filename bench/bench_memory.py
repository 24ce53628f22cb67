#!/usr/bin/env python3
"""Heap figures of the bus role on the 32-bit frozen build (docs/memory.md).

The full soak host_tests/test_memory.py shortens: 4 simulated hours of the
busy line-1 route with a 4-stop broker outage, after a 6-hour offline
backlog, with the firmware given FIRMWARE bytes of heap besides the fakes and
the simulator and every free hole capped at 4 KiB after start-up. Prints the
firmware's live heap at each hour, its sampled peak, and whether it ran;
with --find it also looks for the smallest heap (in 2 KiB steps) the run
completes in. With --ota the bus also takes an over-the-air update while it
drives (tools/simota.py: a signed release of this tree, the `ota` command
over the broker once the backlog has drained; at=idle, so it stages and
waits for the bus to park), and the figures are those of both together.

    .venv/bin/python bench/bench_memory.py [--hours 4] [--heap 65536] [--find] [--ota [--rate B/s]]
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

import mp32  # noqa: E402
import sim  # noqa: E402
import simota  # noqa: E402
from localbroker import Broker  # noqa: E402


def soak(binary, hours, heap, cap, tag, ota=False, rate=32768):
    # (a device folder of its own per process: build/sim/<device> is wiped at start)
    args = sim.parse(["--accel", "0", "--no-table", "--device", "bus-bench-%s-%d" % (tag, os.getpid()), "--laps", "12",
                      "--hours", str(hours), "--busy", "2", "--outage-after", "12", "--outage-stops", "4",
                      "--gps-loss-at", "3000", "--seed", "11", "--backlog-h", "6", "--mp32", binary,
                      "--heap", "+%d" % heap, "--cap", str(cap)])
    broker = Broker(os.path.join(os.path.dirname(HERE), "build", "bench_memory_broker_%d" % os.getpid()),
                    persistence=True).start()
    try:
        t0 = time.time()
        if ota:
            r, rc, path = simota.run(args, broker, rate=rate)
        else:
            r = sim.Run(args, broker, out=None)
            rc = r.run()
        took = time.time() - t0
    finally:
        broker.stop()
    ok = rc == 0 and r.truth is not None and not r.check()
    if ota:
        r.ota_steps = simota.steps(r)
        r.staged = simota.staged_problems(simota.board_folder(args), path)
        ok = ok and bool(r.ota_steps) and r.ota_steps[-1][0] == "ready-aside" and r.staged[0] == []
    other = r.mem.get("sim", [0])[0]
    return ok, r, other, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--heap", type=int, default=65536, help="bytes of heap the firmware gets (the goal: 65536)")
    ap.add_argument("--cap", type=int, default=4096, help="largest free hole after start-up (0: no cap)")
    ap.add_argument("--find", action="store_true", help="also find the smallest heap that completes")
    ap.add_argument("--ota", action="store_true", help="the bus takes an over-the-air update while it drives")
    ap.add_argument("--rate", type=int, default=32768,
                    help="with --ota: the release server's bytes per real second (0: as fast as it goes)")
    a = ap.parse_args()
    t0 = time.time()
    binary = mp32.ensure(say=lambda s: print(s))
    print("mp32 binary: %s (%.1f s to find or build)" % (binary, time.time() - t0))
    ok, r, other, took = soak(binary, a.hours, a.heap, a.cap, "main", a.ota, a.rate)
    print("bus role%s, %.1f h busy route, 6 h backlog, outage, cap %d: firmware heap %d: %s (%.0f s)"
          % (" and an update" if a.ota else "", a.hours, a.cap, a.heap, "ran" if ok else "FAILED", took))
    if a.ota:
        print("  update steps (step, simulated second): %s; staged files: %d, problems: %s"
              % (r.ota_steps, r.staged[1], r.staged[0] or "none"))
        if r.truth:
            print("  firmware live peak while updating: %d bytes" % (r.truth["ota_peak"] - other))
    print("  simulator and fakes (not the firmware's): %d bytes" % other)
    if r.truth:
        print("  firmware live peak (sampled every 50 loops): %d bytes" % (r.truth["peak_heap"] - other))
    print("  firmware live at each hour:", [h - other for h in r.hourly])
    if "cap" in r.mem:
        print("  heap caps placed: %s, holes above the cap found: %s" % (r.mem["cap"][2], r.mem["cap"][4]))
    if not ok:
        print("  end check:", r.check() if r.truth is not None else "no result line")
        print("\n".join(l for l in r.lines if "Error" in l or l.startswith("  File"))[-1500:])
    if a.find:
        heap = a.heap
        while heap > 40960:
            heap -= 2048
            ok, r, other, took = soak(binary, min(a.hours, 0.5), heap, a.cap, "find", a.ota, a.rate)
            print("  firmware heap %d: %s" % (heap, "ran" if ok else "failed"))
            if not ok:
                print("smallest heap that completed the first half hour: %d bytes" % (heap + 2048))
                break


if __name__ == "__main__":
    main()
