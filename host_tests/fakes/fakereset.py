"""Return every fake peripheral to power-on state between tests.

Only modules already imported are touched, so a test that never uses the
radio or the UART does not pay their heap."""

import sys

import fakeclock


def reset():
    clock = fakeclock.CLOCK
    clock.__init__()
    m = sys.modules.get("machine")
    if m is not None and hasattr(m, "_SCHED"):
        clock.add_listener(m._SCHED.on_clock)
        m._SCHED.__init__()
        m._PINS.clear()
        m._state.__init__()
    p = sys.modules.get("machine_periph")
    if p is not None:
        p._UARTS.clear()
        p.WDT._active = None
        p._RTC_MEM[0] = b""
    n = sys.modules.get("network")
    if n is not None and hasattr(n, "_RADIO"):
        n._RADIO.__init__()
    b = sys.modules.get("bluetooth")
    if b is not None and hasattr(b, "_reset"):
        b._reset()
    s = sys.modules.get("esp32socket")
    if s is not None:
        s.HANGS[:] = []
