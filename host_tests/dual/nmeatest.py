"""Helpers shared by the NMEA tests (both runtimes)."""

import nmea


def S(body):
    """b'$' + body + '*hh' with the right checksum."""
    x = 0
    for c in body.encode():
        x ^= c
    return ("$%s*%02X" % (body, x)).encode()


def reader(**kw):
    return nmea.NmeaReader(None, **kw)
