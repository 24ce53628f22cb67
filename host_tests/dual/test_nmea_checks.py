"""nmea: defects found by independent checks (issue 16). Sentences with an
empty time field are an epoch of their own; numeric fields that pass the
checksum are range-checked (no negative or fractional counts, no negative
DOP); a GSV with an empty NMEA 4.1 signal id is accepted. Runs under CPython
and the unix port (64K)."""

import machine
import nmea
from fakeclock import CLOCK
from nmeatest import S, reader

# A real receiver losing its fix: a timed burst, then an empty-time burst.
FIX = (b"$GPGGA,022038.00,3644.762563,S,17444.069733,E,1,06,1.1,53.0,M,37.0,M,,*42",
       b"$GPRMC,022038.00,A,3644.762563,S,17444.069733,E,0.0,,071020,18.3,E,A,V*45")
EMPTY = (b"$GPGGA,,,,,,0,,,,,,,,*66",
         b"$GPRMC,,V,,,,,,,,,,N*53")
LAT, LON = -36746043, 174734496


def _is_the_fix(f):
    return f is not None and f.valid and (f.lat_e6, f.lon_e6) == (LAT, LON) and f.tod_ms == 8438000


def test_the_issue_sentences_pass_their_checksums():
    r = reader()
    for line in FIX + EMPTY:
        r.parse_line(line)
    assert r.stats["accepted"] == 4 and r.stats["checksum_errors"] == 0


def test_empty_time_sentences_close_the_open_fix_instead_of_joining_it():
    r = reader()
    assert r.parse_line(FIX[0]) is None and r.parse_line(FIX[1]) is None
    closed = r.parse_line(EMPTY[0])
    assert _is_the_fix(closed), closed
    assert r.parse_line(EMPTY[1]) is None  # the empty burst is one epoch
    f = r.flush()
    assert f is not None and not f.valid and not f.has_pos and f.tod_ms == -1


def test_an_empty_time_burst_before_a_fix_does_not_invalidate_it():
    r = reader()
    for line in EMPTY:
        assert r.parse_line(line) is None
    nofix = r.parse_line(FIX[0])
    assert nofix is not None and not nofix.valid and nofix.tod_ms == -1
    assert r.parse_line(FIX[1]) is None
    assert _is_the_fix(r.flush())


def test_gsa_and_gsv_still_join_the_fix_that_follows_them():
    # Some receivers send GSA/GSV (which have no time field) before RMC.
    r = reader()
    r.parse_line(S("GPGSA,A,3,04,05,09,12,,,,,,,,,2.5,1.3,2.1"))
    r.parse_line(S("GPGSV,1,1,04,02,22,074,38,05,25,185,30,12,32,084,30,25,45,205,37"))
    r.parse_line(FIX[1])
    f = r.flush()
    assert _is_the_fix(f) and f.fix_type == 3 and f.sats_in_view == 4 and f.pdop_x10 == 25


def test_old_gll_without_a_time_field_still_joins_the_epoch():
    # NMEA 1.5 GLL has no time field at all (absent, not empty).
    r = reader()
    r.parse_line(FIX[1])
    assert r.parse_line(S("GPGLL,3644.762563,S,17444.069733,E")) is None
    f = r.flush()
    assert f.sentences == nmea.S_RMC | nmea.S_GLL and f.tod_ms == 8438000


def _uart_with(*lines):
    CLOCK.set_virtual(0)
    uart = machine.UART(1, 9600, rxbuf=2048)
    uart.feed(b"".join(l + b"\r\n" for l in lines))
    return uart


def test_reader_keeps_the_fix_when_both_bursts_wait_in_the_uart_together():
    uart = _uart_with(*(FIX + EMPTY))
    r = nmea.NmeaReader(uart)
    assert _is_the_fix(r.step())
    assert r.step() is None  # the empty burst is read; it closes when the line goes quiet
    CLOCK.advance_us(200000)
    f = r.step()
    assert f is not None and not f.valid and f.tod_ms == -1
    assert r.step() is None and uart.any() == 0


def test_reader_keeps_the_fix_when_it_follows_an_empty_burst_in_the_buffer():
    uart = _uart_with(*(EMPTY + FIX))
    r = nmea.NmeaReader(uart)
    f = r.step()
    assert f is not None and not f.valid
    assert r.step() is None
    CLOCK.advance_us(200000)
    assert _is_the_fix(r.step())


def test_gga_quality_must_be_a_whole_number_from_0_to_8():
    r = reader()
    for q in ("-1", "0.6", "1.0", "+1", "-0"):
        assert r.parse_line(S("GPGGA,022038.00,3644.762563,S,17444.069733,E,%s,06,1.1,53.0,M,37.0,M,," % q)) is None
        assert r.parse_line(FIX[1]) is None
        f = r.flush()
        assert not f.sentences & nmea.S_GGA, q
        assert f.quality == 0, q
    assert r.stats["bad_fields"] == 5


def test_negative_dilution_of_precision_rejects_the_sentence():
    r = reader()
    for b in ("GNGSA,A,3,01,02,03,04,05,,,,,,,,2.5,-1.3,2.1",
              "GNGSA,A,3,01,02,03,04,05,,,,,,,,-2.5,1.3,2.1",
              "GNGSA,A,3,01,02,03,04,05,,,,,,,,2.5,1.3,-2.1",
              "GNGNS,112257.00,3844.24011,N,00908.43828,W,AN,10,-1.2,-12.4,46.1,,,S",
              "GPGGA,022038.00,3644.762563,S,17444.069733,E,1,06,-1.1,53.0,M,37.0,M,,"):
        assert r.parse_line(S(b)) is None, b
    assert r.stats["bad_fields"] == 5 and r.stats["accepted"] == 0
    assert r.flush() is None


def test_counts_and_other_whole_number_fields_reject_signs_and_fractions():
    r = reader()
    bad = ("GPGGA,022038.00,3644.762563,S,17444.069733,E,1,6.5,1.1,53.0,M,37.0,M,,",  # satellites
           "GPGGA,022038.00,3644.762563,S,17444.069733,E,1,-6,1.1,53.0,M,37.0,M,,",
           "GNGNS,112257.00,3844.24011,N,00908.43828,W,AN,9.6,1.2,-12.4,46.1,,,S",
           "GNGSA,A,2.6,01,02,03,04,05,,,,,,,,2.5,1.3,2.1",  # fix type
           "GNGSA,A,-3,01,02,03,04,05,,,,,,,,2.5,1.3,2.1",
           "GNGSA,A,3,01,02,03,04,05,,,,,,,,2.5,1.3,2.1,1.5",  # system id
           "GPGSV,1.0,1,04,02,22,074,38,05,25,185,30,12,32,084,30,25,45,205,37",
           "GPGSV,1,1,-4,02,22,074,38,05,25,185,30,12,32,084,30,25,45,205,37",
           "GPGSV,1,1,4.4,02,22,074,38,05,25,185,30,12,32,084,30,25,45,205,37",
           "GPVTG,054.7,T,034.4,M,-005.5,N,010.2,K,A",  # negative speeds
           "GPVTG,054.7,T,034.4,M,005.5,N,-010.2,K,A",
           "GPZDA,201530.00,4.6,07,2026,00,00",  # day
           "GPZDA,201530.00,04,07,2026.4,00,00")
    for b in bad:
        assert r.parse_line(S(b)) is None, b
    assert r.stats["bad_fields"] == len(bad) and r.stats["accepted"] == 0, r.stats
    assert r.flush() is None


def test_gsv_with_an_empty_signal_id_from_a_zed_f9p_is_accepted():
    r = reader()
    assert r.parse_line(b"$GBGSV,3,1,10,01,29,321,,03,12,292,,04,37,345,,08,49,229,,*49") is None
    assert r.stats["accepted"] == 1 and r.stats["bad_fields"] == 0
    r.parse_line(FIX[1])
    f = r.flush()
    assert f.in_view[nmea.SYS_BEIDOU] == 10 and f.sats_in_view == 10


def test_gsv_signal_id_that_is_not_a_hex_digit_is_still_rejected():
    r = reader()
    assert r.parse_line(S("GBGSV,3,1,10,01,29,321,,03,12,292,,04,37,345,,08,49,229,,G")) is None
    assert r.stats["bad_fields"] == 1
