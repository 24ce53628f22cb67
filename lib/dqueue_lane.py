"""One lane of the durable queue: a series of append-only segment files.

A lane owns its segment list (number, valid bytes, records), its ack cursor
(segment number, byte offset of the first unacknowledged record) and a RAM
buffer of encoded records waiting for the group commit. Record layout (16-byte
header, little-endian, then the payload) is in docs/queue.md:

    crc32 u32 (of bytes 4..end) | len u16 | type u8 | flags u8 | seq u32 | ts u32

Files are streamed through one shared, preallocated buffer (SegReader), so
recovery and reads never hold more than one chunk of a file in RAM.
"""

import os
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
_FMT = "<IHBBII"

# SegReader.next() results
OK = const(1)
END = const(0)
TORN = const(-1)  # the file ends inside a record (a write that never finished)
BAD = const(-2)  # a complete record whose CRC or length is wrong


def encode_into(buf, at, rtype, flags, seq, ts, payload):
    """Encode one record into buf at byte `at`; return the offset after it."""
    n = len(payload)
    end = at + HDR + n
    struct.pack_into(_FMT, buf, at, 0, n, rtype, flags, seq, ts)
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
        crc, n, rtype, flags, seq, ts = struct.unpack_from(_FMT, self.buf, self.lo)
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


class Lane:
    def __init__(self, folder, letter, pend_bytes):
        self.folder = folder
        self.letter = letter
        self.segs = []  # segment numbers, oldest first
        self.lens = []  # valid bytes in each segment
        self.nrec = []  # valid records in each segment (acknowledged ones included)
        self.head_acked = 0  # records of segs[0] before the cursor
        self.cur_seg = 0  # cursor: first unacknowledged record is at (cur_seg, cur_off)
        self.cur_off = 0
        self.next_seg = 1
        self.appendable = False  # segs[-1] may take more records
        self.wf = None  # open append handle of segs[-1]
        self.buf = bytearray(pend_bytes)  # records waiting for the commit: buf[p0:p1]
        self.p0 = 0
        self.p1 = 0
        self.pcount = 0
        self.gen = 0  # bumped when positions move (commit, ack, drop): peeks older than it are stale
        self.inflight = None  # (last seq, gen, segno, off, n_flash, n_ram) of the last peek

    def fname(self, segno):
        return "%s/%s%08d" % (self.folder, self.letter, segno)

    # --- counts ---------------------------------------------------------
    def acked_in(self, i):
        """Acknowledged records in segs[i]."""
        s = self.segs[i]
        if s < self.cur_seg:
            return self.nrec[i]
        return self.head_acked if s == self.cur_seg else 0

    def flash_count(self):
        n = 0
        for i in range(len(self.segs)):
            n += self.nrec[i] - self.acked_in(i)
        return n

    def flash_bytes(self):
        return sum(self.lens)

    # --- RAM buffer -----------------------------------------------------
    def put(self, rtype, flags, seq, ts, payload):
        if self.p0 == self.p1:
            self.p0 = self.p1 = 0
        self.p1 = encode_into(self.buf, self.p1, rtype, flags, seq, ts, payload)
        self.pcount += 1

    def room(self):
        return len(self.buf) - (self.p1 if self.p0 != self.p1 else 0)

    def skip_pending(self, n):
        """Forget the n oldest buffered records; return how many went."""
        k = 0
        while k < n and self.p0 < self.p1:
            self.p0 += HDR + struct.unpack_from("<H", self.buf, self.p0 + 4)[0]
            k += 1
        self.pcount -= k
        return k

    # --- writing ----------------------------------------------------------
    def seal(self):
        """No more appends to the current last segment (rolled, torn or failed)."""
        if self.wf is not None:
            try:
                self.wf.close()
            except OSError:  # the write that failed is already counted by the caller
                pass
            self.wf = None
        self.appendable = False

    def write_some(self, seg_bytes):
        """Write buffered records that fit the current segment (opening or
        rolling one as needed), flush, and return the record count written.
        Raises OSError; nothing is taken out of the buffer unless flushed."""
        first = HDR + struct.unpack_from("<H", self.buf, self.p0 + 4)[0]
        if self.appendable and self.lens[-1] and self.lens[-1] + first > seg_bytes:
            self.seal()  # roll: records never span segments
        room = seg_bytes - (self.lens[-1] if self.appendable else 0)
        end = self.p0
        k = 0
        while end < self.p1:
            n = HDR + struct.unpack_from("<H", self.buf, end + 4)[0]
            if end + n - self.p0 > room and k:
                break
            end += n
            k += 1
        if not self.appendable:
            segno = self.next_seg
            self.wf = open(self.fname(segno), "wb")
            self.next_seg = segno + 1
            self.segs.append(segno)
            self.lens.append(0)
            self.nrec.append(0)
            self.appendable = True
        elif self.wf is None:
            self.wf = open(self.fname(self.segs[-1]), "ab")
        self.wf.write(memoryview(self.buf)[self.p0:end])
        self.wf.flush()
        self.lens[-1] += end - self.p0
        self.nrec[-1] += k
        self.p0 = end
        self.pcount -= k
        self.gen += 1
        return k

    def remove_head(self):
        """Delete the oldest segment file; return its unacknowledged record count."""
        lost = self.nrec[0] - self.acked_in(0)
        if self.segs[0] == self.cur_seg:
            self.head_acked = 0
        if len(self.segs) == 1:
            self.seal()
        name = self.fname(self.segs[0])
        self.segs.pop(0)
        self.lens.pop(0)
        self.nrec.pop(0)
        self.gen += 1
        os.remove(name)  # may raise: a file that would not go is found again at the next boot
        return lost

    # --- reading ------------------------------------------------------------
    def walk(self, rd, out, max_records, max_bytes, stop_seq, q, ram_stop=0xFFFFFFFF):
        """Visit records from the cursor in order, flash then RAM, until
        max_records, payload max_bytes (the first record always passes) or a
        seq above stop_seq (above ram_stop for records still in RAM). Appends (seq, rtype, flags, ts, payload) to out
        when given. Leaves w_n, w_ram, w_seg, w_off, w_last, w_bytes."""
        n = 0
        nb = 0
        last = -1
        end_seg = self.cur_seg
        end_off = self.cur_off
        for i in range(len(self.segs)):
            segno = self.segs[i]
            if segno < self.cur_seg:  # acknowledged, waiting to be deleted
                continue
            ln = self.lens[i]
            start = self.cur_off if segno == self.cur_seg else 0
            if start < ln:
                rd.open(self.fname(segno), start, ln)
                nseg = 0
                try:
                    while True:
                        r = rd.next()
                        if r != OK:
                            if r != END:  # rotted since boot: the segment ends here
                                q.stats["crc_errors"] += 1
                                self.lens[i] = ln = rd.off
                                self.nrec[i] = self.acked_in(i) + nseg
                                if i == len(self.segs) - 1:
                                    self.seal()
                            break
                        if n >= max_records or rd.seq > stop_seq or ((n or out) and nb + rd.plen > max_bytes):
                            self._walk_done(n, 0, segno, rd.off - HDR - rd.plen, last, nb)
                            return
                        if out is not None:
                            out.append((rd.seq, rd.rtype, rd.flags, rd.ts, bytes(rd.mv[rd.p:rd.p + rd.plen])))
                        n += 1
                        nseg += 1
                        nb += rd.plen
                        last = rd.seq
                finally:
                    rd.close()
            end_seg = segno
            end_off = ln
        ram = 0
        at = self.p0
        mv = memoryview(self.buf)
        while at < self.p1 and n < max_records:
            crc, ln, rtype, flags, seq, ts = struct.unpack_from(_FMT, self.buf, at)
            if seq > stop_seq or seq > ram_stop or ((n or out) and nb + ln > max_bytes):
                break
            if out is not None:
                out.append((seq, rtype, flags, ts, bytes(mv[at + HDR:at + HDR + ln])))
            at += HDR + ln
            n += 1
            ram += 1
            nb += ln
            last = seq
        self._walk_done(n - ram, ram, end_seg, end_off, last, nb)

    def _walk_done(self, n_flash, n_ram, seg, off, last, nb):
        self.w_n = n_flash
        self.w_ram = n_ram
        self.w_seg = seg
        self.w_off = off
        self.w_last = last
        self.w_bytes = nb

    # --- acknowledging ----------------------------------------------------
    def advance(self, seg, off, n_flash, n_ram):
        """Move the cursor past n_flash records ending at (seg, off) and drop
        n_ram records from the RAM buffer. Never moves backwards."""
        if n_flash and (seg > self.cur_seg or (seg == self.cur_seg and off > self.cur_off)):
            rest = n_flash
            acked = 0
            for i in range(len(self.segs)):
                s = self.segs[i]
                if s == seg:
                    acked = min(self.nrec[i], max(0, rest) + (self.head_acked if s == self.cur_seg else 0))
                    break
                if s >= self.cur_seg:
                    rest -= self.nrec[i] - self.acked_in(i)
            self.head_acked = acked
            self.cur_seg = seg
            self.cur_off = off
        self.skip_pending(n_ram)
        self.gen += 1

    def reapable(self, seg_bytes):
        """True when segs[0] is fully acknowledged and nothing more goes into it."""
        if not self.segs:
            return False
        s = self.segs[0]
        if s > self.cur_seg or (s == self.cur_seg and self.cur_off < self.lens[0]):
            return False
        return len(self.segs) > 1 or not self.appendable or self.lens[0] >= seg_bytes
