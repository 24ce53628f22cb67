"""Health: the status document from registered sources (CPython)."""

import json
import os
import sys

from fakeclock import CLOCK, TICKS_PERIOD

from transit import health
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import telemetry  # noqa: E402


def test_document_has_identity_uptime_reset_cause_and_sources():
    CLOCK.set_virtual(0)
    h = health.Health("bus-001", reset_cause=3, utc_s=lambda: 1764200000, epoch=4000000000)
    h.register("link", lambda: {"type": "wifi", "up": True, "ssid": "depot", "rssi": -61})
    h.register("uplink", lambda: {"connects": 2, "reconnects": 1, "tx_bytes": 999,
                                  "umqtt": {"file": "/lib/umqtt/simple.mpy", "api": "1.3"}})
    time.sleep_ms(5500)
    doc = h.document()
    assert (doc["v"], doc["d"], doc["e"], doc["on"], doc["t"], doc["up_s"], doc["rst"]) == (
        2, "bus-001", 4000000000, True, 1764200000, 5, "watchdog")
    assert doc["link"]["rssi"] == -61 and doc["uplink"]["reconnects"] == 1
    assert doc["health_errors"] == 0
    telemetry.validate("phs/bus/bus-001/status", json.dumps(doc))


def test_a_failing_source_is_counted_and_shown_not_fatal():
    h = health.Health("bus-001")
    h.register("gps", lambda: 1 // 0)
    h.register("queue", lambda: {"depth": 0, "age_s": 0})
    doc = h.document()
    assert doc["gps"] == {"error": "ZeroDivisionError('integer division or modulo by zero')"}
    assert doc["queue"] == {"depth": 0, "age_s": 0}
    assert (h.errors, doc["health_errors"]) == (1, 1)


def test_uptime_survives_the_tick_wrap():
    CLOCK.set_virtual(start_us=(TICKS_PERIOD - 1000) * 1000)
    h = health.Health("bus-001")
    for _ in range(3):
        time.sleep_ms(600000)
        h.uptime_s()
    time.sleep_ms(1000)
    assert h.uptime_s() == 1801


def test_queue_source_reports_depth_and_age_of_the_real_queue(tmp_path):
    from dqueue import DurableQueue
    from transit import records as R
    q = DurableQueue(str(tmp_path), priority_types=R.PRIORITY_TYPES)
    q.append(R.POS, R.pack_position(1, 2, 3, 4, 5, 6, 7, 1, 9), ts=1764199900)
    q.append(R.STOP, R.pack_stop(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, []), ts=1764199950)
    src = health.queue_source(q, utc_s=lambda: 1764200000)
    got = src()
    assert (got["depth"], got["age_s"], got["last_seq"], got["dropped"]) == (2, 100, 2, 0)


def test_unix_now_is_unix_time_on_the_host():
    assert abs(health.unix_now() - int(__import__("time").time())) <= 1
