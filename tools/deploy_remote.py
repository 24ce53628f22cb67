"""The deploy's side of the cable: mpremote driven for tools/deploy.py.

Every call is a subprocess of the real mpremote (or, for the reset and the
boot watch, its Python API: one connection across the reset), bounded by a
timeout, and every failure becomes a DeployError whose message is one
sentence a technician can act on (`explain`). tools/doctor.py uses the same
calls to read a board.
"""

import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DeployError(Exception):
    """A failure a technician can act on; the message says what to do."""


def say(msg):
    print(msg, flush=True)


def mpremote_cmd():
    return [sys.executable, "-m", "mpremote"]


def check_port(port):
    """Fail early and clearly when nothing is plugged in at `port`."""
    if port.startswith("socket://"):
        host, _, p = port[len("socket://"):].rpartition(":")
        try:
            socket.create_connection((host, int(p)), timeout=3).close()
        except (OSError, ValueError):
            raise DeployError("no board answers at %s: start the virtual board (tools/vboard.py) "
                              "or check the address" % port)
    elif not port.startswith(("rfc2217://", "port:", "id:")) and not os.path.exists(port):
        raise DeployError("no board at %s: plug the USB cable in, find the port with "
                          "`mpremote connect list`, and run again with PORT=<that port>" % port)


def explain(out, port):
    """Turn mpremote's error output into one sentence for a technician."""
    low = out.lower()
    if "no space left" in low or "enospc" in low:
        return ("the board's flash is full: remove old data files (see docs/technician.md, "
                "'Flash full') or deploy with --mpy, then run again")
    if "failed to access" in low or "in use" in low:
        return ("%s is busy: close other programs using it (a serial monitor, another mpremote), "
                "then run again" % port)
    if "could not enter raw repl" in low or "timeout" in low or "disconnected" in low:
        return ("the board at %s stopped answering: check the cable, press RESET, and run again "
                "(only what changed is copied again)" % port)
    last = [ln for ln in out.strip().splitlines() if ln.strip()]
    return "mpremote failed: %s" % (last[-1] if last else "no output")


def mpremote(port, args, resume=True, stream=None, timeout=300):
    """Run mpremote against `port`; return stdout. `stream(line)` sees lines as they come."""
    cmd = mpremote_cmd() + ["connect", port] + (["resume"] if resume else []) + list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if stream:
                stream(line.rstrip("\n"))
        err = proc.stderr.read()
        proc.wait(timeout)
    except KeyboardInterrupt:
        proc.kill()
        raise DeployError("interrupted: the board is only partly deployed; run the same command again "
                          "and it copies only what is missing")
    except subprocess.TimeoutExpired:
        proc.kill()
        raise DeployError("mpremote hung for %d s talking to %s: press RESET on the board and run again"
                          % (timeout, port))
    text = "".join(out)
    if proc.returncode != 0:
        raise DeployError(explain(text + err, port))
    return text


def board_exec(port, code, resume=True):
    """Run code on the board; its last printed line is JSON."""
    out = mpremote(port, ["exec", code], resume=resume)
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise DeployError("the board gave no answer to the deploy's question: press RESET and run again")
    return json.loads(lines[-1])


def read_hashes(port, rels):
    """SHA-256 of each board file, read back with `mpremote fs sha256sum`."""
    out = mpremote(port, ["fs", "sha256sum"] + [":" + r for r in rels])
    got = {}
    current = None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("sha256sum :"):
            current = line[len("sha256sum :"):]
        elif current and len(line) == 64:
            got[current] = line
            current = None
    return got


# --------------------------------------------------------------------------
# reset and boot watch (mpremote's Python API: one connection across the reset)
# --------------------------------------------------------------------------


def reset_and_watch(port, banner_timeout=15.0, settle_s=4.0):
    from mpremote.transport_serial import SerialTransport
    from mpremote.transport import TransportError
    try:
        t = SerialTransport(port, baudrate=115200)
        t.enter_raw_repl(soft_reset=False)
        t.exec_raw_no_follow("import time, machine\ntime.sleep_ms(100)\nmachine.reset()")
    except (TransportError, OSError) as e:
        raise DeployError("could not reset the board at %s (%s): press its RESET button, then run `make doctor`"
                          % (port, e))
    say("reset: waiting for the boot banner")
    start = time.monotonic()
    text = b""
    shown = 0
    banner_at = None
    try:
        while True:
            now = time.monotonic()
            if banner_at is None and now - start > banner_timeout:
                break
            if banner_at is not None and now - banner_at > settle_s and (
                    b"Traceback" not in text or now - banner_at > settle_s + 10):
                break  # a traceback in progress gets up to 10 s more for its last line
            try:
                n = t.serial.inWaiting()
                chunk = t.serial.read(n) if n else b""
            except (OSError, Exception):  # noqa: B902 - a native-USB board drops the port while it resets
                chunk = b""
                time.sleep(0.2)
            if not chunk:
                time.sleep(0.05)
            text += chunk
            lines = text.decode("utf-8", "replace").replace("\r", "").split("\n")
            for ln in lines[shown:-1]:
                if ln.strip():
                    say("  board| " + ln)
            shown = max(shown, len(lines) - 1)
            if banner_at is None and (b"MicroPython v" in text or b"rst:" in text):
                banner_at = time.monotonic()
            if boot_error_complete(text):
                break
    finally:
        try:
            t.close()
        except OSError:
            pass
    out = text.decode("utf-8", "replace")
    for ln in out.replace("\r", "").split("\n")[shown:]:
        if ln.strip():
            say("  board| " + ln)
    if banner_at is None:
        raise DeployError("the board did not restart (no boot banner within %.0f s): press its RESET button and "
                          "run `make doctor PORT=%s`" % (banner_timeout, port))
    if "SAFE MODE:" in out:
        reason = out.split("SAFE MODE:", 1)[1].strip().splitlines()[0]
        raise DeployError("the board booted into safe mode (%s): fix that, then run the deploy again" % reason)
    if "Traceback (most recent call last)" in out:
        last = _error_line(out)
        raise DeployError("the firmware raised an error at boot (%s; shown above): tell the developers and "
                          "keep this output" % (last or "its last line did not arrive"))
    return time.monotonic() - start


def _error_line(text):
    """The exception line of the first traceback in text (the first unindented line after it), or None."""
    tail = text.replace("\r", "").split("Traceback (most recent call last)", 1)[1].split("\n")[1:]
    for i, ln in enumerate(tail):
        if ln and not ln[0].isspace():
            return ln.strip() if i < len(tail) - 1 else None  # only a line that has ended
    return None


def boot_error_complete(text):
    """True once a safe-mode line or a whole traceback (up to its error line) has arrived.

    Stopping at the word "Traceback" cut the output before the line that
    says what went wrong; the boot watch's own deadline bounds the wait."""
    if b"SAFE MODE:" in text:
        return b"\n" in text.split(b"SAFE MODE:", 1)[1]
    if b"Traceback (most recent call last)" in text:
        return _error_line(text.decode("utf-8", "replace")) is not None
    return False
