"""Passenger counting accuracy on generated service days through ESP32-like stalls.

Replays a day of ~200 stops and ~5,000 boardings (+ as many alightings)
through the fake ESP32 pins (soft IRQs, depth-8 drop queue), transit.doors
and transit.stops, on clean and noisy beam streams, each delivered on time
and through blocking calls made whatever the doors do (the worst case: a
call that began while every door was closed still runs when the bus pulls
in): a publish waiting 0.1-1 s for its PUBACK every 5 s, and a reconnect
with its TLS handshake of 2-20 s every 30-120 s; inside both, one pending
callback runs per 100 ms tick (an ESP32 socket wait). Each stalled day runs
without and with the PCNT quadrature counter (machine.Encoder fake).
Prints, per case:
- matched: share of crossings counted correctly, per stop, door and
  direction (1 - sum|counted - true| / true crossings);
- total error of boardings and alightings over the day;
- the loss to stalls in points against the same day delivered on time;
- visits made (one per stop expected), visits flagged Q_LOST / Q_LATE;
- callbacks dropped by the 8-deep queue, ring overflows and the ring's
  peak fill (what sizes `ring_size`), edges lost, crossings recovered by
  PCNT and given up (unresolved), late edges.
Then the cost per crossing and per idle loop step under the unix port.

Usage: .venv/bin/python bench/bench_counting.py [--seed N] [--stops N] [--boardings N]
       [--only STREAM:DELIVERY,...] [--oracle]
--only runs some cases (e.g. noisy:stalls) and skips the cost figures;
--oracle adds, to each case without PCNT, the bound of bench/counting_oracle.py:
the share of crossings what the board saw (callback snapshots, loop polls)
can show at all.
Targets (issue 18): clean >= 99.9 % matched; noisy within 0.5 points of
the same day without stalls; total error within +-1 %; with and without PCNT.
"""

import os
import subprocess
import sys
import time as host_time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in ("host_tests/fakes", "host_tests", "firmware", "lib", "tools", "bench"):
    sys.path.insert(0, os.path.join(ROOT, p))

import fakeclock  # noqa: E402

fakeclock.install_cpython_time()
import time  # noqa: E402
import machine  # noqa: E402
import fakereset  # noqa: E402
import passenger_gen as gen  # noqa: E402
from transit.doors import Doors, pcnt_encoders  # noqa: E402
from transit.stops import StopVisits, Q_LOST, Q_LATE  # noqa: E402
from counting_oracle import Oracle  # noqa: E402

STEP_MS = 20  # main loop period
PUBLISH_EVERY_MS = 5000  # a position publish (QoS 1) every 5 s ...
PUBLISH_WAIT_MS = (100, 1000)  # ... waits this long for its PUBACK in a blocking socket call
RECONNECT_EVERY_MS = (30000, 120000)  # a reconnect this often ...
RECONNECT_MS = (2000, 20000)  # ... blocks this long (TLS handshake)
SERVICE_MS = 100  # inside any blocking call: one pending callback per 100 ms tick
PINS = ((25, 26, 27), (32, 33, 14))  # (beam_a, beam_b, switch) per door
# (label, stalls, PCNT cross-check)
CASES = (("on-time", False, False), ("stalls", True, False), ("stalls+pcnt", True, True))


class Stalls:
    """When the main loop sits in a blocking call, and for how long (seeded)."""

    def __init__(self, seed):
        self.rng = gen.Rng(seed + 7919)
        self.next_pub = PUBLISH_EVERY_MS * 1000
        self.next_rec = self.rng.between(*RECONNECT_EVERY_MS) * 1000
        self.longest_ms = 0

    def due(self, now):
        """Milliseconds of blocking call starting now, or 0."""
        if now >= self.next_rec:
            self.next_rec = now + self.rng.between(*RECONNECT_EVERY_MS) * 1000
            ms = self.rng.between(*RECONNECT_MS)
        elif now >= self.next_pub:
            self.next_pub = now + PUBLISH_EVERY_MS * 1000
            ms = self.rng.between(*PUBLISH_WAIT_MS)
        else:
            return 0
        self.longest_ms = max(self.longest_ms, ms)
        return ms

    def skip_to(self, now):
        """Between stops the loop is idle: calls due meanwhile are over."""
        while self.next_pub < now:
            self.next_pub += PUBLISH_EVERY_MS * 1000
        if self.next_rec < now:
            self.next_rec = now + self.rng.between(0, RECONNECT_EVERY_MS[1]) * 1000


def replay(seed, stops, boardings, profile, stalls, pcnt=False, oracle=False):
    """Run a service day; return per-case figures (with oracle: also the
    bound of bench/counting_oracle.py on what the board saw)."""
    fakereset.reset()
    fakeclock.CLOCK.set_virtual(0, utc_s=1795768200)
    door_pins = [(machine.Pin(a, machine.Pin.IN, machine.Pin.PULL_UP),
                  machine.Pin(b, machine.Pin.IN, machine.Pin.PULL_UP),
                  machine.Pin(s, machine.Pin.IN, machine.Pin.PULL_UP), True) for a, b, s in PINS]
    doors = Doors(door_pins, encoders=pcnt_encoders(machine, door_pins) if pcnt else None)
    visits = StopVisits(doors, lambda: None)
    orc = Oracle(doors, fakeclock.CLOCK) if oracle else None
    sched = Stalls(seed)
    truth = wrong = tin = tout = cin = cout = 0
    flags = {"visits": 0, "lost": 0, "late": 0}
    clock = fakeclock.CLOCK

    def step():
        time.sleep_ms(STEP_MS)
        doors.step()
        visits.step()
        v = visits.pop()
        while v is not None:
            flags["visits"] += 1
            flags["lost"] += 1 if v.quality & Q_LOST else 0
            flags["late"] += 1 if v.quality & Q_LATE else 0
            v = visits.pop()
    for st in gen.service_day(seed, stops, boardings, profile, len(PINS), spans=oracle):
        start = st.t_open_us - 1000000
        if clock.now < start:
            clock.advance_us(start - clock.now)
        sched.skip_to(start)
        events = []
        for d, edges in enumerate(st.doors):
            a, b, s = PINS[d]
            events += gen.to_pins(edges, a, b, True)
            events += [(st.t_open_us, s, 0), (st.t_close_us, s, 1)]
        machine.inject_timeline(events)
        before = [doors.counts(i) for i in range(len(PINS))]
        end = st.t_close_us + 5000000
        while clock.now < end:
            ms = sched.due(clock.now) if stalls else 0
            if ms:
                machine.stall(ms, SERVICE_MS)
            step()
        if orc is not None:
            orc.judge(st.spans)
        for i in range(len(PINS)):
            ci, co = doors.counts(i)
            ci -= before[i][0]
            co -= before[i][1]
            ti, to = st.true_in[i], st.true_out[i]
            truth += ti + to
            wrong += abs(ci - ti) + abs(co - to)
            tin += ti
            tout += to
            cin += ci
            cout += co
    for _ in range(1500):  # 30 s: the last visit closes
        step()
    h = doors.health()
    return {"correct": 100.0 * (truth - wrong) / truth, "err_in": 100.0 * (cin - tin) / tin,
            "err_out": 100.0 * (cout - tout) / tout, "true": (tin, tout), "counted": (cin, cout),
            "visits": flags["visits"], "q_lost": flags["lost"], "q_late": flags["late"],
            "dropped": machine.scheduler().dropped, "lost": sum(h["lost_edges"]),
            "unresolved": sum(h["unresolved"]), "overflows": h["irq_overflows"], "peak": h["ring_peak"],
            "recovered": sum(h["recovered"]), "late": sum(h["late"]), "longest_ms": sched.longest_ms,
            "oracle": (100.0 * orc.strict / orc.true, 100.0 * orc.generous / orc.true) if orc else None}


def cost_under_unix_port(seed):
    """Microseconds per crossing (the noisy stream through ring, drain and
    FSM, on-time) and per idle loop step (doors.step + visits.step, two
    doors, nothing happening), under the MicroPython unix port."""
    mp = os.path.join(ROOT, ".venv", "bin", "micropython")
    code = """
import sys
sys.path[:0] = [%r, %r, %r, %r]
import time, utime, machine, passenger_gen as gen
from fakeclock import CLOCK
from transit.doors import Doors
from transit.stops import StopVisits
CLOCK.set_virtual(0)
P = machine.Pin
dp = [(P(25, P.IN, P.PULL_UP), P(26, P.IN, P.PULL_UP), P(27, P.IN, P.PULL_UP), True),
      (P(32, P.IN, P.PULL_UP), P(33, P.IN, P.PULL_UP), P(14, P.IN, P.PULL_UP), True)]
doors = Doors(dp, None, 0)
visits = StopVisits(doors, lambda: None)
edges = []
n = 0
for st in gen.service_day(%d, 20, 500, gen.NOISY, 1):
    edges += st.doors[0]
    n += st.true_in[0] + st.true_out[0]
push = doors.bank.ring.push
M = 0x3FFFFFFF
s = 0
t0 = utime.ticks_us()
for t, beam, level in edges:
    s = (s & ~(1 << beam)) | (level << beam)
    push(beam, s, t & M)   # what the IRQ handler stores
    doors.bank.service(t & M)   # drained on time, as a 20 ms loop does
doors.bank.service((edges[-1][0] + 100000) & M)
dt = utime.ticks_diff(utime.ticks_us(), t0)
f = doors.bank.fsms[0]
t = 0
t1 = utime.ticks_us()
for i in range(5000):
    t += 20000
    doors.step(t)
    visits.step(t // 1000)
di = utime.ticks_diff(utime.ticks_us(), t1)
print(n, len(edges), dt, f.ins + f.outs, di)
""" % (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tools"), os.path.join(ROOT, "firmware"),
       os.path.join(ROOT, "host_tests", "fakes"), seed)
    out = subprocess.run([mp, "-X", "heapsize=4M", "-c", code], capture_output=True, text=True, check=True)
    n, n_edges, dt, counted, idle_us = [int(x) for x in out.stdout.split()]
    return n, n_edges, dt, counted, idle_us / 5000.0


def main(argv):
    seed, stops, boardings, only, oracle = 1, 200, 5000, None, "--oracle" in argv
    args = [a for a in argv[1:] if a != "--oracle"]
    for i in range(0, len(args) - 1, 2):
        if args[i] == "--seed":
            seed = int(args[i + 1])
        elif args[i] == "--stops":
            stops = int(args[i + 1])
        elif args[i] == "--boardings":
            boardings = int(args[i + 1])
        elif args[i] == "--only":
            only = args[i + 1].split(",")  # e.g. noisy:on-time,noisy:stalls
    print("service day: seed %d, %d stops, ~%d boardings; loop %d ms; blocking calls: publish %d-%d ms every %d s, "
          "reconnect %d-%d s every %d-%d s; one callback per %d ms inside them"
          % (seed, stops, boardings, STEP_MS, PUBLISH_WAIT_MS[0], PUBLISH_WAIT_MS[1], PUBLISH_EVERY_MS // 1000,
             RECONNECT_MS[0] // 1000, RECONNECT_MS[1] // 1000, RECONNECT_EVERY_MS[0] // 1000,
             RECONNECT_EVERY_MS[1] // 1000, SERVICE_MS))
    print("%-6s %-12s %8s %7s %7s %6s %11s %11s %6s %6s %6s %7s %5s %5s %5s %5s %6s %5s" % (
        "stream", "delivery", "matched%", "err_in%", "errout%", "loss", "true in/out", "count in/out",
        "visits", "Qlost", "Qlate", "dropped", "ovfl", "peak", "lost", "recov", "unres", "s"))
    for name, prof in (("clean", gen.CLEAN), ("noisy", gen.NOISY)):
        base = None
        for label, stalls, pcnt in CASES:
            if only and "%s:%s" % (name, label) not in only:
                continue
            t0 = host_time.time()
            r = replay(seed, stops, boardings, prof, stalls, pcnt, oracle and not pcnt)
            dt = host_time.time() - t0
            if base is None:
                base = r
            print("%-6s %-12s %8.3f %+7.3f %+7.3f %6.3f %11s %11s %6d %6d %6d %7d %5d %5d %5d %5d %6d %5.1f" % (
                name, label, r["correct"], r["err_in"], r["err_out"], base["correct"] - r["correct"],
                "%d/%d" % r["true"], "%d/%d" % r["counted"], r["visits"], r["q_lost"], r["q_late"],
                r["dropped"], r["overflows"], r["peak"], r["lost"], r["recovered"], r["unresolved"], dt))
            if r["oracle"]:
                print("%-6s %-12s oracle on what the board saw: strict %.3f %%, generous %.3f %% of crossings"
                      % (name, label, r["oracle"][0], r["oracle"][1]))
    if only:
        return
    n, n_edges, dt, counted, idle = cost_under_unix_port(seed)
    print("unix port: %d crossings, %d edges, %d us -> %.1f us per crossing, %.2f us per edge (counted %d); "
          "idle loop step (2 doors + visits) %.1f us" % (n, n_edges, dt, dt / n, dt / n_edges, counted, idle))


if __name__ == "__main__":
    main(sys.argv)
