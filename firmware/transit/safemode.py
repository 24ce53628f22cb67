"""Safe mode: no application, the REPL free, a status LED pattern, a clear reason.

Entered when the configuration or board file is invalid, the safe-mode
button is held at boot, or the application crashed too often in a row. It
returns to main.py, which returns to the REPL, so a technician can connect
with mpremote and fix the files; the reason is printed and kept in
`safemode.txt` for `make doctor`. When the configuration loaded and allows
it (`safe_mode_report`, default true), the board also tells the broker
(transit/safereport.py): a retained status with "safe" and the safe-mode
event. After a crash loop a timer retries the application once an hour
(RETRY_MS): if the cause is gone, the board leaves safe mode by itself.
"""

REASON_FILE = "safemode.txt"
BUTTON = "safe-mode button held at boot"
RETRY_MS = 3600000  # after a crash loop: try the application again once an hour
_STEP_MS = 150  # LED pattern: three short blinks, then 1.5 s dark
_STEPS = 16
_RETRY_TIMER = 1  # hardware timer 0 blinks the LED


class _Blinker:
    def __init__(self, pin, active_low):
        self.pin = pin
        self.active_low = active_low
        self.step = 0

    def tick(self, timer):
        on = self.step < 6 and self.step % 2 == 0
        self.pin.value((not on) if self.active_low else on)
        self.step = (self.step + 1) % _STEPS


def enter(reason, board=None, machine=None, cfg=None, state=None, crash_loop=False):
    """Announce safe mode, start the LED pattern, tell the broker when the
    configuration allows it, and after a crash loop arm the hourly retry.
    Returns the reason text."""
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
    if crash_loop and board is not None and state is not None and cfg is not None:
        _arm_retry(board, machine or board.machine, state, cfg["crash_limit"])
    if cfg is not None and cfg.get("safe_mode_report", True) and not reason.startswith(BUTTON):
        # Bounded (about 35 s at worst: Wi-Fi, the clock over TLS, the broker); Ctrl-C skips it. Not when the button is
        # held: the technician is at the board and wants the REPL now.
        import sys
        loaded = set(sys.modules)
        try:
            from transit import safereport
            print("safe mode: told the broker" if safereport.send(cfg, board, reason, state)
                  else "safe mode: broker not reached")
        except Exception as e:  # reported on the console; safe mode itself must never fail
            print("safe mode: report failed: %r" % (e,))
        unload(sys, loaded)
    return text


def unload(sys, keep):
    """Give the REPL back the heap the report took: drop the modules it
    imported (on a board that is .mpy code in RAM), from their packages too
    (transit.safereport stays reachable as an attribute of transit), and
    collect."""
    import transit
    transit.forget(*[name for name in sys.modules if name not in keep])
    import gc
    gc.collect()


def _arm_retry(board, m, state, limit):
    def retry(timer):
        print("safe mode: retrying the application")
        state.retry(limit, "safe-mode retry")
        board.reset()
    t = m.Timer(_RETRY_TIMER)
    t.init(mode=m.Timer.ONE_SHOT, period=RETRY_MS, callback=retry)
    print("safe mode: the application is tried again in %d min (reset the board to try now)" % (RETRY_MS // 60000))


def clear():
    try:
        import os
        os.remove(REASON_FILE)
    except OSError:
        pass
