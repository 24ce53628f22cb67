"""The simulated bus: the real bus firmware on the unix port, on the simulated board.

Runs under MicroPython (started by tools/sim.py or a test) in a folder laid
out like a board's filesystem (device.json, secrets.json, boards/). It
drives the route in virtual time: a clock listener feeds the GPS UART one
second of NMEA at a time (tools/simgps.py), and at every stop opens the
doors and lets generated passengers walk through the beams
(tools/passenger_gen.py) while the firmware counts them. Ground truth and
progress go to stdout as lines starting with "SIM ".

    micropython simbus.py scenario.json
scenario: {"route": path, "seed": n, "accel": 10 (0 = as fast as possible),
           "stops": max stops or 0, "laps": n, "gps_loss": [from_s, to_s],
           "start_unix": s, "profile": "clean"|"noisy", "drain_s": s,
           "ignition": true (the ignition line held on: the bus is never parked)}
"""

import gc
import json
import sys
from array import array

import fakeclock
import machine
import network
import passenger_gen as pg
from fakeclock import CLOCK
from simgps import Drive

SSID = "phs-sim"
WIFI_KEY = "sim-wifi-key"
DOOR_OPEN_DELAY_S = 2  # bus stops, then the doors open
WALK_START_S = 1  # first passenger reaches the beams after the doors open
CLOSE_AFTER_S = 2  # doors close after the last passenger
LEAVE_AFTER_S = 2  # the bus moves off after the doors closed


def say(*parts):
    print("SIM", " ".join(str(p) for p in parts))


def say_json(tag, doc):
    """say(tag, json.dumps(doc)), one key at a time: at the end of a run in a
    full heap, no block the size of the whole line is needed."""
    print("SIM", tag, end=" ")
    sep = "{"
    for k in doc:
        print(sep, json.dumps(k), ": ", json.dumps(doc[k]), sep="", end="")
        sep = ", "
    print("}")


def _nearest(waypoints, at):
    best, bi = None, 0
    for i, w in enumerate(waypoints):
        d = abs(w[0] - at[0]) + abs(w[1] - at[1])
        if best is None or d < best:
            best, bi = d, i
    return bi


class StopPlan:
    """One stop's passengers: the generator state that makes them, and their
    edges in three compact arrays (made before the firmware starts)."""

    def __init__(self, sid, wp, n_in, n_out, rng_state, walk_us, true_in, true_out):
        self.sid = sid
        self.wp = wp
        self.n_in = n_in
        self.n_out = n_out
        self.rng_state = rng_state
        self.n_events = 0
        self.ev_t = self.ev_pin = self.ev_level = None  # its edges, in time order (Scenario._fill)
        self.set_people(walk_us, true_in, true_out)

    def set_people(self, walk_us, true_in, true_out):
        self.dwell_s = DOOR_OPEN_DELAY_S + WALK_START_S + walk_us // 1000000 + 1 + CLOSE_AFTER_S + LEAVE_AFTER_S
        self.true_in = true_in
        self.true_out = true_out


class Scenario:
    def __init__(self, route, door_pins, seed=7, max_stops=0, laps=1, profile=pg.CLEAN, gps_loss=None,
                 start_unix=1795766400, busy=1, limit_s=0):
        self.rng = pg.Rng(seed)
        self.profile = profile
        self.door_pins = door_pins
        wps = [tuple(w) for w in route["waypoints"]]
        stops = route["stops"]
        if max_stops:
            stops = stops[:max_stops]
            last = _nearest(wps, stops[-1]["at"])
            wps = wps[:last + 1]
        # The first waypoint twice: a zero-length first leg lets the bus dwell at
        # the first terminus (simgps dwells only on arriving at a waypoint).
        self.waypoints = [wps[0]]
        self.plans = []
        load = 0
        for lap in range(laps):
            seq = wps if lap % 2 == 0 else list(reversed(wps))
            lap_stops = stops if lap % 2 == 0 else list(reversed(stops))
            base = len(self.waypoints) - (1 if lap else 0)
            self.waypoints += seq if not lap else seq[1:]
            for k, s in enumerate(lap_stops):
                if lap and k == 0:
                    continue  # the terminus where the last lap ended
                wp = base + _nearest(seq, s["at"])
                last_stop = k == len(lap_stops) - 1
                n_out = load if last_stop else self.rng.between(0, load)
                n_in = 0 if last_stop else self.rng.between(2, 6 + 6 * busy)
                load += n_in - n_out
                self.plans.append(self._plan(s["id"], wp, n_in, n_out))
                # Collect as we go: the generator's garbage is reused at the
                # bottom and the plan packs low, leaving the firmware one
                # unfragmented region above it (as on a board).
                gc.collect()
        self.by_wp = {}
        for p in self.plans:
            self.by_wp[p.wp] = p
        outages = (tuple(gps_loss),) if gps_loss else ()
        self.drive = Drive(self.waypoints, stops={p.wp: p.dwell_s for p in self.plans}, outages=outages,
                           seed=seed, start_unix=start_unix, tail_s=5)
        self.start_unix = start_unix
        self.served = 0  # ground truth goes to stdout per stop, not into the heap
        self.done = False
        self.seconds = 0
        self.next_plan = 0
        self.limit_s = limit_s  # stop after this many seconds of driving (0: the whole plan)
        # Every stop's beam and switch edges, made now (before the firmware
        # starts) into one compact store, go to the fake pins one simulated
        # second at a time: while the firmware runs the simulator allocates
        # nothing larger than that second's few edges.
        for p in self.plans:
            self._fill(p)
            gc.collect()
        self.cur = None  # the stop being served
        self.ev_i = 0
        self.ev_t0 = 0

    def _people(self, rng, n_in, n_out):
        """Per door: (edges, true_in, true_out, end_us), all from rng."""
        n = len(self.door_pins)
        doors = []
        for d in range(n):
            people = [pg.random_person(rng, pg.OUT, self.profile) for _ in range(n_out // n + (d < n_out % n))]
            people += [pg.random_person(rng, pg.IN, self.profile) for _ in range(n_in // n + (d < n_in % n))]
            doors.append(pg.door_edges(people, 0, rng, self.profile))
        return doors

    def _plan(self, sid, wp, n_in, n_out):
        # The plan first, the generator's garbage after it: what stays packs low.
        p = StopPlan(sid, wp, n_in, n_out, self.rng.s, 0, 0, 0)
        doors = self._people(self.rng, n_in, n_out)
        p.n_events = sum(len(d[0]) for d in doors) + 2 * len(doors)
        walk_us = max([d[3] for d in doors] + [0])
        p.set_people(walk_us, sum(d[1] for d in doors), sum(d[2] for d in doors))
        return p

    def start(self, uart):
        self.uart = uart
        self.epochs = self.drive.epochs(True)  # one sentence at a time: no 0.5 KB block a second
        self.t0_us = CLOCK.now_us()
        self.next_us = self.t0_us
        CLOCK.add_listener(self.on_clock)

    def on_clock(self, now):
        while not self.done and now >= self.next_us:
            try:
                truth, rep, data = next(self.epochs)
            except MemoryError:  # (its NMEA is made in the firmware's share of the heap)
                import micropython
                micropython.mem_info(1)  # the heap map at the failure: fragmentation or live data
                raise
            except StopIteration:
                self.done = True
                say("route-done", self.seconds)
                return None
            self.seconds += 1
            if self.limit_s and self.seconds > self.limit_s:
                self.done = True
                say("route-done", self.seconds)
                return None
            for piece in data:
                self.uart.feed(piece)
            data = None
            t, lat, lon, v, crs = truth
            self._maybe_stop(t, lat, lon, v)
            self._feed_pins(self.next_us + 1000000)
            if t % 60 == 0:
                say("t", t, lat, lon, v)
            self.next_us += 1000000
        return None if self.done else self.next_us

    def _maybe_stop(self, t, lat, lon, v):
        """Serve the next planned stop once the bus stands at its waypoint
        (plans are served in route order; a lap back passes the same places)."""
        if v or self.next_plan >= len(self.plans):
            return
        p = self.plans[self.next_plan]
        w = self.waypoints[p.wp]
        if w[0] == lat and w[1] == lon:
            self.next_plan += 1
            self._serve(p, t)

    def _feed_pins(self, until_us):
        """Hand the fake pins the waiting edges due before until_us."""
        p = self.cur
        i = self.ev_i
        if p is None or i >= p.n_events:
            return
        batch = []
        while i < p.n_events and self.ev_t0 + p.ev_t[i] < until_us:
            batch.append((self.ev_t0 + p.ev_t[i], p.ev_pin[i], p.ev_level[i]))
            i += 1
        self.ev_i = i
        if batch:
            machine.inject_timeline(batch)

    def _serve(self, p, t):
        self.ev_t0 = CLOCK.now_us()
        self.cur = p
        self.ev_i = 0
        self._feed_pins(CLOCK.now_us() + 1000000)
        self.served += 1
        say("stop", self.served, p.sid, "in", p.true_in, "out", p.true_out, "t", t,
            "open", self.start_unix + t + DOOR_OPEN_DELAY_S)

    def _fill(self, p):
        """Store stop p's edges in its own compact arrays, in time order."""
        p.ev_t = array("i", bytes(4 * p.n_events))  # virtual µs from the bus standing at the stop
        p.ev_pin = bytearray(p.n_events)
        p.ev_level = bytearray(p.n_events)
        rng = pg.Rng(0)
        rng.s = p.rng_state  # the same people as planned
        doors = self._people(rng, p.n_in, p.n_out)
        t_open = DOOR_OPEN_DELAY_S * 1000000
        t_walk = t_open + WALK_START_S * 1000000
        t_close = t_walk + max([d[3] for d in doors] + [0]) + CLOSE_AFTER_S * 1000000
        n = 0
        for a, b, sw, low in self.door_pins:
            n = _put(p, n, t_open, sw, 0 if low else 1)
        for (a, b, sw, low), (edges, tin, tout, end) in zip(self.door_pins, doors):
            inv = 1 if low else 0
            for te, beam, level in edges:
                n = _put(p, n, t_walk + te, b if beam else a, level ^ inv)
        for a, b, sw, low in self.door_pins:
            n = _put(p, n, t_close, sw, 1 if low else 0)


def _put(p, n, t, pin, level):
    """Insert one edge keeping the stop's edges in time order (doors interleave)."""
    i = n
    while i > 0 and p.ev_t[i - 1] > t:
        p.ev_t[i] = p.ev_t[i - 1]
        p.ev_pin[i] = p.ev_pin[i - 1]
        p.ev_level[i] = p.ev_level[i - 1]
        i -= 1
    p.ev_t[i] = t
    p.ev_pin[i] = pin
    p.ev_level[i] = level
    return n + 1


BACKLOG_POS_S = 10  # an offline bus in traffic: a position every 10 s ...
BACKLOG_STOP_S = 120  # ... and a stop visit every two minutes


def make_backlog(cfg, board, state, seconds):
    """Fill the board's queue with `seconds` of driving recorded while offline
    (no Wi-Fi at all), through the firmware's own recording path, then stop:
    the next boot finds it on flash, as a bus back from a day without a link.
    Prints the number of stop visits and positions it made."""
    from transit import app as appmod, records as R
    network.set_aps([])
    app = appmod.build(cfg, board, state, wlan=board.wlan())
    app.boot_event()
    t0 = CLOCK.utc_s()
    lat, lon = 16820000, 100260000
    stops = pos = 0
    for k in range(seconds // BACKLOG_POS_S):
        ts = t0 + k * BACKLOG_POS_S
        lat += 90
        lon += 40
        if k % (BACKLOG_STOP_S // BACKLOG_POS_S) == 0:
            stops += 1
            app.record(R.STOP, R.pack_stop(stops, ts - 30, ts, lat, lon, 100 * k, 30, 12, 2, 0, ((3, 2), (1, 2))),
                       ts, 0)
        else:
            pos += 1
            app.record(R.POS, R.pack_position(lat, lon, 800, 450, 400, 9, 9, 1, 100 * k), ts, 0)
        CLOCK.sleep_ms(BACKLOG_POS_S * 1000)
        app.queue.poll()
    app.queue.commit()
    say("backlog", stops, pos, app.queue.depth())


def make_scenario(route, pins, sc):
    return Scenario(route, pins, seed=sc.get("seed", 7), max_stops=sc.get("stops", 0),
                    laps=sc.get("laps", 1), profile=pg.NOISY if sc.get("profile") == "noisy" else pg.CLEAN,
                    gps_loss=sc.get("gps_loss"), start_unix=sc.get("start_unix", 1795766400),
                    busy=sc.get("busy", 1), limit_s=int(sc.get("hours", 0) * 3600))


def main(path):
    import gc
    with open(path) as f:
        sc = json.load(f)
    with open(sc["route"]) as f:
        route = json.load(f)
    accel = sc.get("accel", 0)
    CLOCK.set_virtual(0, utc_s=sc.get("start_unix", 1795766400), pace=(1.0 / accel) if accel else 0)
    if sc.get("cold"):  # an ESP32 after power-on: epoch 2000, the RTC at 2000-01-01 until the GPS fix
        CLOCK.epoch_2000 = True
        machine.RTC().datetime((2000, 1, 1, 5, 0, 0, 0, 0))
    network.set_aps([{"ssid": SSID, "key": WIFI_KEY, "rssi": -61}])
    # Memory accounting on the 32-bit build with everything frozen (tools/mp32.py,
    # host_tests/test_memory.py): what the fakes and the simulator hold before
    # the first firmware module is imported, then (below) the plan's size.
    # mem: {"cap": bytes, "startup_s": s}: after start-up no free hole may
    # exceed cap (tools/heapcap.py), so no larger allocation can succeed.
    mem = sc.get("mem")
    lattice = None
    prebuilt = None
    if mem is not None and not sc.get("backlog_s"):
        if mem.get("cap"):
            import heapcap
            lattice = heapcap.Lattice(mem["cap"], check=not sc.get("measure"))
        # The plan too, while the heap is empty (its lists grow through
        # reallocations); the door pins come from the board file.
        with open("device.json") as f:
            board_name = json.load(f)["board"]
        with open("boards/%s.json" % board_name) as f:
            desc = json.load(f)
        pins = [(d["beam_a"], d["beam_b"], d["switch"], d.get("active_low", True)) for d in desc["doors"]]
        prebuilt = make_scenario(route, pins, sc)
        desc = None
        route["waypoints"] = route["stops"] = None  # the plan has what it needs; the JSON goes
        # Fakes the firmware loads on first use are fakes all the same: the UART,
        # WDT, RTC and PCNT stand-ins, and the simulator's select (virtual time
        # in socket waits). Loaded now, they count with the simulator.
        import machine_periph  # noqa: F401
        import select  # noqa: F401
        gc.collect()
        sim_bytes = gc.mem_alloc()
        say("mem sim", sim_bytes)
    import transit.startup
    from transit import app as appmod

    if sc.get("backlog_s"):
        CLOCK.set_virtual(0, utc_s=sc.get("start_unix", 1795766400) - sc["backlog_s"])
        transit.startup.main(run=lambda cfg, board, state: make_backlog(cfg, board, state, sc["backlog_s"]),
                             board_dirs=("boards",))
        return

    def run(cfg, board, state):
        pins = [(d["beam_a"], d["beam_b"], d["switch"], d.get("active_low", True)) for d in board.desc["doors"]]
        def scenario():
            return make_scenario(route, pins, sc)
        # All the code first, so what is measured after the baseline is data
        # (with frozen code the module objects are the firmware's: not here).
        if mem is None:
            for m in ("nmea", "nmea_reader", "transit.doors", "transit.geofence", "transit.gpsclock",
                      "transit.stops", "transit.track", "transit.roster", "transit.uplink", "transit.link",
                      "transit.commands", "transit.health", "dqueue", "ssl"):
                __import__(m)
        else:
            say("mem plan", 0)  # built before the firmware: in "mem sim"
            # The fake GPS UART keeps its receive ring in this heap; on a board
            # the ESP-IDF driver holds it outside the Python heap.
            ring = -(-board.desc["gps"].get("rxbuf", 256) // 16) * 16
            say("mem ring", ring)
            if sc.get("measure"):
                say("baseline", sim_bytes + ring)  # what is not the firmware's
                return
        if sc.get("measure"):
            # Code and the simulator's own data: everything that is not the
            # firmware's data (tools/sim.py adds the firmware's budget to it).
            scen = scenario()
            gc.collect()
            say("baseline", gc.mem_alloc())
            return
        scen = prebuilt or scenario()
        ign = board.desc.get("ignition")
        if sc.get("ignition") and ign:  # the engine runs while it drives: never parked (an update waits)
            machine.drive(ign["pin"], not ign.get("active_low"))
        ign = None
        gc.collect()
        say("baseline-run", gc.mem_alloc())  # code + simulator: what follows is the firmware's data
        app = appmod.build(cfg, board, state, wlan=board.wlan())
        app.boot_event()
        say("start", cfg["device_id"], "stops", len(scen.plans), "waypoints", len(scen.waypoints))
        scen.start(machine.UART(board.desc["gps"]["uart"]))
        wdt = board.watchdog(cfg["watchdog_ms"])
        drain_until = None
        next_hour = 3600
        loops = 0
        peak = 0
        ota_st = None  # the over-the-air job's step, said when it changes (an `ota` command while driving)
        ota_peak = 0  # live peak while a job runs
        longest = 0  # virtual us of the longest step (a blocking connect shows here)
        while True:
            t0 = CLOCK.now_us()
            try:
                app.step()
            except machine.ResetRequested as e:
                # A board would reboot here (the simulator does not): say why and stop.
                say("reset", e.cause, "t", scen.seconds, "step_ms", (CLOCK.now_us() - t0) // 1000,
                    "watchdog_ms", cfg["watchdog_ms"], "err", app.uplink.stats.get("last_error"))
                raise SystemExit(3)
            d = CLOCK.now_us() - t0
            if d > longest:
                longest = d
                if d >= 1000000:
                    say("long-step", scen.seconds, d // 1000, "err", app.uplink.stats.get("last_error"))
            wdt.feed()
            if app.ota is not None or app.ota_ready is not None:
                job = app.ota.job if app.ota is not None else None
                st = job["st"] if job is not None else "ready-aside" if app.ota_ready is not None else "done"
                if st != ota_st:
                    ota_st = st
                    gc.collect()
                    say("ota", st, "t", scen.seconds, "free", gc.mem_free(), "err", (job or {}).get("err") or "-")
                job = st = None
            CLOCK.sleep_ms(appmod.LOOP_MS)
            loops += 1
            if loops % 50 == 0:
                gc.collect()
                used = gc.mem_alloc()
                if mem is not None:
                    used -= ring
                if lattice is not None:
                    used -= lattice.pinned_bytes()
                    if lattice.pins:
                        lattice.probe()
                    if scen.seconds >= mem.get("startup_s", 60):
                        lattice.pin()
                if used > peak:
                    peak = used
                    if mem is not None:
                        say("mem peak", scen.seconds, used)
                if ota_st in ("manifest", "check", "files", "image", "ready") and used > ota_peak:
                    ota_peak = used
                    if mem is not None:
                        say("mem ota-peak", scen.seconds, used)
                if scen.seconds >= next_hour:
                    say("hour", next_hour // 3600, used)
                    next_hour += 3600
            if loops % 500 == 0:
                st = app.uplink.stats
                say("status", "depth", app.queue.depth(), "load", app.stops.load, "up", app.uplink.connected,
                    "heap", gc.mem_free(), "sent", st.get("recs_sent"), "acked", st.get("recs_acked"),
                    "err", st.get("last_error"))
            if scen.done:
                if drain_until is None:
                    app.uplink.flush_now()
                    drain_until = CLOCK.now_us() + sc.get("drain_s", 600) * 1000000
                settled = app.stops.visit is None and not app.doors.busy()
                if settled and app.queue.depth() == 0 or CLOCK.now_us() > drain_until:
                    break
        app.queue.commit()
        if lattice is not None:
            lattice.release()
            gc.collect()  # the pins go now: the truth line below needs a block above the last cap's holes
            say("mem cap", lattice.cap, "pins", lattice.pins, "holes", lattice.holes)
        say_json("truth", {"served": scen.served, "seconds": scen.seconds, "depth": app.queue.depth(),
                                 "load": app.stops.load, "peak_heap": peak, "queue": app.queue.stats, "uplink": app.uplink.stats.get("msgs"),
                                 "visits": app.stops.n, "longest_step_ms": longest // 1000,
                                 "ota": app._ota_status(), "ota_peak": ota_peak,
                                 "connect": {k: app.uplink.stats.get(k) for k in (
                                     "attempts", "connects", "fail_timeout", "fail_refused", "fail_tcp", "fail_mqtt", "lost")}})
        app.uplink.close()

    transit.startup.main(run=run, board_dirs=("boards",))


if __name__ == "__main__":
    main(sys.argv[1])
