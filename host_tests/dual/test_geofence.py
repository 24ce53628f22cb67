"""Geofences: enter and exit once each, however noisy the edge."""

from transit import geofence

ZONES = [{"id": 2, "kind": "terminus", "name": "Railway Station", "at": [16815440, 100263670], "radius_m": 80},
         {"id": 1, "kind": "depot", "at": [16812800, 100265800], "radius_m": 150}]


def _north_of(lat_e6, metres):
    return lat_e6 + metres * 1000000 // 111195  # one degree of latitude is about 111.2 km


def test_approach_enter_jitter_and_leave_make_two_events():
    g = geofence.Geofences(geofence.parse_zones(ZONES))
    lat0, lon0 = 16815440, 100263670
    out = []
    track = [200, 150, 100, 79, 85, 75, 95, 70, 90, 99, 101, 150]  # metres north of the terminus
    kinds = []
    for m in track:
        out[:] = []
        g.update(_north_of(lat0, m), lon0, out)
        kinds.append([e[0] for e in out])
    assert kinds == [[], [], [], [geofence.ENTER], [], [], [], [], [], [], [geofence.EXIT], []]
    assert g.events == 2


def test_in_kind_tells_depot_from_terminus():
    g = geofence.Geofences(geofence.parse_zones(ZONES))
    out = []
    g.update(16812800, 100265800, out)
    assert [(e[0], e[1][0]) for e in out] == [(geofence.ENTER, 1)]
    assert g.in_kind(geofence.KIND_DEPOT) and not g.in_kind(geofence.KIND_TERMINUS)


def test_bad_zone_is_a_clear_error():
    try:
        geofence.parse_zones([{"id": 1, "kind": "car park", "at": [1, 2], "radius_m": 5}])
    except ValueError as e:
        assert str(e).startswith("geofences[0]: expected")
        return
    assert False
