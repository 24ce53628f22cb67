"""A remote `set` of the queue budget is checked against the real flash:
os.statvfs of a LittleFS the size of a 4 MB board's (2 MiB, 4096-byte
blocks) under the MicroPython unix port, with code and a queue on it
(issue 19, finding 5)."""

import json

from harness import paths

SCRIPT = """
import os, vfs, json
from blockdev import RAMBlockDev
bd = RAMBlockDev(512)  # 2 MiB
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), "/flash")
blob = bytes(4096)
os.mkdir("/flash/lib")
for i in range(%(code_blocks)d):  # the firmware's files
    with open("/flash/lib/f%%d.mpy" %% i, "wb") as f:
        f.write(blob)
os.mkdir("/flash/data")
from dqueue import DurableQueue
from transit import records as R, config
from transit.commands import Commands
from transit.limits import Limits
q = DurableQueue("/flash/data/q", priority_types=R.PRIORITY_TYPES)
for i in range(2000):
    q.append(R.POS, R.pack_position(16821234 + i, 100262345, 800, 900, 450, 9, 12, 1, i), 1795766400 + i)
q.commit()
lim = Limits(fs_root="/flash", queue_folder="/flash/data/q")
dev = {"device_id": "bus-001", "role": "bus", "board": "sim", "broker": {"host": "mq.example"}}
sec = {"mqtt_password": "pw"}
cfg = config.Config(config.validate(dev, sec), sec)
c = Commands(cfg, "bus-001", utc_s=lambda: 1795766400, limits=lim, seen_path=None)
out = {"max": lim.queue_max_kib(), "statvfs": list(os.statvfs("/flash"))[:4]}
for v in (4096, out["max"] + 1, out["max"]):
    out[str(v)] = json.loads(c.handle(json.dumps({"id": "b%%d" %% v, "op": "set", "key": "queue.budget_kib",
                                                    "val": v, "exp": 1795766460}))[0])
print("RESULT", json.dumps(out))
"""


def test_the_queue_budget_is_checked_against_the_real_filesystem(mp):
    res = mp.run(SCRIPT % {"code_blocks": 150}, heap="4M", path=[paths.FAKES])
    out = json.loads(res.stdout.split("RESULT ")[1])
    bsize, frsize, blocks, bfree = out["statvfs"]
    assert (frsize, blocks) == (4096, 512)
    # Everything but the code (150 blocks plus directories and LittleFS's own
    # blocks), less the 64 KiB margin; the queue's own files count as room.
    code_kib = 150 * 4
    # (LittleFS keeps 150 small files' metadata and its directories in ~20 more blocks.)
    assert 2048 - code_kib - 64 - 96 <= out["max"] <= 2048 - code_kib - 64, out
    top = out["max"]
    assert out["4096"]["err"] == "queue.budget_kib: 4096 KiB does not fit this board's flash (at most %d KiB)" % top
    assert out[str(top + 1)]["ok"] is False
    assert out[str(top)] == {"v": 2, "d": "bus-001", "id": "b%d" % top, "op": "set", "ok": True, "r": top}
