"""gpsclock: UTC from GPS, NTP fallback, Unix time on both port epochs,
flags for records made before the time was known (CPython and unix port)."""

import sys
import time

import machine
import nmea
from fakeclock import CLOCK
from transit import gpsclock

T2026 = 1767225600  # 2026-01-01 00:00:00 UTC


def gps_fix(unix_s, valid=True):
    f = nmea.Fix()
    y, mo, d, h, mi, s, _ = gpsclock.civil_from_unix(unix_s)
    f.valid = f.has_pos = valid
    f.year, f.month, f.day = y, mo, d
    f.tod_ms = (h * 3600 + mi * 60 + s) * 1000
    return f


def test_time_is_unknown_and_flagged_until_a_valid_fix():
    CLOCK.set_virtual(0, utc_s=0)
    clk = gpsclock.GpsClock(machine.RTC())
    assert not clk.time_known() and clk.flags() == gpsclock.FLAG_TIME_UNKNOWN
    assert clk.unix_now(0) == 0  # the RTC's own idea: 1970 on a fresh board
    assert not clk.from_fix(gps_fix(T2026, valid=False), 0)
    assert not clk.time_known()
    assert clk.from_fix(gps_fix(T2026), 1000)
    assert clk.time_known() and clk.flags() == 0 and clk.source == gpsclock.SOURCE_GPS


def test_unix_now_follows_ticks_from_the_gps_anchor_across_the_wrap():
    CLOCK.set_virtual((1 << 30) * 1000 - 5000 * 1000)
    clk = gpsclock.GpsClock()
    t0 = time.ticks_ms()
    clk.from_fix(gps_fix(T2026), t0)
    time.sleep_ms(12500)  # ticks_ms wraps on the way
    assert time.ticks_ms() < t0
    assert clk.unix_now() == T2026 + 12
    assert clk.unix_at(t0 - 3000 if t0 >= 3000 else t0) == T2026 - 3


def test_gps_sets_the_rtc_once_and_again_after_an_hour():
    CLOCK.set_virtual(0, utc_s=0)
    rtc = machine.RTC()
    clk = gpsclock.GpsClock(rtc)
    clk.from_fix(gps_fix(T2026), 0)
    assert rtc.datetime()[:7] == (2026, 1, 1, 3, 0, 0, 0)  # a Thursday
    for s in range(1, 3600):
        clk.from_fix(gps_fix(T2026 + s), s * 1000)
    assert clk.stats["rtc_writes"] == 1
    clk.from_fix(gps_fix(T2026 + 3600), 3600 * 1000)
    assert clk.stats["rtc_writes"] == 2


def test_a_date_before_min_year_is_refused_as_a_week_rollover():
    clk = gpsclock.GpsClock()
    assert not clk.from_fix(gps_fix(T2026 - 619315200), 0)  # 1024 weeks back: 2006
    assert not clk.time_known() and clk.stats["rejected"] == 1


def test_ntp_sets_the_time_only_without_fresh_gps_time():
    CLOCK.set_virtual(0)
    clk = gpsclock.GpsClock()
    assert clk.want_ntp(0)
    assert clk.from_ntp(T2026, 0) and clk.source == gpsclock.SOURCE_NTP
    assert not clk.want_ntp(1000)  # asked an hour at most
    clk.from_fix(gps_fix(T2026 + 10), 10000)
    assert not clk.from_ntp(T2026 + 99, 20000)  # GPS is fresh: NTP ignored
    assert clk.unix_now(20000) == T2026 + 20
    assert not clk.want_ntp(600000 + 9999)
    assert not clk.want_ntp(3600000 + 19999)
    assert clk.want_ntp(3600000 + 20000)  # GPS stale and the last NTP query an hour old
    assert not clk.from_ntp(1000, 0)  # 1970: nonsense


def test_unix_time_is_the_same_on_a_2000_epoch_port():
    CLOCK.set_virtual(0, utc_s=T2026)
    CLOCK.epoch_2000 = True
    try:
        if sys.implementation.name == "micropython":  # CPython's time is the host's
            assert time.time() == T2026 - gpsclock.EPOCH_2000_S
            assert gpsclock.port_epoch_offset_s() == 946684800
        clk = gpsclock.GpsClock(machine.RTC(), trust_rtc=True)
        assert clk.source == gpsclock.SOURCE_RTC
        assert clk.unix_now(0) == T2026
    finally:
        CLOCK.epoch_2000 = False


def test_trusted_rtc_in_an_old_year_is_not_taken():
    CLOCK.set_virtual(0, utc_s=0)
    clk = gpsclock.GpsClock(machine.RTC(), trust_rtc=True)
    assert not clk.time_known()


def test_civil_conversions_round_trip():
    for s in (0, 951782400, T2026, 4102444799):
        y, mo, d, h, mi, sec, wd = gpsclock.civil_from_unix(s)
        assert gpsclock.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec == s
    assert gpsclock.civil_from_unix(951782400)[:3] == (2000, 2, 29)
