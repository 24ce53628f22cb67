"""The simulated depot: the real depot firmware on the unix port, for memory soaks.

Runs under MicroPython (frozen into the 32-bit build, tools/mp32.py; started
by host_tests/test_memory.py) in a folder laid out like a depot board's
filesystem (device.json, secrets.json, boards/sim_ble.json). In virtual
time, people walk through the two gates every `burst_s` seconds and buses
come and go in BLE range, while the firmware counts, keeps its yard roster
and publishes. Progress goes to stdout as "SIM " lines; the test stops and
starts the broker on "SIM hour" lines for an outage.

    micropython -m simdepot scenario.json
scenario: {"seed": n, "hours": h, "burst_s": s, "start_unix": s,
           "mem": {"cap": bytes, "startup_s": s} (accounting as in simbus),
           "backlog_s": s (instead: record that long offline, then stop)}
"""

import json
import sys

import bluetooth
import machine
import network
import passenger_gen as pg
from fakeclock import CLOCK

SSID = "depot-wifi"
KEY = "k"
GATES = ((25, 26), (32, 33))
BUSES = 12  # buses that come and go in BLE range
START_UNIX = 1795766400


def say(*parts):
    print("SIM", " ".join(str(p) for p in parts))


def advertisers(k):
    """Buses in range at the k-th burst: a moving window over the fleet, and a phone."""
    out = [(bytes([0x20, i, 0, 0, 0, 1]), bluetooth.adv_name("PHS-bus-%04d" % (100 + i)), -60 - i)
           for i in range(BUSES) if (i + k) % 3]
    out.append((b"\x02" * 6, bluetooth.adv_name("a phone"), -40))
    return out


def burst(rng, t0_us):
    """People through both gates from t0_us: (truth in, truth out)."""
    events = []
    tin = tout = 0
    for a, b in GATES:
        people = [pg.random_person(rng, pg.IN, pg.CLEAN) for _ in range(rng.between(0, 4))]
        people += [pg.random_person(rng, pg.OUT, pg.CLEAN) for _ in range(rng.between(0, 3))]
        edges, i, o, end = pg.door_edges(people, t0_us, rng, pg.CLEAN)
        events += pg.to_pins(edges, a, b, True)
        tin += i
        tout += o
    machine.inject_timeline(events)
    return tin, tout


def main(path):
    import gc
    with open(path) as f:
        sc = json.load(f)
    start = sc.get("start_unix", START_UNIX) - sc.get("backlog_s", 0)
    CLOCK.set_virtual(0, utc_s=start)
    network.set_aps([] if sc.get("backlog_s") else [{"ssid": SSID, "key": KEY}])
    bluetooth.set_advertisers(advertisers(0))
    rng = pg.Rng(sc.get("seed", 3))
    mem = sc.get("mem")
    lattice = None
    if mem is not None:
        if mem.get("cap"):
            import heapcap
            lattice = heapcap.Lattice(mem["cap"], check=not sc.get("measure"))
        gc.collect()
        say("mem sim", gc.mem_alloc())  # fakes and simulator, before any firmware module
        say("mem plan", 0)
        if sc.get("measure"):
            say("baseline", gc.mem_alloc())
            return
    import transit.startup
    from transit import app as appmod

    def run(cfg, board, state):
        app = appmod.build(cfg, board, state, wlan=board.wlan())
        app.boot_event()
        limit_us = int((sc.get("backlog_s") or sc.get("hours", 1) * 3600) * 1000000)
        burst_us = sc.get("burst_s", 120) * 1000000
        t_end = CLOCK.now_us() + limit_us
        next_burst = CLOCK.now_us() + 2000000
        next_hour = 3600
        t0 = CLOCK.now_us()
        loops = bursts = tin = tout = peak = 0
        say("start", cfg["device_id"])
        while CLOCK.now_us() < t_end:
            app.step()
            CLOCK.sleep_ms(appmod.LOOP_MS)
            loops += 1
            if CLOCK.now_us() >= next_burst:
                i, o = burst(rng, CLOCK.now_us() + 500000)
                tin += i
                tout += o
                bursts += 1
                bluetooth.set_advertisers(advertisers(bursts))
                next_burst += burst_us
            if loops % 50 == 0:
                gc.collect()
                used = gc.mem_alloc()
                if lattice is not None:
                    used -= lattice.pinned_bytes()
                    if lattice.pins:
                        lattice.probe()
                    if CLOCK.now_us() - t0 >= mem.get("startup_s", 60) * 1000000:
                        lattice.pin()
                if used > peak:
                    peak = used
                if (CLOCK.now_us() - t0) // 1000000 >= next_hour:
                    say("hour", next_hour // 3600, used)
                    next_hour += 3600
        if sc.get("backlog_s"):
            app.queue.commit()
            say("backlog", 0, 0, app.queue.depth(), "in", tin, "out", tout)
            return
        drain_until = CLOCK.now_us() + 600 * 1000000
        app.uplink.flush_now()
        while (app.queue.depth() or app.gates.busy()) and CLOCK.now_us() < drain_until:
            app.step()
            CLOCK.sleep_ms(appmod.LOOP_MS)
        app.queue.commit()
        if lattice is not None:
            lattice.release()
            say("mem cap", lattice.cap, "pins", lattice.pins, "holes", lattice.holes)
        say("truth", json.dumps({"in": tin, "out": tout, "bursts": bursts, "depth": app.queue.depth(),
                                 "peak_heap": peak, "yard": len(app.roster.last_seen), "bad": app.bad_events,
                                 "errors": app.errors, "queue": app.queue.stats}))
        app.uplink.close()

    transit.startup.main(run=run, board_dirs=("boards",))


if __name__ == "__main__":
    main(sys.argv[1])
