"""Stop visits and the live passenger load.

A visit starts when a door opens and ends when every door is closed and its
grace is over and no door reopened within merge_s at the same place (the
odometer moved less than merge_m): openings at one stop merge into one
visit. Each visit leaves as one StopVisit holding *deltas* (boardings and
alightings per door) with a unique id, never a running total, so a consumer
can add them up after de-duplicating.

visit_id = boot_no << 16 | n, where boot_no is the persisted boot counter
(mod 65536) and n counts visits since boot (1..65535): unique across reboots
and within the 32 bits of the stop record.
"""

from time import ticks_ms, ticks_diff

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# GTFS-Realtime occupancy_status values
EMPTY = const(0)
MANY_SEATS_AVAILABLE = const(1)
FEW_SEATS_AVAILABLE = const(2)
STANDING_ROOM_ONLY = const(3)
CRUSHED_STANDING_ROOM_ONLY = const(4)
FULL = const(5)
NO_DATA_AVAILABLE = const(7)

# Quality flags of a visit (u8)
Q_FAULT = const(1)  # a beam of some door was faulty during the visit
Q_LOST = const(2)  # edges were lost: crossings may be missing
Q_CLAMP = const(4)  # the load would have gone below zero
Q_NO_POSITION = const(8)  # no fix when the doors opened
Q_NO_TIME = const(16)  # t_open_unix is not from a valid clock
Q_MERGED = const(32)  # several openings merged into this visit
Q_LOAD_RESET = const(64)  # the load was reset during the visit
Q_LATE = const(128)  # edges came through a blocking call: counted from late, bunched callbacks

# Load reset reasons
RESET_TERMINUS = const(0)
RESET_DEPOT = const(1)
RESET_IGNITION = const(2)
RESET_COMMAND = const(3)

DEFAULTS = {"merge_s": 20, "merge_m": 30, "seats": 30, "standing": 40}

_IDLE = const(0)
_OPEN = const(1)
_CLOSING = const(2)


def occupancy_status(load, seats, standing, faulty=False):
    """GTFS-RT occupancy from the load and the capacity (seats + standing)."""
    if faulty:
        return NO_DATA_AVAILABLE
    if load <= 0:
        return EMPTY
    if 4 * load <= 3 * seats:
        return MANY_SEATS_AVAILABLE
    if load < seats:
        return FEW_SEATS_AVAILABLE
    cap = seats + standing
    if load >= cap:
        return FULL
    if 10 * load < 10 * seats + 7 * standing:
        return STANDING_ROOM_ONLY
    return CRUSHED_STANDING_ROOM_ONLY


class StopVisit:
    """One stop visit (all ints; records.pack_stop encodes it)."""

    def __init__(self, visit_id, pos, n_doors):
        self.visit_id = visit_id
        if pos is None:
            pos = (0, 0, 0, 0, False)
        self.lat_e6, self.lon_e6, self.odometer_m, self.t_open_unix, known = pos[:5]
        self.time_known = bool(known)
        self.t_close_unix = self.t_open_unix
        self.dwell_s = 0
        self.doors = [[0, 0] for _ in range(n_doors)]  # (boardings, alightings)
        self.load_departure = 0
        self.occupancy_status = NO_DATA_AVAILABLE
        self.quality = 0
        self.lost_edges = 0
        self.clamps = 0

    def boardings(self):
        return sum(d[0] for d in self.doors)

    def alightings(self):
        return sum(d[1] for d in self.doors)


class StopVisits:
    """Turns door activity into stop visits and keeps the live load.

    doors: object with len(), is_open(i), active(i), counts(i) -> (in, out),
    boardings(i), alightings(i), lost(i), late(i), faulty(i), `opened` (door
    openings since boot), open_age_ms() and close_age_ms() (how long before
    its last step the latest opening / closing happened: a door that opened
    and closed while the loop was blocked is learnt late, with its time)
    (transit.doors.Doors). position(): None or
    (lat_e6, lon_e6, odometer_m, unix_s, time_known)."""

    def __init__(self, doors, position, config=None, boot_no=0):
        c = config or {}
        self.doors = doors
        self.position = position
        self.merge_ms = c.get("merge_s", DEFAULTS["merge_s"]) * 1000
        self.merge_m = c.get("merge_m", DEFAULTS["merge_m"])
        self.seats = c.get("seats", DEFAULTS["seats"])
        self.standing = c.get("standing", DEFAULTS["standing"])
        self.boot_no = boot_no & 0xFFFF
        self.n = 0
        n = len(doors)
        self._seen = [list(doors.counts(i)) for i in range(n)]
        # Bound once: step() runs every loop iteration and must not allocate.
        self._is_open = doors.is_open
        self._active = doors.active
        self._faulty = doors.faulty
        self._lost = [doors.lost(i) for i in range(n)]
        self._late = [doors.late(i) for i in range(n)]
        self._opened = doors.opened
        self.state = _IDLE
        self.visit = None
        self.open_ms = 0
        self.closed_ms = 0
        self.open_now = False  # a door of the current visit is open
        self.load = 0
        self.clamps = 0  # since boot
        self.resets = [0, 0, 0, 0]  # per reason, since boot
        self.merged = 0
        self.outbox = []

    def _any(self, fn):
        for i in range(len(self.doors)):
            if fn(i):
                return True
        return False

    def _take_counts(self):
        """Add new crossings to the visit and the load; clamp at zero."""
        v = self.visit
        net = 0
        for i in range(len(self.doors)):
            b = self.doors.boardings(i)
            a = self.doors.alightings(i)
            seen = self._seen[i]
            db, da = b - seen[0], a - seen[1]
            seen[0], seen[1] = b, a
            net += db - da
            lost = self.doors.lost(i)
            dl = lost - self._lost[i]
            self._lost[i] = lost
            late = self.doors.late(i)
            dlate = late - self._late[i]
            self._late[i] = late
            if v is not None:
                v.doors[i][0] += db
                v.doors[i][1] += da
                if dl:
                    v.lost_edges += dl
                    v.quality |= Q_LOST
                if dlate:
                    v.quality |= Q_LATE
                if self.doors.faulty(i):
                    v.quality |= Q_FAULT
        load = self.load + net
        if load < 0:
            self.clamps += 1
            if v is not None:
                v.clamps += 1
                v.quality |= Q_CLAMP
            load = 0
        self.load = load

    def step(self, now_ms=None):
        """Call every loop after doors.step()."""
        now = ticks_ms() if now_ms is None else now_ms
        opened = self.doors.opened != self._opened  # an opening since the last step, maybe over already
        self._opened = self.doors.opened
        if self.state == _IDLE:
            if opened or self._any(self._is_open):
                self._start(now, self.doors.open_age_ms())
        self._take_counts()
        is_open = self._any(self._is_open)
        if self.state == _OPEN:
            if is_open:
                self.open_now = True
            else:
                if self.open_now:  # the last door just closed (maybe while the loop was blocked)
                    self.open_now = False
                    self.closed_ms = now - self.doors.close_age_ms()
                if not self._any(self._active):
                    self.state = _CLOSING
        elif self.state == _CLOSING:
            if ticks_diff(now, self.closed_ms) >= self.merge_ms or not self._same_place():
                self._finish()
                if is_open or opened:
                    self._start(now, self.doors.open_age_ms())
            elif is_open or opened:
                self.state = _OPEN
                self.open_now = True
                if not is_open:
                    self.closed_ms = now - self.doors.close_age_ms()
                self.visit.quality |= Q_MERGED
                self.merged += 1

    def _start(self, now, age_ms=0):
        """Open a visit at the first door edge, age_ms before now."""
        self.n = self.n + 1 if self.n < 0xFFFF else 1
        pos = self.position()
        v = StopVisit((self.boot_no << 16) | self.n, pos, len(self.doors))
        if pos is None:
            v.quality |= Q_NO_POSITION | Q_NO_TIME
        elif not v.time_known:
            v.quality |= Q_NO_TIME
        if age_ms > 0 and pos is not None:
            v.t_open_unix -= age_ms // 1000
            v.t_close_unix = v.t_open_unix
        self.visit = v
        self.state = _OPEN
        self.open_now = True
        self.open_ms = self.closed_ms = now - (age_ms if age_ms > 0 else 0)

    def _same_place(self):
        pos = self.position()
        v = self.visit
        if pos is None or v.quality & Q_NO_POSITION:
            return True  # no way to tell: time alone decides
        d = pos[2] - v.odometer_m
        return -self.merge_m <= d <= self.merge_m

    def _finish(self):
        v = self.visit
        v.dwell_s = ticks_diff(self.closed_ms, self.open_ms) // 1000
        v.t_close_unix = v.t_open_unix + v.dwell_s
        v.load_departure = self.load
        faulty = self._any(self._faulty) or v.quality & Q_FAULT
        v.occupancy_status = occupancy_status(self.load, self.seats, self.standing, faulty)
        self.outbox.append(v)
        self.visit = None
        self.state = _IDLE

    def reset_load(self, reason=RESET_COMMAND):
        """Zero the load: terminus, depot, ignition off or a command."""
        self.load = 0
        self.resets[reason] += 1
        if self.visit is not None:
            self.visit.quality |= Q_LOAD_RESET

    def occupancy(self):
        """Live GTFS-RT occupancy_status (NO_DATA_AVAILABLE while a sensor is faulty)."""
        return occupancy_status(self.load, self.seats, self.standing, self._any(self._faulty))

    def pop(self):
        """The oldest finished visit, or None."""
        return self.outbox.pop(0) if self.outbox else None
