"""Safe mode: no application, the REPL free, a status LED pattern, a clear reason.

Entered when the configuration or board file is invalid, the safe-mode
button is held at boot, or the application crashed too often in a row. It
returns to main.py, which returns to the REPL, so a technician can connect
with mpremote and fix the files; the reason is printed and kept in
`safemode.txt` for `make doctor`.
"""

REASON_FILE = "safemode.txt"
_STEP_MS = 150  # LED pattern: three short blinks, then 1.5 s dark
_STEPS = 16


class _Blinker:
    def __init__(self, pin, active_low):
        self.pin = pin
        self.active_low = active_low
        self.step = 0

    def tick(self, timer):
        on = self.step < 6 and self.step % 2 == 0
        self.pin.value((not on) if self.active_low else on)
        self.step = (self.step + 1) % _STEPS


def enter(reason, board=None, machine=None):
    """Announce safe mode and start the LED pattern; returns the reason text."""
    text = "SAFE MODE: " + reason
    print(text)
    print("The application is not running. Fix the files with mpremote, then reset the board.")
    try:
        with open(REASON_FILE, "w") as f:
            f.write(reason + "\n")
    except OSError as e:
        print("safe mode: could not write %s: %s" % (REASON_FILE, e))
    if board is not None:
        pin, active_low = board.status_led()
        if pin is not None:
            m = machine or board.machine
            blinker = _Blinker(pin, active_low)
            timer = m.Timer(0)
            timer.init(mode=m.Timer.PERIODIC, period=_STEP_MS, callback=blinker.tick)
    return text


def clear():
    try:
        import os
        os.remove(REASON_FILE)
    except OSError:
        pass
