"""Return every fake peripheral to power-on state between tests."""

import fakeclock
import machine
import network


def reset():
    clock = fakeclock.CLOCK
    clock.__init__()
    clock.add_listener(machine._SCHED.on_clock)
    machine._SCHED.__init__()
    machine._PINS.clear()
    machine._UARTS.clear()
    machine.WDT._active = None
    machine._state.__init__()
    machine._RTC_MEM[0] = b""
    network._RADIO.__init__()
    try:
        import esp32socket
        esp32socket.HANGS[:] = []
    except ImportError:
        pass
