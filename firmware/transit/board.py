"""The board layer: a board description (boards/<name>.json) to `machine` objects.

This is the only application module that touches `machine`; everything above
it receives UARTs and Pins and runs unchanged on the host with fakes. The
description is validated against the chip's pin rules first, so a wrong
board file stops at boot with a message naming the key, not with a dead pin.
"""

BOARD_DIRS = ("boards", "/boards")


class BoardError(ValueError):
    """A board description that cannot work; the message names the key."""


def validate(desc):
    """Check a board description; return it, or raise BoardError for the first problem."""
    from transit.boardcheck import validate
    return validate(desc)


def load(name, dirs=BOARD_DIRS):
    """Read and validate boards/<name>.json (transit.boardcheck, boot only)."""
    from transit.boardcheck import load
    return load(name, dirs)


class Board:
    """Makes the peripherals a description names. Pass `machine` to use a fake."""

    def __init__(self, desc, machine=None):
        if machine is None:
            import machine
        self.machine = machine
        self.desc = desc
        self.name = desc["name"]
        self._ign_pin = None

    def gps_uart(self):
        g = self.desc["gps"]
        return self.machine.UART(g["uart"], baudrate=g["baud"], tx=g["tx"], rx=g["rx"],
                                 rxbuf=g.get("rxbuf", 2048), timeout=0)

    def input_pin(self, pin, pull_up):
        m = self.machine
        return m.Pin(pin, m.Pin.IN, m.Pin.PULL_UP if pull_up else None)

    def output_pin(self, pin, value=0):
        return self.machine.Pin(pin, self.machine.Pin.OUT, value=value)

    def door_pins(self, group="doors"):
        """[(beam_a, beam_b, switch or None, active_low)] as Pins, one per door or gate."""
        out = []
        for d in self.desc.get(group) or ():
            low = d.get("active_low", True)
            sw = self.input_pin(d["switch"], low) if "switch" in d else None
            out.append((self.input_pin(d["beam_a"], low), self.input_pin(d["beam_b"], low), sw, low))
        return out

    def safe_mode_requested(self):
        """True when the safe-mode button is held at boot (pin pulled low)."""
        pin = self.desc.get("safe_mode_pin", -1)
        if pin < 0:
            return False
        return self.input_pin(pin, True).value() == 0

    def status_led(self):
        led = self.desc.get("status_led")
        return (self.output_pin(led["pin"]), led.get("active_low", False)) if led else (None, False)

    def ignition_on(self):
        """Read every loop iteration: the Pin is made once, not per call."""
        ign = self.desc.get("ignition")
        if not ign:
            return True
        if self._ign_pin is None:
            self._ign_pin = self.input_pin(ign["pin"], False)
        v = self._ign_pin.value()
        return (v == 0) if ign.get("active_low") else (v == 1)

    def ble(self):
        """The BLE radio, or None on boards without one."""
        if not self.desc.get("ble"):
            return None
        import bluetooth
        return bluetooth.BLE()

    def rtc(self):
        return self.machine.RTC()

    def wlan(self):
        """The Wi-Fi station interface (inactive until the link starts it)."""
        import network
        return network.WLAN(network.STA_IF)

    def ppp_factory(self):
        """A function making the PPP interface over the modem UART, or None
        when the board has no cellular modem."""
        modem = self.desc.get("modem")
        if not modem:
            return None
        m = self.machine

        def make():
            import network
            if "power_pin" in modem:
                m.Pin(modem["power_pin"], m.Pin.OUT, value=1)
            uart = m.UART(modem["uart"], baudrate=modem["baud"], tx=modem["tx"], rx=modem["rx"], rxbuf=2048)
            return network.PPP(uart)
        return make

    def watchdog(self, timeout_ms):
        return self.machine.WDT(timeout=timeout_ms)

    def reset_cause(self):
        return self.machine.reset_cause()

    def reset(self):
        self.machine.reset()

    def unique_id_hex(self):
        return "".join("%02x" % b for b in self.machine.unique_id())
