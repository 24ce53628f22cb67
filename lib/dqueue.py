"""Durable store-and-forward queue on the board's filesystem (LittleFS).

Every reading waits here until the broker acknowledged it. Two lanes of
append-only segment files (priority: stop visits, counts, events; normal:
positions), records with length, type, flags, seq, ts and CRC32, a small
persisted cursor file (two alternating copies), group commit, recovery that
cuts torn tails, skips a corrupt record (counted) and never delivers an
acknowledged one, segments sized to LittleFS' real layout, and a budget
(capped by the measured free space) that drops the oldest positions first.
Format, capacity maths and measured figures: docs/queue.md.
"""

import os
import struct
import time
from binascii import crc32

from dqueue_fs import BLOCK, SEG_BLOCKS, capacity, names as _names, statfs
from dqueue_lane import Lane
from dqueue_reader import SegReader, HDR, MAX_PAYLOAD

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
except AttributeError:  # plain CPython without the fakes
    def _ticks_ms():
        return int(time.monotonic() * 1000) & 0x3FFFFFFF

    def _ticks_diff(a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

# 4 MB board, 2 MiB LittleFS: 7 days of positions every 15 s over 16 service
# hours (995 KB) plus a week of stop visits (246 KB), leaving ~0.5 MiB for code.
DEFAULT_BUDGET = const(1572864)
DEFAULT_SEGMENT = const(16368)  # what 4 LittleFS blocks of 4096 bytes hold (skip-list pointers)
SEQ_STEP = const(64)  # seq numbers reserved on flash ahead of use
_ENOSPC = const(28)
_STATE_FMT = "<IIIIII"  # gen, prio seg, prio off, normal seg, normal off, seq reserve; then crc32
_STATE_LEN = const(28)  # also in dqueue_boot
_BIG = const(0x7FFFFFFF)
_U32 = const(0xFFFFFFFF)


class DurableQueue:
    def __init__(self, path, budget_bytes=DEFAULT_BUDGET, segment_bytes=None,
                 commit_ms=30000, commit_records=None, priority_types=(2, 3, 4),
                 ticks_ms=None, pending_bytes_max=4096, keep_free_bytes=0):
        self.path = path
        self.budget_bytes = budget_bytes  # lowered at boot to what the filesystem has free
        # Room the queue never takes, beyond LittleFS' own: e.g. a staged
        # over-the-air release (transit.app, docs/ota.md).
        self.keep_free_bytes = keep_free_bytes
        fs = statfs((path.rsplit("/", 1)[0] or "/") if "/" in path else ".")
        bsize = fs[0] if fs else BLOCK
        self.segment_bytes = segment_bytes or capacity(SEG_BLOCKS, bsize)
        # Whole-block accounting and the no-copy placement apply when segments span blocks.
        self._bsize = bsize if self.segment_bytes >= bsize else 0
        self._fs_free = fs[1] if fs else -1
        self.commit_ms = commit_ms
        self.commit_records = commit_records
        self.priority_types = tuple(priority_types)
        self._ticks = ticks_ms or _ticks_ms
        self.stats = {
            "appended": 0, "committed": 0, "acked": 0, "acked_in_ram": 0,
            "dropped_positions": 0, "dropped_priority": 0, "crc_errors": 0,
            "torn_tails": 0, "enospc": 0, "io_errors": 0, "recover_ms": 0,
            "recovered": 0, "bytes_written": 0, "commits": 0, "state_writes": 0,
            "segments_deleted": 0, "dropped_corrupt": 0,
        }
        self._rd = SegReader()
        self._prio = Lane(path, "p", max(1024, HDR + MAX_PAYLOAD))
        self._norm = Lane(path, "n", max(pending_bytes_max, HDR + MAX_PAYLOAD))
        self._fail_at = 0  # ticks of the last failed commit
        self._failed = False
        self._gen = 0
        self._reserve = 0
        self._saved_reserve = 0  # RAM records above it are not delivered: their seq could come again
        self._state_dirty = False
        self.last_seq = 0
        t0 = self._ticks()
        from dqueue_boot import recover  # boot only: a module the application may drop after start-up
        recover(self)
        self.stats["recover_ms"] = _ticks_diff(self._ticks(), t0)

    # --- public API ---------------------------------------------------
    def append(self, rtype, payload, ts=0, flags=0):
        """Queue one record; return its seq. Priority types are on flash on return
        (unless the flash fails: then they wait in RAM and the error is counted)."""
        n = len(payload)
        if n > MAX_PAYLOAD:
            raise ValueError("payload too long")
        seq = (self.last_seq + 1) & _U32
        if seq > self._reserve:  # persist the reservation first: no seq is ever handed out twice
            self._reserve = seq + SEQ_STEP - 1
            self._save_state()
        self.last_seq = seq
        prio = rtype in self.priority_types
        lane = self._prio if prio else self._norm
        if lane.room() < HDR + n:
            self._commit_lane(lane)
            while lane.room() < HDR + n:  # flash refuses: the oldest waiting records give way
                self._drop_pending(lane, 1)
        lane.put(rtype, flags, seq, ts & _U32, payload, self._ticks())
        self.stats["appended"] += 1
        if prio:
            self._commit_lane(lane)
        return seq

    def poll(self):
        """Commit when the normal lane is due (commit_ms or commit_records) and
        retry what failed before. Call every main-loop step."""
        now = self._ticks()
        n = self._norm
        if self._failed:  # after a flash error, retry once per commit_ms
            due = _ticks_diff(now, self._fail_at) >= self.commit_ms and (
                self._prio.pcount or n.pcount or self._state_dirty)
        else:  # the oldest waiting record's own age: acks in RAM move it on
            due = self._prio.pcount or (n.pcount and (
                _ticks_diff(now, n.oldest_tick()) >= self.commit_ms
                or (self.commit_records and n.pcount >= self.commit_records)))
        if due:
            if self.commit() and self._state_dirty:
                self._save_state()

    def commit(self):
        """Write everything buffered to flash now; True when nothing is left in RAM."""
        self._failed = False
        return self._commit_lane(self._prio) and self._commit_lane(self._norm)

    def pending_bytes(self):
        """Bytes buffered in RAM, not yet on flash."""
        return (self._prio.p1 - self._prio.p0) + (self._norm.p1 - self._norm.p0)

    def peek(self, max_records=32, max_bytes=4096):
        """Oldest unacknowledged records, priority lane first: a list of
        (seq, rtype, flags, ts, payload). max_bytes counts payload bytes; the
        first record is returned even when larger."""
        out = []
        for lane in (self._prio, self._norm):
            lane.inflight = None
            left = max_records - len(out)
            if left <= 0:
                break
            try:
                lane.walk(self._rd, out, left, max_bytes, _BIG, self, self._saved_reserve)
            except OSError:  # unreadable flash: deliver what was read, count it
                self.stats["io_errors"] += 1
                break
            max_bytes -= lane.w_bytes
            if lane.w_n or lane.w_ram:
                lane.inflight = (lane.w_last, lane.gen, lane.w_seg, lane.w_off, lane.w_n, lane.w_ram)
        return out

    def ack(self, batch):
        """Acknowledge records from peek (all of each lane up to its highest seq
        in batch); the cursor is on flash when this returns."""
        sp = sn = -1
        for rec in batch:
            if rec[1] in self.priority_types:
                sp = max(sp, rec[0])
            else:
                sn = max(sn, rec[0])
        moved = False
        for lane, s in ((self._prio, sp), (self._norm, sn)):
            if s < 0:
                continue
            fl = lane.inflight
            if fl and fl[0] == s and fl[1] == lane.gen:
                seg, off, nf, nr = fl[2], fl[3], fl[4], fl[5]
            else:  # stale or partial: find the records again
                try:
                    lane.walk(self._rd, None, _BIG, _BIG, s, self)
                except OSError:
                    self.stats["io_errors"] += 1
                    continue
                seg, off, nf, nr = lane.w_seg, lane.w_off, lane.w_n, lane.w_ram
            lane.inflight = None
            lane.advance(seg, off, nf, nr)
            self.stats["acked"] += nf + nr
            self.stats["acked_in_ram"] += nr
            moved = moved or nf > 0
        if moved:
            self._save_state()
            self._reap()

    def depth(self):
        """Records not yet acknowledged (on flash and in RAM)."""
        return (self._prio.flash_count() + self._prio.pcount
                + self._norm.flash_count() + self._norm.pcount)

    def oldest_ts(self):
        """Smallest known time stamp (flags bit0 clear) among the lanes' oldest
        records, or None."""
        best = None
        for lane in (self._prio, self._norm):
            got = []
            try:
                lane.walk(self._rd, got, 1, _BIG, _BIG, self)
            except OSError:
                self.stats["io_errors"] += 1
            if got and not got[0][2] & 1 and (best is None or got[0][3] < best):
                best = got[0][3]
        return best

    def used_bytes(self):
        """Record bytes on flash."""
        return self._prio.flash_bytes() + self._norm.flash_bytes()

    def flash_bytes(self):
        """Flash the segments occupy, counted against budget_bytes: whole
        blocks when segments span blocks (LittleFS), else record bytes."""
        b = self._bsize
        if not b:
            return self.used_bytes()
        return self._prio.footprint(b) + self._norm.footprint(b)

    def close(self):
        self.commit()
        self._prio.seal()
        self._norm.seal()

    # --- commit and capacity -------------------------------------------
    def _commit_lane(self, lane):
        retried = False
        while lane.pcount:
            if not self._make_room(lane):
                return True  # the records gave way to older ones (counted)
            left = lane.p1 - lane.p0
            try:
                k = lane.write_some(self.segment_bytes, self._bsize if lane is self._norm else 0)
            except OSError as e:
                lane.close_handle()  # the next write checks the file and appends to it again
                if e.args and e.args[0] == _ENOSPC:
                    self.stats["enospc"] += 1
                    if not retried and self._drop_oldest(lane is self._prio):
                        retried = True
                        continue
                else:
                    self.stats["io_errors"] += 1
                self._failed = True
                self._fail_at = self._ticks()
                return False
            self.stats["committed"] += k
            self.stats["commits"] += 1
            self.stats["bytes_written"] += left - (lane.p1 - lane.p0 if lane.pcount else 0)
        self._reap()
        return True

    def _make_room(self, lane):
        """Keep the budget: drop oldest positions, then (for priority records
        only) buffered positions, then oldest priority segments. False when the
        waiting records themselves were dropped."""
        need = lane.p1 - lane.p0
        while self.flash_bytes() + need > self.budget_bytes:
            if self._drop_oldest(lane is self._prio):
                continue
            if lane is self._norm:
                self._drop_pending(lane, lane.pcount)
                return False
            break  # nothing left to drop: try anyway, ENOSPC is handled
        return True

    def _drop_oldest(self, for_priority):
        """Delete the oldest segment allowed by the policy; True if one went."""
        norm, prio = self._norm, self._prio
        if norm.segs:
            lane, key = norm, "dropped_positions"
        elif for_priority and norm.pcount:
            self._drop_pending(norm, norm.pcount)
            return True
        elif for_priority and prio.segs:
            lane, key = prio, "dropped_priority"
        else:
            return False
        try:
            self.stats[key] += lane.remove_head()
            self.stats["segments_deleted"] += 1
        except OSError:
            self.stats["io_errors"] += 1
        return True

    def _drop_pending(self, lane, n):
        key = "dropped_priority" if lane is self._prio else "dropped_positions"
        self.stats[key] += lane.skip_pending(n)

    def _reap(self):
        for lane in (self._prio, self._norm):
            while lane.reapable(self.segment_bytes):
                try:
                    lane.remove_head()
                    self.stats["segments_deleted"] += 1
                except OSError:
                    self.stats["io_errors"] += 1

    # --- persisted state ---------------------------------------------------
    def _save_state(self):
        """Write cursors and the seq reservation to the older of two copies."""
        p, n = self._prio, self._norm
        self._gen = (self._gen + 1) & _U32
        b = bytearray(_STATE_LEN)
        struct.pack_into(_STATE_FMT, b, 0, self._gen, p.cur_seg, p.cur_off, n.cur_seg, n.cur_off, self._reserve)
        struct.pack_into("<I", b, 24, crc32(memoryview(b)[:24]))
        try:
            with open("%s/state%d" % (self.path, self._gen & 1), "wb") as f:
                f.write(b)
            self.stats["state_writes"] += 1
            self._saved_reserve = self._reserve
            self.stats["bytes_written"] += _STATE_LEN
            self._state_dirty = False
        except OSError as e:
            self._state_dirty = True
            self.stats["enospc" if e.args and e.args[0] == _ENOSPC else "io_errors"] += 1

    def _remove(self, name):
        try:
            os.remove(name)
            self.stats["segments_deleted"] += 1
        except OSError:
            self.stats["io_errors"] += 1
