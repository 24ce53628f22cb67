"""Which application version boots: the A/B selector, trial boots and rollback.

An over-the-air release is a folder of .mpy files (`ota/<build>/`) that
`boot.py` puts first on `sys.path`, ahead of the frozen or base copy, or a
firmware image in the next OTA partition. Either way the switch is one small
state file, written last and atomically (`ota/state.json`):

    {"cur": {"ver": "0.2.0", "build": "ab12", "kind": "files", "dir": "ota/ab12"},
     "prev": {...} or null, "trial": 1, "boots": 0, "max_boots": 3, "trial_s": 60,
     "fail": "", "rejected": {"ver": ..., "build": ..., "why": ...} or null}

A new version is on trial until the application calls `passed()` (its loop
ran `trial_s` and the broker took its publish check). A crash or safe mode
(`failed()`), a watchdog reset, or `max_boots` boots without passing bring
the previous version back at the next boot. This module is the loader: it is
never part of a file release (only of a firmware image), and it must not
fail, so every error here falls back to the base version and says so.
"""

import json
import os
import sys

STATE = "ota/state.json"
WDT_RESET = 3  # machine.WDT_RESET on the ESP32


def read(path=STATE):
    try:
        with open(path) as f:
            doc = json.load(f)
        return doc if isinstance(doc, dict) else None
    except OSError:
        return None  # no update ever installed
    except ValueError:
        print("ota: state file unreadable, booting the base version")
        return None


def write(doc, path=STATE):
    """Atomic on LittleFS: a power cut leaves the old or the new file, never half."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.rename(tmp, path)


def _isdir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _running_partition():
    try:
        import esp32
        return esp32.Partition(esp32.Partition.RUNNING).info()[4]
    except (ImportError, AttributeError, OSError):
        return None


def rollback(doc, why):
    """Reject the version on trial and return to the previous one (in `doc`)."""
    cur = doc.get("cur") or {}
    doc["rejected"] = {"ver": cur.get("ver", "?"), "build": cur.get("build", "?"), "why": why[:120]}
    doc["cur"] = doc.get("prev")
    doc["prev"] = None
    doc["trial"] = 0
    doc["boots"] = 0
    doc["fail"] = ""
    print("ota: rolled back %s: %s" % (doc["rejected"]["ver"], why))


def decide(doc, reset_cause, running_part=None):
    """One boot's decision on `doc` (changed in place); True when it must be saved."""
    cur = doc.get("cur") or {}
    if cur.get("kind") == "image" and running_part is not None and cur.get("part") != running_part:
        # The bootloader went back by itself: the image never confirmed itself.
        rollback(doc, doc.get("fail") or "image not confirmed: the bootloader rolled back")
        return True
    if not doc.get("trial"):
        return False
    doc["boots"] = doc.get("boots", 0) + 1
    why = None
    if doc.get("fail"):
        why = doc["fail"]
    elif reset_cause == WDT_RESET and doc["boots"] > 1:
        why = "watchdog reset on trial"
    elif doc["boots"] > doc.get("max_boots", 3):
        why = "no broker within %d boots" % doc.get("max_boots", 3)
    if why is not None:
        if cur.get("kind") == "image":
            # Only the bootloader can go back to the old image: select() resets
            # without confirming it, and the next boot records the rollback.
            doc["fail"] = why
            return True
        rollback(doc, why)
    return True


def select(reset_cause=0, path=STATE):
    """Called by boot.py: decide trial and rollback, put the active release
    folder first on sys.path. Returns the folder, or None for the base version."""
    try:
        doc = read(path)
        if doc is None:
            return None
        if decide(doc, reset_cause, _running_partition()):
            write(doc, path)
        cur = doc.get("cur") or {}
        if doc.get("trial") and doc.get("fail") and cur.get("kind") == "image":
            import machine
            machine.reset()  # unconfirmed image + reset = the bootloader's rollback
        folder = cur.get("dir")
        if folder and _isdir(folder):
            sys.path.insert(0, folder)
            return folder
        if folder:
            print("ota: release folder %s missing, booting the base version" % folder)
    except Exception as e:  # noqa - the loader must never stop a boot; it says why
        print("ota: boot selection failed (%r), booting the base version" % (e,))
    return None


def on_trial(path=STATE):
    doc = read(path)
    return bool(doc and doc.get("trial"))


def failed(reason, path=STATE):
    """The version on trial failed (crash, safe mode): the next boot rolls it
    back. Returns True when a trial was running (the caller then resets)."""
    doc = read(path)
    if not doc or not doc.get("trial"):
        return False
    doc["fail"] = str(reason)[:120]
    write(doc, path)
    return True


def passed(path=STATE):
    """The version on trial is healthy: keep it. A firmware image is confirmed
    to the bootloader here, and only here. Returns the version kept or None."""
    doc = read(path)
    if not doc or not doc.get("trial"):
        return None
    cur = doc.get("cur") or {}
    if cur.get("kind") == "image":
        import esp32
        esp32.Partition.mark_app_valid_cancel_rollback()
    doc["trial"] = 0
    doc["boots"] = 0
    doc["fail"] = ""
    write(doc, path)
    return cur.get("ver")
