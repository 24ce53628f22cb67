"""What the bridge knows before any bus speaks: the static GTFS feed and the fleet inventory.

The static feed (tools/routes/gtfs, made by tools/routes/gtfs_build.py)
gives routes, stops in order per direction and the shapes drawn on the page;
the provisioning inventory (tools/fleet/*.csv, the `route` and `plate`
columns) says which route each bus serves. A stop visit from a board carries
only its coordinates, so `nearest_stop` maps it to the route's stop.
"""

import csv
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
GTFS_DIR = os.path.join(TOOLS, "routes", "gtfs")
INVENTORY = os.path.join(TOOLS, "fleet", "inventory.example.csv")
STOP_RADIUS_M = 120  # a stop visit this close to a stop is at that stop


def metres(lat1, lon1, lat2, lon2):
    """Equirectangular distance in metres between two points in degrees."""
    k = 111320.0
    dx = (lon2 - lon1) * k * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, (lat2 - lat1) * k)


def _rows(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_inventory(path):
    """{device_id: {"route": ..., "plate": ..., "role": ...}} from a provisioning inventory CSV."""
    out = {}
    if not path or not os.path.exists(path):
        return out
    with open(path, encoding="utf-8", newline="") as f:
        lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    for row in csv.DictReader(lines):
        dev = (row.get("device_id") or "").strip()
        if dev:
            out[dev] = {"route": (row.get("route") or "").strip(), "plate": (row.get("plate") or "").strip(),
                        "role": (row.get("role") or "").strip()}
    return out


class Static:
    """Routes, stops, per-direction stop order and shapes of a static GTFS folder."""

    def __init__(self, folder=GTFS_DIR, inventory=INVENTORY):
        self.folder = folder
        self.stops = {r["stop_id"]: {"id": r["stop_id"], "name": r["stop_name"], "lat": float(r["stop_lat"]),
                                     "lon": float(r["stop_lon"])} for r in _rows(folder, "stops.txt")}
        self.routes = {r["route_id"]: {"id": r["route_id"], "name": r["route_long_name"],
                                       "short": r["route_short_name"]} for r in _rows(folder, "routes.txt")}
        trips = {r["trip_id"]: r for r in _rows(folder, "trips.txt")}
        # (route_id, direction) -> [stop_id in stop_sequence order]
        self.order = {}
        self.trip_of = {}
        seq = {}
        for r in _rows(folder, "stop_times.txt"):
            t = trips.get(r["trip_id"])
            if t is None:
                continue
            key = (t["route_id"], int(t["direction_id"]))
            self.trip_of[key] = r["trip_id"]
            seq.setdefault(key, []).append((int(r["stop_sequence"]), r["stop_id"]))
        for key, pairs in seq.items():
            self.order[key] = [s for _, s in sorted(pairs)]
        self.shapes = {}
        for r in _rows(folder, "shapes.txt"):
            self.shapes.setdefault(r["shape_id"], []).append(
                (int(r["shape_pt_sequence"]), float(r["shape_pt_lat"]), float(r["shape_pt_lon"])))
        for k in self.shapes:
            self.shapes[k] = [[lat, lon] for _, lat, lon in sorted(self.shapes[k])]
        self.route_shapes = {}
        for t in trips.values():
            self.route_shapes.setdefault(t["route_id"], t["shape_id"])
        self.inventory = read_inventory(inventory)

    def route_of(self, device_id):
        """The inventory's route for a bus; "" when unknown."""
        return self.inventory.get(device_id, {}).get("route", "")

    def plate_of(self, device_id):
        return self.inventory.get(device_id, {}).get("plate", "")

    def nearest_stop(self, route_id, lat, lon):
        """(stop_id, index in direction 0) of the route's stop nearest (lat, lon), or (None, -1) past STOP_RADIUS_M."""
        order = self.order.get((route_id, 0))
        if order is None:  # unknown route: any stop of the feed
            order = list(self.stops)
        best, best_i, best_d = None, -1, STOP_RADIUS_M
        for i, sid in enumerate(order):
            s = self.stops[sid]
            d = metres(lat, lon, s["lat"], s["lon"])
            if d <= best_d:
                best, best_i, best_d = sid, i, d
        return best, best_i

    def sequence(self, route_id, direction, stop_id):
        """stop_sequence (1-based) of stop_id on the route's trip in that direction, or 0."""
        order = self.order.get((route_id, direction), [])
        return order.index(stop_id) + 1 if stop_id in order else 0

    def next_stop(self, route_id, direction, stop_id):
        order = self.order.get((route_id, direction), [])
        if stop_id in order:
            i = order.index(stop_id)
            return order[min(i + 1, len(order) - 1)]
        return None

    def page_doc(self):
        """Routes, shapes and stops for the live page (drawn without any map server)."""
        return {"routes": [dict(r, shape=self.shapes.get(self.route_shapes.get(rid), []))
                           for rid, r in sorted(self.routes.items())],
                "stops": sorted(self.stops.values(), key=lambda s: s["id"])}
