"""Dual-beam people counting: an IRQ-safe edge ring and a direction FSM.

Why this shape: on the ESP32 pin IRQs are soft (scheduled) callbacks. They
run late while the interpreter is blocked, bunched at almost one timestamp,
see the pins' *current* levels instead of their edge's, and beyond 8 pending
ones they are lost. So a handler only stores (channel, snapshot of both
beams of its pair, ticks_us) in a preallocated ring. The drain then uses
each edge as a *toggle* of its beam when that agrees with the snapshot (on
time, or a bunch whose toggles explain its last snapshot: order survives a
stall, times do not) and otherwise moves the FSM to the snapshot, which is
always the truth at the time the handler ran. Bounce is filtered by time
only for edges delivered on time. A pin level that disagrees with the FSM
once the ring is empty means edges were lost: the FSM resyncs and counts the
crossing it could not see as `unresolved`, never as a person.

Beam A is outside, beam B inside: A, A+B, B, none is IN; the reverse OUT.
Times are ticks_us (wrapping); intervals always use ticks_diff.
"""

from array import array
from time import ticks_us, ticks_diff

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


class EdgeRing:
    """Preallocated single-producer ring of (channel, level, ticks_us).

    The IRQ handler only moves `head`, the main loop only `tail`, so a soft
    callback that runs between two bytecodes of `drain` cannot corrupt it.
    One slot stays empty to tell full from empty; a push into a full ring
    is counted in `overflows` and dropped."""

    def __init__(self, size=64):
        self.size = size
        self._code = bytearray(size)  # channel << 2 | snapshot of the pair
        self._t = array("i", bytes(4 * size))  # ticks_us < 2**30 fits
        self.head = 0
        self.tail = 0
        self.overflows = 0

    def push(self, ch, snap, t_us):
        i = self.head + 1
        if i == self.size:
            i = 0
        if i == self.tail:
            self.overflows += 1
            return
        h = self.head
        self._code[h] = (ch << 2) | snap
        self._t[h] = t_us
        self.head = i

    def __len__(self):
        n = self.head - self.tail
        return n + self.size if n < 0 else n

    def get(self, i):
        """(channel, snapshot, t_us) of the entry i places after the tail (tests)."""
        j = (self.tail + i) % self.size
        c = self._code[j]
        return c >> 2, c & 3, self._t[j]


def irq_handler(ring, ch, pin_a, pin_b, invert):
    """Pin.irq handler for beam ch (pair ch >> 1): stores ch, the blocked
    levels of both beams of the pair (bit 0 A, bit 1 B) and now. Allocates nothing."""
    push = ring.push
    code = (ch << 1) | invert  # a closure over more than 4 names allocates per call

    def handler(pin):
        inv = code & 1
        push(code >> 1, (pin_a.value() ^ inv) | ((pin_b.value() ^ inv) << 1), ticks_us())
    return handler


class BeamPair:
    """Direction state machine for one beam pair (a door or a gate).

    Feed it `edge(beam, snap, t_us)` (beam 0 = A outside, 1 = B inside; snap
    = blocked levels when the handler ran, bit 0 A, bit 1 B) and call
    `poll(now_us, a, b)` every loop with the pins' current blocked levels.
    Counts accumulate in `ins`/`outs`; `on_crossing(direction, t_us)` is
    called for each one when set."""

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
        self.flagged = 0  # lingering flags: bit per beam
        self.fault = 0  # sensor fault flags: bit per beam
        self.mismatch = 0
        self.mismatch_t = 0
        self.ins = 0
        self.outs = 0
        self.partial = 0  # entries that turned back
        self.bounces = 0  # toggles cancelled by the debounce
        self.late = 0  # edges taken as delivered late
        self.inferred = 0  # pair states skipped while late, inferred from edge order
        self.lost_edges = 0  # edges missed, found from pin levels
        self.unresolved = 0  # crossings given up after lost edges
        self.lingering = 0  # beams blocked longer than linger_ms
        self.faults = 0  # beams blocked longer than fault_ms
        self.hw = None  # optional PCNT quadrature counter (.value()), A leading = +1
        self.hw_sign = 1
        self.hw_base = 0
        self.sw_base = 0
        self.dirty = False  # late or lost edges since the last check against hw
        self.ahead = False  # a snapshot was adopted: queued edges may already be in it
        self.recovered = 0  # crossings only the hardware counter saw

    def start(self, a, b, now_us):
        """Adopt the current pin levels (boot, or after configuration)."""
        s = a | (b << 1)
        self.raw = self.lvl = s
        self.since[0] = self.since[1] = self.stage_t = now_us
        self.stage = _IDLE if s == 0 else _UNKNOWN
        self.dirn = 0

    def edge(self, beam, snap, t_us):
        """An edge delivered on its own: a toggle filtered by the debounce if
        it agrees with its snapshot, else the snapshot wins (late or lost)."""
        bit = 1 << beam
        new = self.raw ^ bit
        if new != snap:
            self.sample(snap, t_us, beam)
            return
        self._commit_due(t_us)
        if (self.raw ^ self.lvl) & bit:  # this beam changed less than debounce ago
            self.raw ^= bit
            self.bounces += 1
            return
        self.raw = new
        self.pend_t[beam] = t_us

    def edge_late(self, beam, t_us):
        """An edge of a late bunch whose toggles are known to be complete:
        its order counts, its time does not, so no debounce."""
        self.late += 1
        self.dirty = True
        self._commit_all()
        new = self.lvl ^ (1 << beam)
        self.raw = new
        self._set(new, t_us)

    def sample(self, snap, t_us, beam):
        """Move to the pair state snap seen late. If both beams changed, the
        skipped state is inferred: one beam to the other passes through both
        (a bag, a step back: no count); both to none passes the second beam
        of the crossing under way; none to both starts with the edge's beam."""
        self.late += 1
        self.dirty = True
        self.ahead = True
        self._commit_all()
        cur = self.lvl
        self.raw = snap
        d = cur ^ snap
        if not d:
            return
        if d == 3:
            self.inferred += 1
            if cur == 1 or cur == 2:
                via = 3
            elif cur == 3 and self.dirn:
                via = 2 if self.dirn == IN else 1
            else:
                via = cur ^ (1 << beam)
            self._set(via, t_us)
        self._set(snap, t_us)

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
                    self.stage = _UNKNOWN
                else:
                    self.stage = _FIRST
                    self.dirn = IN if s == 1 else OUT
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
            self._check_hw(now_us)

    def _check_hw(self, now_us):
        """At rest, compare the net count with the hardware counter. After
        late or lost edges, crossings the hardware saw in the same direction
        beyond ours are added (`recovered`); a hardware count below ours is
        left alone (two people close together make one quadrature cycle)."""
        v = self.hw.value()
        sw = self.ins - self.outs
        if self.dirty:
            hw_net = (v - self.hw_base) * self.hw_sign
            sw_net = 4 * (sw - self.sw_base)
            n = 0
            if hw_net >= 0 and sw_net >= 0 and hw_net > sw_net:
                n = (hw_net - sw_net) // 4
            elif hw_net <= 0 and sw_net <= 0 and hw_net < sw_net:
                n = -((sw_net - hw_net) // 4)
            if n > 0:
                self.dirn = IN
            elif n < 0:
                self.dirn = OUT
                n = -n
            for _ in range(n):
                self.recovered += 1
                self._count(now_us)
            self.dirn = 0
            self.dirty = False
            sw = self.ins - self.outs
        self.hw_base = v
        self.sw_base = sw

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


class BeamBank:
    """Beam pairs wired to one edge ring: pairs is [(pin_a, pin_b, invert)].

    invert is 1 for active-low sensors (pin low = beam blocked). Edges closer
    than bunch_us were run back to back after a stall: they are handled as
    one bunch. encoders: optional PCNT quadrature counter per pair (or None),
    machine.Encoder(id, pin_a, pin_b, phases=4) where the firmware has it."""

    def __init__(self, pairs, ring_size=64, now_us=None, bunch_us=500, encoders=None, sched_depth=8, **timing):
        self.ring = EdgeRing(ring_size)
        self.bunch_us = bunch_us
        self.sched_depth = sched_depth  # pending callbacks the port keeps (8 on the ESP32)
        self.full_bunches = 0  # bunches that filled the callback queue: edges were probably dropped
        n = len(pairs)
        self.pins = []
        self.invert = bytearray(n)
        self._xor = bytearray(n)  # per pair: toggles seen in the current bunch
        self._last = bytearray(n)  # per pair: last snapshot in the bunch (4: none)
        self.fsms = []
        now = ticks_us() if now_us is None else now_us
        for i, (pa, pb, inv) in enumerate(pairs):
            inv = 1 if inv else 0
            self.invert[i] = inv
            fsm = BeamPair(**timing)
            self.fsms.append(fsm)
            for j, p in enumerate((pa, pb)):
                self.pins.append(p)
                p.irq(irq_handler(self.ring, 2 * i + j, pa, pb, inv), p.IRQ_RISING | p.IRQ_FALLING)
            fsm.start(pa.value() ^ inv, pb.value() ^ inv, now)
            if encoders and encoders[i] is not None:
                fsm.hw = encoders[i]
                fsm.hw_base = encoders[i].value()

    def service(self, now_us=None):
        """Drain the ring into the FSMs and poll them; returns edges handled."""
        ring = self.ring
        code = ring._code
        tt = ring._t
        size = ring.size
        fsms = self.fsms
        n = 0
        while ring.tail != ring.head:
            i = ring.tail
            k = 1  # length of the bunch starting at i
            j = i
            while True:
                nj = j + 1 if j + 1 < size else 0
                if nj == ring.head or ticks_diff(tt[nj], tt[j]) >= self.bunch_us:
                    break
                j = nj
                k += 1
            if k == 1:
                c = code[i]
                ring.tail = i + 1 if i + 1 < size else 0
                fsms[c >> 3].edge((c >> 2) & 1, c & 3, tt[i])
                n += 1
                continue
            self._bunch(i, k)
            n += k
        now = ticks_us() if now_us is None else now_us
        pins = self.pins
        for i in range(len(fsms)):
            inv = self.invert[i]
            fsms[i].poll(now, pins[2 * i].value() ^ inv, pins[2 * i + 1].value() ^ inv)
        return n

    def _bunch(self, i, k):
        """k edges run back to back: per pair, replay the toggles if they
        explain the last snapshot, else edges were lost: take the snapshot.
        A bunch as long as the callback queue means the queue was full: edges
        may be missing in pairs that parity cannot show (counted, and the
        hardware counter is consulted at the next rest)."""
        ring = self.ring
        code = ring._code
        tt = ring._t
        size = ring.size
        fsms = self.fsms
        xo = self._xor
        last = self._last
        for p in range(len(fsms)):
            xo[p] = 0
            last[p] = 4
        m = i
        for _ in range(k):
            c = code[m]
            xo[c >> 3] ^= 1 << ((c >> 2) & 1)
            last[c >> 3] = c & 3
            m = m + 1 if m + 1 < size else 0
        full = k >= self.sched_depth
        if full:
            self.full_bunches += 1
        for p in range(len(fsms)):
            if last[p] != 4:
                miss = fsms[p].raw ^ xo[p] ^ last[p]
                if full:
                    fsms[p].dirty = True
                if fsms[p].ahead:  # toggles would replay edges the state already holds
                    xo[p] = 255
                elif miss:
                    fsms[p].lost_edges += 2 if miss == 3 else 1
                    fsms[p].dirty = True
                    xo[p] = 255  # mark: use the snapshot
        m = i
        for _ in range(k):
            c = code[m]
            p = c >> 3
            if xo[p] == 255:
                fsms[p].sample(c & 3, tt[m], (c >> 2) & 1)
            else:
                fsms[p].edge_late((c >> 2) & 1, tt[m])
            m = m + 1 if m + 1 < size else 0
            ring.tail = m
