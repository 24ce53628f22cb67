"""Dual-beam direction state machine for one beam pair (a door or a gate).

Edges come from the ring (lib/edgering.py) through BeamBank (lib/beams.py):
on time they are toggles filtered by the debounce (lib/beamfsm.py, the
states); delivered late (the loop was inside a blocking call) their order
counts and their time does not, and a handler's snapshot of the beams, the
truth when it ran, wins when the toggles cannot explain it. Inside a
blocking call every serviced callback, whichever pin raised it, is also a
look at this pair (a sample without an edge). With a PCNT quadrature
counter, crossings found late are held until the pair is at rest and the
hardware's net count settles them.
Times are ticks_us (wrapping); intervals always use ticks_diff.
"""

from beamfsm import BeamFSM, IN, OUT  # noqa: F401  (re-exported)

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# The states of lib/beamfsm.py this module tests (same values).
_IDLE = const(0)
_SECOND = const(3)
_AGAIN = const(4)


class BeamPair(BeamFSM):
    """Direction state machine for one beam pair (a door or a gate).

    Feed it `toggle(beam, t_us)` for edges on time, `edge(beam, snap,
    t_us)` / `edge_late` / `sample` for edges and looks delivered late
    (beam 0 = A outside, 1 = B inside; snap = blocked levels when the
    handler ran, bit 0 A, bit 1 B) and call `poll(now_us, a, b)` every loop
    with the pins' current blocked levels. Counts accumulate in
    `ins`/`outs`; `on_crossing(direction, t_us)` is called for each one
    when set."""

    def edge(self, beam, snap, t_us):
        """An edge delivered late on its own: a toggle if it agrees with its
        snapshot, else the snapshot wins (queued edges behind it, or lost).
        beam | 2: the callback queue was not empty, the edge may be stale."""
        if self.raw ^ (1 << (beam & 1)) != snap:
            self.sample(snap, t_us, beam)
            return
        self.toggle(beam & 1, t_us)

    def edge_late(self, beam, t_us):
        """An edge of a late bunch whose toggles are known to be complete:
        its order counts, its time does not, so no debounce."""
        self.dirty = True
        self._commit_all()
        new = self.lvl ^ (1 << beam)
        self.raw = new
        self._set(new, t_us)

    def sample(self, snap, t_us, beam):
        """Move to the pair state snap seen late. beam: the channel of the
        callback's own edge (0/1 fresh, | 2 stale: the queue was not empty),
        or 4: a look from another pair's callback, no edge of this pair. If
        both beams changed, the skipped state is inferred from where the
        crossing under way was: the first beam only to the second only
        walked on through both; the second only to the first only is one
        person leaving and the next entering when an edge of this pair says
        the second beam cleared first, else a bag or body walking on through
        both; both to none leaves by the second beam; none to both waits for
        the beam that clears first to tell the direction."""
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
            st = self.stage
            if cur == 0:
                self.first_beam = beam & 1  # none to both: _ANY decides when one beam clears
            elif cur == 3 and not self.dirn:
                # both to none, still undecided: last resort, the channel that started it
                self._set(2 if self.first_beam == 0 else 1, t_us)
            elif cur == 3:
                self._set(2 if self.dirn == IN else 1, t_us)  # the crossing under way left by its second beam
            elif beam < 2:
                # one beam to the other, the edge fresh: its beam changed first
                # (callbacks run in edge order): B then A is one person leaving
                # and the next entering; A then B a bag behind or walking on
                self._set(cur ^ (1 << beam), t_us)
            elif st == _SECOND or st == _AGAIN:
                if beam < 4 and cur & (1 << (beam & 1)):
                    # a queued edge of the second beam clearing: the queue keeps
                    # edge order, so it cleared before the first was blocked
                    # again: one person left, the next is on the first beam
                    self._set(0, t_us)
                else:
                    # a look without an edge (another callback's snapshot): far
                    # likelier a bag or body behind walking on through both than
                    # a next person within one 100 ms tick; held for no time,
                    # so not taken for a second person either
                    self._set(3, self.stage_t)
            else:
                self._set(3, t_us)  # stale edge: on the first beam, walked on through both
        self._set(snap, t_us)

    def rest_hw(self, v):
        """A late callback saw the pair at rest with the hardware count v (read
        by the handler): reconcile now, so each window holds few crossings."""
        if self.stage == _IDLE and (self.raw | self.lvl) == 0 and (v - self.hw_base) & 3 == 0:
            self._check_hw(v)

    def _check_hw(self, v):
        """At rest, compare the net count with the hardware counter. After
        late or lost edges (a dirty window) the hardware's net count wins:
        the crossings the FSM found meanwhile (held) are released, adjusted
        so the window's net equals the hardware's: first by dropping held
        crossings of the other direction (a direction or a bag the late
        samples got wrong), then by adding crossings (`recovered`). The
        adjustments are counted in `split`. Two people close together make
        one quadrature cycle: within a dirty window they count as one."""
        sw = self.ins - self.outs
        if v != self.hw_base:
            self.hw_moved = True
        if self.dirty:
            hw_net = (v - self.hw_base) * self.hw_sign
            d = (hw_net + 2) // 4 - (sw - self.sw_base)  # crossings still owed to the net
            e_in = self.sh_in
            e_out = self.sh_out
            diff = d - (e_in - e_out)
            if diff > 0:
                r = e_out if e_out < diff else diff
                e_out -= r
                e_in += diff - r
                self.split += diff
            elif diff < 0:
                r = e_in if e_in < -diff else -diff
                e_in -= r
                e_out += -diff - r
                self.split -= diff
            held = self.sh_in + self.sh_out
            if e_in + e_out > held:
                self.recovered += e_in + e_out - held
            t = self.sh_t if held else self.stage_t  # when the crossings happened
            self.sh_in = self.sh_out = 0
            self.dirty = False
            self.dirn = IN
            for _ in range(e_in):
                self._emit(t)
            self.dirn = OUT
            for _ in range(e_out):
                self._emit(t)
            self.dirn = 0
            sw = self.ins - self.outs
        self.hw_base = v
        self.sw_base = sw
