# The durable queue on a LittleFS that fills up before the queue's budget does:
# the budget was measured at boot, then another file took most of the space.
# Prints key=value lines for host_tests/test_dqueue.py to check.
import gc
import os
import vfs
from blockdev import RAMBlockDev
from dqueue import DurableQueue

bd = RAMBlockDev(24)  # 96 KiB: full long before the 1 MiB budget
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), "/flash")


def make():
    return DurableQueue("/flash/q", budget_bytes=1 << 20, segment_bytes=8192, commit_records=16)


def show(tag, q):
    s = q.stats
    print(tag, "depth=%d enospc=%d dropped_positions=%d dropped_priority=%d pending=%d io_errors=%d" % (
        q.depth(), s["enospc"], s["dropped_positions"], s["dropped_priority"], q.pending_bytes(), s["io_errors"]))


q = make()
with open("/flash/other.bin", "wb") as f:  # leaves 10 blocks to the queue
    f.write(bytes(4096 * (os.statvfs("/flash")[3] - 10)))
stops = []
n = 0
while q.stats["enospc"] < 3 and n < 20000:
    n += 1
    if n % 10 == 0:
        stops.append(q.append(2, b"stop-visit-%06d-" % n + bytes(30)))
    else:
        q.append(1, b"pos-%06d-" % n + bytes(13))
    q.poll()
q.commit()
show("FULL", q)
print("appended=%d stops=%d" % (n, len(stops)))
got = q.peek(100000, 1 << 30)
have = set(r[0] for r in got)
print("stops_kept=%d" % sum(1 for s in stops if s in have))
print("accounted=%d" % (len(got) + q.stats["dropped_positions"] + q.stats["dropped_priority"] + q.pending_bytes() // 39))
# Space frees: the uplink drains everything, then the queue takes records again.
while q.depth():
    q.ack(q.peek(200, 1 << 20))
show("DRAINED", q)
before = q.stats["enospc"]
for i in range(200):
    q.append(1, b"after-%06d-" % i + bytes(11))
    q.poll()
ok = q.commit()
print("resumed commit_ok=%d new_enospc=%d" % (ok, q.stats["enospc"] - before))
q.close()
q = None
gc.collect()
vfs.umount("/flash")
vfs.mount(vfs.VfsLfs2(bd), "/flash")
q = make()
got = q.peek(1000, 1 << 20)
print("after_reboot depth=%d first=%s last=%s" % (q.depth(), got[0][4][:12], got[-1][4][:12]))
