"""RAM block device for LittleFS tests, with power cuts and wear counters.

Runs under the MicroPython unix port (and CPython, for plain byte maths).
It speaks the extended block protocol VfsLfs2 uses: readblocks(n, buf, off),
writeblocks(n, buf, off) programs without erasing, ioctl 6 erases one block.
Erased flash reads 0xff, like an ESP32 partition.

Power cut: arm(k) lets k more bytes be programmed; the write that crosses
that point keeps only its first bytes, then this and every later read, write,
erase or sync fails with -EIO (a return code, which VfsLfs2 turns into
OSError(EIO)) until revive(). Returning the code instead of raising keeps a
dead session's file finalisers quiet and allocation-free. A test then mounts a fresh VfsLfs2
on the same RAM image, as a board does after the supply comes back.
bytes_programmed and erases (and erase_counts, per block) measure what the
filesystem really wrote.
"""

_EIO = 5
_IOCTL_COUNT = 4
_IOCTL_SIZE = 5
_IOCTL_ERASE = 6
_FAIL = -_EIO


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
        self.read_budget = -1  # reads that may still happen; -1: no cut armed
        self.cut = False
        self.cuts = 0
        self.epoch = 0  # power cycles: a Session of an older one is dead for good
        self.bytes_programmed = 0
        self.erases = 0
        self.writes = 0
        self.erase_counts = [0] * block_count  # per block, for the wear maximum

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

    def arm_reads(self, nreads):
        """Cut the power at the read call after nreads more reads."""
        self.read_budget = nreads
        self.cut = False

    def disarm(self):
        self.budget = -1
        self.read_budget = -1

    def revive(self):
        """Power is back: writes work again (the RAM image is kept)."""
        self.cut = False
        self.epoch += 1
        self.disarm()

    def session(self):
        """A view to mount for one power cycle: after revive() it fails every
        call, so a dead session's file finalisers, whenever the GC runs them,
        can never write into the next session's image."""
        return Session(self)

    def reset_counters(self):
        self.bytes_programmed = 0
        self.erases = 0
        self.writes = 0
        for i in range(self.block_count):
            self.erase_counts[i] = 0

    def _power_lost(self):
        self.cut = True
        self.cuts += 1
        return _FAIL

    # --- block protocol -------------------------------------------------
    def readblocks(self, block, buf, off=0):
        if self.cut:  # no supply, no reads either
            return _FAIL
        if self.read_budget >= 0:
            if self.read_budget == 0:
                return self._power_lost()
            self.read_budget -= 1
        a = block * self.block_size + off
        buf[:] = self._mv[a:a + len(buf)]
        return 0

    def writeblocks(self, block, buf, off=None):
        if off is None:  # legacy protocol: whole blocks, erase first
            for i in range(len(buf) // self.block_size):
                if self._erase(block + i):
                    return _FAIL
            off = 0
        if self.cut:
            return _FAIL
        a = block * self.block_size + off
        n = len(buf)
        if self.budget >= 0 and n > self.budget:
            keep = self.budget
            self._mv[a:a + keep] = memoryview(buf)[:keep]
            self.bytes_programmed += keep
            self.budget = 0
            return self._power_lost()
        self._mv[a:a + n] = buf
        self.bytes_programmed += n
        self.writes += 1
        if self.budget >= 0:
            self.budget -= n
        return 0

    def _erase(self, block):
        if self.cut:
            return _FAIL
        if self.budget == 0:  # the supply died right at an erase
            return self._power_lost()
        self._fill(self._mv, block * self.block_size, self.block_size)
        self.erases += 1
        self.erase_counts[block] += 1
        return 0

    def ioctl(self, op, arg):
        if op == _IOCTL_COUNT:
            return self.block_count
        if op == _IOCTL_SIZE:
            return self.block_size
        if op == _IOCTL_ERASE:
            return self._erase(arg)
        if 1 <= op <= 3:  # init, deinit, sync
            return _FAIL if self.cut else 0
        return None


class Session:
    """RAMBlockDev for one power cycle (see RAMBlockDev.session)."""

    def __init__(self, dev):
        self.dev = dev
        self.epoch = dev.epoch

    def readblocks(self, block, buf, off=0):
        if self.epoch != self.dev.epoch:
            return _FAIL
        return self.dev.readblocks(block, buf, off)

    def writeblocks(self, block, buf, off=None):
        if self.epoch != self.dev.epoch:
            return _FAIL
        return self.dev.writeblocks(block, buf, off)

    def ioctl(self, op, arg):
        if self.epoch != self.dev.epoch and op != 4 and op != 5:  # count and size stay readable
            return _FAIL
        return self.dev.ioctl(op, arg)
