"""Depot yard roster from BLE adverts and from geofence events."""

import time

import bluetooth
from fakeclock import CLOCK
from transit import roster


def _drain(r):
    out = []
    while True:
        e = r.pop()
        if e is None:
            return out
        out.append(e)


def test_adv_name_parses_the_local_name_field_and_survives_garbage():
    data = b"\x02\x01\x06" + bluetooth.adv_name("PHS-bus-0107")
    assert roster.adv_name(data) == b"PHS-bus-0107"
    assert roster.adv_name(b"\x05\x09ab") is None  # length runs past the end
    assert roster.adv_name(b"") is None
    assert roster.adv_name(b"\x00\x00\x00") is None


def test_ble_scan_windows_find_buses_and_ignore_phones_and_weak_signals():
    CLOCK.set_virtual(0)
    bluetooth.set_advertisers([
        (b"\x01" * 6, bluetooth.adv_name("PHS-bus-0107"), -70),
        (b"\x02" * 6, bluetooth.adv_name("Somchai's phone"), -50),
        (b"\x03" * 6, bluetooth.adv_name("PHS-bus-0212"), -97),  # next door, too weak
    ])
    r = roster.Roster({"away_s": 120, "min_rssi": -90})
    scan = roster.BleScanner(bluetooth.BLE(), r, {"scan_ms": 3000, "scan_every_s": 30})
    for _ in range(40):  # 4 s of 100 ms loop steps
        scan.step()
        time.sleep_ms(100)
    assert _drain(r) == [(roster.ARRIVED, -70, roster.SRC_BLE, "bus-0107")]
    assert r.ignored == 2 and bluetooth.BLE().scans == 1
    assert r.in_yard() == ["bus-0107"]


def test_bus_unheard_for_away_s_has_left():
    CLOCK.set_virtual(0)
    bluetooth.set_advertisers([(b"\x01" * 6, bluetooth.adv_name("PHS-bus-0107"), -70)])
    r = roster.Roster({"away_s": 60})
    scan = roster.BleScanner(bluetooth.BLE(), r, {"scan_ms": 2000, "scan_every_s": 30})
    for _ in range(50):
        scan.step()
        time.sleep_ms(100)
    bluetooth.set_advertisers([])  # the bus drove out
    for _ in range(120):
        scan.step()
        time.sleep_ms(1000)
    assert [e[0] for e in _drain(r)] == [roster.ARRIVED, roster.LEFT]
    assert r.in_yard() == []


def test_geofence_events_drive_the_roster_without_ble():
    r = roster.Roster()
    r.seen("bus-0107", now_ms=0)
    r.seen("bus-0107", now_ms=1000)  # seen again: no second arrival
    r.seen("bus-0212", now_ms=2000)
    r.gone("bus-0107")
    r.gone("bus-9999")  # never arrived: nothing to say
    assert _drain(r) == [(roster.ARRIVED, 0, roster.SRC_GEOFENCE, "bus-0107"),
                         (roster.ARRIVED, 0, roster.SRC_GEOFENCE, "bus-0212"),
                         (roster.LEFT, 0, roster.SRC_GEOFENCE, "bus-0107")]


def test_roster_is_bounded():
    r = roster.Roster({"max_buses": 2})
    for i in range(4):
        r.seen("bus-%04d" % i, now_ms=i)
    assert len(r.in_yard()) == 2 and r.overflow == 2


def test_bus_advertises_its_name():
    ble = bluetooth.BLE()
    roster.advertise(ble, "bus-0107")
    assert roster.adv_name(ble.advertising[1]) == b"PHS-bus-0107"
