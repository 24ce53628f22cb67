"""What the deploy asks a board and refuses it for: tools/deploy.py's board checks.

One probe (PROBE, a single mpremote exec) returns the MicroPython and .mpy
versions, the flash's size and free space and the files under the managed
folders; `check_board` and `check_space` refuse a board too old, a .mpy
mismatch or a flash too small before anything is copied; `stale_files`
lists what the deploy removes; `verify` compares every file's SHA-256 on
the board with the manifest; AFTER_BOOT_PY checks which umqtt.simple is
imported after boot.py.
"""

import os

from deploy_remote import DeployError, read_hashes, say

MIN_VERSION = (1, 23, 0)  # .mpy 6.3 and the umqtt.simple facts in DESIGN.md hold from here
TESTED_UP_TO = (1, 29)
MPY_VERSION = (6, 3)  # what mpy-cross 1.28 emits
MANAGED_DIRS = ("transit", "lib", "boards", "ota")  # everything in them belongs to the deploy (a cable deploy replaces any OTA release)
BLOCK = 4096  # LittleFS block on an ESP32
RESERVE_BLOCKS = 4  # left free for the queue and boot state to keep working

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
