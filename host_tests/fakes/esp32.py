"""Fake `esp32` module: the OTA partitions and the bootloader's rollback.

Models a 4 MiB ESP32 with MicroPython's OTA partition table: two 1.5 MiB
application slots (ota_0, ota_1) and a 960 KiB filesystem. Partition
contents and the bootloader's otadata live in files under FAKE_ESP32_DIR
(default: `esp32flash` in the current folder), so they survive a "reset"
(the next interpreter process). As with ESP-IDF's app rollback:

- set_boot() marks the slot NEW and makes it the boot slot;
- the first boot of a NEW slot turns it PENDING_VERIFY;
- a boot that finds the boot slot still PENDING_VERIFY (the application reset
  without calling mark_app_valid_cancel_rollback()) marks it ABORTED and
  boots the other, valid slot: the rollback;
- mark_app_valid_cancel_rollback() makes the running slot VALID.
"""

import json
import os

BLOCK = 4096
_CHUNK = 64  # bytes combined at a time when programming (a fixed scratch: no heap per call)
_ERASED = b"\xff" * _CHUNK
_SCRATCH = bytearray(_CHUNK)
_SCRATCH_MV = memoryview(_SCRATCH)
_TABLE = (  # label, type, subtype, address, size
    ("nvs", 1, 2, 0x9000, 0x6000),
    ("otadata", 1, 0, 0xF000, 0x2000),
    ("ota_0", 0, 0x10, 0x10000, 0x180000),
    ("ota_1", 0, 0x11, 0x190000, 0x180000),
    ("vfs", 1, 0x81, 0x310000, 0xF0000),
)


def _dir():
    d = os.getenv("FAKE_ESP32_DIR") or "esp32flash"
    try:
        os.mkdir(d)
    except OSError:
        pass
    return d


def _load():
    try:
        with open(_dir() + "/otadata.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"boot": "ota_0", "states": {"ota_0": "valid"}, "running": None, "boots": 0}


def _save(d):
    with open(_dir() + "/otadata.json", "w") as f:
        json.dump(d, f)


def _bootloader():
    d = _load()
    boot = d["boot"]
    st = d["states"].get(boot, "valid")
    if st == "pending":
        d["states"][boot] = "aborted"
        boot = "ota_1" if boot == "ota_0" else "ota_0"
        d["boot"] = boot
        d["rolled_back"] = d.get("rolled_back", 0) + 1
    elif st == "new":
        d["states"][boot] = "pending"
    d["running"] = boot
    d["boots"] = d.get("boots", 0) + 1
    _save(d)
    return d


_OTADATA = _bootloader()  # importing esp32 = the board booted


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id):
        if id == Partition.RUNNING:
            id = _OTADATA["running"]
        elif id == Partition.BOOT:
            id = _load()["boot"]
        for row in _TABLE:
            if row[0] == id:
                self._row = row
                return
        raise ValueError("no partition " + str(id))

    @staticmethod
    def find(type=TYPE_APP, subtype=255, label=None):
        return [Partition(r[0]) for r in _TABLE if r[1] == type and (label is None or r[0] == label)
                and (subtype == 255 or r[2] == subtype)]

    def info(self):
        r = self._row
        return (r[1], r[2], r[3], r[4], r[0], False)

    def _path(self):
        return _dir() + "/" + self._row[0] + ".bin"

    def ioctl(self, op, arg):
        if op == 4:
            return self._row[4] // BLOCK
        if op == 5:
            return BLOCK
        if op == 6:
            self._check(arg * BLOCK, BLOCK)
            with self._open() as f:
                f.seek(arg * BLOCK)
                for _ in range(BLOCK // _CHUNK):
                    f.write(_ERASED)
        return 0

    def _open(self):
        try:
            return open(self._path(), "r+b")
        except OSError:
            return open(self._path(), "w+b")

    def _check(self, start, n):
        if self._row[1] == Partition.TYPE_APP and self._row[0] == _OTADATA["running"]:
            raise OSError(5)  # never the running image
        if start + n > self._row[4]:
            raise OSError(22)

    def readblocks(self, block, buf, offset=0):
        """Into `buf` (no other buffer, as the ESP32's): bytes never written read as erased."""
        n = 0
        try:
            with open(self._path(), "rb") as f:
                f.seek(block * BLOCK + offset)
                n = f.readinto(buf) or 0
        except OSError:
            n = 0
        for i in range(n, len(buf)):
            buf[i] = 0xFF

    def writeblocks(self, block, buf, offset=None):
        """As the ESP32's: without `offset`, erase the blocks and write them
        (whole blocks only); with it (the extended block protocol), program
        bytes into an erased block: NOR flash only clears bits, so a block
        that was not erased (ioctl 6) keeps old bits set to zero. Like the
        ESP32's, it takes no heap for the data: the bits are combined through
        a small scratch buffer of this module's."""
        start = block * BLOCK + (offset or 0)
        n = len(buf)
        self._check(start, n)
        if offset is None and n % BLOCK:
            raise OSError(22)
        with self._open() as f:
            if offset is None:
                f.seek(start)
                f.write(buf)
                return
            pos = 0
            while pos < n:
                k = min(_CHUNK, n - pos)
                f.seek(start + pos)
                got = f.readinto(_SCRATCH_MV[:k]) or 0
                for i in range(got, k):
                    _SCRATCH[i] = 0xFF  # never written: erased
                for i in range(k):
                    _SCRATCH[i] &= buf[pos + i]
                f.seek(start + pos)
                f.write(_SCRATCH_MV[:k])
                pos += k

    def set_boot(self):
        d = _load()
        d["boot"] = self._row[0]
        d["states"][self._row[0]] = "new"
        _save(d)

    def get_next_update(self):
        return Partition("ota_1" if self._row[0] == "ota_0" else "ota_0")

    @staticmethod
    def mark_app_valid_cancel_rollback():
        d = _load()
        d["states"][_OTADATA["running"]] = "valid"
        _save(d)
