"""Recovery of the durable queue at boot: read the persisted state, stream
the folder, verify every segment (resynchronising after a bad record), set
last_seq and cap the budget by the measured free space. Steps and what is
counted: docs/queue.md, "Recovery at boot".
"""

import os
import struct
from binascii import crc32

from dqueue_fs import names as _names
from dqueue_reader import OK, END, TORN

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

RESERVE_BLOCKS = const(8)  # free blocks left to LittleFS (copy-on-write, metadata) and other files
_DIR_MAX = const(4096)  # folder entries read at boot before giving up (a broken directory)
_STATE_FMT = "<IIIIII"  # as dqueue._save_state writes it, then crc32
_STATE_LEN = const(28)
_BIG = const(0x7FFFFFFF)


def load_state(path):
    """The valid state copy with the higher generation, or None."""
    best = None
    b = bytearray(_STATE_LEN)
    for i in (0, 1):
        try:
            with open("%s/state%d" % (path, i), "rb") as f:
                got = f.readinto(b)
        except OSError:
            continue
        if got != _STATE_LEN or crc32(memoryview(b)[:24]) != struct.unpack_from("<I", b, 24)[0]:
            continue
        st = struct.unpack_from(_STATE_FMT, b, 0)
        if best is None or st[0] > best[0]:
            best = st
    return best


def recover(q):
    """Rebuild q's lanes, cursors, last_seq and budget from the folder."""
    try:
        os.mkdir(q.path)
    except OSError:
        pass  # exists already (EEXIST); anything worse shows at the first open
    st = load_state(q.path)
    p, n = q._prio, q._norm
    if st:
        q._gen, p.cur_seg, p.cur_off, n.cur_seg, n.cur_off, q._reserve = st
        q._saved_reserve = q._reserve
    names = {"p": [], "n": []}
    _list(q, names)
    top = q._reserve
    for lane in (p, n):
        nums = names[lane.letter]
        nums.sort()
        for segno in nums:
            try:
                top = max(top, _scan(q, lane, segno))
            except OSError:  # unreadable: left on flash for the next boot
                q.stats["io_errors"] += 1
                lane.appendable = False
        lane.next_seg = max(lane.cur_seg, nums[-1] if nums else 0) + 1
        q.stats["recovered"] += lane.flash_count()
    q.last_seq = top
    if q._fs_free >= 0 and q._bsize:  # what the flash can really hold, measured now
        have = q.flash_bytes() + q._fs_free - max(RESERVE_BLOCKS * q._bsize, q.keep_free_bytes)
        q.budget_bytes = max(0, min(q.budget_bytes, have))


def _list(q, names):
    """Stream the folder (never a list of every name): segment numbers per
    lane; other files (another module's, say) are left alone. A read error
    inside LittleFS' listing yields empty names: stop there, counted."""
    k = 0
    try:
        for name in _names(q.path):
            k += 1
            if not name or k > _DIR_MAX:
                q.stats["io_errors"] += 1
                break
            if len(name) == 9 and name[0] in "pn" and name[1:].isdigit():
                names[name[0]].append(int(name[1:]))
    except OSError:  # an unreadable folder: start with what was read, keep counting
        q.stats["io_errors"] += 1


def _scan(q, lane, segno):
    """Verify one segment from its start; keep it if it holds records.
    Returns the highest seq found (0 if none)."""
    name = lane.fname(segno)
    if segno < lane.cur_seg:  # acknowledged before the power went
        q._remove(name)
        return 0
    rd = q._rd
    rd.open(name, 0, _BIG)
    k = acked = top = 0
    try:
        while True:
            r = rd.next()
            if r != OK:
                if r == END:
                    break
                at = rd.off
                if not rd.resync(top):
                    break
                lane.note_bad(segno, at, -1, q)  # one record lost, the rest is read
                continue
            k += 1
            top = max(top, rd.seq)
            if segno == lane.cur_seg and rd.off <= lane.cur_off:
                acked += 1
    finally:
        rd.close()
    if r == TORN:
        q.stats["torn_tails"] += 1
    elif r != END:
        q.stats["crc_errors"] += 1
    if k == 0:
        q._remove(name)
        return top
    lane.segs.append(segno)
    lane.lens.append(rd.off)
    lane.nrec.append(k)
    if segno == lane.cur_seg:
        lane.head_acked = acked
        lane.cur_off = min(lane.cur_off, rd.off)
    lane.appendable = r == END  # a cut tail is kept for reading but never appended to
    return top
