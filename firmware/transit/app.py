"""The roles' main loop: one cooperative loop of short steps.

Each iteration reads the GPS UART, drains the door edges, turns fixes and
crossings into records in the durable queue, and lets the link and the
uplink do a bounded slice of work. Nothing in a step blocks for long; what
must block (a reconnect, a TLS handshake, a large flash commit) waits until
every door is closed (`doors.busy()`), because on an ESP32 pin callbacks
cannot run inside a blocking call. The watchdog is fed only at the end of a
complete iteration, so a hung step resets the board.
"""

import gc
import time

from dqueue import DEFAULT_BUDGET, DurableQueue
from transit import VERSION, records as R
from transit.commands import Commands
from transit.config import CONNECT_MS_DEFAULT
from transit.health import Health, queue_source
from transit.link import Link
from transit.timesync import TimeSync
from transit.uplink import Uplink

LOOP_MS = 20  # idle sleep per iteration: pin callbacks run during it
HEALTHY_AFTER_MS = 60000  # this long in the loop clears the crash counter
QUEUE_DIR = "data"
BIG_COMMIT_BYTES = 4096  # a commit larger than one flash block waits for closed doors
# Positions become durable within 90 s: longer than the uplink's 60 s batches,
# so with the link up most are acknowledged while still in RAM and never
# written to flash; a power cut can lose at most 90 s of positions (stop
# visits, counts and events are flushed at once).
COMMIT_MS = 90000
ERROR_BURST = 20  # this many step errors within a minute: give up and reset
# A board that takes over-the-air releases keeps this much flash from its
# queue: a staged release (about 92 KB of .mpy) plus the agent's margin.
OTA_ROOM_BYTES = 160 * 1024
STANDING_CMPS = 100  # below this a bus stands: speed 0, course of the last movement



class App:
    """What both roles share: queue, link, uplink, commands, health, watchdog."""

    watch = None  # (topic filter, handler) for other devices' messages

    def __init__(self, cfg, board, state, wlan=None, ppp_factory=None):
        self.cfg = cfg
        self.board = board
        self.state = state
        self.role = cfg["role"]
        self.running = True
        self.loops = 0
        self.errors = 0
        self.last_error = ""
        self._burst = 0
        self._burst_start = time.ticks_ms()
        self.t_start = time.ticks_ms()
        self.healthy_marked = False
        qs = cfg.group("queue")
        _mkdir(QUEUE_DIR)
        # Default budget: the queue's own (1.5 MiB: 7 days of positions on a 2 MiB
        # filesystem); boards with the OTA layout set queue.budget_kib to ~576.
        budget = qs["budget_kib"] * 1024 if "budget_kib" in qs else DEFAULT_BUDGET
        # A queue left by another device id is never sent under ours (transit.identity).
        from transit.identity import open_queue
        self.queue, self.epoch = open_queue(
            QUEUE_DIR + "/q", cfg["device_id"], lambda: DurableQueue(
                QUEUE_DIR + "/q", budget_bytes=budget, commit_ms=qs.get("commit_ms", COMMIT_MS),
                commit_records=qs.get("commit_records"), priority_types=R.PRIORITY_TYPES,
                keep_free_bytes=OTA_ROOM_BYTES if cfg.get("ota_key") else 0),
            cfg.get("queue_wipe", ""))
        self.health = Health(cfg["device_id"], board.reset_cause(), epoch=self.epoch)
        self.link = Link(cfg["networks"], cfg.wifi_key, wlan=wlan, ppp_factory=ppp_factory)
        # The clock is set (SNTP, GPS, flash floor) before the first TLS handshake.
        self.timesync = TimeSync(cfg, board.rtc(), link=self.link, path=QUEUE_DIR + "/time.json")
        hooks = {"reboot": self.reboot, "flush": self.flush, "reset_load": self.reset_load, "ota": self.ota_command}
        self.commands = Commands(cfg, cfg["device_id"], hooks, limits=_limits)
        self.uplink = Uplink(cfg, self.queue, commands=self.commands, status_doc=self.health.document,
                             status_dump=self.health.dump, link=self.link, watch=self.watch_spec(cfg),
                             time_gate=self.timesync.gate, epoch=self.epoch)
        self.timesync.on_sync = self.uplink.retry_now
        hooks["on_set"] = self.uplink.apply_setting
        self.health.register("queue", queue_source(self.queue))
        self.health.register("link", self.link.status)
        self.health.register("uplink", self.uplink.status)
        self.health.register("time", self.timesync.status)
        self.health.register("loop", self.loop_status, sparse=True)
        self.health.register("boot", lambda: {"boots": state.boots, "last_error": state.last_error,
                                              "ended": state.ended}, sparse=True)
        self.wdt = None
        self.boot_cause = board.reset_cause()
        # Over-the-air updates (docs/ota.md): the agent is built only when an
        # update runs or resumes; a version on trial is confirmed in step().
        self.ota = None
        self.ota_ready = None  # (version, at) of a staged update set aside until it may switch
        self._ota_cmd_id = None
        self.trial = _trial_settings()
        if _exists("ota/job.json") or _exists("ota/state.json"):
            self._ota_agent()  # a job to resume, a trial, or a rejection to report
        self.health.register("ota", self._ota_status, sparse=True)

    # --- hooks for commands ------------------------------------------
    def reboot(self, why="reboot command"):
        self.uplink.close()
        self.queue.commit()
        self.state.plan(why)  # a planned reset: never counted as a crash
        self.board.reset()

    def flush(self):
        self.queue.commit()
        self.uplink.flush_now()

    def reset_load(self):
        return None

    # --- over-the-air updates (transit/ota.py) -----------------------------
    def _ota_agent(self):
        if self.ota is None:
            self.ota_ready = None
            from transit.ota import Agent
            self.ota = Agent(self)
            self.ota.answer = self._ota_answer
        return self.ota

    def ota_command(self, cmd):
        from transit.ota import OtaError
        from transit.commands import CommandError
        try:
            r = self._ota_agent().start(cmd)
        except OtaError as e:
            raise CommandError(str(e))
        self._ota_cmd_id = cmd.get("id")
        return r

    def _ota_answer(self, ok, text):
        from transit import schema
        self.uplink.answer_later(schema.ack_doc(self.cfg["device_id"], self._ota_cmd_id, "ota", ok,
                                                result=text, error=text), ok)

    def _ota_status(self):
        if self.ota is None and self.ota_ready is not None:
            return {"run": VERSION, "st": "ready", "ver": self.ota_ready[0], "pct": 100}
        return self.ota.status() if self.ota is not None else {}

    def _ota_step(self, busy):
        """The agent's step. A staged update that must wait to switch ("idle"
        while the bus drives: hours, maybe) sets the agent aside: its job is on
        flash, and its module objects, job and counters (~2.5 KB on the 32-bit
        build) go back to the bus's heap, which needs them (docs/memory.md).
        Once the vehicle may switch, the agent is built again from ota/job.json
        and switches in its next step."""
        ota = self.ota
        if ota is None:
            if self.ota_ready is not None and not busy and self.may_switch(self.ota_ready[1]):
                self._ota_agent()  # resumes `ready` from flash
            return
        ota.step(not busy)
        if self.trial is not None:
            self._trial_step()
            return
        job = ota.job
        if job is not None and job["st"] == "ready" and not self.may_switch(job["at"]):
            self.ota_ready = (job.get("ver"), job["at"])
            self.ota = ota = job = None
            from transit import forget
            forget("transit.ota", "otaboot")  # (the agent's status imports the loader's module)

    def chip(self):
        return self.board.desc["chip"]

    def version(self):
        return VERSION

    def public_key(self):
        key = self.cfg.get("ota_key")
        return bytes.fromhex(key) if key else None

    def tls_context(self):
        """For https:// releases: the broker's CA checks the release server too."""
        from transit.uplink import load_ca, tls_context
        return tls_context(load_ca(self.cfg.get("broker.ca")))

    def may_switch(self, at):
        """Switch now, or ("idle") only when the vehicle is parked."""
        return at == "now" or self.parked()

    def parked(self):
        return True

    def _trial_step(self):
        """Confirm a version on trial once its loop ran trial_s and the broker
        took its publish check (lib/otaboot.py rolls back otherwise)."""
        if time.ticks_diff(time.ticks_ms(), self.t_start) >= self.trial * 1000 and self.uplink.publish_checked():
            import otaboot
            ver = otaboot.passed()
            self.trial = None
            self.uplink.status_now()  # the operator's rollout waits for this
            print("ota: version %s passed its trial" % ver)

    # --- recording -----------------------------------------------------
    def record(self, rtype, payload, ts, flags):
        """Append to the queue first, then tell the uplink (live first)."""
        try:
            seq = self.queue.append(rtype, payload, ts, flags)
        except Exception as e:  # counted in loop.errors; a lost record never resets the board
            self.errors += 1
            self.last_error = repr(e)[:120]
            print("queue append failed:", self.last_error)
            return None
        self.uplink.offer_live(rtype, seq, ts, flags, payload)
        return seq

    def busy(self):
        return False

    def watch_spec(self, cfg):
        return None

    def boot_event(self):
        """The first record of every boot: its reset cause (1 power-on ... 5 soft)."""
        self.record(R.EVENT, R.pack_event(R.EV_BOOT, 0, self.boot_cause), 0, R.FLAG_TIME_UNKNOWN)

    def loop_status(self):
        return {"loops": self.loops, "errors": self.errors, "last_error": self.last_error}

    def guarded_step(self):
        """One iteration; an unexpected error is counted and shown in the status
        and the loop goes on (the queue keeps what it has). Errors in a burst
        (ERROR_BURST within a minute) re-raise: startup records it and resets."""
        try:
            self.step()
            return True
        except Exception as e:  # counted in loop.errors and reported as loop.last_error
            now = time.ticks_ms()
            if time.ticks_diff(now, self._burst_start) > 60000:
                self._burst_start = now
                self._burst = 0
            self._burst += 1
            self.errors += 1
            self.last_error = repr(e)[:120]
            print("loop error:", self.last_error)
            if self._burst >= ERROR_BURST:
                raise
            return False

    # --- the loop --------------------------------------------------------
    def step(self):
        """One iteration; returns False to stop the loop (tests, simulator)."""
        busy = self.busy()
        if not busy or self.queue.pending_bytes() < BIG_COMMIT_BYTES:
            self.queue.poll()
        self.link.step(not busy)
        self.timesync.step(not busy)
        self.uplink.step(not busy)
        if self.ota is not None or self.ota_ready is not None:
            self._ota_step(busy)
        self.loops += 1
        if not self.healthy_marked and time.ticks_diff(time.ticks_ms(), self.t_start) > HEALTHY_AFTER_MS:
            self.healthy_marked = True
            self.state.healthy()
        return self.running

    def run(self, loop_ms=LOOP_MS, max_loops=None):
        if self.wdt is None:
            self.wdt = self.board.watchdog(self.cfg["watchdog_ms"])
        n = 0
        while self.running and (max_loops is None or n < max_loops):
            if self.guarded_step():
                self.wdt.feed()  # only after a complete iteration
            n += 1
            time.sleep_ms(loop_ms)
            if n % 50 == 0:
                gc.collect()  # small, regular collections instead of one long pause


class BusApp(App):
    """GPS -> track -> queue; doors -> stop visits -> queue; geofences; uplink."""

    def __init__(self, cfg, board, state, **kw):
        App.__init__(self, cfg, board, state, **kw)
        from nmea import NmeaReader
        from transit.doors import Doors, pcnt_encoders
        from transit.geofence import Geofences, parse_zones, KIND_DEPOT, KIND_TERMINUS, ENTER
        from transit.gpsclock import GpsClock
        from transit.stops import StopVisits, RESET_TERMINUS, RESET_DEPOT, RESET_IGNITION, RESET_COMMAND
        from transit import track as T
        self.T = T
        self._reasons = (RESET_TERMINUS, RESET_DEPOT, RESET_IGNITION, RESET_COMMAND)
        self._kinds = (KIND_DEPOT, KIND_TERMINUS, ENTER)
        self.reader = NmeaReader(board.gps_uart())
        self.clock = GpsClock(rtc=board.rtc())
        self.timesync.clock = self.clock
        self.track = T.Track(cfg.group("track") or None)
        pins = board.door_pins()
        # The ESP32's pulse counter (machine.Encoder, firmware 1.27+) counts every
        # beam edge in hardware: a cross-check for edges lost in blocking calls.
        self.doors = Doors(pins, cfg.group("counting") or None, encoders=pcnt_encoders(board.machine, pins),
                           block_ms=cfg.get("uplink.connect_ms", CONNECT_MS_DEFAULT))
        counting = {"seats": cfg["bus.capacity_seated"], "standing": cfg["bus.capacity_standing"]}
        self.stops = StopVisits(self.doors, self.position, counting, boot_no=state.boots)
        self.fences = Geofences(parse_zones(cfg.get("geofences")))
        self._fence_events = []
        self.ignition = board.ignition_on()
        self.last_fix_ms = None
        self._sats = self._hdop = self._course = 0
        self.health.register("gps", lambda: dict(self.reader.stats), sparse=True)
        self.health.register("doors", self.doors.health, sparse=True)
        self.health.register("load", lambda: {"load": self.stops.load, "occ": self.stops.occupancy(),
                                              "clamps": self.stops.clamps})
        ble = board.ble()
        if ble is not None:
            from transit.roster import advertise
            advertise(ble, cfg["device_id"])

    def busy(self):
        return self.doors.busy()

    def parked(self):
        """Ignition off, or inside the depot's geofence: the time to switch versions."""
        return not self.ignition or self.fences.in_kind(self._kinds[0])

    def reset_load(self):
        self.stops.reset_load(self._reasons[3])
        self.event(R.EV_LOAD_RESET, 3)

    def position(self):
        """(lat_e6, lon_e6, odometer_m, unix_s, time_known) for stop visits, or None."""
        t = self.track
        if not t.has_pos:
            return None
        return (t.lat_e6, t.lon_e6, t.odometer_m, self.clock.unix_now(), self.clock.time_known())

    def stamp(self):
        """(ts, flags) for a record made now."""
        if self.clock.time_known():
            return self.clock.unix_now(), 0
        return time.ticks_ms() // 1000, R.FLAG_TIME_UNKNOWN

    def event(self, kind, index=0, value=0):
        ts, flags = self.stamp()
        t = self.track
        self.record(R.EVENT, R.pack_event(kind, index, value, t.lat_e6 if t.has_pos else 0,
                                          t.lon_e6 if t.has_pos else 0), ts, flags)

    def position_record(self, fix, reason):
        """A position record from the track's last kept fix. A standing bus
        reports speed 0 and the course it last drove (the receiver's course at
        rest is noise); event records made between fixes carry the last fix's
        satellites and HDOP. Both keep the wire columns constant and short."""
        t = self.track
        ts, flags = self.stamp()
        if fix is not None:
            self._sats, self._hdop = fix.sats_used, fix.hdop_x10
        speed = t.speed_cmps if t.speed_cmps >= STANDING_CMPS else 0
        if speed and t.course_ddeg >= 0:
            self._course = t.course_ddeg
        payload = R.pack_position(t.lat_e6, t.lon_e6, speed, self._course, t.alt_dm, self._sats, self._hdop,
                                  reason, t.odometer_m)
        self.record(R.POS, payload, ts, flags)

    def step(self):
        now = time.ticks_ms()
        fix = self.reader.step()
        if fix is not None:
            self.clock.from_fix(fix)
            reason = self.track.update(fix, now)
            if reason:
                self.position_record(fix, reason)
            if self.track.has_pos and fix.valid:
                self._geofences()
        self.doors.step()
        was_open = self.stops.visit is not None
        self.stops.step(now)
        if self.stops.visit is not None and not was_open:
            r = self.track.event(self.T.REASON_STOP_START, now)
            if r:
                self.position_record(None, r)
        while True:
            v = self.stops.pop()
            if v is None:
                break
            self._stop_record(v)
            r = self.track.event(self.T.REASON_STOP_END, now)
            if r:
                self.position_record(None, r)
        self._ignition(now)
        return App.step(self)

    def _stop_record(self, v):
        flags = 0 if v.time_known else R.FLAG_TIME_UNKNOWN
        payload = R.pack_stop(v.visit_id, v.t_open_unix, v.t_close_unix, v.lat_e6, v.lon_e6, v.odometer_m,
                              v.dwell_s, v.load_departure, v.occupancy_status, v.quality,
                              [(d[0], d[1]) for d in v.doors])
        self.record(R.STOP, payload, v.t_close_unix, flags)

    def _geofences(self):
        out = self._fence_events
        out[:] = []
        if not self.fences.update(self.track.lat_e6, self.track.lon_e6, out):
            return
        depot, terminus, enter = self._kinds
        for kind, zone in out:
            self.event(R.EV_GEOFENCE_ENTER if kind == enter else R.EV_GEOFENCE_EXIT, zone[0], zone[1])
            if kind == enter and zone[1] in (depot, terminus):
                self.stops.reset_load(self._reasons[0] if zone[1] == terminus else self._reasons[1])

    def _ignition(self, now):
        on = self.board.ignition_on()
        if on == self.ignition:
            return
        self.ignition = on
        self.event(R.EV_IGNITION_ON if on else R.EV_IGNITION_OFF)
        r = self.track.event(self.T.REASON_IGNITION_ON if on else self.T.REASON_IGNITION_OFF, now)
        if r:
            self.position_record(None, r)
        if not on:
            self.stops.reset_load(self._reasons[2])


def _limits():
    """What a remote `set` may change (transit.limits), made only when one arrives."""
    from transit.limits import Limits
    return Limits(queue_folder=QUEUE_DIR + "/q")


def _exists(path):
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _trial_settings():
    """Seconds a version on trial must run before it is kept, or None (no trial)."""
    try:
        import otaboot
    except ImportError:
        return None
    doc = otaboot.read()
    if not doc or not doc.get("trial"):
        return None
    return doc.get("trial_s", 60)


def _mkdir(path):
    import os
    try:
        os.mkdir(path)
    except OSError:
        pass  # exists already (EEXIST); any other problem shows when the queue opens it


# Needed only until the application is built: the configuration's validator
# and key tables, the board checks, safe mode, the queue's owner check and
# recovery, the OTA loader's boot decision. Each is imported again if it is
# ever needed later (a remote `set`, safe mode, an update), which frozen
# code does at the cost of its module object only.
BOOT_MODULES = ("transit.config", "transit.settings", "transit.boardcheck", "transit.safemode",
                "transit.identity", "dqueue_boot", "otaboot")


def forget_boot_modules(names=BOOT_MODULES):
    """Drop boot-only modules so their globals, functions and tables are
    collected (~4 KB of a 32-bit heap; docs/memory.md). MicroPython only:
    under CPython the tests keep module objects of their own."""
    import sys
    if sys.implementation.name == "micropython":
        import transit
        transit.forget(*names)


def build(cfg, board, state, **kw):
    if cfg["role"] == "bus":
        cls = BusApp
    else:  # in its own module: a bus never loads the depot's class (docs/memory.md)
        from transit.depotapp import DepotApp as cls
    app = cls(cfg, board, state, **kw)
    forget_boot_modules()
    gc.collect()  # the boot's garbage and modules go before the loop's first allocations
    return app


def run(cfg, board, state):
    """Entry point from transit.startup: build the role and loop forever."""
    app = build(cfg, board, state, wlan=board.wlan(), ppp_factory=board.ppp_factory())
    app.boot_event()
    print("transit %s: %s %s on %s" % (VERSION, cfg["role"], cfg["device_id"], board.name))
    app.run()
