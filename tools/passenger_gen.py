"""Ground-truth passenger scenarios as dual-beam edge streams.

Runs under CPython and the MicroPython unix port (integers only, its own
seeded PRNG, so both runtimes produce the same streams). A person is a 1-D
occluder walking through two beams `beam_gap_cm` apart: beam A outside at
0, beam B inside. Body, carried bag (behind, with a small gap), walking
speed, lingering in the beam, stepping back, children that break only one
beam and bouncing beam receivers are modelled; all people of one door are
merged per beam (a beam is blocked while anybody blocks it), so people in
quick succession overlap as they do in a real doorway.

Edges are (t_us, beam, level) with beam 0 = A, 1 = B, level 1 = blocked;
`to_pins` maps them to (t_us, pin_id, pin_level) for machine.inject_timeline.
"""

IN = 1
OUT = 2

# Rates in per mille, lengths in cm, times in ms.
CLEAN = {"bounce_pm": 0, "bag_pm": 0, "child_pm": 0, "step_back_pm": 20, "linger_pm": 0,
         "tight_pm": 0, "beam_gap_cm": 12}
NOISY = {"bounce_pm": 300, "bag_pm": 150, "child_pm": 5, "step_back_pm": 30, "linger_pm": 10,
         "tight_pm": 100, "beam_gap_cm": 12}


class Rng:
    """xorshift32: the same sequence under CPython and MicroPython."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def between(self, lo, hi):
        """Uniform integer in [lo, hi]."""
        return lo + self.next() % (hi - lo + 1)

    def chance(self, per_mille):
        return self.next() % 1000 < per_mille


class Person:
    """What one person does at the door (all ints)."""

    def __init__(self, dirn, speed_cmps=100, body_cm=30, headway_ms=1200):
        self.dirn = dirn
        self.speed_cmps = speed_cmps
        self.body_cm = body_cm
        self.headway_ms = headway_ms  # from this person's start to the next one's
        self.bag_cm = 0  # bag length behind the body
        self.bag_gap_cm = 0
        self.step_back = 0  # 0 crosses; 1 turns back on the first beam; 2 with both blocked
        self.child_beam = -1  # a child breaks only this beam (0 = A, 1 = B)
        self.linger_ms = 0  # stands still half way for this long

    def crosses(self):
        return self.step_back == 0

    def depth_cm(self):
        return self.body_cm + (self.bag_gap_cm + self.bag_cm if self.bag_cm else 0)


def random_person(rng, dirn, profile):
    p = Person(dirn, rng.between(60, 140), rng.between(25, 40))
    if rng.chance(profile["bag_pm"]):
        p.bag_cm = rng.between(15, 30)
        p.bag_gap_cm = rng.between(2, 8)
    if rng.chance(profile["step_back_pm"]):
        p.step_back = rng.between(1, 2)
    elif rng.chance(profile["child_pm"]):
        p.child_beam = rng.between(0, 1)
    if rng.chance(profile["linger_pm"]):
        p.linger_ms = rng.between(2600, 6000)
    # Headway: the time A stays blocked, plus a gap people keep (tight: 0.1-0.3 s).
    busy_ms = (p.depth_cm() + profile["beam_gap_cm"]) * 1000 // p.speed_cmps + p.linger_ms
    if rng.chance(profile["tight_pm"]):
        p.headway_ms = busy_ms + rng.between(100, 300)
    else:
        p.headway_ms = busy_ms + rng.between(400, 2500)
    return p


def _waypoints(p, t0_us, gap_cm):
    """[(t_us, x_cm)] of the person's front; x = 0 at the first beam they meet."""
    us_per_cm = 1000000 // p.speed_cmps
    x = -5
    pts = [(t0_us, x)]

    def walk(to):
        t, x0 = pts[-1]
        pts.append((t + abs(to - x0) * us_per_cm, to))
    if p.step_back:
        walk(gap_cm // 2 if p.step_back == 1 else gap_cm + 8)
        if p.linger_ms:
            pts.append((pts[-1][0] + p.linger_ms * 1000, pts[-1][1]))
        walk(-5)
        return pts
    mid = gap_cm + 5
    walk(mid)
    if p.linger_ms:
        pts.append((pts[-1][0] + p.linger_ms * 1000, mid))
    walk(gap_cm + p.depth_cm() + 5)
    return pts


def _covered(pts, lo, hi, out):
    """Append the time intervals during which lo <= x(t) <= hi."""
    for i in range(len(pts) - 1):
        t1, x1 = pts[i]
        t2, x2 = pts[i + 1]
        if x1 == x2:
            if lo <= x1 <= hi:
                out.append([t1, t2])
            continue
        xa = max(min(x1, x2), lo)
        xb = min(max(x1, x2), hi)
        if xa > xb:
            continue
        ta = t1 + (xa - x1) * (t2 - t1) // (x2 - x1)
        tb = t1 + (xb - x1) * (t2 - t1) // (x2 - x1)
        out.append([min(ta, tb), max(ta, tb)])


def person_intervals(p, t0_us, gap_cm, out_a, out_b):
    """Blocked intervals the person causes on beams A and B."""
    pts = _waypoints(p, t0_us, gap_cm)
    segs = [(0, p.body_cm)]
    if p.bag_cm:
        s = p.body_cm + p.bag_gap_cm
        segs.append((s, s + p.bag_cm))
    near, far = (out_a, out_b) if p.dirn == IN else (out_b, out_a)
    for s, e in segs:
        if p.child_beam != (0 if p.dirn == IN else 1):
            _covered(pts, s, e, near)
        if p.child_beam != (1 if p.dirn == IN else 0):
            _covered(pts, gap_cm + s, gap_cm + e, far)


def _union(iv):
    iv.sort()
    out = []
    for s, e in iv:
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([s, e])
    return out


def door_edges(people, t0_us, rng, profile, spans=None):
    """Edges for people passing one door one after another from t0_us.

    Returns (edges sorted by time, true_in, true_out, end_us). spans: a list
    that gets (direction, t_start_us, t_end_us) per person who crosses, from
    blocking their first beam to clearing their second (bench oracles)."""
    ia, ib = [], []
    t = t0_us
    tin = tout = 0
    for p in people:
        na, nb = len(ia), len(ib)
        person_intervals(p, t, profile["beam_gap_cm"], ia, ib)
        if spans is not None and p.crosses():
            mine = ia[na:] + ib[nb:]
            spans.append((p.dirn, min(iv[0] for iv in mine), max(iv[1] for iv in mine)))
        if p.crosses():
            if p.dirn == IN:
                tin += 1
            else:
                tout += 1
        t += p.headway_ms * 1000
    edges = []
    for beam, iv in ((0, _union(ia)), (1, _union(ib))):
        for s, e in iv:
            edges.append((s, beam, 1))
            edges.append((e, beam, 0))
    if profile["bounce_pm"]:
        edges = _bounce(edges, rng, profile["bounce_pm"])
    edges.sort()
    return edges, tin, tout, t


def _bounce(edges, rng, per_mille):
    """Add 1-3 short flickers (0.2-4 ms apart) after some edges, staying
    clear of the beam's next real edge."""
    edges.sort(key=lambda e: (e[1], e[0]))
    out = []
    for i in range(len(edges)):
        t, beam, level = edges[i]
        out.append(edges[i])
        nxt = edges[i + 1][0] if i + 1 < len(edges) and edges[i + 1][1] == beam else t + 10 ** 9
        if rng.chance(per_mille):
            tt = t
            for _ in range(rng.between(1, 3)):
                t1 = tt + rng.between(200, 4000)
                t2 = t1 + rng.between(200, 4000)
                if t2 + 30000 >= nxt:
                    break
                out.append((t1, beam, 1 - level))
                out.append((t2, beam, level))
                tt = t2
    return out


def to_pins(edges, pin_a, pin_b, active_low=True):
    """(t_us, beam, blocked) -> (t_us, pin_id, pin level) for inject_timeline."""
    inv = 1 if active_low else 0
    return [(t, pin_b if beam else pin_a, level ^ inv) for t, beam, level in edges]


def _crowd(rng, dirn, n, profile):
    """n people who cross, plus those who step back on the way."""
    people = []
    while n > 0:
        p = random_person(rng, dirn, profile)
        people.append(p)
        if p.crosses():
            n -= 1
    return people


class Stop:
    """One generated stop: door open/close times and per-door edges + truth."""

    def __init__(self, t_open_us, t_close_us, doors, true_in, true_out):
        self.t_open_us = t_open_us
        self.t_close_us = t_close_us
        self.doors = doors  # [edges] per door
        self.true_in = true_in  # [n] per door
        self.true_out = true_out
        self.spans = None  # [[(direction, t_start_us, t_end_us)] per crossing] per door, when asked


def service_day(seed, stops=200, boardings=5000, profile=CLEAN, doors=2, t0_us=10000000, spans=False):
    """Yield Stops of a service day: about `boardings` people board (and
    the same number alight) over `stops` stops; doors open 2 s before the
    first person and close 2 s after the last. spans: fill Stop.spans (the
    streams are the same either way)."""
    rng = Rng(seed)
    load = 0
    t = t0_us
    per_stop = max(1, 2 * boardings // stops)
    for k in range(stops):
        n_out = rng.between(0, load) if k < stops - 1 else load
        n_in = rng.between(0, per_stop) if k < stops - 1 else 0
        load += n_in - n_out
        t_open = t
        t_close = t
        edges, tins, touts, sp = [], [], [], []
        for d in range(doors):
            people = _crowd(rng, OUT, n_out // doors + (d < n_out % doors), profile)
            people += _crowd(rng, IN, n_in // doors + (d < n_in % doors), profile)
            sp.append([] if spans else None)
            e, ti, to, end = door_edges(people, t_open + 2000000, rng, profile, sp[-1])
            edges.append(e)
            tins.append(ti)
            touts.append(to)
            t_close = max(t_close, end + 2000000)
        st = Stop(t_open, t_close, edges, tins, touts)
        if spans:
            st.spans = sp
        yield st
        t = t_close + rng.between(30, 180) * 1000000
