"""The depot role's loop: gate counts and the yard roster (transit.app's App).

In a module of its own so a bus never loads it (its class and methods cost
a bus's heap ~0.5 KB for nothing; docs/memory.md); transit.app.build picks
the role.
"""

from transit import records as R
from transit.app import App


class DepotApp(App):
    """Gate counters -> periodic count records; yard roster; uplink.

    The roster hears buses by BLE where the board has a radio; otherwise (and
    in addition) it follows the buses' own geofence events for this depot's
    zone (`depot.zone_id`) through the broker."""

    def __init__(self, cfg, board, state, **kw):
        from transit.gates import Gates
        from transit.roster import Roster, BleScanner
        from transit.health import unix_now
        self.unix_now = unix_now
        self.roster = Roster(cfg.group("roster") or None)
        App.__init__(self, cfg, board, state, **kw)
        self.gates = Gates(board.door_pins("gates"), cfg.group("counting") or None, unix_s=unix_now())
        ble = board.ble()
        self.scanner = BleScanner(ble, self.roster, cfg.group("roster") or None) if ble is not None else None
        self.health.register("gates", self.gates.health, sparse=True)
        self.health.register("yard", lambda: {"buses": len(self.roster.last_seen), "bad_events": self.bad_events})

    bad_events = 0

    def watch_spec(self, cfg):
        if cfg.get("depot.zone_id", -1) < 0:
            return None
        return ("%s/bus/+/event" % cfg["topic_root"], self.on_bus_event)

    def on_bus_event(self, topic, msg):
        """A bus's event batch: depot geofence enter/exit moves it in or out of the yard."""
        from transit.roster import SRC_GEOFENCE
        import json
        try:
            bus_id = topic.decode().split("/")[2]
            doc = json.loads(msg)
            zone = self.cfg.get("depot.zone_id")
            for row in doc["r"]:
                if row.get("i") != zone:
                    continue
                if row["k"] == R.EV_GEOFENCE_ENTER:
                    self.roster.seen(bus_id, 0, SRC_GEOFENCE)
                elif row["k"] == R.EV_GEOFENCE_EXIT:
                    self.roster.gone(bus_id, SRC_GEOFENCE)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self.bad_events += 1  # somebody else's malformed message must not stop the depot

    def busy(self):
        return self.gates.busy()

    def step(self):
        self.gates.step(self.unix_now())
        while True:
            c = self.gates.pop()
            if c is None:
                break
            self.record(R.COUNT, R.pack_count(c.period_start_unix, c.period_s, c.flags, c.gates), c.period_end_unix,
                        self.timesync.flags())
        if self.scanner is not None:
            self.scanner.step()
        while True:
            r = self.roster.pop()
            if r is None:
                break
            self.record(R.ROSTER, R.pack_roster(r[0], r[1], r[2], r[3]), self.unix_now(), self.timesync.flags())
        return App.step(self)
