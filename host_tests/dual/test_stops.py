"""Stop visits, load and occupancy (firmware/transit/stops.py) against a
scripted doors object: times in ms, counts cumulative as Doors gives them."""

from transit import stops
from transit.stops import StopVisits, occupancy_status

MP_HEAP = "96K"  # the whole-stop test runs real Doors with a stall timeline


class FakeDoors:
    """What StopVisits reads from transit.doors.Doors, set by the test."""

    def __init__(self, n=2):
        self.open = [False] * n
        self.act = [False] * n
        self.cnt = [[0, 0] for _ in range(n)]
        self.lst = [0] * n
        self.flt = [False] * n
        self.lt = [0] * n
        self.opened = 0

    def late(self, i):
        return self.lt[i]

    def open_age_ms(self):
        return 0

    def close_age_ms(self):
        return 0

    def __len__(self):
        return len(self.open)

    def is_open(self, i):
        return self.open[i]

    def active(self, i):
        return self.act[i] or self.open[i]

    def counts(self, i):
        return self.cnt[i][0], self.cnt[i][1]

    def boardings(self, i):
        return self.cnt[i][0]

    def alightings(self, i):
        return self.cnt[i][1]

    def lost(self, i):
        return self.lst[i]

    def faulty(self, i):
        return self.flt[i]


class Pos:
    def __init__(self):
        self.fix = (16820000, 100260000, 5000, 1795768200, True)

    def __call__(self):
        return self.fix


def make(config=None, boot_no=3):
    d = FakeDoors()
    p = Pos()
    return d, p, StopVisits(d, p, config or {"seats": 30, "standing": 40}, boot_no=boot_no)


def visit(sv, d, t_ms, open_ms, board=(0, 0), alight=(0, 0), grace_ms=3000):
    """Open both doors at t_ms for open_ms, count, close, let grace run out."""
    d.open = [True, True]
    sv.step(t_ms)
    for i in range(2):
        d.cnt[i][0] += board[i]
        d.cnt[i][1] += alight[i]
    sv.step(t_ms + open_ms // 2)
    d.open = [False, False]
    d.act = [True, True]
    sv.step(t_ms + open_ms)
    d.act = [False, False]
    sv.step(t_ms + open_ms + grace_ms)
    return t_ms + open_ms + grace_ms


def test_a_visit_is_one_delta_record_with_per_door_counts_dwell_and_load():
    d, p, sv = make()
    end = visit(sv, d, 1000, 24000, board=(5, 2), alight=(0, 1))
    assert sv.pop() is None  # still inside the merge window
    sv.step(end + 20000)
    v = sv.pop()
    assert v.visit_id == (3 << 16) | 1
    assert v.doors == [[5, 0], [2, 1]]
    assert (v.dwell_s, v.load_departure, v.occupancy_status) == (24, 6, stops.MANY_SEATS_AVAILABLE)
    assert (v.lat_e6, v.lon_e6, v.odometer_m, v.t_open_unix, v.t_close_unix) == (16820000, 100260000, 5000,
                                                                                  1795768200, 1795768224)
    assert (v.time_known, v.quality) == (True, 0)
    end = visit(sv, d, end + 60000, 10000, board=(0, 0), alight=(2, 1))
    sv.step(end + 20000)
    v2 = sv.pop()
    assert v2.visit_id == (3 << 16) | 2 and v2.doors == [[0, 2], [0, 1]] and v2.load_departure == 3


def test_reopening_at_the_same_place_within_the_window_merges_into_one_visit():
    d, p, sv = make()
    end = visit(sv, d, 0, 10000, board=(2, 0))
    end = visit(sv, d, end + 5000, 6000, board=(1, 0), alight=(0, 1))
    sv.step(end + 20000)
    v = sv.pop()
    assert sv.pop() is None
    assert v.doors == [[3, 0], [0, 1]]
    assert v.quality == stops.Q_MERGED and sv.merged == 1
    assert v.dwell_s == (end - 3000) // 1000


def test_reopening_after_moving_or_after_the_window_is_a_new_visit():
    d, p, sv = make({"merge_s": 20, "merge_m": 30})
    end = visit(sv, d, 0, 10000, board=(2, 0))
    p.fix = (16820400, 100260000, 5045, 1795768300, True)  # 45 m further
    end = visit(sv, d, end + 2000, 6000, board=(1, 0))
    end = visit(sv, d, end + 25000, 6000, board=(4, 0))  # same place, too late
    sv.step(end + 30000)
    got = []
    v = sv.pop()
    while v is not None:
        got.append((v.visit_id & 0xFFFF, v.boardings(), v.odometer_m))
        v = sv.pop()
    assert got == [(1, 2, 5000), (2, 1, 5045), (3, 4, 5045)]


def test_load_never_goes_below_zero_and_each_clamp_is_counted():
    d, p, sv = make()
    end = visit(sv, d, 0, 8000, board=(1, 0))
    end = visit(sv, d, end + 60000, 8000, alight=(2, 1))
    sv.step(end + 30000)
    sv.pop()
    v = sv.pop()
    assert sv.load == 0 and sv.clamps == 1
    assert (v.clamps, v.quality & stops.Q_CLAMP, v.load_departure, v.occupancy_status) == (1, stops.Q_CLAMP, 0,
                                                                                            stops.EMPTY)


def test_load_resets_at_terminus_depot_ignition_or_command_and_marks_the_visit():
    d, p, sv = make()
    visit(sv, d, 0, 8000, board=(10, 5))
    assert sv.load == 15
    sv.reset_load(stops.RESET_TERMINUS)
    assert sv.load == 0
    d.open = [True, False]
    sv.step(100000)
    sv.reset_load(stops.RESET_COMMAND)
    sv.reset_load(stops.RESET_IGNITION)
    sv.reset_load(stops.RESET_DEPOT)
    assert sv.resets == [1, 1, 1, 1]
    assert sv.visit.quality & stops.Q_LOAD_RESET


def test_occupancy_follows_gtfs_realtime_levels_of_the_capacity():
    seats, standing = 30, 40
    got = [occupancy_status(n, seats, standing) for n in (0, 1, 22, 23, 29, 30, 57, 58, 69, 70, 90)]
    assert got == [stops.EMPTY, stops.MANY_SEATS_AVAILABLE, stops.MANY_SEATS_AVAILABLE,
                   stops.FEW_SEATS_AVAILABLE, stops.FEW_SEATS_AVAILABLE, stops.STANDING_ROOM_ONLY,
                   stops.STANDING_ROOM_ONLY, stops.CRUSHED_STANDING_ROOM_ONLY, stops.CRUSHED_STANDING_ROOM_ONLY,
                   stops.FULL, stops.FULL]
    assert occupancy_status(12, seats, standing, faulty=True) == stops.NO_DATA_AVAILABLE == 7


def test_faulty_sensor_or_lost_edges_flag_the_visit_and_hide_the_occupancy():
    d, p, sv = make()
    d.open = [True, False]
    sv.step(0)
    d.lst[1] = 3
    d.flt[0] = True
    assert sv.occupancy() == stops.NO_DATA_AVAILABLE
    d.open = [False, False]
    sv.step(9000)
    sv.step(40000)
    v = sv.pop()
    assert v.quality == stops.Q_FAULT | stops.Q_LOST and v.lost_edges == 3
    assert v.occupancy_status == stops.NO_DATA_AVAILABLE


def test_without_a_fix_the_visit_is_flagged_and_merging_uses_time_alone():
    d = FakeDoors()
    sv = StopVisits(d, lambda: None, {}, boot_no=70000)
    end = visit(sv, d, 0, 5000, board=(1, 0))
    sv.step(end + 30000)
    v = sv.pop()
    assert v.quality == stops.Q_NO_POSITION | stops.Q_NO_TIME
    assert (v.lat_e6, v.t_open_unix, v.time_known) == (0, 0, False)
    assert v.visit_id == ((70000 & 0xFFFF) << 16) | 1


def test_a_whole_stop_inside_a_blocking_call_is_one_visit_opened_at_the_door_edge():
    """Door open 10-16 s with three boardings, all inside a socket wait from
    9.5 to 17.5 s: the visit still happens, with its three passengers, the
    dwell of the real opening and an open time moved back to the door edge."""
    import time
    import machine
    from fakeclock import CLOCK
    from transit.doors import Doors
    CLOCK.set_virtual(0)
    P = machine.Pin
    dp = [(P(25, P.IN, P.PULL_UP), P(26, P.IN, P.PULL_UP), P(27, P.IN, P.PULL_UP), True)]
    doors = Doors(dp)
    now_s = [1795768200]
    sv = StopVisits(doors, lambda: (16820000, 100260000, 5000, now_s[0], True), {"merge_s": 20})
    ev = [(10000000, 27, 0), (16000000, 27, 1)]
    for k in range(3):
        t = 11000000 + 1500000 * k
        ev += [(t, 25, 0), (t + 120000, 26, 0), (t + 330000, 25, 1), (t + 460000, 26, 1)]
    machine.inject_timeline(ev)
    out = []

    def run(until_us):
        while CLOCK.now < until_us:
            time.sleep_ms(20)
            now_s[0] = 1795768200 + CLOCK.now // 1000000
            doors.step()
            sv.step()
            v = sv.pop()
            if v is not None:
                out.append(v)
    run(9500000)
    machine.stall(8000, 100)
    run(60000000)
    assert len(out) == 1
    v = out[0]
    assert v.doors == [[3, 0]] and v.load_departure == 3
    assert 5 <= v.dwell_s <= 6
    assert 1795768200 + 10 <= v.t_open_unix <= 1795768200 + 11
    assert not v.quality & stops.Q_LOST  # nothing was lost: only late
    assert v.quality & stops.Q_LATE
