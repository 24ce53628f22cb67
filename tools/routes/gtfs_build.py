#!/usr/bin/env python3
"""Build the static GTFS feed for the Phitsanulok routes from tools/routes/*.json.

The real-time feed (tools/city) refers to the ids made here: route_id is the
line number of `phitsanulok_line<N>.json` (the `route` column of the fleet
inventory), stop_id the route file's stop id, one shape per direction, and a
frequency-based timetable (a bus every `headway_min` from 06:00 to 20:00, run
times from the route's length and speeds plus a dwell per stop), because the
buses run on headways, not to a published minute.

    .venv/bin/python tools/routes/gtfs_build.py [--out tools/routes/gtfs]

The output is committed (tools/routes/gtfs/*.txt) and a test checks it is
what this script makes, so an edited route file cannot drift from the feed.
"""

import argparse
import csv
import glob
import io
import math
import os
import re
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "gtfs")
AGENCY = ("phs", "Phitsanulok City Bus", "https://transit.phitsanulok.example/", "Asia/Bangkok", "th")
SERVICE = ("daily", "20260101", "20271231")
FIRST_S, LAST_S = 6 * 3600, 20 * 3600
HEADWAY_MIN = 15
DWELL_S = 30


def metres(a, b):
    """Equirectangular distance in metres between two (lat_e6, lon_e6) points (fine at city scale)."""
    lat = math.radians((a[0] + b[0]) / 2e6)
    dy = (b[0] - a[0]) / 1e6 * 111320.0
    dx = (b[1] - a[1]) / 1e6 * 111320.0 * math.cos(lat)
    return math.hypot(dx, dy)


def route_files(folder=HERE):
    """{route_id: path} for every phitsanulok_line<N>.json."""
    out = {}
    for p in sorted(glob.glob(os.path.join(folder, "phitsanulok_line*.json"))):
        m = re.match(r"phitsanulok_line(\w+)\.json$", os.path.basename(p))
        if m:
            out[m.group(1)] = p
    return out


def _nearest_index(wps, at):
    return min(range(len(wps)), key=lambda i: metres(wps[i], at))


def _times(route, wps):
    """Seconds from the first stop to each stop along wps (route speeds plus dwell)."""
    speeds = route.get("speeds_kmh", {"town": 30, "road": 50})
    road_from = route.get("road_from_waypoint", len(wps))
    cum = [0.0]
    for i in range(1, len(wps)):
        kmh = speeds["road"] if i > road_from else speeds["town"]
        cum.append(cum[-1] + metres(wps[i - 1], wps[i]) / (kmh / 3.6))
    return cum


def tables(routes):
    """{file name: (header, rows)} of the static feed for {route_id: route document}."""
    t = {
        "agency.txt": (("agency_id", "agency_name", "agency_url", "agency_timezone", "agency_lang"), [AGENCY]),
        "calendar.txt": (("service_id", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                          "sunday", "start_date", "end_date"), [(SERVICE[0],) + (1,) * 7 + SERVICE[1:]]),
        "feed_info.txt": (("feed_publisher_name", "feed_publisher_url", "feed_lang", "feed_version"),
                          [(AGENCY[1], AGENCY[2], "th", "1")]),
        "routes.txt": (("route_id", "agency_id", "route_short_name", "route_long_name", "route_type"), []),
        "stops.txt": (("stop_id", "stop_name", "stop_lat", "stop_lon"), []),
        "shapes.txt": (("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence",
                        "shape_dist_traveled"), []),
        "trips.txt": (("route_id", "service_id", "trip_id", "trip_headsign", "direction_id", "shape_id"), []),
        "stop_times.txt": (("trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence",
                            "shape_dist_traveled"), []),
        "frequencies.txt": (("trip_id", "start_time", "end_time", "headway_secs", "exact_times"), []),
    }
    seen_stops = set()
    for rid, route in sorted(routes.items()):
        t["routes.txt"][1].append((rid, AGENCY[0], rid, route["name"].split(": ", 1)[-1], 3))
        for s in route["stops"]:
            if s["id"] not in seen_stops:
                seen_stops.add(s["id"])
                t["stops.txt"][1].append((s["id"], s["name"], "%.6f" % (s["at"][0] / 1e6),
                                          "%.6f" % (s["at"][1] / 1e6)))
        for direction in (0, 1):
            wps = route["waypoints"] if direction == 0 else route["waypoints"][::-1]
            stops = route["stops"] if direction == 0 else route["stops"][::-1]
            shape = "%s_%d" % (rid, direction)
            trip = "%s_%d_daily" % (rid, direction)
            dist = [0.0]
            for i in range(1, len(wps)):
                dist.append(dist[-1] + metres(wps[i - 1], wps[i]))
            for i, w in enumerate(wps):
                t["shapes.txt"][1].append((shape, "%.6f" % (w[0] / 1e6), "%.6f" % (w[1] / 1e6), i + 1,
                                           "%.1f" % dist[i]))
            t["trips.txt"][1].append((rid, SERVICE[0], trip, stops[-1]["name"], direction, shape))
            run = _times(route, wps)
            for k, s in enumerate(stops):
                i = _nearest_index(wps, s["at"])
                arr = int(run[i]) + k * DWELL_S
                t["stop_times.txt"][1].append((trip, _hms(FIRST_S + arr), _hms(FIRST_S + arr + DWELL_S), s["id"],
                                               k + 1, "%.1f" % dist[i]))
            t["frequencies.txt"][1].append((trip, _hms(FIRST_S), _hms(LAST_S), HEADWAY_MIN * 60, 0))
    return t


def _hms(s):
    return "%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)


def texts(folder=HERE):
    """{file name: CSV text} of the feed built from the route files in folder."""
    import json
    routes = {}
    for rid, path in route_files(folder).items():
        with open(path, encoding="utf-8") as f:
            routes[rid] = json.load(f)
    out = {}
    for name, (header, rows) in tables(routes).items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        out[name] = buf.getvalue()
    return out


def write(out=OUT, folder=HERE):
    os.makedirs(out, exist_ok=True)
    for name, text in texts(folder).items():
        with open(os.path.join(out, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return out


def zip_bytes(folder=OUT):
    """The committed feed as a GTFS zip (what a journey planner downloads)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".txt"):
                z.write(os.path.join(folder, name), name)
    return buf.getvalue()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    print("gtfs: wrote", write(args.out))


if __name__ == "__main__":
    main()
