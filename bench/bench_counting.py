"""Passenger counting accuracy on generated service days, and FSM cost.

Replays a day of ~200 stops and ~5,000 boardings (+ as many alightings)
through the fake ESP32 pins (soft IRQs, depth-8 drop queue), transit.doors
and transit.stops, on clean and noisy beam streams, each delivered on time
and through ESP32-like stalls (worst case: the main loop ignores busy()):
a socket wait on every publish, one callback serviced per 100 ms inside it,
and a TLS reconnect that services none; the stalls again with the PCNT
quadrature counter (machine.Encoder fake) as cross-check; and the stalls
deferred while doors.busy() as the main loop contract says. Prints, per case:
- correct: share of crossings counted correctly, per stop, door and
  direction (1 - sum|counted - true| / true crossings);
- total error of boardings and alightings over the day;
- the loss to stalls in percentage points against the on-time delivery.
Then the cost per crossing of the FSM under the MicroPython unix port.

Usage: .venv/bin/python bench/bench_counting.py [--seed N] [--stops N] [--boardings N]
Targets: >= 99.5 % correct on clean streams, <= 2 % total error on noisy
ones, <= 0.5 points lost to stalls.
"""

import os
import subprocess
import sys
import time as host_time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in ("host_tests/fakes", "host_tests", "firmware", "lib", "tools"):
    sys.path.insert(0, os.path.join(ROOT, p))

import fakeclock  # noqa: E402

fakeclock.install_cpython_time()
import time  # noqa: E402
import machine  # noqa: E402
import fakereset  # noqa: E402
import passenger_gen as gen  # noqa: E402
from transit.doors import Doors, pcnt_encoders  # noqa: E402
from transit.stops import StopVisits  # noqa: E402

STEP_MS = 20  # main loop period
PUBLISH_EVERY_MS = 5000  # a position publish (QoS 1) every 5 s ...
PUBLISH_WAIT_MS = 300  # ... waits this long for its PUBACK in a blocking socket call
TLS_EVERY_MS = 180000  # a TLS reconnect every 3 minutes ...
TLS_MS = 2000  # ... blocks callbacks completely for 2 s
PINS = ((25, 26, 27), (32, 33, 14))  # (beam_a, beam_b, switch) per door
# (label, stalls, defer while busy(), PCNT cross-check)
CASES = (("on-time", False, False, False), ("stalls", True, False, False),
         ("stalls+pcnt", True, False, True), ("deferred", True, True, False))


def replay(seed, stops, boardings, profile, stalls, defer=False, pcnt=False):
    """Run a service day; return per-case figures."""
    fakereset.reset()
    fakeclock.CLOCK.set_virtual(0, utc_s=1795768200)
    door_pins = [(machine.Pin(a, machine.Pin.IN, machine.Pin.PULL_UP),
                  machine.Pin(b, machine.Pin.IN, machine.Pin.PULL_UP),
                  machine.Pin(s, machine.Pin.IN, machine.Pin.PULL_UP), True) for a, b, s in PINS]
    doors = Doors(door_pins, encoders=pcnt_encoders(machine, door_pins) if pcnt else None)
    visits = StopVisits(doors, lambda: None)
    next_pub = PUBLISH_EVERY_MS * 1000
    next_tls = TLS_EVERY_MS * 1000
    truth = wrong = tin = tout = cin = cout = 0
    n_visits = 0
    per_stop = []
    clock = fakeclock.CLOCK
    for st in gen.service_day(seed, stops, boardings, profile, len(PINS)):
        if clock.now < st.t_open_us - 1000000:
            clock.advance_us(st.t_open_us - 1000000 - clock.now)
        events = []
        for d, edges in enumerate(st.doors):
            a, b, s = PINS[d]
            events += gen.to_pins(edges, a, b, True)
            events += [(st.t_open_us, s, 0), (st.t_close_us, s, 1)]
        machine.inject_timeline(events)
        before = [doors.counts(i) for i in range(len(PINS))]
        end = st.t_close_us + 5000000
        while clock.now < end:
            if defer and doors.busy():
                pass  # the contract: nothing blocking while a door counts
            elif stalls and clock.now >= next_pub:
                machine.stall(PUBLISH_WAIT_MS, 100)
                next_pub += PUBLISH_EVERY_MS * 1000
            elif stalls and clock.now >= next_tls:
                machine.stall(TLS_MS, 0)
                next_tls += TLS_EVERY_MS * 1000
            time.sleep_ms(STEP_MS)
            doors.step()
            visits.step()
            while visits.pop() is not None:
                n_visits += 1
        for i in range(len(PINS)):
            ci, co = doors.counts(i)
            ci -= before[i][0]
            co -= before[i][1]
            ti, to = st.true_in[i], st.true_out[i]
            truth += ti + to
            wrong += abs(ci - ti) + abs(co - to)
            per_stop.append((ci - ti, co - to))
            tin += ti
            tout += to
            cin += ci
            cout += co
        # Between stops: publishes and reconnects happen, but no edges arrive.
        while stalls and next_pub < clock.now:
            next_pub += PUBLISH_EVERY_MS * 1000
        while stalls and next_tls < clock.now:
            next_tls += TLS_EVERY_MS * 1000
    clock.advance_us(30000000)
    visits.step()
    while visits.pop() is not None:
        n_visits += 1
    h = doors.health()
    return {"correct": 100.0 * (truth - wrong) / truth, "err_in": 100.0 * (cin - tin) / tin,
            "err_out": 100.0 * (cout - tout) / tout, "true": (tin, tout), "counted": (cin, cout),
            "visits": n_visits, "dropped": machine.scheduler().dropped, "lost": sum(h["lost_edges"]),
            "unresolved": sum(h["unresolved"]), "overflows": h["irq_overflows"],
            "recovered": sum(h["recovered"]), "per_stop": per_stop}


def cost_under_unix_port(seed):
    """Microseconds per crossing for the FSM fed directly (no fakes)."""
    mp = os.path.join(ROOT, ".venv", "bin", "micropython")
    code = """
import sys
sys.path[:0] = [%r, %r]
import time, passenger_gen as gen
from beams import BeamPair
edges = []
n = 0
for st in gen.service_day(%d, 20, 500, gen.NOISY, 1):
    edges += st.doors[0]
    n += st.true_in[0] + st.true_out[0]
f = BeamPair()
f.start(0, 0, 0)
M = 0x3FFFFFFF
s = 0
t0 = time.ticks_us()
for t, beam, level in edges:
    s = (s & ~(1 << beam)) | (level << beam)
    f.edge(beam, s, t & M)
    f.poll(t & M, s & 1, s >> 1)
dt = time.ticks_diff(time.ticks_us(), t0)
print(n, len(edges), dt, f.ins + f.outs)
""" % (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools"), seed)
    out = subprocess.run([mp, "-X", "heapsize=4M", "-c", code], capture_output=True, text=True, check=True)
    n, n_edges, dt, counted = [int(x) for x in out.stdout.split()]
    return n, n_edges, dt, counted


def main(argv):
    seed, stops, boardings = 1, 200, 5000
    for i in range(1, len(argv) - 1, 2):
        if argv[i] == "--seed":
            seed = int(argv[i + 1])
        elif argv[i] == "--stops":
            stops = int(argv[i + 1])
        elif argv[i] == "--boardings":
            boardings = int(argv[i + 1])
    print("service day: seed %d, %d stops, ~%d boardings; loop %d ms; stalls: %d ms socket wait every %d s, "
          "%d ms TLS every %d s" % (seed, stops, boardings, STEP_MS, PUBLISH_WAIT_MS, PUBLISH_EVERY_MS // 1000,
                                   TLS_MS, TLS_EVERY_MS // 1000))
    print("%-6s %-13s %9s %8s %8s %12s %12s %6s %7s %5s %5s %6s %5s" % (
        "stream", "delivery", "correct%", "err_in%", "err_out%", "true in/out", "count in/out",
        "visits", "dropped", "lost", "recov", "unres", "s"))
    for name, prof in (("clean", gen.CLEAN), ("noisy", gen.NOISY)):
        base = None
        for label, stalls, defer, pcnt in CASES:
            t0 = host_time.time()
            r = replay(seed, stops, boardings, prof, stalls, defer, pcnt)
            dt = host_time.time() - t0
            print("%-6s %-13s %9.3f %+8.3f %+8.3f %12s %12s %6d %7d %5d %5d %6d %5.1f" % (
                name, label, r["correct"], r["err_in"], r["err_out"], "%d/%d" % r["true"], "%d/%d" % r["counted"],
                r["visits"], r["dropped"], r["lost"], r["recovered"], r["unresolved"], dt))
            if base is None:
                base = r
            else:
                print("%-6s   lost to stalls (%s): %.3f points" % (name, label, base["correct"] - r["correct"]))
    n, n_edges, dt, counted = cost_under_unix_port(seed)
    print("unix port: %d crossings, %d edges, %d us -> %.1f us per crossing, %.2f us per edge (counted %d)"
          % (n, n_edges, dt, dt / n, dt / n_edges, counted))


if __name__ == "__main__":
    main(sys.argv)
