"""The hardware fakes behave like MicroPython's ESP32 port.

Runs under CPython and under the MicroPython unix port (64K heap)."""

import sys
import time

import machine
import network
from fakeclock import CLOCK, TICKS_PERIOD

ON_MICROPYTHON = sys.implementation.name == "micropython"


def _recorder(log):
    def handler(pin):
        log.append((time.ticks_us(), pin.value()))
    return handler


def test_ticks_wrap_at_2_pow_30_and_ticks_diff_spans_the_wrap():
    CLOCK.set_virtual(start_us=(TICKS_PERIOD - 3) * 1000)
    a = time.ticks_ms()
    time.sleep_ms(10)
    b = time.ticks_ms()
    assert b < a  # wrapped
    assert time.ticks_diff(b, a) == 10
    assert time.ticks_diff(a, b) == -10
    assert time.ticks_add(a, 10) == b


def test_edges_on_time_reach_the_handler_at_their_own_time():
    CLOCK.set_virtual(0)
    p = machine.Pin(4, machine.Pin.IN, machine.Pin.PULL_UP)
    log = []
    p.irq(_recorder(log), machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING)
    machine.inject_edges(4, [(1000, 0), (2500, 1), (4000, 0)])
    time.sleep_ms(10)
    assert log == [(1000, 0), (2500, 1), (4000, 0)]
    assert p.value() == 0


def test_trigger_filters_edges():
    CLOCK.set_virtual(0)
    p = machine.Pin(5, machine.Pin.IN, machine.Pin.PULL_UP)
    log = []
    p.irq(_recorder(log), machine.Pin.IRQ_FALLING)
    machine.inject_edges(5, [(1000, 0), (2000, 1), (3000, 0)])
    time.sleep_ms(5)
    assert [t for t, _ in log] == [1000, 3000]


def test_hard_irq_is_refused_like_esp32():
    p = machine.Pin(6, machine.Pin.IN)
    try:
        p.irq(lambda p: None, hard=True)
    except TypeError:
        return
    assert False, "hard=True must raise TypeError"


def test_socket_wait_services_one_callback_per_100ms_and_drops_beyond_8():
    CLOCK.set_virtual(0)
    p = machine.Pin(4, machine.Pin.IN, machine.Pin.PULL_UP)
    log = []
    p.irq(_recorder(log), 3)
    # 20 edges, 5 ms apart, all inside one 500 ms socket wait starting at t=0.
    machine.inject_edges(4, [((i + 1) * 5000, i % 2) for i in range(20)])
    machine.stall(500)
    sched = machine.scheduler()
    assert sched.dropped == 12
    assert len(log) == 8
    # Serviced at 100, 200, 300, 400, 500 ms, then the rest when the call returns.
    assert [t for t, _ in log[:5]] == [100000, 200000, 300000, 400000, 500000]
    assert [t for t, _ in log[5:]] == [500000, 500000, 500000]
    # Every late handler sees the level at the time it runs, not its edge's.
    assert all(v == 1 for _, v in log)


def test_tls_handshake_services_nothing_until_it_returns():
    CLOCK.set_virtual(0)
    p = machine.Pin(4, machine.Pin.IN, machine.Pin.PULL_UP)
    log = []
    p.irq(_recorder(log), 3)
    machine.inject_edges(4, [(100000, 0), (900000, 1), (1500000, 0)])
    machine.stall(2000, service_period_ms=0)
    assert [t for t, _ in log] == [2000000, 2000000, 2000000]
    assert machine.scheduler().dropped == 0


def test_uart_overflow_drops_the_newest_bytes():
    u = machine.UART(2, baudrate=9600, rxbuf=64)
    u.feed(bytes(range(100)))
    assert u.any() == 64
    assert u.overflow_bytes == 36
    assert u.read() == bytes(range(64))
    assert u.read() is None


def test_uart_scheduled_bytes_arrive_with_time_and_readline_splits():
    CLOCK.set_virtual(0)
    u = machine.UART(1, baudrate=9600, rxbuf=512)
    u.feed_at(5000, b"$GPA*00\r\n$GPB")
    assert u.any() == 0
    time.sleep_ms(6)
    assert u.readline() == b"$GPA*00\r\n"
    assert u.readline() == b"$GPB"
    buf = bytearray(4)
    assert u.readinto(buf) is None


def test_missed_watchdog_feed_resets_the_board():
    CLOCK.set_virtual(0)
    wdt = machine.WDT(timeout=1000)
    time.sleep_ms(600)
    wdt.feed()
    time.sleep_ms(900)
    wdt.feed()
    try:
        time.sleep_ms(1200)
    except machine.ResetRequested as e:
        assert e.cause == machine.WDT_RESET
        assert machine.reset_cause() == machine.WDT_RESET
        return
    assert False, "the watchdog did not fire"


def test_rtc_set_moves_wall_clock():
    CLOCK.set_virtual(0)
    rtc = machine.RTC()
    rtc.datetime((2026, 11, 27, 4, 8, 30, 15, 0))
    time.sleep_ms(2000)
    assert rtc.datetime()[:7] == (2026, 11, 27, 4, 8, 30, 17)
    if ON_MICROPYTHON:
        assert time.time() == 1795768217
        CLOCK.epoch_2000 = True  # the ESP32's epoch
        assert time.time() == 1795768217 - 946684800
        assert time.gmtime(time.time())[:6] == (2026, 11, 27, 8, 30, 17)


def test_wlan_connects_after_association_time_and_reports_outages():
    CLOCK.set_virtual(0)
    network.set_aps([{"ssid": "depot", "key": "pw1", "rssi": -58}, {"ssid": "terminal", "key": "pw2"}])
    w = network.WLAN(network.STA_IF)
    w.active(True)
    ssids = [s[0] for s in w.scan()]
    assert b"depot" in ssids and b"terminal" in ssids
    w.connect("depot", "pw1")
    assert w.status() == network.STAT_CONNECTING
    time.sleep_ms(network.CONNECT_MS + 10)
    assert w.isconnected()
    assert w.status("rssi") == -58
    network.outage(time.ticks_ms() + 100, 5000)
    time.sleep_ms(200)
    assert not w.isconnected()
    assert w.status() == network.STAT_BEACON_TIMEOUT
    time.sleep_ms(5000)
    assert w.isconnected()


def test_wlan_wrong_key_and_unknown_network():
    CLOCK.set_virtual(0)
    network.set_aps([{"ssid": "depot", "key": "pw1"}])
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.connect("depot", "nope")
    time.sleep_ms(network.CONNECT_MS + 1)
    assert w.status() == network.STAT_WRONG_PASSWORD
    w.connect("elsewhere", "x")
    time.sleep_ms(network.CONNECT_MS + 1)
    assert w.status() == network.STAT_NO_AP_FOUND


def test_unique_id_and_reset_cause_defaults():
    assert len(machine.unique_id()) == 6
    assert machine.reset_cause() == machine.PWRON_RESET
