"""nmea: sentences of every type, talker and NMEA version to integer fixes;
damaged fields are rejected and counted. Runs under CPython and the unix port (64K)."""

import nmea
from nmeatest import S, reader


def one_epoch(*bodies, **kw):
    """Parse the bodies as one epoch and return its merged Fix."""
    r = reader(**kw)
    for b in bodies:
        assert r.parse_line(S(b)) is None
    return r.flush(), r


def test_rmc_nmea_2_0_gives_position_speed_course_date():
    f, r = one_epoch("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
    assert f.valid and f.has_pos
    assert (f.lat_e6, f.lon_e6) == (48117300, 11516667)
    assert f.speed_cmps == 1152  # 22.4 knots
    assert f.course_ddeg == 844
    assert (f.year, f.month, f.day, f.hour, f.minute, f.second, f.ms) == (1994, 3, 23, 12, 35, 19, 0)
    assert f.unix_s() == 764426119
    assert f.mode == "" and r.stats["accepted"] == 1


def test_rmc_nmea_4_1_mode_and_nav_status_southern_western_hemisphere():
    f, _ = one_epoch("GNRMC,083559.25,A,3352.12800,S,15112.55800,W,0.0,,170824,,,D,S")
    assert (f.lat_e6, f.lon_e6) == (-33868800, -151209300)
    assert f.mode == "D" and f.nav_status == "S"
    assert f.ms == 250 and f.course_ddeg == -1 and f.speed_cmps == 0


def test_rmc_mode_n_is_not_a_valid_fix_even_with_status_a():
    f, _ = one_epoch("GNRMC,083559.00,A,1649.26618,N,10015.95340,E,0.0,0.0,170824,,,N,V")
    assert f.has_pos and not f.valid


def test_ublox_nav_status_v_means_not_provided_and_keeps_the_fix_valid():
    f, _ = one_epoch("GNRMC,083559.00,A,1649.26618,N,10015.95340,E,2.118,87.2,170824,,,A,V")
    assert f.valid and f.nav_status == "V"
    assert (f.lat_e6, f.lon_e6) == (16821103, 100265890)


def test_gga_gives_quality_sats_hdop_altitude_and_geoid():
    f, _ = one_epoch("GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,")
    assert f.valid and f.quality == 1 and f.sats_used == 8 and f.hdop_x10 == 10
    assert f.has_alt and f.alt_dm == 617 and f.geoid_dm == 552
    assert (f.lat_e6, f.lon_e6) == (53361337, -6505620)
    assert f.year == 0 and f.unix_s() is None  # GGA has no date


def test_gga_negative_altitude_and_dead_reckoning_quality():
    f, _ = one_epoch("GPGGA,000001,0000.0000,N,00000.0000,E,6,04,2.0,-12.3,M,0.0,M,,")
    assert f.valid and f.quality == 6 and f.alt_dm == -123


def test_gns_mode_per_system_and_nav_status():
    f, _ = one_epoch("GNGNS,112257.00,3844.24011,N,00908.43828,W,AN,10,1.2,-12.4,46.1,,,S")
    assert f.valid and f.mode == "A" and f.nav_status == "S"
    assert f.sats_used == 10 and f.hdop_x10 == 12 and f.alt_dm == -124 and f.geoid_dm == 461
    f2, _ = one_epoch("GNGNS,112257.00,,,,,NN,00,99.99,,,,,V")
    assert not f2.valid and not f2.has_pos


def test_gll_2_x_and_3_x_with_mode():
    f, _ = one_epoch("GPGLL,4916.45,N,12311.12,W,225444,A")
    assert f.valid and (f.lat_e6, f.lon_e6) == (49274167, -123185333)
    f2, _ = one_epoch("GPGLL,4916.45,N,12311.12,W,225444,A,N")
    assert not f2.valid  # mode N


def test_vtg_knots_kmh_and_pre_2_0_format():
    f, _ = one_epoch("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A")
    assert f.course_ddeg == 547 and f.speed_cmps == 283  # 10.2 km/h
    f2, _ = one_epoch("GPVTG,054.7,034.4,005.5,010.2")
    assert f2.course_ddeg == 547 and f2.speed_cmps == 283


def test_gsa_4_11_system_ids_count_used_per_constellation():
    f, _ = one_epoch("GNGSA,A,3,02,05,12,25,,,,,,,,,1.6,0.9,1.3,1",
                     "GNGSA,A,3,66,67,76,,,,,,,,,,1.6,0.9,1.3,2",
                     "GNGSA,A,3,04,11,,,,,,,,,,,1.6,0.9,1.3,3",
                     "GNGSA,A,3,08,,,,,,,,,,,,1.6,0.9,1.3,4")
    assert list(f.used[:5]) == [0, 4, 3, 2, 1]
    assert f.sats_used == 10 and f.fix_type == 3
    assert (f.pdop_x10, f.hdop_x10, f.vdop_x10) == (16, 9, 13)


def test_gsa_without_system_id_uses_prn_range_for_gn_talker():
    f, _ = one_epoch("GNGSA,A,3,66,67,,,,,,,,,,,2.5,1.3,2.1", "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1")
    assert f.used[nmea.SYS_GLONASS] == 2 and f.used[nmea.SYS_GPS] == 5


def test_gsv_3_x_and_4_1_signal_id_count_in_view_per_constellation():
    f, r = one_epoch("GPGSV,2,1,08,01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45",
                     "GPGSV,2,2,08,15,10,100,,16,20,200,,17,30,300,,18,40,040,",
                     "GLGSV,1,1,03,66,26,282,44,67,27,319,43,76,36,292,36,1",
                     "GAGSV,1,1,02,04,24,148,41,11,31,047,44,7",
                     "GBGSV,1,1,01,08,28,296,31,1",
                     "GQGSV,1,1,01,193,60,100,40,1",
                     "GIGSV,1,1,00,1")
    assert list(f.in_view[:7]) == [0, 8, 3, 2, 1, 1, 0]
    assert f.sats_in_view == 15 and r.stats["accepted"] == 7


def test_gsv_same_satellites_on_two_signals_are_counted_once():
    f, _ = one_epoch("GPGSV,1,1,03,01,40,083,46,02,17,308,41,12,07,344,39,1",
                     "GPGSV,1,1,03,01,40,083,40,02,17,308,38,12,07,344,35,8")
    assert f.in_view[nmea.SYS_GPS] == 3


def test_zda_sets_the_date_of_its_epoch():
    f, _ = one_epoch("GPZDA,201530.00,04,07,2026,00,00", "GPGGA,201530.00,1649.0000,N,10015.0000,E,1,08,1.0,40.0,M,-27.8,M,,")
    assert (f.year, f.month, f.day, f.hour, f.minute, f.second) == (2026, 7, 4, 20, 15, 30)
    assert f.valid and f.unix_s() == 1783196130


def test_every_talker_is_accepted_and_unknown_ones_are_counted():
    r = reader()
    for t in ("GP", "GN", "GL", "GA", "GB", "BD", "GQ", "QZ", "GI"):
        r.parse_line(S(t + "GSV,1,1,00"))
    r.parse_line(S("XXGSV,1,1,00"))
    r.parse_line(S("GPXYZ,1,2"))
    r.parse_line(S("PUBX,00,1"))
    assert r.stats["accepted"] == 9 and r.stats["unknown"] == 3


def test_epoch_merges_rmc_gga_gsa_and_closes_on_the_next_second():
    r = reader()
    out = []
    for b in ("GNRMC,100000.00,A,1649.26618,N,10015.95340,E,5.000,90.0,010126,,,A,V",
              "GNGGA,100000.00,1649.26618,N,10015.95340,E,1,12,0.8,45.5,M,-27.8,M,,",
              "GNGSA,A,3,02,05,12,25,,,,,,,,,1.6,0.8,1.3,1",
              "GPGSV,1,1,04,02,22,074,38,05,25,185,30,12,32,084,30,25,45,205,37,1",
              "GNRMC,100001.00,A,1649.26700,N,10015.95500,E,5.000,90.0,010126,,,A,V"):
        f = r.parse_line(S(b))
        if f is not None:
            out.append(f.copy())
    assert len(out) == 1
    f = out[0]
    assert f.valid and f.speed_cmps == 257 and f.alt_dm == 455 and f.sats_used == 12
    assert f.hdop_x10 == 8 and f.fix_type == 3 and f.in_view[1] == 4
    assert f.sentences == nmea.S_RMC | nmea.S_GGA | nmea.S_GSA | nmea.S_GSV
    assert f.unix_s() == 1767261600


def test_date_carries_to_later_epochs_of_the_same_day_only():
    r = reader()
    r.parse_line(S("GNRMC,235959.00,A,1649.26618,N,10015.95340,E,0.0,0.0,311225,,,A,V"))
    f = r.parse_line(S("GNGGA,235959.50,1649.26618,N,10015.95340,E,1,12,0.8,45.5,M,-27.8,M,,"))
    assert (f.year, f.month, f.day) == (2025, 12, 31)
    f = r.parse_line(S("GNGGA,000000.00,1649.26618,N,10015.95340,E,1,12,0.8,45.5,M,-27.8,M,,"))
    assert f.year == 2025  # 23:59:59.50 is still the 31st
    f = r.flush()
    assert f.year == 0  # after midnight: the old date would be wrong


def test_cold_start_output_gives_invalid_fixes_without_position():
    f, r = one_epoch("GPRMC,,V,,,,,,,,,,N", "GPGGA,,,,,,0,00,99.99,,,,,,", "GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99",
                     "GPGSV,1,1,00", "GPVTG,,,,,,,,,N", "GPGLL,,,,,,V,N")
    assert not f.valid and not f.has_pos and f.tod_ms == -1 and f.hdop_x10 == 1000
    assert r.stats["accepted"] == 6 and r.stats["bad_fields"] == 0
    f2, _ = one_epoch("GNRMC,000012.00,V,,,,,,,060180,,,N,V")
    assert not f2.valid and (f2.year, f2.month, f2.day) == (1980, 1, 6)


def test_bad_checksum_rejects_and_counts():
    r = reader()
    line = bytearray(S("GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,"))
    line[20] ^= 1
    assert r.parse_line(bytes(line)) is None
    assert r.parse_line(b"$GPGSV,1,1,00*7G") is None
    assert r.parse_line(b"$GPGSV,1,1,00*7") is None
    assert r.stats["checksum_errors"] == 3 and r.stats["accepted"] == 0
    assert r.flush() is None


def test_sentences_without_checksum_are_rejected_unless_allowed():
    r = reader()
    assert r.parse_line(b"$GPGLL,4916.45,N,12311.12,W,225444,A") is None
    assert r.stats["no_checksum"] == 1 and r.stats["accepted"] == 0
    r2 = reader(allow_no_checksum=True)
    r2.parse_line(b"$GPGLL,4916.45,N,12311.12,W,225444,A\r\n")
    assert r2.stats["accepted"] == 1 and r2.flush().lat_e6 == 49274167


def test_out_of_range_fields_reject_the_sentence():
    r = reader()
    for b in ("GPRMC,123519,A,9107.038,N,01131.000,E,022.4,084.4,230394,,",  # lat > 90
              "GPRMC,123519,A,4860.000,N,01131.000,E,022.4,084.4,230394,,",  # 60 minutes
              "GPRMC,123519,A,4807.038,N,18031.000,E,022.4,084.4,230394,,",  # lon > 180
              "GPRMC,123519,A,4807.038,X,01131.000,E,022.4,084.4,230394,,",  # hemisphere
              "GPRMC,243519,A,4807.038,N,01131.000,E,022.4,084.4,230394,,",  # hour 24
              "GPRMC,126019,A,4807.038,N,01131.000,E,022.4,084.4,230394,,",  # minute 60
              "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,300294,,",  # 30 Feb
              "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,384.4,230394,,",  # course
              "GPRMC,123519,A,4807.038,N,01131.000,E,-22.4,084.4,230394,,",  # speed
              "GPZDA,201530.00,04,13,2026,00,00",
              "GPGGA,1235,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
              "GPGGA,123519,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,",
              "GPGGA,123519,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
              "GPGSV,2,3,08,01,40,083,46",
              "GPGSA,A,3,04"):
        assert r.parse_line(S(b)) is None, b
    assert r.stats["bad_fields"] == 15 and r.stats["accepted"] == 0
    assert r.flush() is None


def test_leap_day_and_leap_second_at_23_59_60_are_accepted():
    f, _ = one_epoch("GPRMC,235960,A,4807.038,N,01131.000,E,0.0,0.0,290224,,")
    assert f.valid and (f.month, f.day, f.hour, f.minute, f.second) == (2, 29, 23, 59, 60)
    _, r = one_epoch("GPRMC,123060,A,4807.038,N,01131.000,E,0.0,0.0,290224,,")
    assert r.stats["bad_fields"] == 1  # second 60 only at 23:59
