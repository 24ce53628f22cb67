"""geo: integer distance and bearing at city scale (CPython and unix port).

Reference values are haversine distances and great-circle bearings computed
with floats; the integer results must be within GPS noise of them."""

import geo

P = (16821100, 100265900)  # Phitsanulok, near the railway station


def test_one_millidegree_east_at_phitsanulok_is_106_m_due_east():
    q = (16821100, 100266900)
    assert geo.distance_cm(P[0], P[1], q[0], q[1]) == 10644  # haversine 106.44 m
    assert geo.distance_m(P[0], P[1], q[0], q[1]) == 106
    assert geo.bearing_ddeg(P[0], P[1], q[0], q[1]) == 900


def test_one_millidegree_north_is_111_m_due_north():
    q = (16822100, 100265900)
    assert geo.distance_cm(P[0], P[1], q[0], q[1]) == 11120  # haversine 111.20 m
    assert geo.bearing_ddeg(P[0], P[1], q[0], q[1]) == 0


def test_city_scale_distances_match_haversine_within_half_a_metre():
    cases = (
        ((16830000, 100280000), 1797.66),
        ((16812100, 100256900), 1385.35),
        ((16700000, 100400000), 19626.04),
        ((16900000, 100100000), 19714.06),
        ((16821190, 100265990), 13.85),
    )
    for q, ref_m in cases:
        got = geo.distance_cm(P[0], P[1], q[0], q[1]) / 100
        assert abs(got - ref_m) < 1.0, (q, got, ref_m)
    assert geo.distance_m(P[0], P[1], 16830000, 100280000) == 1798


def test_bearings_in_all_four_quadrants_match_great_circle_within_a_tenth():
    cases = (
        ((16830000, 100280000), 566),   # NE 56.6 deg
        ((16812100, 100256900), 2237),  # SW 223.75 deg
        ((16900000, 100100000), 2964),  # NW 296.45 deg
        ((16700000, 100400000), 1333),  # SE 133.3 deg
    )
    for q, ref in cases:
        assert geo.bearing_ddeg(P[0], P[1], q[0], q[1]) == ref, q


def test_same_point_is_zero_distance_and_zero_bearing():
    assert geo.distance_cm(P[0], P[1], P[0], P[1]) == 0
    assert geo.bearing_ddeg(P[0], P[1], P[0], P[1]) == 0


def test_distance_is_symmetric_and_bearing_reverses():
    q = (16830000, 100280000)
    assert geo.distance_cm(P[0], P[1], q[0], q[1]) == geo.distance_cm(q[0], q[1], P[0], P[1])
    back = geo.bearing_ddeg(q[0], q[1], P[0], P[1])
    assert abs(geo.angle_diff_ddeg(back, 566 + 1800)) <= 1


def test_longitude_difference_wraps_at_the_antimeridian():
    d = geo.distance_m(0, 179999000, 0, -179999000)
    assert d == 222  # 0.002 deg at the equator, not 360 deg the long way


def test_angle_diff_takes_the_short_way_round():
    assert geo.angle_diff_ddeg(3500, 100) == 200
    assert geo.angle_diff_ddeg(100, 3500) == -200
    assert geo.angle_diff_ddeg(0, 1800) == 1800
    assert geo.angle_diff_ddeg(900, 900) == 0


def test_offset_then_distance_round_trips_within_a_few_cm():
    lat, lon = geo.offset_e6(P[0], P[1], 10000, 10000)
    assert (lat, lon) == (16821999, 100266839)
    assert abs(geo.distance_cm(P[0], P[1], lat, lon) - 14142) < 10


def test_isqrt_is_exact_floor():
    for n, r in ((0, 0), (1, 1), (3, 1), (4, 2), (99, 9), (100, 10), (10 ** 12, 10 ** 6), (10 ** 12 - 1, 999999)):
        assert geo.isqrt(n) == r


def test_step_distances_stay_small_ints_and_allocate_nothing():
    # A one-second step of a bus (about 10 m) must not allocate: proves the
    # odometer can run every second without feeding the garbage collector.
    try:
        import micropython
    except ImportError:
        return  # CPython: nothing to prove
    a, b, c, d = 16821100, 100265900, 16821180, 100265950
    geo.distance_cm(a, b, c, d)
    micropython.heap_lock()
    try:
        v = geo.distance_cm(a, b, c, d)
        w = geo.bearing_ddeg(a, b, c, d)
    finally:
        micropython.heap_unlock()
    assert v == 1036  # 8.9 m north, 5.3 m east
    assert w == 309
