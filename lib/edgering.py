"""The edge ring the pin IRQ handlers write and the main loop drains.

Why: on the ESP32 pin IRQs are soft (scheduled) callbacks, run late and
bunched while the interpreter blocks. A handler therefore only stores
(channel, level snapshot, ticks_us when it ran) into a preallocated ring:
no allocation, no logic. Every handler, a beam's or a door switch's, reads
ALL the bank's pins: the snapshot holds, per pair p, bits 3p (A blocked),
3p + 1 (B blocked) and 3p + 2 (door open). Inside a blocking call the
board services one callback per 100 ms whichever pin raised it, so each
callback is a sample of every door: with two busy doors each door gets
about 10 samples a second instead of 5, and a door switch whose own
callback the full scheduler queue dropped is still seen in other callbacks.
Beam channels are 2 * pair + beam (below 0x10); auxiliary channels (0x10 |
pair) are the pair's door switch. The byte code keeps the channel and its
own pair's three bits (an auxiliary channel: its switch level in bit 0),
so the drain reads its own pair without shifting. Door switches go
through the same ring as the beams so that, drained in ring order, every
crossing meets the door state of its own time.

Size: a blocking socket wait services one callback per 100 ms, so a call of
T seconds pushes at most 10 * T + 8 edges (the scheduler queue) before the
loop drains; `ring_size` 256 holds a 24 s call (bench/bench_counting.py
measures the peak fill over service days with stalls up to 20 s).
"""

from array import array
from time import ticks_us

AUX = 0x10  # channel flag: an auxiliary pin (door switch), not a beam


class EdgeRing:
    """Preallocated single-producer ring of (channel, level, ticks_us).

    The IRQ handler only moves `head`, the main loop only `tail`, so a soft
    callback that runs between two bytecodes of the drain cannot corrupt it.
    One slot stays empty to tell full from empty; a push into a full ring
    is counted in `overflows` and dropped. `peak` is the highest fill the
    drain has seen (set by the drain, not by the handler). pairs: how many
    pairs the snapshots hold (3 bits each; 5 fit 16 bits, up to 8 take 32)."""

    def __init__(self, size=256, pairs=2):
        self.size = size
        self._code = bytearray(size)  # channel << 3 | own pair's snapshot
        self._t = array("i", bytes(4 * size))  # ticks_us < 2**30 fits
        self._hw = array("i", bytes(4 * size))  # PCNT count read by the handler (0 without one)
        self._all = array("h" if pairs <= 5 else "i", bytes((2 if pairs <= 5 else 4) * size))  # every pair's levels
        self.head = 0
        self.tail = 0
        self.overflows = 0
        self.peak = 0

    def push(self, ch, snap, t_us, hw=0):
        """snap: every pair's levels (bits 3p, 3p+1, 3p+2, see above)."""
        i = self.head + 1
        if i == self.size:
            i = 0
        if i == self.tail:
            self.overflows += 1
            return
        h = self.head
        if ch & AUX:
            self._code[h] = (ch << 3) | ((snap >> (3 * (ch & 0xF) + 2)) & 1)
        else:
            self._code[h] = (ch << 3) | ((snap >> (3 * (ch >> 1))) & 7)
        self._t[h] = t_us
        self._hw[h] = hw
        self._all[h] = snap
        self.head = i

    def __len__(self):
        n = self.head - self.tail
        return n + self.size if n < 0 else n

    def get(self, i):
        """(channel, own snapshot, t_us) of the entry i places after the tail (tests)."""
        j = (self.tail + i) % self.size
        c = self._code[j]
        return c >> 3, c & 7, self._t[j]


def irq_handler(ring, ch, pins, cfg):
    """Pin.irq handler for channel ch (a beam, or AUX | pair: a door switch).

    pins: every pin of the bank in snapshot bit order (None where a pair has
    no switch); cfg = (ch, inversion mask, PCNT encoder of ch's pair or
    None). Stores ch, every pin's level when it runs (xor the mask: 1 =
    blocked / open), now, and the pair's hardware count. Allocates nothing
    (three closed-over names: more than four would allocate per call)."""

    def handler(pin):
        s = 0
        bit = 1
        for p in pins:
            if p is not None and p.value():
                s |= bit
            bit <<= 1
        enc = cfg[2]
        ring.push(cfg[0], s ^ cfg[1], ticks_us(), 0 if enc is None else enc.value())
    return handler
