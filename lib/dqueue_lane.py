"""One lane of the durable queue: a series of append-only segment files.

A lane owns its segment list (number, valid bytes, records), its ack cursor
(segment number, byte offset of the first unacknowledged record) and a RAM
buffer of encoded records waiting for the group commit, with the arrival
tick of each (a ring beside the buffer), so the commit clock follows the
oldest record still waiting. Record format and the reader: dqueue_reader.
"""

import os
import struct

from dqueue_fs import META_BYTES, blocks_for, tail_fill
from dqueue_reader import HDR, MAX_PAYLOAD, OK, END, TORN, BAD, FMT, SegReader, encode_into  # noqa: F401

_FMT = FMT
_SLOT_BYTES = 24  # buffer bytes per arrival-tick slot (room() also counts slots)


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
        self.verify = False  # a write failed: check segs[-1]'s size before appending again
        self.buf = bytearray(pend_bytes)  # records waiting for the commit: buf[p0:p1]
        self.p0 = 0
        self.p1 = 0
        self.pcount = 0
        # Most records the buffer holds: one tick slot per 24 bytes, not per
        # HDR (16). The firmware's records are 28 (event) to 38 (position)
        # bytes, so the buffer fills by bytes first and the rings of both
        # lanes cost 852 bytes, not 1,280 (docs/memory.md); a buffer of
        # tinier records commits when its slots are full.
        self.cap = max(1, pend_bytes // _SLOT_BYTES)
        self.tk = bytearray(4 * self.cap)  # arrival tick of each buffered record, a ring from th
        self.th = 0
        self.bad = []  # (segno, off) of corrupt records already counted
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

    def footprint(self, bsize):
        """Flash bytes the segment files occupy on LittleFS: whole blocks plus
        their share of directory metadata."""
        n = META_BYTES * len(self.lens)
        for ln in self.lens:
            n += blocks_for(ln, bsize) * bsize
        return n

    # --- RAM buffer -----------------------------------------------------
    def put(self, rtype, flags, seq, ts, payload, now):
        """Buffer one record (room() must allow it) that arrived at tick `now`."""
        if self.p0 == self.p1:
            self.p0 = self.p1 = 0
        elif self.p1 + HDR + len(payload) > len(self.buf):
            self._compact()
        self.p1 = encode_into(self.buf, self.p1, rtype, flags, seq, ts, payload)
        struct.pack_into("<I", self.tk, 4 * ((self.th + self.pcount) % self.cap), now & 0x3FFFFFFF)
        self.pcount += 1

    def _compact(self):
        # Move buf[p0:p1] to the front in steps no longer than p0: never overlapping.
        mv = memoryview(self.buf)
        src = self.p0
        dst = 0
        while src < self.p1:
            k = min(self.p0, self.p1 - src)
            mv[dst:dst + k] = mv[src:src + k]
            src += k
            dst += k
        self.p1 -= self.p0
        self.p0 = 0

    def room(self):
        """Bytes a new record may take (dropped records free theirs too);
        0 while every tick slot is taken."""
        if self.pcount >= self.cap:
            return 0
        return len(self.buf) - (self.p1 - self.p0)

    def oldest_tick(self):
        """Arrival tick of the oldest buffered record (pcount > 0)."""
        t = self.tk
        i = 4 * self.th  # by bytes: no tuple allocated in the main loop's poll
        return t[i] | (t[i + 1] << 8) | (t[i + 2] << 16) | ((t[i + 3] & 0x3F) << 24)

    def _forget(self, k):
        self.pcount -= k
        self.th = (self.th + k) % self.cap

    def skip_pending(self, n):
        """Forget the n oldest buffered records; return how many went."""
        k = 0
        while k < n and self.p0 < self.p1:
            self.p0 += HDR + struct.unpack_from("<H", self.buf, self.p0 + 4)[0]
            k += 1
        self._forget(k)
        return k

    # --- writing ----------------------------------------------------------
    def seal(self):
        """No more appends to the current last segment (rolled, torn)."""
        self.close_handle()
        self.appendable = False

    def close_handle(self):
        """After a failed write: close the handle, check the file before the next append."""
        if self.wf is not None:
            self.verify = True
            try:
                self.wf.close()
            except OSError:  # the write that failed is already counted by the caller
                pass
            self.wf = None

    def write_some(self, seg_bytes, bsize=0):
        """Write buffered records that fit the current segment (opening or
        rolling one as needed), flush, and return the record count written.
        With bsize (LittleFS block size, normal lane) a partly filled last
        block more than half full is not appended to when the new bytes
        would run past it: a new segment costs no copy (docs/queue.md).
        Raises OSError; nothing is taken out of the buffer unless flushed."""
        first = HDR + struct.unpack_from("<H", self.buf, self.p0 + 4)[0]
        if self.appendable and self.verify and self.wf is None:
            if os.stat(self.fname(self.segs[-1]))[6] != self.lens[-1]:  # may raise: checked again next time
                self.seal()  # a failed write left bytes behind: never append after them
            self.verify = False
        if self.appendable and self.lens[-1]:
            ln = self.lens[-1]
            fill = tail_fill(ln, bsize) if bsize else 0
            if ln + first > seg_bytes or (fill and 2 * fill >= bsize and fill + self.p1 - self.p0 > bsize):
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
        self._forget(k)
        self.gen += 1
        return k

    def remove_head(self):
        """Delete the oldest segment file; return its unacknowledged record count."""
        lost = self.nrec[0] - self.acked_in(0)
        if self.segs[0] == self.cur_seg:
            self.head_acked = 0
        if len(self.segs) == 1:
            self.seal()
        segno = self.segs[0]
        name = self.fname(segno)
        for b in self.bad:
            if b[0] == segno:
                self.bad.remove(b)
                break
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
                            if r == END:
                                break
                            at = rd.off
                            if rd.resync(last if last > 0 else 0):
                                self.note_bad(segno, at, i, q)  # rotted since boot: one record lost
                                continue
                            q.stats["crc_errors"] += 1  # nothing good after it: the segment ends here
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

    def note_bad(self, segno, off, i, q):
        """Count a corrupt record once (recovery may have counted it already)."""
        for b in self.bad:
            if b[0] == segno and b[1] == off:
                return
        self.bad.append((segno, off))
        q.stats["crc_errors"] += 1
        q.stats["dropped_corrupt"] += 1
        if i >= 0:
            self.nrec[i] -= 1

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
