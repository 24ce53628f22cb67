"""nmea_reader: line assembly from a UART, resync after garbage and
overflow, idle close, no allocation per sentence, a seeded random-byte fuzz.
Runs under CPython and the unix port (64K)."""

import time

import machine
import nmea
from fakeclock import CLOCK
from nmeatest import S, reader


def test_line_of_102_characters_is_accepted_and_longer_ones_are_counted():
    body = "GPGSV,1,1,04,02,22,074,38,05,25,185,30,12,32,084,30,25,45,205,37,1"
    pad = "GPTXT,01,01,02," + "x" * 83
    assert len(S(pad)) == 102
    r = reader()
    assert r.feed(S(pad) + b"\r\n") == []
    assert r.stats["unknown"] == 1 and r.stats["too_long"] == 0
    r.feed(S("GPTXT,01,01,02," + "x" * 120) + b"\r\n" + S(body) + b"\r\n")
    assert r.stats["too_long"] == 1 and r.stats["accepted"] == 1
    r.feed(b"$GPTXT," + b"y" * 900 + b"\r\n" + S(body) + b"\r\n")
    assert r.stats["too_long"] == 2 and r.stats["accepted"] == 2


def test_garbage_and_partial_lines_resync_on_the_next_dollar():
    good = S("GPGLL,4916.45,N,12311.12,W,225444,A")
    r = reader()
    r.feed(b"\x00\xff\x13garbage" + good + b"\r\n")
    r.feed(b"$GPGGA,0927" + good + b"\r\n")  # overflow cut a sentence short
    r.feed(b"\r\n\r\n" + b"\x00" * 50 + b"\n")
    assert r.stats["accepted"] == 2 and r.stats["garbage"] == 3
    assert r.flush().lat_e6 == 49274167


def test_reader_step_reads_the_uart_without_blocking_and_closes_on_idle():
    CLOCK.set_virtual(0)
    uart = machine.UART(1, 9600, rxbuf=1024)
    r = nmea.NmeaReader(uart, idle_ms=150)
    assert r.step() is None
    uart.feed(S("GNRMC,100000.00,A,1649.26618,N,10015.95340,E,5.000,90.0,010126,,,A,V") + b"\r\n")
    uart.feed(S("GNGGA,100000.00,1649.26618,N,10015.95340,E,1,12,0.8,45.5,M,-27.8,M,,")[:30])
    assert r.step() is None  # half a GGA waits in the buffer
    uart.feed(S("GNGGA,100000.00,1649.26618,N,10015.95340,E,1,12,0.8,45.5,M,-27.8,M,,")[30:] + b"\r\n")
    assert r.step() is None
    time.sleep_ms(100)
    assert r.step() is None
    time.sleep_ms(60)
    f = r.step()
    assert f is not None and f.valid and f.sats_used == 12 and f.speed_cmps == 257
    assert r.step() is None and r.stats["fixes"] == 1


def test_reader_step_returns_one_fix_per_call_after_a_backlog():
    CLOCK.set_virtual(0)
    uart = machine.UART(1, 9600, rxbuf=2048)
    r = nmea.NmeaReader(uart)
    for s in range(5):
        uart.feed(S("GNRMC,10000%d.00,A,1649.26618,N,10015.95340,E,5.000,90.0,010126,,,A,V" % s) + b"\r\n")
    secs = []
    for _ in range(6):
        f = r.step(max_bytes=64)
        if f is not None:
            secs.append(f.second)
    assert secs == [0, 1, 2, 3]
    assert uart.any() == 0


def test_uart_overflow_loses_only_the_damaged_sentence():
    CLOCK.set_virtual(0)
    uart = machine.UART(1, 9600, rxbuf=100)
    r = nmea.NmeaReader(uart)
    a = S("GNRMC,100000.00,A,1649.26618,N,10015.95340,E,5.000,90.0,010126,,,A,V") + b"\r\n"
    uart.feed(a + a)  # the second copy is cut at 100 bytes
    r.step()
    assert uart.overflow_bytes == len(a) * 2 - 100
    uart.feed(S("GNGLL,1649.26618,N,10015.95340,E,100000.00,A,A") + b"\r\n")
    r.step()
    assert r.stats["accepted"] == 2 and r.stats["garbage"] == 1


def test_parsing_a_sentence_allocates_nothing_on_the_unix_port():
    try:
        import micropython
    except ImportError:
        return
    r = reader()
    lines = [S("GNRMC,100000.00,A,1649.26618,N,10015.95340,E,5.000,90.0,010126,,,A,V"),
             S("GNGGA,100000.00,1649.26618,N,10015.95340,E,1,12,0.8,45.5,M,-27.8,M,,"),
             S("GNGSA,A,3,02,05,12,25,,,,,,,,,1.6,0.8,1.3,1"),
             S("GPGSV,1,1,04,02,22,074,38,05,25,185,30,12,32,084,30,25,45,205,37,1")]
    buf = r._buf
    for ln in lines:
        buf[0:len(ln)] = ln
        r.parse(0, len(ln))
    ends = [len(ln) for ln in lines]
    for i in range(4):
        buf[0:ends[i]] = lines[i]
        micropython.heap_lock()
        try:
            r.parse(0, ends[i])
        finally:
            micropython.heap_unlock()
    assert r.stats["accepted"] == 8


def _lcg(seed):
    return (seed * 1103515245 + 12345) & 0x7FFFFFFF


def test_seeded_random_bytes_never_raise_and_never_make_bad_fixes():
    r = reader()
    seed = 7
    good = S("GNRMC,100000.00,A,1649.26618,N,10015.95340,E,5.000,90.0,010126,,,A,V") + b"\r\n"
    alphabet = b"$*,.\r\n0123456789ABCDEFNSEWGPRMCGAVT\x00\xff"
    chunk = bytearray(64)
    for rnd in range(60):
        for i in range(64):
            seed = _lcg(seed)
            chunk[i] = alphabet[(seed >> 8) % len(alphabet)] if seed & 1 else (seed >> 16) & 255
        seed = _lcg(seed)
        cut = seed % len(good)
        for f in r.feed(bytes(chunk) + good[cut:] + good):
            assert not f.has_pos or (-90000000 <= f.lat_e6 <= 90000000 and -180000000 <= f.lon_e6 <= 180000000)
            assert f.tod_ms < 86401000
            assert f.year == 0 or (1 <= f.month <= 12 and 1 <= f.day <= 31)
    assert r.stats["errors"] == 0
    assert r.stats["accepted"] >= 60
