"""What the durable queue needs to know about LittleFS' layout on flash.

LittleFS v2 stores a file in a CTZ skip list: block 0 holds block_size data
bytes, block i >= 1 starts with ctz(i) + 1 pointers of 4 bytes. So four
4096-byte blocks hold 16,368 bytes, not 16,384. Appending to a file whose
last block is partly filled copies that part to a fresh, erased block first
(littlefs lfs_ctz_extend); the queue's placement rule uses tail_fill() to
avoid paying that copy over and over (docs/queue.md, "Write amplification").
"""

import os

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

BLOCK = const(4096)  # assumed when the filesystem cannot be asked
SEG_BLOCKS = const(4)  # a segment is at most this many blocks
# Directory metadata per file, measured: 384 one-block segment files took ~20
# more blocks of LittleFS metadata pairs (each entry is kept twice, pairs
# split half full); counted with each segment against the budget.
META_BYTES = const(256)


def _ctz(i):
    n = 0
    while not i & 1:
        i >>= 1
        n += 1
    return n


def capacity(blocks, bsize):
    """Data bytes a LittleFS file can hold in `blocks` blocks of bsize bytes."""
    n = 0
    for i in range(blocks):
        n += bsize if i == 0 else bsize - 4 * (_ctz(i) + 1)
    return n


def blocks_for(nbytes, bsize):
    """Blocks a file of nbytes occupies (0 for an empty file)."""
    k = 0
    room = 0
    while room < nbytes:
        room += bsize if k == 0 else bsize - 4 * (_ctz(k) + 1)
        k += 1
    return k


def tail_fill(nbytes, bsize):
    """Data bytes in the file's last block when it is only partly filled (an
    append would copy them); 0 for an empty file or a full last block."""
    k = blocks_for(nbytes, bsize)
    if k == 0:
        return 0
    fill = nbytes - capacity(k - 1, bsize)
    return 0 if fill == (bsize if k == 1 else bsize - 4 * (_ctz(k - 1) + 1)) else fill


def statfs(path):
    """(block size, free bytes) of the filesystem holding path, or None."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):  # no statvfs on this port or path: the caller assumes
        return None
    bs = st[1] or st[0]  # fragment size is the allocation unit; LittleFS gives both equal
    return bs, st[4] * bs


def names(path):
    """Stream the names in a folder without building a list of them."""
    if hasattr(os, "ilistdir"):
        for ent in os.ilistdir(path):
            yield ent[0]
    else:  # CPython
        for ent in os.scandir(path):
            yield ent.name
