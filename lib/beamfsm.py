"""The dual-beam direction state machine, fed on time (one beam pair).

Beam A is outside, beam B inside: A, A+B, B, none is IN; the reverse OUT.
This module holds the states, the debounce of on-time toggles, the pin
check that finds lost edges, and the counters; lib/beampair.py adds what
comes late (edges and snapshots delivered after a blocking call) and the
PCNT reconciliation. A pin level that disagrees with the FSM once the
ring is empty means edges were lost: the FSM resyncs and counts the
crossing it could not see as `unresolved`, never as a person.
Times are ticks_us (wrapping); intervals always use ticks_diff.
"""

from time import ticks_diff

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

IN = const(1)
OUT = const(2)

_IDLE = const(0)  # both beams clear
_FIRST = const(1)  # first beam of the direction only
_BOTH = const(2)  # both beams
_SECOND = const(3)  # second beam only: the person has passed the first
_AGAIN = const(4)  # first beam blocked again behind someone on the second
_UNKNOWN = const(5)  # after a resync: wait for both beams clear
_ANY = const(6)  # both beams blocked from rest (seen late): the beam that clears first gives the direction


class BeamFSM:
    """Direction state machine for one beam pair: on-time toggles, states,
    counts (see BeamPair in lib/beampair.py for the whole interface)."""

    def __init__(self, debounce_ms=25, linger_ms=2500, fault_ms=120000,
                 tailgate_gap_ms=150, on_crossing=None):
        self.debounce_us = debounce_ms * 1000
        self.tailgate_us = tailgate_gap_ms * 1000
        self.linger_us = linger_ms * 1000
        self.fault_us = fault_ms * 1000
        self.on_crossing = on_crossing
        self.raw = 0  # levels after every edge seen, bit 0 = A, bit 1 = B
        self.lvl = 0  # committed (debounced) levels
        self.pend_t = [0, 0]  # tick of the pending change per beam
        self.since = [0, 0]  # tick of the last committed change per beam
        self.stage = _IDLE
        self.stage_t = 0  # tick the current pair state began
        self.dirn = 0
        self.first_beam = 0  # channel of the edge that took the pair from none to both (late)
        self.flagged = 0  # lingering flags: bit per beam
        self.fault = 0  # sensor fault flags: bit per beam
        self.mismatch = 0
        self.mismatch_t = 0
        self.ins = 0
        self.outs = 0
        self.partial = 0  # entries that turned back
        self.bounces = 0  # toggles cancelled by the debounce
        self.late = 0  # edges delivered while the loop was blocked (counted by BeamBank)
        self.edges = 0  # edges drained for this pair (chatter = bounces / edges)
        self.inferred = 0  # pair states skipped while late, inferred from edge order
        self.lost_edges = 0  # edges missed, found from pin levels
        self.unresolved = 0  # crossings given up after lost edges
        self.lingering = 0  # beams blocked longer than linger_ms
        self.faults = 0  # beams blocked longer than fault_ms
        self.hw = None  # optional PCNT quadrature counter (.value()), A leading = +1
        self.hw_sign = 1
        self.hw_base = 0
        self.hw_moved = False  # the hardware count changed at least once (a PCNT that never does is miswired)
        self.sw_base = 0
        self.dirty = False  # late or lost edges since the last check against hw
        self.ahead = False  # a snapshot was adopted: queued edges may already be in it
        self.recovered = 0  # crossings only the hardware counter saw
        self.split = 0  # crossings whose direction the hardware net count corrected
        self.sh_in = 0  # crossings the FSM found while late, held until the hardware confirms them
        self.sh_out = 0
        self.sh_t = 0

    def start(self, a, b, now_us):
        """Adopt the current pin levels (boot, or after configuration)."""
        s = a | (b << 1)
        self.raw = self.lvl = s
        self.since[0] = self.since[1] = self.stage_t = now_us
        self.stage = _IDLE if s == 0 else _UNKNOWN
        self.dirn = 0

    def toggle(self, beam, t_us):
        """An edge delivered on time: a toggle filtered by the debounce. Its
        snapshot is not used: on a bouncing beam the handler may read the
        level after the next bounce, whose own callback follows. Lost edges
        show at the next poll, when the pins disagree with the FSM."""
        bit = 1 << beam
        new = self.raw ^ bit
        self._commit_due(t_us)
        if (self.raw ^ self.lvl) & bit:  # this beam changed less than debounce ago
            self.raw ^= bit
            self.bounces += 1
            return
        self.raw = new
        self.pend_t[beam] = t_us

    def _commit_due(self, now_us):
        p = self.raw ^ self.lvl
        if not p:
            return
        d = self.debounce_us
        pt = self.pend_t
        if p == 3 and ticks_diff(pt[1], pt[0]) < 0:
            if ticks_diff(now_us, pt[1]) >= d:
                self._commit(1)
            p = 1
        if p & 1 and ticks_diff(now_us, pt[0]) >= d:
            self._commit(0)
        if p & 2 and ticks_diff(now_us, pt[1]) >= d:
            self._commit(1)

    def _commit_all(self):
        p = self.raw ^ self.lvl
        if p == 3 and ticks_diff(self.pend_t[1], self.pend_t[0]) < 0:
            self._commit(1)
            p = 1
        if p & 1:
            self._commit(0)
        if p & 2:
            self._commit(1)

    def _commit(self, beam):
        self._set(self.lvl ^ (1 << beam), self.pend_t[beam])

    def _set(self, s, t):
        d = s ^ self.lvl
        for beam in (0, 1):
            if d & (1 << beam):
                self.since[beam] = t
        self.flagged &= ~d
        self.fault &= ~d
        self.lvl = s
        self._step(s, t)

    def _step(self, s, t):
        st = self.stage
        held_us = ticks_diff(t, self.stage_t)  # time spent in the previous pair state
        self.stage_t = t
        if st == _UNKNOWN or st == _IDLE:
            if s == 0:
                self.stage = _IDLE
            elif st == _IDLE:
                if s == 3:
                    self.stage = _ANY
                    self.dirn = 0
                else:
                    self.stage = _FIRST
                    self.dirn = IN if s == 1 else OUT
            return
        if st == _ANY:
            if s == 3:
                return
            if s == 0:
                self.stage = _IDLE
                self.partial += 1
                return
            self.dirn = IN if s == 2 else OUT  # the beam still blocked is the second one
            self.stage = _SECOND
            return
        rel = s if self.dirn == IN else ((s & 1) << 1) | (s >> 1)
        if st == _FIRST:
            if rel == 3:
                self.stage = _BOTH
            elif rel == 0:
                self.stage = _IDLE
                self.partial += 1
            else:
                self.stage = _UNKNOWN
        elif st == _BOTH:
            if rel == 2:
                self.stage = _SECOND
            elif rel == 1:
                self.stage = _FIRST
            else:
                self.stage = _UNKNOWN if s else _IDLE
        elif st == _SECOND:
            if rel == 0:
                self.stage = _IDLE
                self._count(t)
            elif rel == 3:
                # First beam blocked again: a second person if the first beam
                # was clear long enough, else a bag or a swinging arm.
                if held_us >= self.tailgate_us:
                    self.stage = _AGAIN
                else:
                    self.stage = _BOTH
            else:
                self.stage = _UNKNOWN
        else:  # _AGAIN: someone on the first beam while another is on the second
            if rel == 1:  # the one ahead left through the second beam
                self._count(t)
                self.stage = _FIRST
            elif rel == 2:  # the first beam cleared again: still one person
                self.stage = _SECOND
            else:
                self.stage = _UNKNOWN if s else _IDLE

    def _count(self, t):
        if self.dirty and self.hw is not None:  # late: held for the hardware's net count
            if self.dirn == IN:
                self.sh_in += 1
            else:
                self.sh_out += 1
            self.sh_t = t
            return
        self._emit(t)

    def _emit(self, t):
        if self.dirn == IN:
            self.ins += 1
        else:
            self.outs += 1
        cb = self.on_crossing
        if cb is not None:
            cb(self.dirn, t)

    def poll(self, now_us, a, b):
        """Commit settled edges, flag lingering/faulty beams, resync on lost edges.
        Call it after draining the ring: every queued edge has been seen."""
        self.ahead = False
        self._commit_due(now_us)
        s = self.lvl
        for beam in (0, 1):
            bit = 1 << beam
            if s & bit:
                held = ticks_diff(now_us, self.since[beam])
                if held >= self.linger_us and not self.flagged & bit:
                    self.flagged |= bit
                    self.lingering += 1
                if held >= self.fault_us and not self.fault & bit:
                    self.fault |= bit
                    self.faults += 1
        diff = (a | (b << 1)) ^ self.raw
        if diff != self.mismatch:
            self.mismatch = diff
            self.mismatch_t = now_us
        elif diff and ticks_diff(now_us, self.mismatch_t) >= self.debounce_us:
            self._resync(a | (b << 1), diff, now_us)
        if self.hw is not None and self.stage == _IDLE and (self.raw | self.lvl | a | b) == 0:
            self._check_hw(self.hw.value())

    def _resync(self, actual, diff, now_us):
        self.lost_edges += 1 if diff != 3 else 2
        if self.stage != _IDLE or actual:
            self.unresolved += 1
        for beam in (0, 1):
            if diff & (1 << beam):
                self.since[beam] = now_us
        self.raw = self.lvl = actual
        self.dirty = True
        self.stage = _IDLE if actual == 0 else _UNKNOWN
        self.dirn = 0
        self.mismatch = 0

    def busy(self):
        """True while a crossing is in progress or an edge awaits its debounce."""
        return self.stage != _IDLE or self.raw != self.lvl
