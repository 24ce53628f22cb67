"""Calendar arithmetic in integers: Unix days and seconds <-> Gregorian dates.

Works the same whatever the port's epoch (the ESP32 counts from 2000, the
unix port from 1970) because it never calls time.mktime/gmtime.
"""


def days_from_civil(y, m, d):
    """Days from 1970-01-01 to a Gregorian date."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def civil_from_unix(secs):
    """(year, month, day, hour, minute, second, weekday 0=Monday) of Unix seconds."""
    days = secs // 86400
    rem = secs - days * 86400
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (m <= 2), m, d, rem // 3600, rem // 60 % 60, rem % 60, (days + 3) % 7)
