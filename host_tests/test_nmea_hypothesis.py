"""Property-based tests of the NMEA reader (CPython, hypothesis): whatever
bytes arrive, nothing raises and no fix carries an impossible value."""

from hypothesis import given, settings, strategies as st

import nmea

GOOD = [
    b"$GNRMC,100000.00,A,1649.26618,N,10015.95340,E,5.000,90.0,010126,,,A,V*0C\r\n",
    b"$GNGGA,100000.00,1649.26618,N,10015.95340,E,1,12,0.8,45.5,M,-27.8,M,,*63\r\n",
    b"$GPGSV,1,1,04,02,22,074,38,05,25,185,30,12,32,084,30,25,45,205,37,1*6F\r\n",
]
NMEA_BYTES = st.sampled_from(list(b"$*,.\r\n0123456789ABCDEFNSWGPRMCLVTZ-")) | st.integers(0, 255)


def _sane(f):
    assert not f.has_pos or (-90000000 <= f.lat_e6 <= 90000000 and -180000000 <= f.lon_e6 <= 180000000)
    assert f.tod_ms < 86401000
    assert f.year == 0 or (1980 <= f.year <= 2099 and 1 <= f.month <= 12 and 1 <= f.day <= 31)
    assert f.course_ddeg < 3600 and f.speed_cmps >= -1
    assert 0 <= f.quality <= 8 and 0 <= f.fix_type <= 3 and 0 <= f.sats_used
    assert f.hdop_x10 >= 0 and f.pdop_x10 >= 0 and f.vdop_x10 >= 0
    if f.valid:
        assert f.has_pos


def _checksummed(body):
    x = 0
    for c in body:
        x ^= c
    return b"$" + body + b"*%02X\r\n" % x


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data):
    r = nmea.NmeaReader(None)
    for f in r.feed(data) + [r.flush()]:
        if f is not None:
            _sane(f)
    assert r.stats["errors"] == 0


@settings(max_examples=400, deadline=None)
@given(st.lists(NMEA_BYTES, max_size=120), st.sampled_from([b"GPRMC,", b"GNGGA,", b"GPGSV,", b"GNGSA,",
                                                            b"GPGLL,", b"GPVTG,", b"GPZDA,", b"GNGNS,"]))
def test_checksummed_nonsense_fields_never_make_an_impossible_fix(body, head):
    r = nmea.NmeaReader(None)
    line = _checksummed(head + bytes(b for b in body if b not in (36, 42, 10, 13)))
    fixes = r.feed(line + GOOD[0])
    fixes.append(r.flush())
    for f in fixes:
        if f is not None:
            _sane(f)
    assert r.stats["errors"] == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 90), st.binary(max_size=8)), max_size=12))
def test_good_sentences_cut_and_spliced_with_junk_recover(parts):
    r = nmea.NmeaReader(None)
    stream = b""
    for i, cut, junk in parts:
        stream += GOOD[i][:cut] + junk
    stream += b"\r\n" + GOOD[0] + GOOD[1] + GOOD[2]
    before = r.stats["accepted"]
    r.feed(stream)
    f = r.flush()
    assert r.stats["accepted"] - before >= 3
    assert f.valid and f.lat_e6 == 16821103
