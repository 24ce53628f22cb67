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
    "bunch_us": 500,  # edges closer than this were delivered late, in a bunch
    "tailgate_gap_ms": 150,  # first beam clear this long before re-blocking: a second person
    "ring_size": 64,  # edges buffered between two steps (all doors)
}


def setting(config, key):
    """A timing setting from the device config, else its default."""
    if config and key in config:
        return config[key]
    return DEFAULTS[key]


def pcnt_encoders(machine, door_pins, first_unit=0):
    """One machine.Encoder per door where the firmware has it (ESP32,
    MicroPython 1.27+), else None: counting works without it."""
    enc = getattr(machine, "Encoder", None)
    if enc is None:
        return None
    return [enc(first_unit + i, a, b, phases=4) for i, (a, b, _, _) in enumerate(door_pins)]


class _Door:
    def __init__(self, switch, invert):
        self.switch = switch
        self.invert = invert
        self.open = False
        self.cand = 0  # switch level last read (1 = open)
        self.cand_us = 0
        self.closed_us = 0
        self.counting = False  # open or within grace
        self.ins = 0
        self.outs = 0
        self.outside = 0  # crossings with the door closed (not passengers)
        self.openings = 0


class Doors:
    """Per-door passenger counters for a bus.

    door_pins: [(beam_a, beam_b, switch or None, active_low)] of Pin-like
    objects, as Board.door_pins() gives (tests pass fake machine.Pins).
    A door without a switch counts all the time. config: timing settings
    (see DEFAULTS). encoders: optional PCNT counter per door (see
    pcnt_encoders), a cross-check that never loses an edge."""

    def __init__(self, door_pins, config=None, now_us=None, encoders=None):
        now = ticks_us() if now_us is None else now_us
        self.grace_us = setting(config, "grace_ms") * 1000
        self.switch_us = setting(config, "switch_debounce_ms") * 1000
        timing = {}
        for k in ("debounce_ms", "linger_ms", "fault_ms", "bunch_us", "tailgate_gap_ms"):
            timing[k] = setting(config, k)
        self.bank = BeamBank([(a, b, low) for a, b, _, low in door_pins],
                             setting(config, "ring_size"), now, encoders=encoders, **timing)
        self.doors = []
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

    def _on_crossing(self, d):
        grace = self.grace_us

        def cb(dirn, t_us):
            if d.open or ticks_diff(t_us, d.closed_us) <= grace:
                if dirn == IN:
                    d.ins += 1
                else:
                    d.outs += 1
            else:
                d.outside += 1
        return cb

    def step(self, now_us=None):
        """Read the door switches, drain the edge ring, update the counts."""
        now = ticks_us() if now_us is None else now_us
        for d in self.doors:
            sw = d.switch
            if sw is None:
                continue
            v = sw.value() ^ d.invert
            if v != d.cand:
                d.cand = v
                d.cand_us = now
            elif bool(v) != d.open and ticks_diff(now, d.cand_us) >= self.switch_us:
                d.open = bool(v)
                if v:
                    d.openings += 1
                    d.counting = True
                else:
                    d.closed_us = d.cand_us
        self.bank.service(now)
        for d in self.doors:
            if d.counting and not d.open and d.switch is not None:
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
        """Edges lost plus crossings given up on door i since boot."""
        f = self.bank.fsms[i]
        return f.lost_edges + f.unresolved

    def faulty(self, i):
        """True while a beam of door i has been blocked longer than fault_ms."""
        return bool(self.bank.fsms[i].fault)

    def any_fault(self):
        for f in self.bank.fsms:
            if f.fault:
                return True
        return False

    def health(self):
        """Counter health for the status report (cumulative since boot)."""
        fs = self.bank.fsms
        return {
            "faults": [f.faults for f in fs],
            "faulty": [1 if f.fault else 0 for f in fs],
            "lingering": [f.lingering for f in fs],
            "lost_edges": [f.lost_edges for f in fs],
            "unresolved": [f.unresolved for f in fs],
            "bounces": [f.bounces for f in fs],
            "partial": [f.partial for f in fs],
            "outside": [d.outside for d in self.doors],
            "recovered": [f.recovered for f in fs],
            "irq_overflows": self.bank.ring.overflows,
        }
