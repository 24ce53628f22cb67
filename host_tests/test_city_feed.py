"""City bridge logic without a broker: state, GTFS-Realtime feed, export, static GTFS.

The feed is decoded with the official gtfs-realtime-bindings and checked
against the specification's required fields; messages come from the
firmware's own encoder (tools/city/fakefleet.py).
"""

import csv
import io
import json
import os

from google.transit import gtfs_realtime_pb2 as rt

from city import export, feed as feedmod
from city.fakefleet import SynthBus, load_route
from city.state import FleetState
from city.statics import Static
from routes import gtfs_build

T0 = 1764550000  # 2025-12-01 07:46 local


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def fleet(tmp_path=None):
    clock = Clock(T0)
    state = FleetState(Static(), clock=clock)
    return state, feedmod.Feed(state), clock


def drive(state, clock, buses, seconds, start=T0, keep=None):
    for t in range(start, start + seconds):
        clock.t = t
        for b in buses:
            for topic, payload, qos, retain in b.due(t):
                if keep is not None:
                    keep.append((topic, payload))
                state.feed(topic, payload)


def decode(pb):
    m = rt.FeedMessage()
    m.ParseFromString(pb)
    return m


def test_committed_static_gtfs_is_what_the_builder_makes_and_is_consistent():
    made = gtfs_build.texts()
    for name, text in made.items():
        with open(os.path.join(gtfs_build.OUT, name), encoding="utf-8") as f:
            assert f.read() == text, name + " is stale: run tools/routes/gtfs_build.py"
    t = {n: list(csv.DictReader(io.StringIO(x))) for n, x in made.items()}
    stops = {r["stop_id"] for r in t["stops.txt"]}
    trips = {r["trip_id"] for r in t["trips.txt"]}
    shapes = {r["shape_id"] for r in t["shapes.txt"]}
    assert {r["route_id"] for r in t["trips.txt"]} <= {r["route_id"] for r in t["routes.txt"]}
    assert {r["shape_id"] for r in t["trips.txt"]} <= shapes
    assert {r["stop_id"] for r in t["stop_times.txt"]} <= stops
    assert {r["trip_id"] for r in t["stop_times.txt"]} == trips == {r["trip_id"] for r in t["frequencies.txt"]}
    for trip in trips:  # times never go backwards along a trip
        times = [r["arrival_time"] for r in t["stop_times.txt"] if r["trip_id"] == trip]
        assert times == sorted(times) and len(times) == 9


def test_route_per_bus_comes_from_the_inventory():
    s = Static()
    assert s.route_of("bus-0101") == "1" and s.route_of("bus-0107") == "3"
    assert s.plate_of("bus-0102") == "10-1235 PL"
    assert s.route_of("bus-unknown") == ""


def test_feed_has_the_required_fields_and_follows_the_bus():
    state, feed, clock = fleet()
    bus = SynthBus("bus-0101", load_route(), phase_s=0, seed=5)
    drive(state, clock, [bus], 400)
    m = decode(feed.protobuf())
    h = m.header
    assert h.gtfs_realtime_version == "2.0"
    assert h.incrementality == rt.FeedHeader.FULL_DATASET
    assert h.HasField("timestamp") and h.timestamp == clock.t
    assert [e.id for e in m.entity] == ["bus-0101"]
    vp = m.entity[0].vehicle
    assert vp.vehicle.id == "bus-0101" and vp.vehicle.license_plate == "10-1234 PL"
    assert vp.trip.route_id == "1"
    assert 16.7 < vp.position.latitude < 16.9 and 100.1 < vp.position.longitude < 100.3
    assert abs(vp.position.speed - 8.33) < 0.01  # m/s, from cm/s
    assert 0 <= vp.position.bearing < 360
    assert vp.stop_id in state.static.stops and vp.current_stop_sequence >= 1
    assert vp.HasField("current_status") and vp.HasField("occupancy_status")
    assert vp.occupancy_percentage == state.vehicles["bus-0101"].load * 100 // 80
    first_ts = vp.timestamp
    assert clock.t - 90 <= first_ts <= clock.t
    # Incrementality: a FULL_DATASET replaces the previous one; later feeds
    # carry later header times and the bus's newer fix, never an older one.
    drive(state, clock, [bus], 120, start=clock.t + 1)
    m2 = decode(feed.protobuf())
    assert m2.header.timestamp > h.timestamp
    assert m2.entity[0].vehicle.timestamp > first_ts
    js = json.loads(feed.json())
    assert js["entity"][0]["vehicle"]["vehicle"]["id"] == "bus-0101"


def test_backlog_and_duplicates_never_move_the_bus_and_epochs_are_separate_keys():
    state, feed, clock = fleet()
    bus = SynthBus("bus-0102", load_route(), seed=2)
    msgs = []
    drive(state, clock, [bus], 200, keep=msgs)
    v = state.vehicles["bus-0102"]
    live = v.pos
    records = v.records
    pos_msgs = [(t, p) for t, p in msgs if t.endswith("/pos")]
    old = json.loads(pos_msgs[0][1])
    old["bl"] = 1
    old["la"] = [old["la"][0] + 5000] + old["la"][1:]  # a resent batch must not move the bus
    state.feed(pos_msgs[0][0], json.dumps(old).encode())
    for t, p in msgs:  # every message again: all duplicates
        state.feed(t, p)
    assert v.pos is live and v.records == records
    assert state.stats["duplicates"] >= records and state.stats["invalid"] == 0
    # Schema v2: the same seqs under another epoch (a board with a new queue)
    # are new records; a v1 message (no "e") counts as epoch 0.
    e0 = bus.epoch
    for t, p in msgs:
        d = json.loads(p)
        if "s" in d:
            d["e"] = 77
        state.feed(t, json.dumps(d).encode())
    for t, p in msgs:
        d = json.loads(p)
        if "s" in d:
            del d["e"]
            d["v"] = 1
        state.feed(t, json.dumps(d).encode())
    assert state.stats["invalid"] == 0, state.stats["last_error"]
    assert v.records == 3 * records and sorted(v.seen) == sorted([0, 77, e0])
    assert v.pos["ts"] == live["ts"]  # another epoch's fix is not older: it may move the bus, never back


def test_offline_bus_leaves_the_feed_and_bad_messages_are_counted():
    state, feed, clock = fleet()
    drive(state, clock, [SynthBus("bus-0101", load_route(), seed=1)], 200)
    state.feed("phs/bus/bus-0101/pos", b"{not json")
    assert state.stats["invalid"] == 1 and "bus-0101" in state.stats["last_error"]
    assert len(decode(feed.protobuf()).entity) == 1
    state.feed("phs/bus/bus-0101/status", b'{"v":1,"d":"bus-0101","on":false}')
    assert len(decode(feed.protobuf()).entity) == 0


def test_planner_export_has_one_row_per_visit_and_door_and_today_sums_them():
    state, feed, clock = fleet()
    drive(state, clock, [SynthBus("bus-0101", load_route(), seed=3), SynthBus("bus-0102", load_route(), seed=4)],
          900)
    text = export.csv_text(state)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and len(rows) == 2 * len(state.visits)  # two doors per simulated bus
    assert set(rows[0]) == set(export.COLUMNS)
    assert rows[0]["time_open"].endswith("+07:00") and rows[0]["stop_name"]
    on = {}
    for r in rows:
        on.setdefault(r["stop_id"], [0, 0])
        on[r["stop_id"]][0] += int(r["boardings"])
        on[r["stop_id"]][1] += int(r["alightings"])
    assert on == state.today()
    assert export.csv_text(state, day="2000-01-01").count("\n") == 1  # header only


def test_seen_seqs_accept_any_order_once():
    import random
    from city.state import SeqSet
    seqs = list(range(1000, 1300)) + list(range(5, 40))
    for seed in range(5):
        random.Random(seed).shuffle(seqs)
        s = SeqSet()
        assert all(s.add(q) for q in seqs)
        assert not any(s.add(q) for q in seqs)
        assert len(s) == len(seqs) and s.lo == [5, 1000] and s.hi == [39, 1299]


def test_make_sim_city_option_reaches_the_simulator():
    import sim
    a = sim.parse(["--bridge", "--bridge-port", "0"])
    assert a.bridge and a.bridge_port == 0
    with open(os.path.join(os.path.dirname(gtfs_build.HERE), "..", "Makefile")) as f:
        assert "$(if $(CITY),--bridge)" in f.read()
