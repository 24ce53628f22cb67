# Write amplification of the durable queue at the firmware's defaults, on
# LittleFS (vfs.VfsLfs2) over a RAM block device with 4096-byte blocks.
# Usage: micropython dq_wa.py SECONDS LINK(0 down, 1 up) STOP_EVERY_S(0: none)
# One position (21-byte payload) per second of virtual time; with the link up
# the uplink is modelled as transit.drain does it: a batch of msg_records (40)
# when that many wait or batch_s (60 s) passed, its PUBACK 2 s later while
# positions keep coming. Prints key=value figures per payload byte, x1000.
import sys
import vfs
from blockdev import RAMBlockDev
from dqueue import DurableQueue
from transit.app import COMMIT_MS
from transit import records as R

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 7200
LINK = int(sys.argv[2]) if len(sys.argv) > 2 else 0
STOP_S = int(sys.argv[3]) if len(sys.argv) > 3 else 0
MSG_RECORDS = 40
BATCH_S = 60
PUBACK_S = 2

bd = RAMBlockDev(512)  # a 4 MB board's 2 MiB filesystem
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd, mtime=False), "/flash")
T = [0]
q = DurableQueue("/flash/q", commit_ms=COMMIT_MS, priority_types=R.PRIORITY_TYPES, ticks_ms=lambda: T[0])
bd.reset_counters()
pos = bytearray(21)
stop = bytes(39)  # a stop visit with two doors
payload = 0
inflight = None
ack_at = 0
last_drain = 0
for s in range(SECONDS):
    T[0] = s * 1000
    pos[0] = s & 255
    q.append(R.POS, pos, ts=1795766400 + s)
    payload += 21
    if STOP_S and s % STOP_S == STOP_S - 1:
        q.append(R.STOP, stop, ts=1795766400 + s)
        payload += 39
    q.poll()
    if LINK:
        if inflight is not None and s >= ack_at:
            q.ack(inflight)
            inflight = None
        if inflight is None and (q.depth() >= MSG_RECORDS or s - last_drain >= BATCH_S):
            inflight = q.peek(MSG_RECORDS, MSG_RECORDS * 48)
            ack_at = s + PUBACK_S
            last_drain = s
if not LINK:
    q.commit()
emax = 0
for c in bd.erase_counts:
    emax = max(emax, c)
print("payload=%d programmed=%d erased=%d erase_max=%d blocks=%d" % (
    payload, bd.bytes_programmed, bd.erases * 4096, emax, bd.block_count))
print("wa_prog_x1000=%d wa_erase_x1000=%d" % (bd.bytes_programmed * 1000 // payload, bd.erases * 4096 * 1000 // payload))
print("committed=%d acked_in_ram=%d depth=%d dropped=%d enospc=%d files=%d" % (
    q.stats["committed"], q.stats["acked_in_ram"], q.depth(), q.stats["dropped_positions"],
    q.stats["enospc"], len(q._norm.segs) + len(q._prio.segs)))
