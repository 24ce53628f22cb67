"""Record format of the durable queue and the streaming segment reader.

Record layout (16-byte header, little-endian, then the payload; docs/queue.md):

    crc32 u32 (of bytes 4..end) | len u16 | type u8 | flags u8 | seq u32 | ts u32

Files are streamed through one shared, preallocated buffer (SegReader), so
recovery and reads never hold more than one chunk of a file in RAM. After a
bad record (a flipped bit, a length that points anywhere) the reader can
resynchronise on the next record whose CRC holds, so one bad bit costs one
record, not the rest of its segment.
"""

import struct
from binascii import crc32

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

HDR = const(16)
READ_BUF = const(1024)
MAX_PAYLOAD = const(1008)  # READ_BUF - HDR: a record always fits one chunk
FMT = "<IHBBII"
_SEQ_WINDOW = const(0x1000000)  # a resync candidate's seq lies this close above the last good one

# SegReader.next() results
OK = const(1)
END = const(0)
TORN = const(-1)  # the file ends inside a record (a write that never finished)
BAD = const(-2)  # a complete record whose CRC or length is wrong


def encode_into(buf, at, rtype, flags, seq, ts, payload):
    """Encode one record into buf at byte `at`; return the offset after it."""
    n = len(payload)
    end = at + HDR + n
    struct.pack_into(FMT, buf, at, 0, n, rtype, flags, seq, ts)
    buf[at + HDR:end] = payload
    struct.pack_into("<I", buf, at, crc32(memoryview(buf)[at + 4:end]))
    return end


class SegReader:
    """Streams records out of one segment file in READ_BUF chunks."""

    def __init__(self):
        self.buf = bytearray(READ_BUF)
        self.mv = memoryview(self.buf)
        self.f = None

    def open(self, name, start, limit):
        """Read `name` from byte `start`, never past byte `limit`."""
        self.f = open(name, "rb")
        self.f.seek(start)
        self.base = start  # file offset of buf[0]
        self.off = start  # file offset of the next record
        self.lo = 0
        self.hi = 0
        self.limit = limit

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None

    def _refill(self):
        # Re-read from the current record rather than move bytes in place.
        self.f.seek(self.off)
        want = min(READ_BUF, self.limit - self.off)
        got = self.f.readinto(self.mv[:want]) if want > 0 else 0
        self.base = self.off
        self.lo = 0
        self.hi = got or 0

    def next(self):
        """Parse the next record into seq/rtype/flags/ts/p/plen; return OK, END, TORN or BAD."""
        if self.hi - self.lo < HDR:
            self._refill()
            if self.hi == 0:
                return END
            if self.hi < HDR:
                return TORN
        crc, n, rtype, flags, seq, ts = struct.unpack_from(FMT, self.buf, self.lo)
        if n > MAX_PAYLOAD:
            return BAD
        total = HDR + n
        if self.hi - self.lo < total:
            self._refill()
            if self.hi < total:
                return TORN
        lo = self.lo
        if crc32(self.mv[lo + 4:lo + total]) != crc:
            return BAD
        self.seq = seq
        self.rtype = rtype
        self.flags = flags
        self.ts = ts
        self.p = lo + HDR
        self.plen = n
        self.lo = lo + total
        self.off += total
        return OK

    def resync(self, after_seq):
        """After a TORN or BAD result at self.off: move to the next offset that
        holds a whole record with a good CRC and a seq just above after_seq
        (0: any). True when found (next() returns it); False leaves self.off
        at the bad record. Costs a byte-by-byte search, only after damage."""
        bad = self.off
        cand = bad + 1
        while True:
            rel = cand - self.base
            if rel < 0 or rel + HDR > self.hi:
                self.off = cand
                self._refill()
                rel = 0
                if self.hi < HDR:
                    break
            n = self.buf[rel + 4] | (self.buf[rel + 5] << 8)
            seq = struct.unpack_from("<I", self.buf, rel + 8)[0]
            if n <= MAX_PAYLOAD and seq > after_seq and (after_seq == 0 or seq - after_seq < _SEQ_WINDOW):
                total = HDR + n
                if rel + total > self.hi:
                    self.off = cand
                    self._refill()
                    rel = 0
                if rel + total <= self.hi and crc32(self.mv[rel + 4:rel + total]) == \
                        struct.unpack_from("<I", self.buf, rel)[0]:
                    self.off = cand
                    self.lo = rel
                    return True
            cand += 1
        self.off = bad
        self.lo = self.hi = 0  # the next read starts again at the bad record
        return False
