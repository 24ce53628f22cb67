"""Bus doors: beam pairs, door switches, counting window and `busy()`.

A crossing counts for a door while its switch says open, and for grace_ms
after it closes (people still stepping through). Crossings outside that
window are counted in `outside`, never as passengers.

Contract with the main loop and the uplink: call `step()` every loop (at
least every 50 ms while busy) and do nothing blocking (TLS handshake,
reconnect, flash commit, blocking socket wait) while `busy()` is True: any
door open or in its grace period, or edges still waiting in the ring. On an
ESP32 the pin callbacks cannot run inside such calls, and beyond 8 pending
edges they are lost.
"""

from time import ticks_us, ticks_diff
from beams import BeamBank, IN

DEFAULTS = {
    "debounce_ms": 25,  # beam toggles closer than this are bounce
    "linger_ms": 2500,  # a beam blocked longer is a lingering event
    "fault_ms": 120000,  # a beam blocked longer is a sensor fault
    "grace_ms": 3000,  # counting continues this long after the door closes
    "switch_debounce_ms": 50,  # the door switch must hold a level this long
    "bunch_us": 500,  # late edges closer than this were run back to back, in a bunch
    "late_ms": 100,  # edges delivered this long after the previous step came through a blocking call
    "tailgate_gap_ms": 150,  # first beam clear this long before re-blocking: a second person
    "ring_size": 0,  # edges buffered between two steps; 0: ring_for(the longest blocking call), below
}


def setting(config, key):
    """A timing setting from the device config, else its default."""
    if config and key in config:
        return config[key]
    return DEFAULTS[key]


def pcnt_encoders(machine, door_pins, first_unit=0):
    """One machine.Encoder per door where the firmware has it (ESP32,
    MicroPython 1.27+; the project's own image is 1.28), else None. A unit
    that fails to start leaves its door without: None in its place, which
    Doors counts in `pcnt_errors`. Counting works without PCNT, but it is the supported
    configuration: Doors.health flags a door without a working one."""
    enc = getattr(machine, "Encoder", None)
    if enc is None:
        return None
    out = []
    for i, (a, b, _, _) in enumerate(door_pins):
        try:
            out.append(enc(first_unit + i, a, b, phases=4))
        except Exception:  # counted by Doors (pcnt_errors): the door counts on, flagged
            out.append(None)
    return out


class _Door:
    def __init__(self, switch, invert):
        self.switch = switch
        self.invert = invert
        self.open = False  # committed (debounced) door state
        self.cand = 0  # switch level last seen (1 = open), from the ring or a poll
        self.cand_us = 0  # when that level began
        self.mis = False  # the polled level disagrees with cand (an edge may be lost)
        self.mis_us = 0
        self.closed_us = 0
        self.counting = False  # open or within grace
        self.ins = 0
        self.outs = 0
        self.outside = 0  # crossings with the door closed (not passengers)
        self.openings = 0
        self.switch_edges = 0  # switch edges seen (a switch that never changes is broken)
        self.switch_lost = 0  # switch changes found by polling: their edge was lost


def ring_for(block_ms):
    """Edge-ring slots for a blocking call of block_ms: the ESP32 services one
    pin callback per 100 ms inside it, plus the 8 pending in its scheduler
    queue, plus a quarter for the drain (bench/bench_counting.py measured
    at most 163 slots in 20 s stalls on noisy beams)."""
    n = block_ms // 100 + 8
    return min(512, (n + n // 4 + 15) // 16 * 16)


class Doors:
    """Per-door passenger counters for a bus.

    door_pins: [(beam_a, beam_b, switch or None, active_low)] of Pin-like
    objects, as Board.door_pins() gives (tests pass fake machine.Pins).
    A door without a switch counts all the time. config: timing settings
    (see DEFAULTS). encoders: optional PCNT counter per door (see
    pcnt_encoders), a cross-check that never loses an edge.

    Door switches interrupt into the beams' edge ring, so the ring holds
    door and beam edges in the order their callbacks ran: each crossing is
    judged by the door state at its own time stamp, even when the loop was
    blocked while the door opened (the opening is learnt late, with its time)."""

    def __init__(self, door_pins, config=None, now_us=None, encoders=None, block_ms=24000):
        """block_ms: the longest blocking call the firmware can make (a connect
        attempt, uplink.connect_ms); the edge ring is sized to hold it."""
        now = ticks_us() if now_us is None else now_us
        self.grace_us = setting(config, "grace_ms") * 1000
        self.switch_us = setting(config, "switch_debounce_ms") * 1000
        timing = {}
        for k in ("debounce_ms", "linger_ms", "fault_ms", "bunch_us", "tailgate_gap_ms", "late_ms"):
            timing[k] = setting(config, k)
        self.bank = BeamBank([(a, b, low, sw) for a, b, sw, low in door_pins],
                             setting(config, "ring_size") or ring_for(block_ms), now, encoders=encoders, **timing)
        self.doors = []
        self.now_us = now  # time of the last step
        self.opened = 0  # door openings since boot, all doors (StopVisits sees openings it missed)
        self.open_us = now  # time of the latest opening
        self.close_us = now  # time of the latest closing
        for i, (_, _, sw, low) in enumerate(door_pins):
            d = _Door(sw, 1 if low else 0)
            d.closed_us = (now - self.grace_us - 1) & 0x3FFFFFFF  # closed long ago: no grace at boot
            if sw is None:
                d.open = d.counting = True
            else:
                d.cand = sw.value() ^ d.invert
                d.open = d.counting = bool(d.cand)
                d.cand_us = now
            self.doors.append(d)
            self.bank.fsms[i].on_crossing = self._on_crossing(d)
        self.bank.on_aux = self._on_switch  # bound once: called from the drain, allocation-free
        self.pcnt_errors = 0  # PCNT units that failed to start (None in a list of encoders)
        for e in encoders or ():
            if e is None:
                self.pcnt_errors += 1

    def _on_crossing(self, d):
        grace = self.grace_us
        settle = self._settle

        def cb(dirn, t_us):
            settle(d, t_us)
            if d.open or ticks_diff(t_us, d.closed_us) <= grace:
                if dirn == IN:
                    d.ins += 1
                else:
                    d.outs += 1
            else:
                d.outside += 1
        return cb

    def _on_switch(self, k, level, t_us, late):
        """Door k's switch level from the ring, in order with the beams'
        edges: its own edge, or (late == 2) a change a beam's handler read."""
        d = self.doors[k]
        if late != 2:
            d.switch_edges += 1
        self._settle(d, t_us)
        if level != d.cand:
            d.cand = level
            d.cand_us = t_us

    def _settle(self, d, t_us):
        """Commit the switch level if it has held switch_debounce_ms by t_us;
        the door opened or closed at the time that level began."""
        if d.cand != d.open and ticks_diff(t_us, d.cand_us) >= self.switch_us:
            d.open = bool(d.cand)
            if d.open:
                d.openings += 1
                d.counting = True
                self.opened += 1
                self.open_us = d.cand_us
            else:
                d.closed_us = self.close_us = d.cand_us

    def step(self, now_us=None):
        """Drain the edge ring (beams and door switches, in order), update the
        counts, and check each switch's level against what the ring said."""
        now = ticks_us() if now_us is None else now_us
        self.now_us = now
        self.bank.service(now)
        for d in self.doors:
            if d.switch is None:
                continue
            v = d.switch.value() ^ d.invert
            if v == d.cand:
                d.mis = False
            elif not d.mis:
                d.mis = True
                d.mis_us = now
            elif ticks_diff(now, d.mis_us) >= self.switch_us:
                d.switch_lost += 1  # the ring never said: its edge was dropped
                d.cand = v
                d.cand_us = d.mis_us
                d.mis = False
            self._settle(d, now)
            if d.counting and not d.open:
                d.counting = ticks_diff(now, d.closed_us) <= self.grace_us

    # --- what the main loop and the stop visits read ---------------------
    def busy(self):
        """True while blocking calls must wait: a door open or in grace, or edges queued."""
        if len(self.bank.ring):
            return True
        for d in self.doors:
            if d.counting:
                return True
        return False

    def __len__(self):
        return len(self.doors)

    def is_open(self, i):
        return self.doors[i].open

    def active(self, i):
        """Open, or closed less than grace_ms ago: crossings still count."""
        return self.doors[i].counting

    def counts(self, i):
        """(boardings, alightings) of door i since boot."""
        d = self.doors[i]
        return d.ins, d.outs

    def boardings(self, i):
        """Like counts(i)[0], without making a tuple (the loop reads it every step)."""
        return self.doors[i].ins

    def alightings(self, i):
        return self.doors[i].outs

    def lost(self, i):
        """Edges really lost, crossings given up and crossings only the PCNT
        saw on door i since boot: the pins disagreed with the FSM, a late
        bunch's toggles did not explain its snapshot, the hardware count was
        ahead, or the ring overflowed (overflows are charged to door 0)."""
        f = self.bank.fsms[i]
        return f.lost_edges + f.unresolved + f.recovered + (self.bank.ring.overflows if i == 0 else 0)

    def late(self, i):
        """Edges of door i delivered while the loop was blocked, since boot."""
        return self.bank.fsms[i].late

    def open_age_ms(self):
        """How long before the last step the latest door opening happened."""
        return ticks_diff(self.now_us, self.open_us) // 1000

    def close_age_ms(self):
        """How long before the last step the latest door closing happened."""
        return ticks_diff(self.now_us, self.close_us) // 1000

    def faulty(self, i):
        """True while a beam of door i has been blocked longer than fault_ms."""
        return bool(self.bank.fsms[i].fault)

    def any_fault(self):
        for f in self.bank.fsms:
            if f.fault:
                return True
        return False

    def health(self):
        """Counter health for the status report (cumulative since boot).

        Per door: `faults`/`faulty` (a beam blocked longer than fault_ms:
        stuck or covered), `chatter_pm` (bounces per 1000 beam edges: a dirty
        or misaligned sensor), `switch_stuck` (1 when this door's switch never
        changed while another door opened at least 10 times), `late` (edges
        that came through a blocking call), `lost_edges`, `unresolved`,
        `recovered`/`split` (PCNT: crossings added / directions corrected),
        `outside` (crossings with the door closed), `no_pcnt` (0: the PCNT
        cross-check works; 1: none, the firmware lacks machine.Encoder or
        the unit failed to start, see `pcnt_errors`; 2: attached but its
        count never moved while the door counted 10 crossings: miswired)."""
        fs = self.bank.fsms
        most = 0
        for d in self.doors:
            if d.openings > most:
                most = d.openings
        return {
            "faults": [f.faults for f in fs],
            "faulty": [1 if f.fault else 0 for f in fs],
            "lingering": [f.lingering for f in fs],
            "lost_edges": [f.lost_edges for f in fs],
            "unresolved": [f.unresolved for f in fs],
            "bounces": [f.bounces for f in fs],
            "chatter_pm": [f.bounces * 1000 // f.edges if f.edges else 0 for f in fs],
            "late": [f.late for f in fs],
            "partial": [f.partial for f in fs],
            "outside": [d.outside for d in self.doors],
            "recovered": [f.recovered for f in fs],
            "split": [f.split for f in fs],
            "openings": [d.openings for d in self.doors],
            "switch_stuck": [1 if d.switch is not None and d.switch_edges == 0 and most >= 10 else 0
                             for d in self.doors],
            "switch_lost": [d.switch_lost for d in self.doors],
            "no_pcnt": [1 if f.hw is None else (2 if not f.hw_moved and f.ins + f.outs >= 10 else 0) for f in fs],
            "pcnt_errors": self.pcnt_errors,
            "irq_overflows": self.bank.ring.overflows,
            "ring_peak": self.bank.ring.peak,
        }
