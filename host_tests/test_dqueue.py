"""The durable queue on real LittleFS (vfs.VfsLfs2 in the MicroPython unix
port) over a RAM block device with 4096-byte blocks that can lose power at
any write or read (host_tests/fakes/blockdev.py). The scripts live in
host_tests/mpscripts/ and print key=value figures checked here."""

import os
import re

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "mpscripts")


def _run(mp, name, heap, *args):
    return mp.run(script=os.path.join(SCRIPTS, name), heap=heap, args=[str(a) for a in args], timeout=300)


def _figures(text):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", text)}


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_a_thousand_random_power_cuts_lose_no_committed_record_and_resend_no_acked_one(mp, seed):
    # The script asserts after every cut: the filesystem mounts, every committed
    # record is back, no acknowledged one is (beyond the batch in flight), each
    # record is byte-exact, priority first, each lane in order, seq never reused.
    res = _run(mp, "dq_powercut.py", "512K", 1000, seed)
    out = res.stdout
    result = _figures(out.split("RESULT", 1)[1].splitlines()[0])
    assert result["cuts"] == 1000 and result["cycles"] == 1000
    assert result["appended"] > 3000 and result["acked"] > 2000
    where = _figures(out.split("CUT_IN", 1)[1].splitlines()[0])
    # cuts landed in every kind of operation, including reads and recovery itself
    for op in ("append", "commit", "ack", "poll", "peek", "recovery"):
        assert where.get(op, 0) > 0, (op, where)
    assert where["ack"] >= 50 and where["recovery"] >= 50


def test_full_flash_drops_oldest_positions_keeps_stop_visits_and_resumes(mp):
    out = _run(mp, "dq_fullflash.py", "2M").stdout
    full = _figures(out.split("FULL", 1)[1].splitlines()[0])
    assert full["enospc"] == 3 and full["io_errors"] == 0  # ENOSPC handled, never fatal
    assert full["dropped_positions"] > 0 and full["dropped_priority"] == 0
    assert full["pending"] == 0
    f = _figures(out)
    assert f["stops_kept"] == f["stops"] == 204  # every stop visit survived
    assert f["accounted"] == f["appended"]  # each record is queued or counted as dropped
    drained = _figures(out.split("DRAINED", 1)[1].splitlines()[0])
    assert drained["depth"] == 0
    assert f["commit_ok"] == 1 and f["new_enospc"] == 0  # space freed: commits work again
    assert "after_reboot depth=200 first=b'after-000000' last=b'after-000199'" in out


def test_default_commit_policy_writes_at_most_3x_and_acks_rewrite_no_file(mp):
    f = _figures(_run(mp, "dq_wear.py", "1M").stdout)
    assert f["record"] == 37
    assert f["wa_x100"] <= 300, f  # flash bytes programmed per record byte, group commit of 64
    # an acknowledgement is one small metadata commit: no segment copy, no erase
    assert f["ack_bytes_per_ack"] <= 128 and f["ack_erases"] == 0, f
    assert f["priority_bytes_per_record"] < 4096, f


def test_recovery_of_a_queue_of_records_is_bounded_and_exact(mp):
    code = """
import vfs
from blockdev import RAMBlockDev
from dqueue import DurableQueue
bd = RAMBlockDev(160)
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), "/flash")
q = DurableQueue("/flash/q", commit_records=256)
for i in range(8000):
    q.append(2 if i % 50 == 0 else 1, bytes(21), ts=i)
    q.poll()
q.commit()
q.ack(q.peek(100, 1 << 20))
q.close()
q = None
vfs.umount("/flash")
vfs.mount(vfs.VfsLfs2(bd), "/flash")
bd.reset_counters()
q = DurableQueue("/flash/q")
print("depth=%d recovered=%d last_seq=%d crc_errors=%d torn_tails=%d erases=%d programmed=%d" % (
    q.depth(), q.stats["recovered"], q.last_seq, q.stats["crc_errors"], q.stats["torn_tails"],
    bd.erases, bd.bytes_programmed))
print("recover_ms=%d" % q.stats["recover_ms"])
"""
    f = _figures(mp.run(code, heap="1M").stdout)
    assert f["depth"] == f["recovered"] == 7900
    assert f["last_seq"] == 8000  # seq 7937 reserved up to 8000 (SEQ_STEP 64)
    assert f["crc_errors"] == 0 and f["torn_tails"] == 0
    assert f["erases"] == 0 and f["programmed"] == 0  # recovery only reads
