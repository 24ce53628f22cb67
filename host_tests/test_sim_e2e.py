"""End to end: the simulated bus on a shortened Phitsanulok route, the real
firmware under the unix port, a real Mosquitto that goes away in the middle,
checked from the broker's side."""

import math
import os
import sys

import pytest

from harness import paths

sys.path.insert(0, paths.TOOLS)
import sim  # noqa: E402


@pytest.fixture
def run_sim(broker_factory):
    def go(*argv):
        args = sim.parse(["--accel", "0", "--no-table", "--device", "bus-e2e"] + list(argv))
        broker = broker_factory(persistence=True)
        r = sim.Run(args, broker, out=None)
        rc = r.run()
        return r, rc
    return go


def _route_distance_m(lat_e6, lon_e6, waypoints):
    """Distance from a point to the route polyline (flat earth, fine at city scale)."""
    k = math.cos(math.radians(lat_e6 / 1e6))
    best = 1e9
    for (a_lat, a_lon), (b_lat, b_lon) in zip(waypoints, waypoints[1:]):
        ax, ay = a_lon * k * 0.111195, a_lat * 0.111195
        bx, by = b_lon * k * 0.111195, b_lat * 0.111195
        px, py = lon_e6 * k * 0.111195, lat_e6 * 0.111195
        dx, dy = bx - ax, by - ay
        t = 0 if dx == dy == 0 else max(0, min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
        best = min(best, math.hypot(px - ax - t * dx, py - ay - t * dy))
    return best


def test_shortened_route_with_broker_outage_arrives_complete(run_sim):
    r, rc = run_sim("--stops", "5", "--outage-after", "2", "--outage-stops", "2", "--gps-loss-at", "200")
    assert rc == 0, "\n".join(r.lines[-30:])
    assert [e[0] for e in r.outage] == ["down", "up"]
    assert r.check() == []
    v = r.fleet.vehicles["bus-e2e"]
    truth = r.truth["stops"]
    visits = sorted((rec for k, rec in v.stream.records.values() if k == "stop"), key=lambda x: x["to"])
    # Every stop visit arrived once (after removing duplicates), in the order served.
    assert len(visits) == len(truth) == 5
    for got, (sid, tin, tout, t_open) in zip(visits, truth):
        b = sum(d[0] for d in got["dr"])
        a = sum(d[1] for d in got["dr"])
        assert abs(b - tin) + abs(a - tout) <= 1, (sid, b, a, tin, tout)
    # Nothing recorded during the outage is missing: sequence numbers have no
    # holes apart from the block the queue reserves at boot.
    seqs = v.stream.seqs()
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    # Positions follow the route.
    import json
    with open(sim.ROUTE) as f:
        wps = json.load(f)["waypoints"]
    pos = [rec for k, rec in v.stream.records.values() if k == "pos"]
    assert len(pos) >= 10
    worst = max(_route_distance_m(p["lat_e6"], p["lon_e6"], wps) for p in pos)
    assert worst < 30, worst
    # The load on departure from the last stop is what the passengers left behind.
    assert visits[-1]["ld"] == sum(t[1] - t[2] for t in truth)
