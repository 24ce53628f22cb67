"""Planner export: stop visits as CSV, one row per stop visit and door.

Columns: local time the doors opened and closed (Asia/Bangkok, ISO 8601),
vehicle, route, stop id and name, door number (1-based), boardings,
alightings, the bus's load when it left the stop, dwell seconds, and the
record's (epoch, seq) so a row can be traced back to the board. Opens
straight in a spreadsheet (UTF-8 with a header row).
"""

import csv
import io
import time

from city.state import LOCAL_UTC_OFFSET_S

COLUMNS = ("time_open", "time_close", "vehicle", "route", "stop_id", "stop_name", "door", "boardings",
           "alightings", "load", "dwell_s", "epoch", "seq")


def local_iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S+07:00", time.gmtime(ts + LOCAL_UTC_OFFSET_S))


def rows(state, day=None):
    """Row tuples of every stop visit (of one local day YYYY-MM-DD when given), in time order."""
    from city.state import local_day
    with state.lock:
        visits = list(state.visits)
    stops = state.static.stops
    out = []
    for dev, route, sid, e, r in sorted(visits, key=lambda x: (x[4]["to"], x[0], x[4]["seq"])):
        if day and local_day(r["to"]) != day:
            continue
        name = stops[sid]["name"] if sid in stops else ""
        for door, (b, a) in enumerate(r["dr"], 1):
            out.append((local_iso(r["to"]), local_iso(r["tc"]), dev, route, sid, name, door, b, a, r["ld"],
                        r["dw"], e, r["seq"]))
    return out


def csv_text(state, day=None):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(COLUMNS)
    w.writerows(rows(state, day))
    return buf.getvalue()
