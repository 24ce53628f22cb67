"""Beam pairs wired to one edge ring: pins -> ring -> direction FSMs.

Why this shape: see lib/edgering.py (what the IRQ handlers store) and
lib/beampair.py (the FSM). This module drains the ring in order and decides
per edge whether it came on time or late. An edge is late only when that is
measurable: it was delivered more than `late_ms` after the previous drain,
i.e. while the main loop was inside a blocking call. On-time edges are
toggles through the debounce (bounce a few hundred microseconds apart is
bounce, not a late bunch); late edges keep their order and lose their
times: a run of them closer than `bunch_us` (what the interpreter ran back
to back when the call returned) is replayed if its toggles explain its last
snapshot, else the snapshots win and the edges missing are counted as lost.
Every callback's snapshot holds every pair's levels: a late one is also a
look at the other pairs (fed to their FSMs as samples without an edge), and
any one shows every door switch. Auxiliary channels (door switches) and
switch changes seen in snapshots are handed to `on_aux` in ring order.
"""

from time import ticks_us, ticks_diff
from edgering import EdgeRing, irq_handler, AUX
from beampair import BeamPair, IN, OUT  # noqa: F401  (re-exported: one import for users)

_AUX_CODE = AUX << 3


class BeamBank:
    """Beam pairs wired to one edge ring: pairs is [(pin_a, pin_b, invert)]
    or [(pin_a, pin_b, invert, door_switch or None)].

    invert is 1 for active-low sensors (pin low = beam blocked, switch low =
    door open). encoders: optional PCNT quadrature counter per pair (or
    None), machine.Encoder(id, pin_a, pin_b, phases=4) where the firmware
    has it. A pair's door switch interrupts into the same ring, and every
    callback also reads it: its changes go to on_aux(pair, level, t_us,
    late) in ring order (late = 2: seen in another callback's snapshot)."""

    def __init__(self, pairs, ring_size=256, now_us=None, bunch_us=500, encoders=None, sched_depth=8,
                 late_ms=100, tick_ms=100, **timing):
        n = len(pairs)
        self.ring = EdgeRing(ring_size, n)
        self.bunch_us = bunch_us
        self.late_us = late_ms * 1000
        self.fresh_us = tick_ms * 1500  # a gap of more than 1.5 service ticks: the queue had run empty
        self.sched_depth = sched_depth  # pending callbacks the port keeps (8 on the ESP32)
        self.full_bunches = 0  # late bunches as long as the callback queue: edges were probably dropped
        self.on_aux = None
        self.pins = []
        self.invert = bytearray(n)
        self._xor = bytearray(n)  # per pair: toggles seen in the current bunch
        self._last = bytearray(n)  # per pair: last snapshot in the bunch (4: none)
        self.fsms = []
        now = ticks_us() if now_us is None else now_us
        self.last_us = now  # time of the previous drain
        self.has_sw = bytearray(n)  # per pair: a door switch is wired into the ring
        self.sw_seen = bytearray(n)  # per pair: the switch level last seen in the ring
        self.samples = 0  # other pairs' snapshots taken from late callbacks (each a sample)
        every = []  # every pin in snapshot bit order (3 per pair)
        mask = 0
        for i, pr in enumerate(pairs):
            inv = 1 if pr[2] else 0
            sw = pr[3] if len(pr) > 3 else None
            every += [pr[0], pr[1], sw]
            if inv:
                mask |= (3 if sw is None else 7) << (3 * i)
        every = tuple(every)
        for i, pr in enumerate(pairs):
            pa, pb, inv = pr[0], pr[1], 1 if pr[2] else 0
            sw = pr[3] if len(pr) > 3 else None
            self.invert[i] = inv
            fsm = BeamPair(**timing)
            self.fsms.append(fsm)
            enc = encoders[i] if encoders else None
            for j, p in enumerate((pa, pb)):
                self.pins.append(p)
                p.irq(irq_handler(self.ring, 2 * i + j, every, (2 * i + j, mask, enc)), p.IRQ_RISING | p.IRQ_FALLING)
            if sw is not None:
                self.has_sw[i] = 1
                self.sw_seen[i] = sw.value() ^ inv
                sw.irq(irq_handler(self.ring, AUX | i, every, (AUX | i, mask, None)), sw.IRQ_RISING | sw.IRQ_FALLING)
            fsm.start(pa.value() ^ inv, pb.value() ^ inv, now)
            if enc is not None:
                fsm.hw = enc
                fsm.hw_base = enc.value()

    def service(self, now_us=None):
        """Drain the ring into the FSMs and poll them; returns edges handled."""
        ring = self.ring
        code = ring._code
        tt = ring._t
        size = ring.size
        fsms = self.fsms
        head = ring.head  # edges pushed while draining wait for the next call
        n = len(ring)
        if n > ring.peak:
            ring.peak = n
        last = self.last_us
        prev = last
        late_us = self.late_us
        while ring.tail != head:
            i = ring.tail
            c = code[i]
            t = tt[i]
            late = ticks_diff(t, last) > late_us
            gap = ticks_diff(t, prev)  # a callback after a skipped service tick found the queue empty
            prev = t
            if c >= _AUX_CODE:
                ring.tail = i + 1 if i + 1 < size else 0
                k = (c >> 3) & 0xF
                self.sw_seen[k] = c & 1
                if self.on_aux is not None:
                    self.on_aux(k, c & 1, t, late)
                self._others(ring._all[i], t, 255, late)
                continue
            p = c >> 4
            self._others(ring._all[i], t, p, late)
            f = fsms[p]
            if not late:
                ring.tail = i + 1 if i + 1 < size else 0
                f.edges += 1
                f.toggle((c >> 3) & 1, t)
                continue
            k = 1  # length of the late bunch starting at i
            j = i
            while True:
                nj = j + 1 if j + 1 < size else 0
                if nj == head or code[nj] >= _AUX_CODE or ticks_diff(tt[nj], tt[j]) >= self.bunch_us:
                    break
                j = nj
                k += 1
            if k == 1:
                ring.tail = i + 1 if i + 1 < size else 0
                f.edges += 1
                f.late += 1
                f.dirty = True
                # bit 1 of beam: stale, the queue was not empty: this callback's
                # edge may be long past, its channel says little about now
                f.edge(((c >> 3) & 1) | (0 if gap > self.fresh_us else 2), c & 3, t)
                if f.hw is not None and not c & 3:
                    f.rest_hw(ring._hw[i])
                continue
            self._bunch(i, k)
        now = ticks_us() if now_us is None else now_us
        self.last_us = now
        pins = self.pins
        for i in range(len(fsms)):
            inv = self.invert[i]
            fsms[i].poll(now, pins[2 * i].value() ^ inv, pins[2 * i + 1].value() ^ inv)
        return n

    def _others(self, a, t, skip, late):
        """What a callback's snapshot `a` (every pair's levels at t) says
        beyond its own channel: door switches that changed (their own
        callback may have been dropped, or still queued) go to on_aux, and,
        when the callback came late, the beams of every pair but `skip`
        (the callback's own, which its edge brings; 255: none) are a sample
        for that pair's FSM: inside a blocking call each serviced callback,
        whichever pin raised it, is a look at every door."""
        fsms = self.fsms
        for q in range(len(fsms)):
            b = a >> (3 * q)
            if self.has_sw[q] and (b >> 2) & 1 != self.sw_seen[q]:
                self.sw_seen[q] ^= 1  # the door switch changed, seen by another handler
                if self.on_aux is not None:
                    self.on_aux(q, self.sw_seen[q], t, 2)
            if late and q != skip:
                f = fsms[q]
                if b & 3 != f.raw:
                    self.samples += 1
                    f.late += 1
                    f.sample(b & 3, t, 4)

    def _bunch(self, i, k):
        """k late edges run back to back: per pair, replay the toggles if they
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
            xo[c >> 4] ^= 1 << ((c >> 3) & 1)
            last[c >> 4] = c & 3
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
            p = c >> 4
            f = fsms[p]
            f.edges += 1
            f.late += 1
            f.dirty = True
            if xo[p] == 255:
                fsms[p].sample(c & 3, tt[m], (c >> 3) & 1)
            else:
                fsms[p].edge_late((c >> 3) & 1, tt[m])
            m = m + 1 if m + 1 < size else 0
            ring.tail = m
        m = m - 1 if m else size - 1
        self._others(ring._all[m], tt[m], 255, True)  # the bunch's last look at every door
