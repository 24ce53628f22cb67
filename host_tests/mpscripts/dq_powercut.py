# Random power cuts during appends, reads and acknowledgements of the durable
# queue on LittleFS over a RAM block device (4096-byte blocks).
# Usage: micropython dq_powercut.py CUTS SEED
# After each cut: remount, recover, check the model, print one line at the end:
#   RESULT cuts=<n> cycles=<n> appended=<n> delivered=<n> lost_uncommitted=<n> ...
import gc
import sys
import random
import vfs
from blockdev import RAMBlockDev
from dqueue import DurableQueue

CUTS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 1
random.seed(SEED)
PRIO = (2, 3, 4)
MNT = "/flash"

def rtype_of(seq):
    return 1 if ((seq * 2654435761) >> 7) % 10 < 7 else 2 + seq % 3

def payload_of(seq):
    n = (seq * 13) % 57
    return bytes([(seq + i * 31) & 255 for i in range(n)])

bd = RAMBlockDev(48)
vfs.VfsLfs2.mkfs(bd)
TICK = [0]
cut_in = {}
totals = {}

def ticks():
    return TICK[0]

def boot(read_cut=-1):
    gc.collect()  # finalisers of the dead session's files run now, against the dead device
    bd.revive()
    try:
        vfs.umount(MNT)
    except OSError:
        pass
    if read_cut >= 0:  # the supply fails again while the board recovers
        bd.arm_reads(read_cut)
    q = None
    try:
        # no wall clock in the image (mtime) and a fresh session per power cycle: the
        # same run every time, whenever the GC finalises the dead session's files
        vfs.mount(vfs.VfsLfs2(bd.session(), mtime=False), MNT)
        q = DurableQueue(MNT + "/q", budget_bytes=96 * 1024, segment_bytes=8192, commit_ms=5000,
                         commit_records=8, priority_types=PRIO, ticks_ms=ticks, pending_bytes_max=1024)
    except OSError:
        assert bd.cut, "the filesystem does not mount"
    if bd.cut:
        cut_in["recovery"] = cut_in.get("recovery", 0) + 1
        if q is not None:
            q._prio.seal()
            q._norm.seal()
        q = None
        return boot()
    bd.disarm()
    return q

durable = set()    # committed, not acknowledged: must come back
acked = set()      # acknowledged for sure: must never come back
given = 0          # highest seq handed out in this session
safe = 0           # highest seq that was delivered or whose append completed: never reused
cuts = cycles = appended = delivered = redelivered = 0
ops = {"append": 0, "commit": 0, "poll": 0, "peek": 0, "ack": 0}

def check_batch(batch, where):
    # order: priority records first, each lane ascending; content exact
    lastp = lastn = -1
    seen_normal = False
    for seq, rt, fl, ts, pl in batch:
        assert rt == rtype_of(seq) and pl == payload_of(seq) and ts == seq * 10 and fl == (seq & 1), (where, "corrupt", seq)
        assert seq not in acked, (where, "acked record delivered again", seq)
        if rt in PRIO:
            assert not seen_normal, (where, "priority after a position", seq)
            assert seq > lastp, (where, "priority order", seq, lastp)
            lastp = seq
        else:
            seen_normal = True
            assert seq > lastn, (where, "position order", seq, lastn)
            lastn = seq

q = boot()
while cuts < CUTS:
    cycles += 1
    mode = random.getrandbits(2)  # where this cycle's cut is aimed
    if mode == 0:
        bd.arm_reads(random.getrandbits(7))
    elif mode == 1:  # small budgets land in cursor writes, large ones in commits
        bd.arm(random.getrandbits(random.getrandbits(3) + 6))
    inflight = None
    pend = []  # appended since the last successful commit (maybe durable)
    op = ""
    try:
        while not bd.cut:
            r = random.getrandbits(7)
            if r < 70:
                op = "append"
                seq = given + 1  # the queue hands out last_seq + 1
                rt = rtype_of(seq)
                got = q.append(rt, payload_of(seq), ts=seq * 10, flags=seq & 1)
                assert got == seq, ("seq not last_seq + 1", got, given)
                given = got
                if not bd.cut:  # the reservation of this seq reached flash
                    safe = max(safe, got)
                appended += 1
                if rt in PRIO and not bd.cut:
                    durable.add(seq)
                else:
                    pend.append(seq)
            elif r < 80:
                op = "commit"
                if mode == 3:
                    bd.arm(random.getrandbits(12))
                    mode = 1
                if q.commit() and not bd.cut:
                    durable.update(pend)
                    pend = []
            elif r < 95:
                op = "poll"
                TICK[0] += random.getrandbits(12)
                before = q.pending_bytes()
                q.poll()
                if q.pending_bytes() == 0 and before and not bd.cut:
                    durable.update(pend)
                    pend = []
            else:
                op = "peek"
                batch = q.peek(random.getrandbits(5) + 1, 600)
                check_batch(batch, "peek")
                for b in batch:
                    safe = max(safe, b[0])
                if bd.cut:
                    break
                op = "ack"
                if mode == 2:  # a cursor write is ~70 bytes, a segment delete a little more
                    bd.arm(random.getrandbits(7))
                    mode = 1
                inflight = [b[0] for b in batch]
                q.ack(batch)
                if not bd.cut:
                    for s in inflight:
                        acked.add(s)
                        durable.discard(s)
                        if s in pend:
                            pend.remove(s)
                    inflight = None
            ops[op] += 1
            assert bd.cut or q.stats["io_errors"] == 0, ("error without a cut", q.stats)
            if q.depth() > 150 and not bd.cut:  # keep each cycle small
                b = q.peek(150, 1 << 20)
                check_batch(b, "drain")
                inflight = [x[0] for x in b]
                op = "ack"
                q.ack(b)
                if not bd.cut:
                    for s in inflight:
                        acked.add(s)
                        durable.discard(s)
                        if s in pend:
                            pend.remove(s)
                    inflight = None
    except OSError:  # the cut reached the caller: the queue must count, not raise
        raise AssertionError("queue raised OSError to its caller in " + op)
    cuts += 1
    cut_in[op] = cut_in.get(op, 0) + 1
    for k in ("crc_errors", "torn_tails", "enospc", "dropped_positions", "dropped_priority"):
        totals[k] = totals.get(k, 0) + q.stats[k]
    # --- power back: remount and recover
    q._prio.seal()  # what the dead session still held
    q._norm.seal()
    q = None
    q = boot(random.getrandbits(6) if random.getrandbits(3) == 0 else -1)
    assert q.last_seq >= safe, ("seq went back", q.last_seq, safe)
    allrec = q.peek(10000, 1 << 30)
    assert len(allrec) == q.depth(), ("depth", len(allrec), q.depth())
    if inflight:
        for s in inflight:  # the batch in flight may come back, or not
            acked.discard(s)
    check_batch(allrec, "recovery")
    got = set(r[0] for r in allrec)
    missing = [s for s in durable if s not in got and not (inflight and s in inflight)]
    assert not missing, ("committed records lost", sorted(missing)[:10], op)
    if inflight:
        for s in inflight:
            if s not in got:
                acked.add(s)
            else:
                redelivered += 1
    durable = got
    delivered += len(allrec)
    given = safe = q.last_seq
    totals["recover_ms_max"] = max(totals.get("recover_ms_max", 0), q.stats["recover_ms"])

print("RESULT cuts=%d cycles=%d appended=%d acked=%d redelivered=%d" % (cuts, cycles, appended, len(acked), redelivered))
print("OPS", " ".join("%s=%d" % (k, ops[k]) for k in sorted(ops)))
print("CUT_IN", " ".join("%s=%d" % (k, cut_in[k]) for k in sorted(cut_in)))
print("TOTALS", " ".join("%s=%d" % (k, totals[k]) for k in sorted(totals)))
print("FLASH erases=%d programmed=%d" % (bd.erases, bd.bytes_programmed))
