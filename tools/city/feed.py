"""GTFS-Realtime VehiclePositions from the fleet state, with the official bindings.

One entity per bus with a live position (a bus whose last will said it is
offline leaves the feed). Units follow the specification: speed in m/s,
bearing in degrees clockwise from north, timestamp the fix's Unix time.
`current_stop_sequence` / `stop_id` / `current_status` come from the latest
stop visit (STOPPED_AT while the bus stands within DOOR_RADIUS_M of that stop
and its fix is not newer than the door closing, else IN_TRANSIT_TO the next
stop in its direction); `occupancy_status` is the board's own GTFS-RT value
and `occupancy_percentage` the departure load over the bus's capacity.

The feed is a FULL_DATASET; `Feed` caches the encoded message per state
version and records how long each build took (`build_ms`).
"""

import time

from google.transit import gtfs_realtime_pb2 as rt
from google.protobuf import json_format

from city.statics import metres

DOOR_RADIUS_M = 60
STANDING_KMH = 3
CAPACITY = 80  # firmware defaults: bus.capacity_seated 30 + capacity_standing 50


def _stop_fields(vp, static, v):
    sid, rec = v.visit
    if not sid:
        return
    p = v.pos
    at_stop = metres(p["lat_e6"] / 1e6, p["lon_e6"] / 1e6, rec["la"] / 1e6, rec["lo"] / 1e6) <= DOOR_RADIUS_M
    standing = p["speed_cmps"] * 0.036 <= STANDING_KMH
    if (at_stop and standing) or p["ts"] <= rec["tc"]:
        vp.current_status = rt.VehiclePosition.STOPPED_AT
        target = sid
    else:
        vp.current_status = rt.VehiclePosition.IN_TRANSIT_TO
        target = static.next_stop(v.route, v.direction, sid) or sid
    vp.stop_id = target
    seq = static.sequence(v.route, v.direction, target)
    if seq:
        vp.current_stop_sequence = seq


def build(state, now=None, capacity=CAPACITY):
    """A FeedMessage of every bus with a live position (call without the state lock held)."""
    msg = rt.FeedMessage()
    h = msg.header
    h.gtfs_realtime_version = "2.0"
    h.incrementality = rt.FeedHeader.FULL_DATASET
    static = state.static
    with state.lock:
        h.timestamp = int(now if now is not None else state.clock())
        for v in state.vehicles.values():
            p = v.pos
            if p is None or v.role != "bus" or v.online is False:
                continue
            ent = msg.entity.add()
            ent.id = v.id
            vp = ent.vehicle
            vp.vehicle.id = v.id
            if v.plate:
                vp.vehicle.license_plate = v.plate
                vp.vehicle.label = v.plate
            if v.route in static.routes:
                vp.trip.route_id = v.route
                vp.trip.direction_id = v.direction
            pos = vp.position
            pos.latitude = p["lat_e6"] / 1e6
            pos.longitude = p["lon_e6"] / 1e6
            pos.bearing = p["course_ddeg"] / 10.0
            pos.speed = p["speed_cmps"] / 100.0
            pos.odometer = float(p["odometer_m"])
            vp.timestamp = p["ts"]
            if v.visit is not None:
                _stop_fields(vp, static, v)
            if v.occupancy is not None:
                vp.occupancy_status = v.occupancy
            if v.load is not None and capacity:
                vp.occupancy_percentage = max(0, v.load) * 100 // capacity
    return msg


class Feed:
    """Encoded feed, rebuilt when the state changed; build times kept for the figures."""

    def __init__(self, state):
        self.state = state
        self._ver = None
        self._pb = b""
        self._msg = None
        self.builds = 0
        self.build_ms = []  # recent build times, ms (bounded)

    def message(self):
        ver = self.state.version
        if ver != self._ver or self._msg is None:
            t0 = time.perf_counter()
            msg = build(self.state)
            pb = msg.SerializeToString()
            ms = (time.perf_counter() - t0) * 1000
            self._ver, self._msg, self._pb = ver, msg, pb
            self.builds += 1
            self.build_ms.append(ms)
            if len(self.build_ms) > 4096:
                del self.build_ms[:2048]
        return self._msg, self._pb

    def protobuf(self):
        return self.message()[1]

    def json(self):
        """The debug view: the same message as JSON (field names as in the .proto)."""
        return json_format.MessageToJson(self.message()[0], preserving_proto_field_name=True, indent=1)
