"""RAM block device for LittleFS tests, with power cuts and wear counters.

Runs under the MicroPython unix port (and CPython, for plain byte maths).
It speaks the extended block protocol VfsLfs2 uses: readblocks(n, buf, off),
writeblocks(n, buf, off) programs without erasing, ioctl 6 erases one block.
Erased flash reads 0xff, like an ESP32 partition.

Power cut: arm(k) lets k more bytes be programmed; the write that crosses
that point keeps only its first bytes, then this and every later write or
erase raises OSError(EIO) until revive(). A test then mounts a fresh VfsLfs2
on the same RAM image, as a board does after the supply comes back.
bytes_programmed and erases measure what the filesystem really wrote.
"""

_EIO = 5
_IOCTL_INIT = 1
_IOCTL_DEINIT = 2
_IOCTL_SYNC = 3
_IOCTL_COUNT = 4
_IOCTL_SIZE = 5
_IOCTL_ERASE = 6


class RAMBlockDev:
    def __init__(self, block_count, block_size=4096):
        self.block_size = block_size
        self.block_count = block_count
        self.data = bytearray(block_size * block_count)
        mv = memoryview(self.data)
        for b in range(block_count):  # erased flash reads 0xff
            self._fill(mv, b * block_size, block_size)
        self._mv = mv
        self.budget = -1  # bytes that may still be programmed; -1: no cut armed
        self.cut = False
        self.cuts = 0
        self.bytes_programmed = 0
        self.erases = 0
        self.writes = 0

    @staticmethod
    def _fill(mv, start, n):
        ff = b"\xff" * 256
        end = start + n
        while start < end:
            k = min(256, end - start)
            mv[start:start + k] = ff[:k]
            start += k

    # --- power --------------------------------------------------------
    def arm(self, nbytes):
        """Cut the power after nbytes more programmed bytes."""
        self.budget = nbytes
        self.cut = False

    def disarm(self):
        self.budget = -1

    def revive(self):
        """Power is back: writes work again (the RAM image is kept)."""
        self.cut = False
        self.budget = -1

    def reset_counters(self):
        self.bytes_programmed = 0
        self.erases = 0
        self.writes = 0

    def _power_lost(self):
        self.cut = True
        self.cuts += 1
        raise OSError(_EIO)

    # --- block protocol -------------------------------------------------
    def readblocks(self, block, buf, off=0):
        a = block * self.block_size + off
        buf[:] = self._mv[a:a + len(buf)]

    def writeblocks(self, block, buf, off=None):
        if off is None:  # legacy protocol: whole blocks, erase first
            for i in range(len(buf) // self.block_size):
                self._erase(block + i)
            off = 0
        if self.cut:
            raise OSError(_EIO)
        a = block * self.block_size + off
        n = len(buf)
        if self.budget >= 0 and n > self.budget:
            keep = self.budget
            self._mv[a:a + keep] = memoryview(buf)[:keep]
            self.bytes_programmed += keep
            self.budget = 0
            self._power_lost()
        self._mv[a:a + n] = buf
        self.bytes_programmed += n
        self.writes += 1
        if self.budget >= 0:
            self.budget -= n

    def _erase(self, block):
        if self.cut:
            raise OSError(_EIO)
        if self.budget == 0:  # the supply died right at an erase
            self._power_lost()
        self._fill(self._mv, block * self.block_size, self.block_size)
        self.erases += 1

    def ioctl(self, op, arg):
        if op == _IOCTL_COUNT:
            return self.block_count
        if op == _IOCTL_SIZE:
            return self.block_size
        if op == _IOCTL_ERASE:
            self._erase(arg)
            return 0
        if op in (_IOCTL_INIT, _IOCTL_DEINIT, _IOCTL_SYNC):
            return 0
        return None
