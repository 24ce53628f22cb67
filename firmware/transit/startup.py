"""Boot sequence: configuration, board, safe-mode checks, then the role's main loop.

main.py calls `main()`. Anything a technician can fix (bad device.json,
missing secrets, unknown board, button held, crash loop) ends in safe mode
with the REPL free; an unexpected error in the application is recorded and
the board resets, which the crash counter turns into safe mode if it repeats.
"""

import gc
import sys

from transit import bootstate, safemode
from transit.board import Board, BoardError, load as load_board
from transit.config import ConfigError, load as load_config


def prepare(device_path="device.json", secrets_path="secrets.json", board_dirs=None, machine=None):
    """Load everything the application needs. Returns (cfg, board, state) or
    (None, board_or_None, reason) when the board must stay in safe mode."""
    state = bootstate.BootState()
    if state.read_error:
        print(state.read_error)
    try:
        cfg = load_config(device_path, secrets_path)
    except ConfigError as e:
        return None, None, "configuration: %s" % e
    try:
        desc = load_board(cfg["board"], board_dirs) if board_dirs else load_board(cfg["board"])
    except BoardError as e:
        return None, None, "board: %s" % e
    board = Board(desc, machine)
    if board.safe_mode_requested():
        return None, board, "safe-mode button held at boot"
    limit = cfg["crash_limit"]
    if state.crashes >= limit:
        return None, board, "the application failed %d times in a row; last error: %s" % (state.crashes, state.last_error or "none recorded")
    state.starting(board.reset_cause())
    safemode.clear()
    return cfg, board, state


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
    cfg, board, state = prepare(**kw)
    if cfg is None:
        safemode.enter(state, board)
        return False
    if run is None:
        from transit.app import run
    try:
        run(cfg, board, state)
    except KeyboardInterrupt:
        # A technician (mpremote, make doctor) interrupted it: not a crash.
        state.not_a_crash()
        print("stopped by Ctrl-C: REPL is yours")
        return False
    except Exception as e:
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
        state.record_error(text[-200:])
        board.reset()
    return True
