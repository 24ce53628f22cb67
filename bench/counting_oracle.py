"""Upper bound for counting without the PCNT: what the board's samples can tell.

Used by bench/bench_counting.py --oracle. The oracle sees exactly what the
firmware sees of each door, and nothing else:
- every delivered pin callback: the time it ran and every door's beam levels
  it read (the edge ring's snapshot, lib/edgering.py);
- every main-loop step: the beam levels the loop polls (none inside a
  blocking call).
It does not use which pin raised a callback, nor the order the queue kept
(with a full queue a callback's edge happened up to 0.8 s before it ran).

Given the generator's ground truth (each crossing person's span, from
blocking their first beam to clearing their second), it credits a crossing
as recoverable when the samples inside that span show:
- strict: a sample with only the person's first beam blocked, then a later
  one with only their second beam blocked, and no sample with both beams
  clear between them (the occluder went from one beam to the other);
- generous: any of first-only -> second-only, first-only -> both,
  both -> second-only, in that order, clear samples between allowed
  (also explained by a step back or two people: not proof, an upper bound).
A crossing the samples cannot show in either way (e.g. only both-blocked
samples, or none) is not credited. `matched` is credited / true crossings:
what a counter that never guesses could reach at best.
"""

M = 0x3FFFFFFF  # ticks wrap


class Oracle:
    def __init__(self, doors, clock):
        bank = doors.bank
        self.n = len(bank.fsms)
        self.obs = [[] for _ in range(self.n)]
        self.true = 0
        self.strict = 0
        self.generous = 0
        orig = bank.service
        obs = self.obs
        n = self.n

        def service(now_us=None):
            ring = bank.ring
            now = clock.now
            nw = now & M
            i = ring.tail
            while i != ring.head:
                a = ring._all[i]
                t = now - ((nw - ring._t[i]) & M)
                for d in range(n):
                    obs[d].append((t, (a >> (3 * d)) & 3))
                i = i + 1 if i + 1 < ring.size else 0
            for d in range(n):
                inv = bank.invert[d]
                obs[d].append((now, (bank.pins[2 * d].value() ^ inv) | ((bank.pins[2 * d + 1].value() ^ inv) << 1)))
            return orig(now_us)
        bank.service = service

    def judge(self, spans):
        """Credit the crossings of one stop (spans per door), then forget its samples."""
        for d in range(self.n):
            obs = sorted(self.obs[d], key=lambda o: o[0])
            for dirn, s, e in spans[d]:
                rel = []
                for t, lv in obs:
                    if s <= t <= e:
                        rel.append(lv if dirn == 1 else ((lv & 1) << 1) | (lv >> 1))
                self.true += 1
                self.strict += 1 if _strict(rel) else 0
                self.generous += 1 if _generous(rel) else 0
            self.obs[d] = []


def _strict(rel):
    first = False
    for r in rel:
        if r == 1:
            first = True
        elif r == 0:
            first = False
        elif r == 2 and first:
            return True
    return False


def _generous(rel):
    first = both = False
    for r in rel:
        if r == 1:
            first = True
        elif r == 3:
            if first:
                return True
            both = True
        elif r == 2 and (first or both):
            return True
    return False
