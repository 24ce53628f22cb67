"""Heap harness for the memory tests: no free hole larger than a cap.

Runs under MicroPython (frozen into the 32-bit test build, tools/mp32.py).
A board's heap fragments, so the firmware must never need one contiguous
block larger than CAP bytes after start-up. `Lattice.pin()` makes that
strict at the moment it runs: it fills every free block of the heap with
small linked nodes (first fit hands them out in rising addresses), keeps a
node every CAP bytes of address as a pin, and lets the rest go. Every free
hole is then at most CAP bytes, so any later allocation larger than CAP
raises MemoryError, which stops the run.

The simulators call pin() after start-up and again after each periodic
collection (every 50 loops): memory that was live at one call and freed
before the next is the only place a larger block could come from, and
`probe()` (after a collection) counts the times such a hole appeared at all.
The pins themselves (`pinned_bytes()`) are the harness's, not the firmware's.
"""

import gc

NODE_BYTES = 32  # one [x] list: its object and its one-item array, one 16-byte block each (32-bit)


class HarnessError(Exception):
    pass


class Lattice:
    def __init__(self, cap, slots=0, check=True):
        self.cap = cap
        # A pin every cap bytes and one more beside each live run wider than
        # cap, in heaps up to 256 KiB (fixed, so a measuring run on a big heap
        # holds the same harness objects as the real one).
        self.keep = [None] * (slots or 2 * 262144 // cap + 8)
        self.n = 0
        self.pins = 0  # times pin() ran
        self.holes = 0  # probes that found a hole larger than cap
        if check:  # (a measuring run that never pins may skip it)
            _check_ids()

    def pinned_bytes(self):
        return self.n * NODE_BYTES

    def release(self):
        keep = self.keep
        for i in range(self.n):
            keep[i] = None
        self.n = 0

    def _keep(self, node):
        if self.n >= len(self.keep):
            raise HarnessError("heapcap: more than %d pins needed" % len(self.keep))
        self.keep[self.n] = node
        self.n += 1

    def pin(self):
        """Cap every free hole at self.cap bytes (collects first)."""
        self.release()
        gc.collect()
        head = None
        try:
            while True:
                head = [head]  # first fit: each node lies above the one before
        except MemoryError:
            pass
        if head is None:
            raise HarnessError("heapcap: no free memory at all")
        # The heap is full. Walk down from the highest node; keep a node as a
        # pin when the next one down would leave more than `limit` bytes
        # between pins. A kept node's link is cut, so it holds only itself.
        # A hole runs from above the lower pin's item block (16 bytes above
        # its address when adjacent) to the upper pin: at most limit - 32 =
        # cap bytes; nodes are 32 bytes apart, so where memory is free the
        # holes are at least cap - 32 bytes.
        limit = self.cap + NODE_BYTES
        node = head[0]
        head[0] = None
        self._keep(head)
        top = id(head)
        cand = None  # the lowest node seen that is still within limit of `top`
        while node is not None:
            nxt = node[0]
            if top - id(node) > limit and cand is not None:
                cand[0] = None
                self._keep(cand)
                top = id(cand)
                cand = None
            if top - id(node) > limit:  # live data wider than the cap lies between them
                node[0] = None
                self._keep(node)
                top = id(node)
            else:
                cand = node
            node = nxt
        head = node = nxt = cand = None
        self.pins += 1
        gc.collect()

    def probe(self):
        """After a collection: is there a hole larger than cap? (Counted; the
        block found is garbage at once.)"""
        try:
            bytearray(self.cap + 1)
        except MemoryError:
            return False
        self.holes += 1
        return True


def _check_ids():
    # id() must be a small int here, or reading an address would allocate on a full heap.
    import micropython
    x = [None]
    micropython.heap_lock()
    try:
        a = id(x) - 1
    except MemoryError:
        a = None
    micropython.heap_unlock()
    if a is None:
        raise HarnessError("heapcap: this heap's addresses are not small ints; the harness cannot run")
