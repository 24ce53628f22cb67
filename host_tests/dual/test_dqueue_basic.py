"""Durable queue API on an ordinary folder: CPython and the unix port (64K heap).

Reboots are simulated by dropping the queue object (its RAM buffer is lost)
and opening a new one on the same folder. Power cuts and a full LittleFS are
tested in host_tests/test_dqueue.py on real VfsLfs2.
"""

import gc
import os
import struct
from binascii import crc32

from dqueue import DurableQueue, SEQ_STEP
from dqueue_lane import encode_into

POS, STOP, COUNT, EVENT = 1, 2, 3, 4
MP_HEAP = "128K"  # this module is compiled from source in the same heap; the queue itself needs ~8 KB


def _fresh_dir():
    try:
        import tempfile
        return tempfile.mkdtemp(prefix="dq_")
    except ImportError:  # unix port: the current directory is the system temp dir
        import random
        d = "dq_%d" % random.getrandbits(30)
        os.mkdir(d)
        return d


def _rmtree(d):
    for name in os.listdir(d):
        os.remove(d + "/" + name)
    os.rmdir(d)


class _Ticks:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


def _open(d, ticks=None, **kw):
    gc.collect()  # a dropped queue's 4 KiB buffer is free again before the next one
    return DurableQueue(d + "/q", ticks_ms=ticks or _Ticks(), **kw)


def _reboot(q, d, ticks=None, **kw):
    """Power lost: whatever q holds in RAM is gone; only the folder remains."""
    q._prio.seal()
    q._norm.seal()
    return _open(d, ticks, **kw)


def _pos(i):
    return struct.pack("<iiH", 16820000 + i, 100250000 - i, i & 0xFFFF)


def _segments(d):
    return sorted(n for n in os.listdir(d + "/q") if n[0] in "pn")


def test_record_layout_matches_the_golden_bytes():
    buf = bytearray(32)
    end = encode_into(buf, 0, POS, 1, 0x01020304, 1795768000, b"\x01\x02\x03")
    assert end == 19
    assert bytes(buf[:end]) == bytes.fromhex("c7ae8880" "0300" "01" "01" "04030201" "c03e096b" "010203")
    assert crc32(bytes(buf[4:end])) == 0x8088AEC7
    end = encode_into(buf, 0, STOP, 0, 1, 0, b"")
    assert bytes(buf[:end]) == bytes.fromhex("cc168ab3" "0000" "02" "00" "01000000" "00000000")


def test_priority_records_come_first_then_positions_oldest_first():
    d = _fresh_dir()
    try:
        q = _open(d)
        seqs = [q.append(POS, _pos(i), ts=1000 + i) for i in range(3)]
        s_stop = q.append(STOP, b"stop-1", ts=2000)
        seqs.append(q.append(POS, _pos(3), ts=1003))
        s_ev = q.append(EVENT, b"ev", ts=2001, flags=1)
        got = q.peek(10, 4096)
        assert [r[0] for r in got] == [s_stop, s_ev] + seqs
        assert got[0] == (s_stop, STOP, 0, 2000, b"stop-1")
        assert got[1] == (s_ev, EVENT, 1, 2001, b"ev")
        assert got[2] == (seqs[0], POS, 0, 1000, _pos(0))
        assert seqs == [1, 2, 3, 5] and (s_stop, s_ev) == (4, 6)
        assert q.depth() == 6 and q.last_seq == 6
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_priority_records_are_durable_at_once_positions_after_commit():
    d = _fresh_dir()
    try:
        q = _open(d)
        q.append(POS, _pos(0))
        q.append(STOP, b"stop")
        assert q.pending_bytes() == 16 + 10
        q = _reboot(q, d)
        got = q.peek(10, 4096)
        assert [(r[0], r[1]) for r in got] == [(2, STOP)]
        q.append(POS, _pos(1))
        assert q.commit() is True and q.pending_bytes() == 0
        q = _reboot(q, d)
        assert [(r[1], r[4]) for r in q.peek(10, 4096)] == [(STOP, b"stop"), (POS, _pos(1))]
        assert q.stats["recovered"] == 2
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_seq_is_monotonic_across_reboots_and_never_handed_out_twice():
    d = _fresh_dir()
    try:
        q = _open(d)
        for i in range(5):
            q.append(POS, _pos(i))  # never committed: lost at the reboot
        assert q.last_seq == 5
        q = _reboot(q, d)
        assert q.last_seq == SEQ_STEP  # the reservation on flash, not the lost records
        assert q.append(POS, _pos(9)) == SEQ_STEP + 1
        for i in range(SEQ_STEP):
            q.append(POS, _pos(i))
        q.commit()
        top = q.last_seq
        q = _reboot(q, d)
        assert q.last_seq >= top
        assert q.append(STOP, b"s") == q.last_seq and q.last_seq > top
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_group_commit_waits_for_commit_records_or_commit_ms():
    d = _fresh_dir()
    t = _Ticks()
    try:
        q = _open(d, t, commit_records=4, commit_ms=10000)
        for i in range(3):
            q.append(POS, _pos(i))
            q.poll()
        assert q.pending_bytes() == 3 * 26 and q.stats["committed"] == 0
        q.append(POS, _pos(3))
        q.poll()  # the 4th record makes the batch due
        assert q.pending_bytes() == 0 and q.stats["committed"] == 4 and q.stats["commits"] == 1
        q.append(POS, _pos(4))
        t.now = 9999
        q.poll()
        assert q.pending_bytes() == 26
        t.now = 10000  # the oldest buffered record has waited commit_ms
        q.poll()
        assert q.pending_bytes() == 0 and q.stats["committed"] == 5
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_peek_limits_records_and_payload_bytes_but_always_returns_one():
    d = _fresh_dir()
    try:
        q = _open(d)
        for i in range(6):
            q.append(POS, _pos(i))  # 10-byte payloads
        assert len(q.peek(4, 4096)) == 4
        assert [r[0] for r in q.peek(10, 25)] == [1, 2]
        assert [r[0] for r in q.peek(10, 3)] == [1]  # larger than max_bytes, still delivered
        assert q.peek(0, 4096) == []
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_ack_removes_exactly_the_peeked_records_and_survives_a_reboot():
    d = _fresh_dir()
    try:
        q = _open(d)
        for i in range(5):
            q.append(POS, _pos(i))
        q.append(COUNT, b"gate")
        q.commit()
        batch = q.peek(3, 4096)
        assert [r[0] for r in batch] == [6, 1, 2]
        q.ack(batch)
        assert q.depth() == 3 and q.stats["acked"] == 3
        assert [r[0] for r in q.peek(10, 4096)] == [3, 4, 5]
        q = _reboot(q, d)
        assert [r[0] for r in q.peek(10, 4096)] == [3, 4, 5]
        assert q.depth() == 3
        q.ack(q.peek(1, 4096)[:1])
        q.ack(q.peek(10, 4096))
        assert q.depth() == 0 and q.peek(10, 4096) == []
        q = _reboot(q, d)
        assert q.depth() == 0 and q.peek(10, 4096) == []
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_a_prefix_of_a_stale_batch_can_be_acknowledged():
    d = _fresh_dir()
    try:
        q = _open(d)
        for i in range(6):
            q.append(POS, _pos(i))
        batch = q.peek(6, 4096)  # still in RAM
        q.commit()  # now on flash: the peek's positions are stale
        q.ack(batch[:4])
        assert [r[0] for r in q.peek(10, 4096)] == [5, 6]
        q = _reboot(q, d)
        assert [r[0] for r in q.peek(10, 4096)] == [5, 6]
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_records_acknowledged_while_in_ram_are_never_written():
    d = _fresh_dir()
    try:
        q = _open(d)
        for i in range(3):
            q.append(POS, _pos(i))
        q.ack(q.peek(10, 4096))
        assert q.pending_bytes() == 0 and q.depth() == 0
        assert q.stats["acked_in_ram"] == 3 and q.stats["committed"] == 0
        q.commit()
        assert _segments(d) == []
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_acknowledged_segments_are_deleted_whole():
    d = _fresh_dir()
    try:
        q = _open(d, segment_bytes=256)  # 9 records of 26 bytes per segment
        for i in range(30):
            q.append(POS, _pos(i))
        q.commit()
        assert _segments(d) == ["n00000001", "n00000002", "n00000003", "n00000004"]
        q.ack(q.peek(10, 4096))
        assert _segments(d) == ["n00000002", "n00000003", "n00000004"]
        q.ack(q.peek(20, 4096))
        assert _segments(d) == ["n00000004"]  # the last one still takes records
        assert q.depth() == 0 and q.stats["segments_deleted"] == 3
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_torn_tail_is_cut_counted_and_never_appended_to():
    d = _fresh_dir()
    try:
        q = _open(d)
        for i in range(4):
            q.append(POS, _pos(i))
        q.commit()
        q._norm.seal()
        with open(d + "/q/n00000001", "ab") as f:  # a record whose write never finished
            f.write(bytes.fromhex("11223344" "1a00" "01" "00" "05000000"))
        q = _reboot(q, d)
        assert q.stats["torn_tails"] == 1 and q.depth() == 4
        q.append(POS, _pos(4))
        q.commit()
        q = _reboot(q, d)
        assert [r[0] for r in q.peek(10, 4096)] == [1, 2, 3, 4, SEQ_STEP + 1]
        assert _segments(d) == ["n00000001", "n00000002"]
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_a_corrupt_record_is_never_delivered():
    d = _fresh_dir()
    try:
        q = _open(d, segment_bytes=78)  # 3 records per segment
        for i in range(6):
            q.append(POS, _pos(i))
        q.commit()
        q._norm.seal()
        with open(d + "/q/n00000001", "r+b") as f:  # flip one payload byte of record 2
            f.seek(26 + 16 + 3)
            b = f.read(1)
            f.seek(26 + 16 + 3)
            f.write(bytes([b[0] ^ 0x40]))
        q = _reboot(q, d, segment_bytes=78)
        got = q.peek(10, 4096)
        assert [r[0] for r in got] == [1, 3, 4, 5, 6]  # one record lost, counted
        assert q.stats["crc_errors"] == 1 and q.stats["dropped_corrupt"] == 1
        assert got[0][4] == _pos(0) and got[1][4] == _pos(2)
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_budget_drops_oldest_positions_first_and_keeps_stop_visits():
    d = _fresh_dir()
    try:
        q = _open(d, budget_bytes=1024, segment_bytes=260)  # 10 position records per segment
        stops = [q.append(STOP, b"s%02d" % i) for i in range(4)]  # 4 x 19 bytes
        for i in range(60):
            q.append(POS, _pos(i))
            if i % 10 == 9:
                q.commit()
        assert q.used_bytes() <= 1024
        got = q.peek(100, 1 << 20)
        assert [r[0] for r in got[:4]] == stops
        positions = [r[0] for r in got[4:]]
        assert positions == list(range(35, 65))  # the three oldest segments went
        assert q.stats["dropped_positions"] == 30 and q.stats["dropped_priority"] == 0
        assert q.depth() == 34
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_positions_never_push_out_stop_visits():
    d = _fresh_dir()
    try:
        q = _open(d, budget_bytes=300, segment_bytes=256)
        stops = [q.append(STOP, bytes(40)) for i in range(5)]  # 5 x 56 bytes = 280
        for i in range(3):
            q.append(POS, _pos(i))
        q.commit()
        assert [r[0] for r in q.peek(100, 1 << 20)] == stops
        assert q.stats["dropped_positions"] == 3 and q.stats["dropped_priority"] == 0
        s6 = q.append(STOP, bytes(40))  # only now may the oldest stop visits go: one segment of 4
        assert q.stats["dropped_priority"] == 4
        assert [r[0] for r in q.peek(100, 1 << 20)] == [stops[4], s6]
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_depth_and_oldest_ts_follow_the_records():
    d = _fresh_dir()
    try:
        q = _open(d)
        assert q.depth() == 0 and q.oldest_ts() is None
        q.append(POS, _pos(0), ts=500, flags=1)  # time not known yet: not a time stamp
        q.append(POS, _pos(1), ts=1700000100)
        q.append(STOP, b"s", ts=1700000050)
        assert q.depth() == 3 and q.oldest_ts() == 1700000050
        q.ack(q.peek(1, 4096))
        assert q.oldest_ts() is None  # the oldest left has no real time
        q.ack(q.peek(1, 4096))
        assert q.oldest_ts() == 1700000100 and q.depth() == 1
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_oversized_payload_is_refused():
    d = _fresh_dir()
    try:
        q = _open(d)
        try:
            q.append(EVENT, bytes(1009))
        except ValueError:
            assert q.last_seq == 0 and q.depth() == 0
            return
        assert False, "a payload over 1008 bytes must raise ValueError"
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def _failing_writes(lane, err=5):
    """Make every commit of a lane fail as a full or broken flash would (EIO 5, ENOSPC 28)."""
    def fail(*a):
        raise OSError(err)
    lane.write_some = fail


def test_a_full_buffer_with_failing_commits_drops_oldest_and_never_raises():
    d = _fresh_dir()
    try:
        q = _open(d, pending_bytes_max=512)  # 19 positions of 26 bytes
        _failing_writes(q._norm)
        for i in range(200):
            q.append(POS, _pos(i), ts=i)  # must never raise ValueError('buffer too small')
            q.poll()
        assert q.stats["io_errors"] > 0
        assert q.stats["dropped_positions"] + q._norm.pcount == 200
        got = q.peek(100, 1 << 20)
        assert [r[3] for r in got] == list(range(200 - len(got), 200))  # the newest are kept
        room = len(q._norm.buf)  # 512 asked for; at least one largest record's worth is kept
        assert len(got) >= room // 26 - 1 and q.pending_bytes() <= room
        del q._norm.write_some  # the flash works again
        assert q.commit() and q.depth() == len(got)
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_positions_acknowledged_in_ram_move_the_commit_clock_link_up_writes_nothing():
    d = _fresh_dir()
    t = _Ticks()
    try:
        # the firmware's policy: commit after 90 s; the uplink drains 40 records at a
        # time, and positions keep coming while a batch waits for its PUBACK
        q = _open(d, t, commit_ms=90000, commit_records=None)
        inflight = None
        for s in range(3600):
            t.now = s * 1000
            q.append(POS, _pos(s), ts=s)
            q.poll()
            if inflight is not None and s % 40 == 2:  # PUBACK two seconds later
                q.ack(inflight)
                inflight = None
            if inflight is None and q.depth() >= 40:
                inflight = q.peek(40, 4096)
        assert q.stats["committed"] == 0 and q.stats["commits"] == 0, q.stats
        assert _segments(d) == [] and q.stats["acked_in_ram"] >= 3500
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_a_record_in_ram_still_commits_within_commit_ms_after_others_were_acked():
    d = _fresh_dir()
    t = _Ticks()
    try:
        q = _open(d, t, commit_ms=90000, commit_records=None)
        q.append(POS, _pos(0))
        batch = q.peek(1, 4096)
        t.now = 50000
        q.append(POS, _pos(1))  # arrives at 50 s
        q.ack(batch)
        t.now = 139999
        q.poll()
        assert q.stats["committed"] == 0
        t.now = 140000  # 90 s after its own arrival
        q.poll()
        assert q.stats["committed"] == 1 and q.pending_bytes() == 0
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_failed_commits_keep_appending_to_the_same_segment():
    d = _fresh_dir()
    t = _Ticks()
    try:
        q = _open(d, t, commit_ms=1000)
        real = q._prio.write_some
        for i in range(20):  # every other stop visit meets a full flash, retried at the next poll
            if i % 2:
                _failing_writes(q._prio, 5)
            q.append(STOP, b"stop-%02d" % i, ts=i)
            if i % 2:
                q._prio.write_some = real
            t.now += 1000
            q.poll()
        assert q.stats["io_errors"] == 10 and q.pending_bytes() == 0
        assert _segments(d) == ["p00000001"], _segments(d)
        q = _reboot(q, d)
        assert [r[4] for r in q.peek(30, 4096)] == [b"stop-%02d" % i for i in range(20)]
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def _flip(path, at, mask):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ mask]))


def test_a_flipped_bit_loses_one_record_counted_and_the_rest_of_the_segment_is_kept():
    for at, mask in ((10 * 26 + 16 + 3, 0x40), (10 * 26 + 4, 0x08), (10 * 26 + 5, 0x02)):  # payload, length lo/hi
        d = _fresh_dir()
        try:
            q = _open(d)
            for i in range(50):
                q.append(POS, _pos(i), ts=i)
            q.commit()
            q = _reboot(q, d)
            _flip(d + "/q/n00000001", at, mask)
            q = _reboot(q, d)
            got = q.peek(100, 1 << 20)
            assert [r[0] for r in got] == [s for s in range(1, 51) if s != 11], (at, [r[0] for r in got])
            assert q.depth() == 49 and q.stats["crc_errors"] == 1 and q.stats["dropped_corrupt"] == 1
            assert got[10][4] == _pos(11)
            q.ack(got[:20])
            q = _reboot(q, d)
            assert [r[0] for r in q.peek(100, 1 << 20)] == list(range(22, 51))
        finally:
            _rmtree(d + "/q")
            _rmtree(d)


def test_a_bit_flipped_after_boot_is_skipped_counted_once():
    d = _fresh_dir()
    try:
        q = _open(d)
        for i in range(30):
            q.append(POS, _pos(i), ts=i)
        q.commit()
        q._norm.seal()
        _flip(d + "/q/n00000001", 5 * 26 + 16 + 1, 0x01)
        for _ in range(3):
            got = q.peek(100, 1 << 20)
            assert [r[0] for r in got] == [s for s in range(1, 31) if s != 6]
        assert q.stats["crc_errors"] == 1 and q.stats["dropped_corrupt"] == 1 and q.depth() == 29
        q.ack(got)
        assert q.depth() == 0
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_a_failed_write_that_left_bytes_behind_starts_a_new_segment():
    d = _fresh_dir()
    try:
        q = _open(d)
        q.append(STOP, b"a")
        _failing_writes(q._prio)
        q.append(STOP, b"b")  # the write fails...
        with open(d + "/q/p00000001", "ab") as f:  # ...after a few bytes reached the file
            f.write(b"\x01\x02\x03")
        del q._prio.write_some
        assert q.commit()
        assert _segments(d) == ["p00000001", "p00000002"]
        q = _reboot(q, d)
        assert [r[4] for r in q.peek(10, 4096)] == [b"a", b"b"] and q.stats["torn_tails"] == 1
    finally:
        _rmtree(d + "/q")
        _rmtree(d)


def test_tiny_records_fill_the_tick_slots_before_the_bytes_and_commit_early():
    """The RAM buffer keeps one arrival-tick slot per 24 bytes (dqueue_lane):
    records smaller than that commit when the slots are full, nothing is lost."""
    d = _fresh_dir()
    try:
        t = _Ticks()
        q = _open(d, t, commit_ms=600000)
        cap = q._norm.cap
        assert cap == 4096 // 24
        for i in range(3 * cap):
            q.append(POS, b"", ts=i)
            t.now += 10
            q.poll()
        assert q.depth() == 3 * cap and q._norm.pcount <= cap
        assert q.stats["commits"] >= 2  # full slots committed, long before commit_ms
        got = q.peek(40, 1 << 20)
        assert [r[3] for r in got] == list(range(40))  # oldest first, none lost
        q = _reboot(q, d, t, commit_ms=600000)
        assert q.depth() >= 2 * cap  # what was committed survived (the RAM tail may go)
    finally:
        _rmtree(d + "/q")
        _rmtree(d)
