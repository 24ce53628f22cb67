"""track: acquisition rules and odometer on synthetic 1 Hz drives
(CPython and the unix port, 64K)."""

import math

import geo
import nmea
from transit import track
from transit.track import (REASON_DISTANCE, REASON_FIRST, REASON_HEADING, REASON_MOVING, REASON_PERIOD,
                           REASON_SPEED, REASON_STOP_START, REASON_STOPPED)

START = (16821100, 100265900)


def fix(lat, lon, speed_cmps, course_ddeg, valid=True):
    f = nmea.Fix()
    f.valid = valid
    f.has_pos = valid
    f.lat_e6, f.lon_e6 = lat, lon
    f.speed_cmps, f.course_ddeg = speed_cmps, course_ddeg
    f.hdop_x10 = 9
    return f


class Drive:
    """A bus at 1 Hz: step(speed, course) moves it for a second, then reports."""

    def __init__(self, tr):
        self.tr = tr
        self.north_cm = 0.0
        self.east_cm = 0.0
        self.t_ms = 0
        self.log = []  # (t_s, reason)

    def pos(self):
        return geo.offset_e6(START[0], START[1], int(self.north_cm), int(self.east_cm))

    def move(self, speed, course):
        a = math.radians(course / 10)
        self.north_cm += speed * math.cos(a)
        self.east_cm += speed * math.sin(a)

    def step(self, speed, course, valid=True):
        self.move(speed, course)
        if valid:
            lat, lon = self.pos()
            why = self.tr.update(fix(lat, lon, speed, course), self.t_ms)
        else:
            why = self.tr.update(fix(0, 0, -1, -1, valid=False), self.t_ms)
        if why:
            self.log.append((self.t_ms // 1000, why))
        self.t_ms += 1000
        return why

    def run(self, seconds, speed, course):
        for _ in range(seconds):
            self.step(speed, course)


def test_straight_road_records_on_distance_and_period_only():
    d = Drive(track.Track())
    d.run(120, 1050, 0)  # 10.5 m/s due north for 2 minutes
    assert d.log[0] == (0, REASON_FIRST | REASON_MOVING)
    assert [t for t, _ in d.log[1:]] == [20, 40, 60, 80, 100]  # every 200 m (210 m here)
    assert all(w == REASON_DISTANCE for _, w in d.log[1:])
    assert abs(d.tr.odometer_m - 1249) <= 1  # 119 one-second steps of 10.5 m


def test_slow_straight_road_records_on_the_moving_period():
    d = Drive(track.Track())
    d.run(95, 300, 0)  # 3 m/s: 200 m take 67 s, the 30 s period comes first
    assert d.log[1:] == [(30, REASON_PERIOD), (60, REASON_PERIOD), (90, REASON_PERIOD)]
    assert abs(d.tr.odometer_m - 282) <= 1


def test_right_angle_turn_is_recorded_at_the_turn():
    d = Drive(track.Track())
    d.run(10, 800, 0)
    d.run(10, 800, 900)  # turn east at second 10
    assert d.log == [(0, REASON_FIRST | REASON_MOVING), (10, REASON_HEADING)]
    assert d.tr.course_ddeg == 900 and abs(d.tr.odometer_m - 152) <= 1


def test_gentle_curve_is_recorded_each_ten_degrees():
    d = Drive(track.Track())
    for i in range(12):
        d.step(1000, i * 30)  # 3 degrees a second
    assert [t for t, w in d.log if w == REASON_HEADING] == [4, 8]


def test_heading_is_ignored_at_walking_speed():
    d = Drive(track.Track())
    d.run(3, 1000, 0)
    for i in range(20):
        d.step(250, (i * 1300) % 3600)  # a crawling bus, wild course values
    assert [w & REASON_HEADING for _, w in d.log] == [0]


def test_speed_change_of_30_kmh_is_recorded():
    d = Drive(track.Track())
    d.run(2, 300, 0)
    d.run(1, 600, 0)
    d.run(1, 1200, 0)
    assert d.log[-1] == (3, REASON_SPEED)


def test_two_minute_stop_records_stop_and_departure_only():
    d = Drive(track.Track())
    d.run(10, 1000, 0)
    d.run(120, 0, 0)
    d.run(10, 1000, 0)
    assert d.log == [(0, REASON_FIRST | REASON_MOVING), (10, REASON_SPEED), (13, REASON_STOPPED),
                     (130, REASON_MOVING | REASON_SPEED | REASON_PERIOD)]
    assert abs(d.tr.odometer_m - 190) <= 1  # 19 steps of 10 m, none while standing


def test_parked_jitter_makes_no_distance_heading_or_odometer():
    d = Drive(track.Track())
    d.step(0, 0)
    seed = 3
    for i in range(900):  # 15 minutes parked, 8 m of wander, random course
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        j = (seed % 1600 - 800, (seed >> 11) % 1600 - 800)
        d.tr.update(fix(*geo.offset_e6(START[0], START[1], j[0], j[1]), speed_cmps=seed % 40,
                        course_ddeg=seed % 3600), d.t_ms)
        d.t_ms += 1000
    assert d.tr.odometer_m == 0
    assert d.tr.stats["records"] == 1 + 3  # first fix + the 300 s stopped period
    assert d.tr.reason == REASON_PERIOD


def test_thirty_second_signal_loss_records_the_first_fix_after_it():
    d = Drive(track.Track())
    d.run(10, 1000, 0)
    for _ in range(30):
        d.step(1000, 0, valid=False)
    d.run(5, 1000, 0)
    assert d.log[-1] == (40, REASON_FIRST)
    assert abs(d.tr.odometer_m - 440) <= 1  # the gap counts as a straight line
    assert d.tr.stats["ignored"] == 30


def test_a_jump_faster_than_a_bus_is_ignored():
    d = Drive(track.Track())
    d.run(3, 1000, 0)
    lat, lon = d.pos()
    far = geo.offset_e6(lat, lon, 500000, 0)  # 5 km in a second
    assert d.tr.update(fix(far[0], far[1], 1000, 0), d.t_ms) == 0
    assert d.tr.stats["jumps"] == 1 and d.tr.odometer_m == 20


def test_event_forces_a_record_at_the_latest_position():
    d = Drive(track.Track())
    d.run(5, 1050, 0)
    assert d.tr.event(REASON_STOP_START, d.t_ms) == REASON_STOP_START
    assert d.tr.reason == REASON_STOP_START and d.tr.lat_e6 == d.pos()[0]
    d.run(25, 1050, 0)  # 210 m from the event at second 24, 262 m from the first fix
    assert d.tr.stats["records"] == 3 and d.log[-1] == (24, REASON_DISTANCE)


def test_settings_override_defaults_and_unknown_keys_are_refused():
    tr = track.Track({"distance_m": 50, "period_moving_s": 600})
    d = Drive(tr)
    d.run(12, 1040, 0)
    assert [t for t, _ in d.log] == [0, 5, 10]
    try:
        track.Track({"distnace_m": 50})
    except ValueError as e:
        assert "distnace_m" in str(e)
    else:
        assert False, "a misspelt setting must be refused"


def test_odometer_starts_from_the_saved_value():
    d = Drive(track.Track(odometer_m=123456))
    d.run(11, 1000, 0)
    assert abs(d.tr.odometer_m - 123556) <= 1
