"""Geofences for depots and termini: enter/exit events with hysteresis.

A zone is (id, kind, lat_e6, lon_e6, radius_m). The bus is inside once it
comes within radius_m and outside again only beyond radius_m + margin_m, so
GPS noise at the edge does not make a storm of events. Entering a terminus
or a depot resets the passenger load (done by the caller on the event).
"""

from geo import distance_m

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

KIND_DEPOT = const(1)
KIND_TERMINUS = const(2)
KIND_STOP = const(3)
KINDS = {"depot": KIND_DEPOT, "terminus": KIND_TERMINUS, "stop": KIND_STOP}
ENTER = const(1)
EXIT = const(2)


def parse_zones(items):
    """Zones from configuration dicts; raises ValueError naming the bad entry."""
    zones = []
    for i, z in enumerate(items or ()):
        try:
            kind = KINDS[z["kind"]]
            lat, lon = z["at"]
            zones.append([int(z["id"]), kind, int(lat), int(lon), int(z["radius_m"])])
        except (KeyError, TypeError, ValueError):
            raise ValueError("geofences[%d]: expected {id, kind (depot|terminus|stop), at: [lat_e6, lon_e6], radius_m}" % i)
    return zones


class Geofences:
    def __init__(self, zones, margin_m=20):
        self.zones = zones
        self.margin_m = margin_m
        self.inside = [False] * len(zones)
        self.events = 0

    def update(self, lat_e6, lon_e6, out):
        """Append (ENTER|EXIT, zone) to `out` for every crossing; return how many."""
        n = 0
        for i, z in enumerate(self.zones):
            d = distance_m(lat_e6, lon_e6, z[2], z[3])
            if not self.inside[i] and d <= z[4]:
                self.inside[i] = True
                out.append((ENTER, z))
                n += 1
            elif self.inside[i] and d > z[4] + self.margin_m:
                self.inside[i] = False
                out.append((EXIT, z))
                n += 1
        self.events += n
        return n

    def in_kind(self, kind):
        """True while inside any zone of this kind (e.g. in the depot)."""
        for i, z in enumerate(self.zones):
            if self.inside[i] and z[1] == kind:
                return True
        return False
