"""A firmware image streamed into the next OTA partition (esp32.Partition).

transit.ota's agent imports this module for an image job's download only
and drops it from sys.modules when the job ends (docs/ota.md, heap). The
image comes by HTTP range GET through the agent's one 1 KiB buffer, up to
STEP_BYTES per loop step: each 4 KiB flash block is erased (ioctl 6) before
its first piece, then every piece is programmed at its offset with
writeblocks(block, buf, offset) (the extended block protocol LittleFS uses
on the same kind of partition). The job counts whole blocks, so a power cut
redoes at most the block it interrupted; after a reset the agent hashes
what is already on the partition and writes on. When the SHA-256 of the
whole image matches the signed manifest's, set_boot() makes it the next
boot's image, and the job is ready to switch.
"""

import binascii
import hashlib
import json

import esp32
from transit.ota import BLOCK, BUF, MANIFEST, STEP_BYTES, OtaError


def _header():
    """(bytes, sha256 digest) of the image, from the staged manifest's header."""
    with open(MANIFEST, "rb") as f:
        img = json.loads(f.readline())["image"]
    return img["n"], binascii.unhexlify(img["h"])


def _rehash(agent, part, size):
    """The hash of what earlier steps or boots wrote, read back through the buffer."""
    buf = agent._buf()
    mv = memoryview(buf)
    h = hashlib.sha256()
    for pos in range(0, min(agent.job["i"] * BLOCK, size), BUF):  # the last block is partial
        part.readblocks(pos // BLOCK, buf, pos % BLOCK)
        h.update(mv[:min(BUF, size - pos)])
    agent.h = h
    agent.fill = 0


def step(agent):
    """Up to STEP_BYTES of the image; after the last block, the hash check
    and set_boot()."""
    job = agent.job
    if agent.img is None:
        agent.img = _header()
    size, digest = agent.img
    part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
    if size > part.ioctl(4, 0) * BLOCK:
        raise OtaError("image: %d bytes do not fit partition %s" % (size, part.info()[4]))
    if agent.h is None:  # (re)start
        _rehash(agent, part, size)
    done = job["i"] * BLOCK
    if done >= size:
        if agent.h.digest() != digest:
            job["i"] = 0
            agent.h = None
            raise OtaError("hash: image does not match the signed manifest")
        part.set_boot()
        job["part"] = part.info()[4]
        job["st"] = "ready"
        agent._save()
        agent._drop()  # the switch may wait for hours (parked): the download's heap goes now
        return
    g = agent.get
    if g is None or g.sock is None:
        agent._open(job["url"] + "image.bin", done + agent.fill)
        g = agent.get
    mv = memoryview(agent._buf())
    want = min(BLOCK, size - done)
    moved = 0
    while agent.fill < want and moved < STEP_BYTES:
        n = g.read_into(mv[:min(BUF, want - agent.fill)])
        if n <= 0:
            if n < 0:
                agent._close()
            return
        if agent.fill == 0:
            part.ioctl(6, job["i"])  # erase the block before its first program
        part.writeblocks(job["i"], mv[:n], agent.fill)
        agent.h.update(mv[:n])
        agent.fill += n
        moved += n
    if agent.fill < want:
        return
    agent.fill = 0
    job["i"] += 1
    job["done"] = job["i"] * BLOCK
    agent._save()
