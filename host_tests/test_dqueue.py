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


# Seed 10 and 108 cut the power inside the directory listing of recovery (MicroPython's
# LittleFS ilistdir then yields empty names for ever: once a 128 KiB MemoryError).
@pytest.mark.parametrize("seed", [1, 7, 10, 23, 108])
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
    assert f["stops_kept"] == f["stops"] == 109  # every stop visit survived
    assert f["accounted"] == f["appended"]  # each record is queued or counted as dropped
    drained = _figures(out.split("DRAINED", 1)[1].splitlines()[0])
    assert drained["depth"] == 0
    assert f["commit_ok"] == 1 and f["new_enospc"] == 0  # space freed: commits work again
    assert "after_reboot depth=200 first=b'after-000000' last=b'after-000199'" in out


def test_default_commit_policy_writes_at_most_3x_and_acks_rewrite_no_file(mp):
    f = _figures(_run(mp, "dq_wear.py", "1M").stdout)
    assert f["record"] == 37
    assert f["wa_x100"] <= 300, f  # flash bytes programmed per record byte, a full buffer per commit
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


def test_the_power_cut_run_is_the_same_every_time(mp):
    # seeded, no wall clock (no file mtimes), a dead session cannot write after the
    # power is back whenever its files are collected: two runs print the same bytes
    a = _run(mp, "dq_powercut.py", "512K", 200, 10).stdout
    b = _run(mp, "dq_powercut.py", "512K", 200, 10).stdout
    assert a == b and "RESULT cuts=200" in a


def test_recovery_streams_the_folder_ignores_foreign_files_in_a_small_heap(mp, tmp_path):
    # another module's files beside the queue (an epoch file, say) are never touched,
    # and recovery never holds a list of every name: 1,500 of them in a 64K heap
    code = """
import os
from dqueue import DurableQueue
q = DurableQueue("q")
for i in range(40):
    q.append(2, b"stop-%d" % i)
q.close()
q = None
for i in range(1500):
    with open("q/epoch-or-other-%04d" % i, "w") as f:
        pass
import gc
gc.collect()
q = DurableQueue("q")
print("depth=%d io_errors=%d" % (q.depth(), q.stats["io_errors"]))
n = 0
for e in os.ilistdir("q"):
    n += 1
print("names=%d" % n)
"""
    f = _figures(mp.run(code, heap="64K", cwd=str(tmp_path)).stdout)
    assert f["depth"] == 40 and f["io_errors"] == 0
    assert f["names"] == 1500 + 1 + 1  # the foreign files, one segment, one state copy


def test_recovery_survives_a_read_error_inside_the_directory_listing(mp):
    code = """
import vfs
from blockdev import RAMBlockDev
from dqueue import DurableQueue
bd = RAMBlockDev(48)
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd, mtime=False), "/flash")
q = DurableQueue("/flash/q", segment_bytes=64)
for i in range(30):
    q.append(2, b"stop-%02d" % i + bytes(30))  # one stop visit per segment file: a long folder
q.close()
q = None
vfs.umount("/flash")
worst = 0
for k in range(0, 600, 5):  # the supply fails at the k-th read after the mount: in the listing too
    bd.revive()
    vfs.mount(vfs.VfsLfs2(bd, mtime=False), "/flash")
    bd.arm_reads(k)
    q = DurableQueue("/flash/q", segment_bytes=64)
    worst = max(worst, q.depth())
    q = None
    vfs.umount("/flash")
bd.revive()
vfs.mount(vfs.VfsLfs2(bd, mtime=False), "/flash")
q = DurableQueue("/flash/q", segment_bytes=64)
print("depth=%d worst=%d" % (q.depth(), worst))
"""
    f = _figures(mp.run(code, heap="512K", timeout=60).stdout)
    assert f["depth"] == 30 and f["worst"] <= 30


LFS_LAYOUT = """
import os, vfs
from blockdev import RAMBlockDev
from dqueue import DurableQueue
bd = RAMBlockDev(%(blocks)d)
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd, mtime=False), "/flash")
def free_blocks():
    return os.statvfs("/flash")[3]
"""


def test_a_position_segment_fills_exactly_four_flash_blocks(mp):
    code = LFS_LAYOUT % {"blocks": 64} + """
q = DurableQueue("/flash/q")
n = 0
while len(q._prio.segs) < 2:
    q.append(2, bytes(21))  # a stop-visit-lane record of 37 bytes, on flash at once
    n += 1
name = q._prio.fname(q._prio.segs[0])
print("segment_bytes=%d first=%d records=%d" % (q.segment_bytes, os.stat(name)[6], n - 1))
"""
    f = _figures(mp.run(code, heap="1M", timeout=120).stdout)
    assert f["segment_bytes"] == 16368  # 4 x 4096 minus LittleFS' skip-list pointers (4 words)
    assert f["first"] == 442 * 37 == 16354 and f["records"] == 442


def test_the_budget_comes_from_measured_free_space_no_enospc_with_other_files(mp):
    # a 2 MiB filesystem holding 600 KiB of other files: the default budget (1.5 MiB)
    # does not fit; the queue measures the free space and drops its oldest instead
    code = LFS_LAYOUT % {"blocks": 512} + """
with open("/flash/other.bin", "wb") as f:
    for i in range(150):
        f.write(bytes(4096))
q = DurableQueue("/flash/q")
for i in range(60000):
    q.append(1, bytes(21), ts=i)
    q.poll()
q.commit()
print("enospc=%d dropped=%d free_blocks=%d io_errors=%d budget=%d" % (
    q.stats["enospc"], q.stats["dropped_positions"], free_blocks(), q.stats["io_errors"], q.budget_bytes))
"""
    f = _figures(mp.run(code, heap="4M", timeout=120).stdout)
    assert f["enospc"] == 0 and f["io_errors"] == 0 and f["dropped"] > 0
    assert f["free_blocks"] >= 8  # LittleFS keeps room for its own copies and metadata
    assert f["budget"] < 1572864


def test_on_the_ota_layout_a_full_queue_leaves_room_for_a_staged_release(mp):
    # The OTA partition table leaves a 960 KiB filesystem; a board that takes
    # over-the-air releases keeps 160 KiB of it from its queue (transit.app).
    code = LFS_LAYOUT % {"blocks": 240} + """
q = DurableQueue("/flash/q", keep_free_bytes=160 * 1024)
for i in range(40000):
    q.append(1, bytes(21), ts=i)
    q.poll()
q.commit()
print("enospc=%d dropped=%d free_kib=%d" % (q.stats["enospc"], q.stats["dropped_positions"],
      free_blocks() * 4))
"""
    f = _figures(mp.run(code, heap="2M", timeout=120).stdout)
    assert f["enospc"] == 0 and f["dropped"] > 0  # full: the oldest positions went
    assert f["free_kib"] >= 160  # a staged release (~92 KB) and the agent's 32 KiB margin fit


def test_enospc_does_not_fragment_the_queue_into_one_block_files(mp):
    # a small filesystem that another file fills after the queue opened: six hours
    # offline, a stop visit every 90 s and a position every 15 s, ENOSPC decides
    code = LFS_LAYOUT % {"blocks": 40} + """
from dqueue_lane import HDR
T = [0]
q = DurableQueue("/flash/q", budget_bytes=1 << 20, commit_ms=90000, ticks_ms=lambda: T[0])
with open("/flash/other.bin", "wb") as f:  # the rest of the flash, taken after boot
    while True:
        try:
            f.write(bytes(1024))
            f.flush()
        except OSError:
            break
with open("/flash/other.bin", "rb") as f:
    pass
os.remove("/flash/other.bin")
with open("/flash/other.bin", "wb") as f:  # leave 6 blocks free
    f.write(bytes(4096 * (free_blocks() - 6)))
for s in range(0, 6 * 3600, 15):
    T[0] = s * 1000
    q.append(1, bytes(21), ts=s)
    if s % 90 == 0:
        q.append(2, bytes(39), ts=s)
    q.poll()
q.commit()
p, n = q._prio, q._norm
print("enospc=%d prio_files=%d prio_bytes=%d norm_files=%d depth=%d dropped_priority=%d" % (
    q.stats["enospc"], len(p.segs), p.flash_bytes(), len(n.segs), q.depth(), q.stats["dropped_priority"]))
"""
    f = _figures(mp.run(code, heap="1M", timeout=120).stdout)
    assert f["enospc"] > 0 and f["dropped_priority"] == 0
    assert f["prio_bytes"] == 240 * 55
    assert f["prio_files"] == 1, f  # 13 KB of stop visits: one segment, not a file per failure
    assert f["depth"] >= 400, f  # blocks hold records, not half-empty files (was 343)


def _wa(mp, seconds, link, stop_s=0):
    return _figures(_run(mp, "dq_wa.py", "4M", seconds, link, stop_s).stdout)


def test_write_amplification_with_the_link_down_at_the_firmware_defaults(mp):
    # a position a second, commits after COMMIT_MS (90 s), on a 2 MiB LittleFS
    f = _wa(mp, 7200, 0)
    assert f["committed"] == 7200 and f["dropped"] == 0
    assert f["wa_prog_x1000"] <= 2000, f  # flash bytes programmed per payload byte
    assert f["wa_erase_x1000"] <= 3000, f  # flash bytes erased per payload byte
    assert f["erase_max"] <= 2, f  # no block is erased over and over


def test_write_amplification_with_the_link_up_at_the_firmware_defaults(mp):
    f = _wa(mp, 7200, 1)
    assert f["wa_prog_x1000"] <= 100 and f["wa_erase_x1000"] <= 100, f
    assert f["acked_in_ram"] >= 7100


APP_RECORD = """
import machine, network, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
network.set_aps([])
import transit.startup
from transit import app as appmod, records as R

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    def broken(*args):
        raise ValueError("buffer too small")  # what the queue raised when commits kept failing
    a.queue.append = broken
    real = a.doors.step
    def step_with_records():
        for i in range(3):
            a.record(R.POS, bytes(21), 0, 0)
        real()
    a.doors.step = step_with_records
    a.run(max_loops=100)
    print("survived loops=%%d errors=%%d" %% (a.loops, a.errors))

transit.startup.main(run=run, board_dirs=(%(boards)r,))
"""


def test_a_queue_error_in_app_record_is_counted_and_never_resets_the_board(mp, tmp_path):
    import json
    from harness import paths
    dev = {"device_id": "bus-dq1", "role": "bus", "board": "sim",
           "broker": {"host": "127.0.0.1", "port": 9, "tls": False}, "networks": [{"ssid": "phs-sim"}]}
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "secrets.json").write_text(json.dumps({"wifi": {"phs-sim": "k"}, "mqtt_password": ""}))
    res = mp.run(APP_RECORD % {"boards": paths.BOARDS}, cwd=str(tmp_path), heap="512K", check=False)
    assert "survived loops=100 errors=300" in res.stdout, res.stdout[-1500:] + res.stderr[-1500:]
