"""Host-side checks that use the firmware's own code, so the host refuses
exactly what would stop the board (a bad geofence crash-loops it at boot)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _p in (os.path.join(ROOT, "firmware"), os.path.join(ROOT, "lib")):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def geofences(zones):
    """Raise ValueError naming the first zone the firmware could not load."""
    from transit.geofence import parse_zones  # the firmware's parser, as the board runs it
    if zones is None:
        return []
    if not isinstance(zones, list):
        raise ValueError("geofences: expected a list of zones")
    parsed = parse_zones(zones)
    for i, z in enumerate(parsed):
        if not 0 <= z[0] <= 255:
            raise ValueError("geofences[%d]: id %d is outside 0..255 (an event carries it in one byte)" % (i, z[0]))
        if z[4] <= 0:
            raise ValueError("geofences[%d]: radius_m must be above 0" % i)
    return parsed


# Chip names as boards/*.json spell them, from what the board reports in
# sys.implementation._machine ("Generic ESP32S3 module with ESP32S3").
def chip_of(machine, platform):
    """The chip a board reports ('esp32', 'esp32s3', ...); 'sim' for the unix port."""
    m = (machine or "").upper()
    if " WITH " in m:
        return m.rsplit(" WITH ", 1)[1].strip().lower()
    if platform == "linux":
        return "sim"
    return platform or "unknown"
