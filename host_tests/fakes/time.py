"""Fake `time` for the MicroPython unix port: the built-in, with ticks and
sleeps routed through the controllable clock (fakeclock.CLOCK).

This file shadows the built-in only when host_tests/fakes is on the import
path. CPython never loads it (its `time` is compiled in); conftest.py adds the
same ticks API to CPython's module instead.
"""

import utime as _t
from fakeclock import CLOCK, ticks_diff, TICKS_MAX, EPOCH_2000_OFFSET_S

ticks_ms = CLOCK.ticks_ms
ticks_us = CLOCK.ticks_us
sleep_ms = CLOCK.sleep_ms
sleep_us = CLOCK.sleep_us
ticks_cpu = CLOCK.ticks_us


def ticks_add(a, delta):
    return (a + delta) & TICKS_MAX


def sleep(s):
    CLOCK.advance_us(int(s * 1000000))


def time():
    return CLOCK.utc_s()


def time_ns():
    return CLOCK.utc_s() * 1000000000


def _to_1970(secs):
    return secs + EPOCH_2000_OFFSET_S if CLOCK.epoch_2000 else secs


def gmtime(secs=None):
    if secs is None:
        secs = time()
    return _t.gmtime(_to_1970(secs))


localtime = gmtime  # boards keep UTC


def mktime(tup):
    s = _t.mktime(tup)
    return s - EPOCH_2000_OFFSET_S if CLOCK.epoch_2000 else s
