"""Record payloads: exact bytes, round trips and clamping at the edges."""

from transit import records


def test_position_payload_golden_bytes():
    p = records.pack_position(16820514, 100259876, 1250, 2705, 430, 11, 9, 3, 123456)
    assert len(p) == records.POS_SIZE == 22
    # lat 0x0100A922, lon 0x05F9D824, 1250 cm/s, 270.5 deg, 43.0 m, 11 sats, HDOP 0.9, reason 3, 123456 m
    assert p == bytes.fromhex("22a90001" "24d8f905" "e204" "910a" "ae01" "0b" "09" "0300" "40e20100")


def test_position_round_trip_and_clamps():
    p = records.pack_position(-33868820, -151209296, 70000, 3599, -40000, 300, 999, 1280, 5)
    lat, lon, spd, crs, alt, sats, hdop, reason, odo = records.unpack(records.POS, p)
    assert (lat, lon, crs, reason, odo) == (-33868820, -151209296, 3599, 1280, 5)
    assert (spd, alt, sats, hdop) == (65535, -32768, 255, 255)


def test_stop_visit_round_trip_with_three_doors():
    doors = [(12, 3), (0, 7), (300, 0)]
    p = records.pack_stop(0x01020304, 1795768000, 1795768075, 16820514, 100259876, 4321, 75, 41, 2, 1, doors)
    assert len(p) == 31 + 4 * 3  # 31-byte head, then a (boardings, alightings) u16 pair per door
    got = records.unpack(records.STOP, p)
    assert got == (0x01020304, 1795768000, 1795768075, 16820514, 100259876, 4321, 75, 41, 2, 1,
                   [(12, 3), (0, 7), (300, 0)])


def test_gate_count_event_and_roster_round_trip():
    assert records.unpack(records.COUNT, records.pack_count(1795768200, 300, 0, [(14, 9), (0, 2)])) == \
        (1795768200, 300, 0, [(14, 9), (0, 2)])
    assert records.unpack(records.EVENT, records.pack_event(records.EV_GEOFENCE_ENTER, 2, -5, 1, 2)) == \
        (records.EV_GEOFENCE_ENTER, 2, -5, 1, 2)
    assert records.unpack(records.ROSTER, records.pack_roster(1, -71, 1, "bus-0042")) == (1, -71, 1, "bus-0042")


def test_short_or_unknown_payload_is_a_clear_error():
    for rtype, payload in ((records.STOP, b"\x00" * 10), (records.POS, b"\x01\x02"), (99, b"")):
        try:
            records.unpack(rtype, payload)
        except ValueError as e:
            assert ("unknown record type" in str(e)) or ("bad " in str(e))
            continue
        assert False, "no error for %r" % rtype


def test_priority_types_exclude_positions():
    assert records.POS not in records.PRIORITY_TYPES
    assert records.STOP in records.PRIORITY_TYPES and records.COUNT in records.PRIORITY_TYPES


def test_position_field_reads_what_unpack_position_reads():
    """The encoder reads columns in place (records.position_field): same values, signs included."""
    cases = [(16821234, 100262345, 833, 900, 450, 9, 12, 1, 40),
             (-33868820, -151209290, 0, 3599, -120, 0, 255, 0xFFFF, 0xFFFFFFFF),
             (-1, -2147483648, 65535, 0, -32768, 255, 0, 0x8001, 0x7FFFFFFF),
             (2147483647, 1, 1, 1, 32767, 1, 1, 1, 0)]
    for vals in cases:
        p = records.pack_position(*vals)
        assert records.unpack_position(p) == vals
        assert tuple(records.position_field(p, c) for c in range(9)) == vals, vals
