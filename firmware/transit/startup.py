"""Boot sequence: configuration, board, safe-mode checks, then the role's main loop.

main.py calls `main()`. Anything a technician can fix (bad device.json,
missing secrets, unknown board, button held, crash loop) ends in safe mode
with the REPL free; an unexpected error in the application is recorded and
the board resets, which the crash counter turns into safe mode if it repeats.
How the previous boot ended is judged first (transit.bootstate): planned
resets and power-ons are not crashes. After a crash loop a power cycle, or
safe mode itself once an hour, lets the application try once more.
"""

import gc
import sys

from transit import bootstate
from transit.board import Board, BoardError, load as load_board
from transit.cfgstore import ConfigError

# Boot-only modules (the configuration's validator, the board checks, safe
# mode, the queue's owner check) are imported inside the functions that use
# them, never into these globals: transit.app.forget_boot_modules drops them
# once the application is built, and a global name here would keep them.


def prepare(device_path="device.json", secrets_path="secrets.json", board_dirs=None, machine=None):
    """Load everything the application needs. Returns (cfg, board, state) or
    (None, board_or_None, reason) when the board must stay in safe mode."""
    cfg, board, state, reason = _prepare(device_path, secrets_path, board_dirs, machine)
    return (cfg, board, state) if reason is None else (None, board, reason)


def _prepare(device_path, secrets_path, board_dirs, machine):
    """-> (cfg or None, board or None, state, safe-mode reason or None)."""
    state = bootstate.BootState()
    if state.read_error:
        print(state.read_error)
    from transit import safemode
    from transit.config import load as load_config
    try:
        cfg = load_config(device_path, secrets_path)
    except ConfigError as e:
        return None, None, state, "configuration: %s" % e
    why = zones_problem(cfg)
    if why:
        return None, None, state, why
    try:
        desc = load_board(cfg["board"], board_dirs) if board_dirs else load_board(cfg["board"])
    except BoardError as e:
        return cfg, None, state, "board: %s" % e
    board = Board(desc, machine)
    state.judge(board.reset_cause())
    if board.safe_mode_requested():
        return cfg, board, state, safemode.BUTTON
    why = password_problem(cfg)
    if why:
        return None, board, state, why  # no report: the broker would refuse it anyway
    limit = cfg["crash_limit"]
    if state.retry_after_power_on(limit):
        print("power cycle after a crash loop: trying the application once more")
    if state.crashes >= limit:
        return cfg, board, state, crash_reason(state)
    state.starting()
    safemode.clear()
    return cfg, board, state, None


def zones_problem(cfg):
    """Geofences are checked here, not first in the application, where a bad
    one crashed every boot."""
    if not cfg.get("geofences"):
        return ""
    from transit.geofence import parse_zones
    try:
        parse_zones(cfg.get("geofences"))
    except ValueError as e:
        return "configuration: %s" % e
    return ""


def password_problem(cfg):
    """A broker password is required; "" only for a plain-text lab broker
    without passwords (the simulator, tests)."""
    pw = cfg.secret("mqtt_password")
    if pw is None:
        return "configuration: secrets.json: mqtt_password missing (the broker refuses the board without it)"
    if not pw and cfg.get("broker.tls"):
        return "configuration: secrets.json: mqtt_password is empty (allowed only without TLS, for a lab broker)"
    return ""


def crash_reason(state):
    """The crash-loop reason, naming the last real error."""
    return "the application failed %d times in a row; last error: %s" % (
        state.crashes, state.last_error or "not recorded (the previous firmware kept none)")


def error_summary(text):
    """'OSError: 28 (File "transit/app.py", line 9, in step)' from a traceback:
    the error first, so the 200 characters kept always name it."""
    lines = [l.strip() for l in text.strip().split("\n") if l.strip()]
    if not lines:
        return "unknown error"
    out = lines[-1]
    if len(lines) > 1 and lines[-2].startswith("File "):
        out += " (" + lines[-2] + ")"
    return out[:200]


# Collect after this many bytes allocated, not only when the heap is full:
# garbage then never spreads over the whole heap, and what survives packs
# low instead of leaving holes everywhere (on a 64 KiB heap the bus role
# otherwise runs out of contiguous blocks while it drains a backlog;
# docs/memory.md). A collection takes about as long either way.
GC_THRESHOLD = 8192


def main(run=None, **kw):
    """Boot. `run(cfg, board, state)` is the application (default: transit.app.run)."""
    if hasattr(gc, "threshold"):  # MicroPython; CPython's gc has no such setting
        gc.threshold(GC_THRESHOLD)
    cfg, board, state, reason = _prepare(kw.get("device_path", "device.json"), kw.get("secrets_path", "secrets.json"),
                                         kw.get("board_dirs"), kw.get("machine"))
    if reason is not None:
        from transit import safemode
        if board is not None and _ota_failed("safe mode: %s" % reason):
            # A release on trial put us here: the next boot rolls it back (docs/ota.md).
            if state is not None:
                state.plan("ota rollback")
            board.reset()
        safemode.enter(reason, board, cfg=cfg, state=state, crash_loop=reason.startswith("the application failed"))
        return False
    try:
        if run is None:
            # Inside the try: a module that fails to import is a crash like any other.
            from transit.app import run
        run(cfg, board, state)
    except KeyboardInterrupt:
        # A technician (mpremote, make doctor) interrupted it: not a crash.
        state.not_a_crash()
        print("stopped by Ctrl-C: REPL is yours")
        return False
    except Exception as e:
        if getattr(e, "safe_mode", False):
            # transit.identity.ForeignQueue: another device's records, kept and
            # reported; the technician chooses. Not a crash.
            from transit import safemode
            state.not_a_crash()
            safemode.enter(str(e), board, cfg=cfg, state=state)
            return False
        # Keep the traceback for the doctor, then reset: the crash counter decides
        # whether the next boot tries again or stays in safe mode.
        try:
            import io
            buf = io.StringIO()
            sys.print_exception(e, buf)
            text = buf.getvalue()
        except (ImportError, AttributeError):
            text = repr(e)
        print(text)
        state.record_error(error_summary(text))
        _ota_failed("crash: " + text[-100:])
        board.reset()
    state.not_a_crash()  # the application returned (simulator, tests): it ended on purpose
    return True


def _ota_failed(why):
    """Tell the OTA loader that the version on trial failed (docs/ota.md)."""
    try:
        import otaboot
    except ImportError:
        return False
    return otaboot.failed(why)
