# Flash bytes LittleFS really programs for the durable queue at its default
# commit policy: per appended position record and per acknowledgement.
import vfs
from blockdev import RAMBlockDev
from dqueue import DurableQueue

bd = RAMBlockDev(128)
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), "/flash")
q = DurableQueue("/flash/q")  # defaults: commit when the 4 KiB buffer is full or after 30 s
payload = bytes(range(21))  # a position payload (firmware/transit/records.py)
N = 2048
bd.reset_counters()
for i in range(N):
    q.append(1, payload, ts=1700000000 + i)
    q.poll()
q.commit()
print("append_bytes_per_record=%d record=%d erases=%d" % (bd.bytes_programmed // N, 16 + len(payload), bd.erases))
print("wa_x100=%d" % (bd.bytes_programmed * 100 // (N * 37)))
bd.reset_counters()
for i in range(40):  # acknowledge 8 at a time inside one 16 KiB segment
    q.ack(q.peek(8, 4096))
print("ack_bytes_per_ack=%d ack_erases=%d" % (bd.bytes_programmed // 40, bd.erases))
bd.reset_counters()
for i in range(10):
    q.append(2, bytes(48), ts=1700001000 + i)  # stop visits: on flash at once
print("priority_bytes_per_record=%d" % (bd.bytes_programmed // 10))
