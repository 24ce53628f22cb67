"""Which GPS fixes become position records, and the odometer.

Rules as vehicle trackers apply them, checked at every fix: a record is made
when the time since the last record reaches the period (moving or stopped),
the distance from it reaches distance_m, the heading turned by heading_deg
(only above heading_min_speed_cmps: a standing bus's course is noise), the
speed changed by speed_delta_cmps, the bus came to a stop or moved off, the
first fix after boot or a signal loss, and on events (track.event(REASON_*)).
The odometer adds fix-to-fix distance while moving; at a crawl it waits
until the bus left a jitter_m circle, so it does not creep while parked.
"""

import time

import geo

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Reason bits returned by update() and event(); 0 means no record.
REASON_PERIOD = const(1)
REASON_DISTANCE = const(2)
REASON_HEADING = const(4)
REASON_SPEED = const(8)
REASON_STOP_START = const(16)  # a stop visit began (doors, from the stop logic)
REASON_STOP_END = const(32)
REASON_IGNITION_ON = const(64)
REASON_IGNITION_OFF = const(128)
REASON_FIRST = const(256)  # first good fix after boot or after a signal loss
REASON_STOPPED = const(512)  # the bus came to a standstill
REASON_MOVING = const(1024)  # the bus moved off

# City-bus defaults (1 Hz fixes); every key may be overridden.
DEFAULTS = {
    "period_moving_s": 30,
    "period_stopped_s": 300,
    "distance_m": 200,
    "heading_deg": 10,
    "heading_min_speed_cmps": 300,  # 11 km/h
    "speed_delta_cmps": 834,  # 30 km/h
    "stop_speed_cmps": 100,  # below this for stop_confirm_s: standing
    "stop_confirm_s": 3,
    "move_speed_cmps": 200,  # above this: moving again
    "odo_min_speed_cmps": 150,
    "jitter_m": 15,
    "max_hdop_x10": 60,  # worse fixes are ignored
    "max_speed_cmps": 4000,  # a jump faster than 144 km/h is an outlier
    "lost_after_s": 10,  # this long without a good fix: signal lost
}


class Track:
    """track = Track(settings or None, odometer_m=saved); reason = track.update(fix, now_ms).

    After a non-zero reason, the kept record is in lat_e6, lon_e6,
    speed_cmps, course_ddeg, alt_dm, unix_s (None without GPS date), reason."""

    def __init__(self, settings=None, odometer_m=0):
        cfg = dict(DEFAULTS)
        for k in settings or ():
            if k not in DEFAULTS:
                raise ValueError("unknown track setting: " + k)
            cfg[k] = int(settings[k])
        self.settings = cfg
        self._period_moving_ms = cfg["period_moving_s"] * 1000
        self._period_stopped_ms = cfg["period_stopped_s"] * 1000
        self._dist_cm = cfg["distance_m"] * 100
        self._heading_ddeg = cfg["heading_deg"] * 10
        self._jitter_cm = cfg["jitter_m"] * 100
        self.odometer_m = odometer_m
        self._odo_cm = 0  # below one metre, carried
        self.moving = False
        self._slow_ms = None  # since when the speed is below stop_speed
        self._ref_course = -1  # course at the last record made at speed
        self._cur = False  # a current fix is known
        self._cur_ms = 0
        self._cur_lat = self._cur_lon = 0
        self._cur_speed = self._cur_course = self._cur_alt = 0
        self._cur_unix = None
        self._anchor_lat = self._anchor_lon = 0
        self._lost = True
        self.has_pos = False
        self.lat_e6 = self.lon_e6 = 0
        self.speed_cmps = self.course_ddeg = self.alt_dm = 0
        self.unix_s = None
        self.kept_ms = 0
        self.reason = 0
        self.stats = {"fixes": 0, "ignored": 0, "jumps": 0, "records": 0}

    def update(self, fix, now_ms=None):
        """Feed every fix the reader returns; the reason bits (0: no record)."""
        if now_ms is None:
            now_ms = time.ticks_ms()
        c = self.settings
        if (fix is None or not fix.valid or not fix.has_pos
                or (fix.hdop_x10 and fix.hdop_x10 > c["max_hdop_x10"])):
            self.stats["ignored"] += 1
            if self._cur and time.ticks_diff(now_ms, self._cur_ms) >= c["lost_after_s"] * 1000:
                self._lost = True
            return 0
        lat, lon = fix.lat_e6, fix.lon_e6
        speed = fix.speed_cmps
        if self._cur:
            dt_ms = time.ticks_diff(now_ms, self._cur_ms)
            step_cm = geo.distance_cm(self._cur_lat, self._cur_lon, lat, lon)
            if step_cm > c["max_speed_cmps"] * max(dt_ms, 1000) // 1000 + 5000:
                self.stats["jumps"] += 1
                return 0
            if speed < 0:  # no RMC/VTG: speed from the step
                speed = step_cm * 1000 // max(dt_ms, 1)
        elif speed < 0:
            speed = 0
        self.stats["fixes"] += 1
        course = fix.course_ddeg if fix.course_ddeg >= 0 else self._cur_course
        if not self._cur:
            self._anchor_lat, self._anchor_lon = lat, lon
        self._cur = True
        self._cur_ms = now_ms
        self._cur_lat, self._cur_lon = lat, lon
        self._cur_speed, self._cur_course = speed, course
        self._cur_alt = fix.alt_dm
        self._cur_unix = fix.unix_s()
        self._odometer(lat, lon, speed)

        reason = 0
        if self.moving:
            if speed < c["stop_speed_cmps"]:
                if self._slow_ms is None:
                    self._slow_ms = now_ms
                if time.ticks_diff(now_ms, self._slow_ms) >= c["stop_confirm_s"] * 1000:
                    self.moving = False
                    reason |= REASON_STOPPED
            else:
                self._slow_ms = None
        elif speed >= c["move_speed_cmps"]:
            self.moving = True
            self._slow_ms = None
            reason |= REASON_MOVING
        fast = speed >= c["heading_min_speed_cmps"]
        if not self.has_pos or self._lost:
            reason |= REASON_FIRST
        else:
            period = self._period_moving_ms if self.moving else self._period_stopped_ms
            if time.ticks_diff(now_ms, self.kept_ms) >= period:
                reason |= REASON_PERIOD
            if geo.distance_cm(self.lat_e6, self.lon_e6, lat, lon) >= self._dist_cm:
                reason |= REASON_DISTANCE
            if fast and self._ref_course >= 0:
                turn = geo.angle_diff_ddeg(self._ref_course, course)
                if turn >= self._heading_ddeg or -turn >= self._heading_ddeg:
                    reason |= REASON_HEADING
            d = speed - self.speed_cmps
            if d >= c["speed_delta_cmps"] or -d >= c["speed_delta_cmps"]:
                reason |= REASON_SPEED
        if fast and self._ref_course < 0:
            self._ref_course = course  # first course worth trusting
        self._lost = False
        if reason:
            self._keep(now_ms, reason)
        return reason

    def event(self, reason, now_ms=None):
        """Force a record now at the latest position (stop visit, ignition);
        returns reason. has_pos stays False until a first good fix."""
        if now_ms is None:
            now_ms = time.ticks_ms()
        self._keep(now_ms, reason)
        return reason

    def _keep(self, now_ms, reason):
        self.reason = reason
        self.kept_ms = now_ms
        self.stats["records"] += 1
        if not self._cur:
            return
        self.has_pos = True
        self.lat_e6, self.lon_e6 = self._cur_lat, self._cur_lon
        self.speed_cmps, self.course_ddeg = self._cur_speed, self._cur_course
        self.alt_dm = self._cur_alt
        self.unix_s = self._cur_unix
        if self._cur_speed >= self.settings["heading_min_speed_cmps"]:
            self._ref_course = self._cur_course
        else:
            self._ref_course = -1

    def _odometer(self, lat, lon, speed):
        d = geo.distance_cm(self._anchor_lat, self._anchor_lon, lat, lon)
        if speed >= self.settings["odo_min_speed_cmps"] or d >= self._jitter_cm:
            d += self._odo_cm
            self.odometer_m += d // 100
            self._odo_cm = d % 100
            self._anchor_lat, self._anchor_lon = lat, lon
