"""Integer distance and bearing on (lat_e6, lon_e6) points, degrees x 1e6.

Equirectangular projection around the mean latitude: at city scale (< 50 km)
the error is far below GPS noise (< 0.1 %). Everything is integer maths with
small ints for distances up to ~20 km, so it runs allocation-free on an ESP32
every second. Earth radius 6371008.8 m: 1 microdegree of latitude = 11.12 cm.
"""

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# cos(deg) x 2**14 for deg = 0..90, interpolated linearly between degrees.
_COS_Q14 = (
    16384, 16382, 16374, 16362, 16344, 16322, 16294, 16262, 16225, 16182,
    16135, 16083, 16026, 15964, 15897, 15826, 15749, 15668, 15582, 15491,
    15396, 15296, 15191, 15082, 14968, 14849, 14726, 14598, 14466, 14330,
    14189, 14044, 13894, 13741, 13583, 13421, 13255, 13085, 12911, 12733,
    12551, 12365, 12176, 11982, 11786, 11585, 11381, 11174, 10963, 10749,
    10531, 10311, 10087, 9860, 9630, 9397, 9162, 8923, 8682, 8438,
    8192, 7943, 7692, 7438, 7182, 6924, 6664, 6402, 6138, 5872,
    5604, 5334, 5063, 4790, 4516, 4240, 3964, 3686, 3406, 3126,
    2845, 2563, 2280, 1997, 1713, 1428, 1143, 857, 572, 286,
    0)

# atan(k/64) in centidegrees for k = 0..64.
_ATAN_CDEG = (
    0, 90, 179, 268, 358, 447, 536, 624, 713, 800,
    888, 975, 1062, 1148, 1234, 1319, 1404, 1488, 1571, 1653,
    1735, 1817, 1897, 1977, 2056, 2134, 2211, 2287, 2363, 2438,
    2511, 2584, 2657, 2728, 2798, 2867, 2936, 3003, 3070, 3136,
    3201, 3264, 3327, 3390, 3451, 3511, 3571, 3629, 3687, 3744,
    3800, 3855, 3909, 3963, 4016, 4067, 4119, 4169, 4218, 4267,
    4315, 4363, 4409, 4455, 4500)

_CM_PER_UDEG_X100 = const(1112)  # 11.12 cm per microdegree (x100)
_SMALL = const(23000)  # |dx|,|dy| below this square to a small int


def cos_q14(lat_e6):
    """cos(latitude) x 2**14 (16384 at the equator), from the table."""
    a = lat_e6 if lat_e6 >= 0 else -lat_e6
    if a >= 90000000:
        return 0
    i = a // 1000000
    f = a - i * 1000000
    c0 = _COS_Q14[i]
    return c0 - ((c0 - _COS_Q14[i + 1]) * (f // 1000)) // 1000


def east_cm(lat1_e6, lon1_e6, lat2_e6, lon2_e6):
    """Eastward offset from point 1 to point 2 in cm; wraps at 180 deg."""
    dlon = lon2_e6 - lon1_e6
    if dlon > 180000000:
        dlon -= 360000000
    elif dlon < -180000000:
        dlon += 360000000
    east = dlon * _CM_PER_UDEG_X100
    return (east * cos_q14((lat1_e6 + lat2_e6) // 2) // 100 + 8192) >> 14


def north_cm(lat1_e6, lat2_e6):
    """Northward offset from latitude 1 to latitude 2 in cm."""
    return ((lat2_e6 - lat1_e6) * _CM_PER_UDEG_X100 + 50) // 100


def delta_cm(lat1_e6, lon1_e6, lat2_e6, lon2_e6):
    """(east_cm, north_cm) from point 1 to point 2 (allocates a tuple)."""
    return east_cm(lat1_e6, lon1_e6, lat2_e6, lon2_e6), north_cm(lat1_e6, lat2_e6)


def isqrt(n):
    """Integer square root (floor) of a non-negative int by Newton's method."""
    if n <= 0:
        return 0
    x = n
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + n // x) >> 1
    return x


def hypot_cm(dx, dy):
    """Length of (dx, dy) in the same unit, rounded; small ints below 230 m."""
    if dx < 0:
        dx = -dx
    if dy < 0:
        dy = -dy
    if dx < _SMALL and dy < _SMALL:
        return isqrt(dx * dx + dy * dy)
    # Long legs: work in metres so squares stay small up to ~20 km.
    ex = (dx + 50) // 100
    ey = (dy + 50) // 100
    return isqrt(ex * ex + ey * ey) * 100


def distance_cm(lat1_e6, lon1_e6, lat2_e6, lon2_e6):
    """Ground distance in centimetres (for odometers, which add small steps)."""
    return hypot_cm(east_cm(lat1_e6, lon1_e6, lat2_e6, lon2_e6), north_cm(lat1_e6, lat2_e6))


def distance_m(lat1_e6, lon1_e6, lat2_e6, lon2_e6):
    """Ground distance in whole metres (rounded)."""
    return (distance_cm(lat1_e6, lon1_e6, lat2_e6, lon2_e6) + 50) // 100


def atan2_cdeg(east, north):
    """Compass angle of the vector (east, north) in centidegrees, 0..35999,
    0 = north, clockwise; 0 for the null vector."""
    a = east if east >= 0 else -east
    b = north if north >= 0 else -north
    if a == 0 and b == 0:
        return 0
    if a <= b:
        q = (a << 12) // b  # tan in 1/4096, 0..4096
        k = q >> 6
        t = _ATAN_CDEG[k]
        if k < 64:
            t += ((_ATAN_CDEG[k + 1] - t) * (q & 63)) >> 6
    else:
        q = (b << 12) // a
        k = q >> 6
        t = _ATAN_CDEG[k]
        if k < 64:
            t += ((_ATAN_CDEG[k + 1] - t) * (q & 63)) >> 6
        t = 9000 - t
    if north >= 0:
        return t if east >= 0 else (36000 - t) % 36000
    return 18000 - t if east >= 0 else 18000 + t


def bearing_ddeg(lat1_e6, lon1_e6, lat2_e6, lon2_e6):
    """Initial bearing from point 1 to point 2 in tenths of a degree, 0..3599
    (0 = north, 900 = east); 0 when the points coincide."""
    e = east_cm(lat1_e6, lon1_e6, lat2_e6, lon2_e6)
    return ((atan2_cdeg(e, north_cm(lat1_e6, lat2_e6)) + 5) // 10) % 3600


def angle_diff_ddeg(a_ddeg, b_ddeg):
    """Smallest signed turn from heading a to heading b, -1799..1800 ddeg."""
    d = (b_ddeg - a_ddeg) % 3600
    return d - 3600 if d > 1800 else d


def offset_e6(lat_e6, lon_e6, north_cm, east_cm):
    """The point north_cm / east_cm away (inverse of delta_cm, city scale)."""
    lat = lat_e6 + (north_cm * 200 + _CM_PER_UDEG_X100) // (2 * _CM_PER_UDEG_X100)
    c = cos_q14(lat_e6) or 1
    lon = lon_e6 + (((east_cm << 14) // c) * 200 + _CM_PER_UDEG_X100) // (2 * _CM_PER_UDEG_X100)
    return lat, lon
