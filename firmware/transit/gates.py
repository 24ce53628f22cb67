"""Depot gates: the door counter's beam FSM, counting all the time, summed
into periodic records.

A period is period_s long and aligned to wall-clock multiples of it (a
5-minute period ends at :00, :05, ...). Each period leaves one GateCount
with (in, out) per gate (deltas, not running totals) and quality flags.
Gates never block anything, so `busy()` is only about queued edges.
"""

from time import ticks_us
from beams import BeamBank

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# GateCount flags (u8); the bit values match stops.Q_* where they mean the same.
G_FAULT = const(1)  # a beam was faulty during the period
G_LOST = const(2)  # edges were lost during the period
G_NO_TIME = const(16)  # the wall clock was not valid
G_PARTIAL = const(128)  # the period is shorter (first period after boot)

DEFAULTS = {"period_s": 300, "debounce_ms": 25, "linger_ms": 2500, "fault_ms": 120000,
            "bunch_us": 500, "tailgate_gap_ms": 150,
            "ring_size": 256}  # as the doors: holds the edges of a 24 s blocking call (docs/counting.md)


class GateCount:
    """One counting period (ints; records.pack_count encodes it)."""

    def __init__(self, start_unix, period_s, gates, flags):
        self.period_start_unix = start_unix
        self.period_end_unix = start_unix + period_s
        self.period_s = period_s
        self.gates = gates  # [(in, out)] per gate
        self.flags = flags


class Gates:
    """gate_pins: [(beam_a, beam_b, switch (ignored), active_low)] as Board.door_pins("gates")."""

    def __init__(self, gate_pins, config=None, unix_s=0, now_us=None):
        c = config or {}

        def get(k):
            return c.get(k, DEFAULTS[k])
        self.period_s = get("period_s")
        timing = {}
        for k in ("debounce_ms", "linger_ms", "fault_ms", "bunch_us", "tailgate_gap_ms"):
            timing[k] = get(k)
        now = ticks_us() if now_us is None else now_us
        self.bank = BeamBank([(a, b, low) for a, b, _, low in gate_pins], get("ring_size"), now, **timing)
        n = len(gate_pins)
        self._base = [[0, 0] for _ in range(n)]
        self._lost = [0] * n
        self.start = unix_s - unix_s % self.period_s
        self.flags = G_PARTIAL if unix_s != self.start else 0
        self.outbox = []

    def step(self, unix_s, time_known=True, now_us=None):
        """Call every loop with the wall clock (Unix s)."""
        self.bank.service(now_us)
        fs = self.bank.fsms
        for i in range(len(fs)):
            if fs[i].fault:
                self.flags |= G_FAULT
            lost = fs[i].lost_edges + fs[i].unresolved
            if lost != self._lost[i]:
                self._lost[i] = lost
                self.flags |= G_LOST
        if not time_known:
            self.flags |= G_NO_TIME
        if unix_s < self.start:  # the clock was set back: restart the period
            self.start = unix_s - unix_s % self.period_s
            self.flags |= G_PARTIAL
            return
        if unix_s >= self.start + self.period_s:
            counts = []
            for i in range(len(fs)):
                b = self._base[i]
                counts.append((fs[i].ins - b[0], fs[i].outs - b[1]))
                b[0], b[1] = fs[i].ins, fs[i].outs
            self.outbox.append(GateCount(self.start, self.period_s, counts, self.flags))
            self.start = unix_s - unix_s % self.period_s
            self.flags = 0

    def totals(self):
        """(in, out) per gate since boot."""
        return [(f.ins, f.outs) for f in self.bank.fsms]

    def busy(self):
        return len(self.bank.ring) > 0

    def health(self):
        fs = self.bank.fsms
        return {
            "faults": [f.faults for f in fs],
            "lingering": [f.lingering for f in fs],
            "lost_edges": [f.lost_edges for f in fs],
            "irq_overflows": self.bank.ring.overflows,
        }

    def pop(self):
        return self.outbox.pop(0) if self.outbox else None
