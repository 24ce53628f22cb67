"""The edge ring the pin IRQ handlers write and the main loop drains.

Why: on the ESP32 pin IRQs are soft (scheduled) callbacks, run late and
bunched while the interpreter blocks. A handler therefore only stores
(channel, level snapshot, ticks_us when it ran) into a preallocated ring:
no allocation, no logic. Beam channels (2 * pair + beam, below 0x10) store
the blocked levels of both beams of their pair and, bit 2, the level of the
pair's door switch; auxiliary channels (0x10 | pair: the pair's door
switch) store the level of their own pin. So a door switch whose own
callback the full scheduler queue dropped is still seen in the beams'. Door switches go
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
    drain has seen (set by the drain, not by the handler)."""

    def __init__(self, size=256):
        self.size = size
        self._code = bytearray(size)  # channel << 3 | snapshot
        self._t = array("i", bytes(4 * size))  # ticks_us < 2**30 fits
        self._hw = array("i", bytes(4 * size))  # PCNT count read by the handler (0 without one)
        self.head = 0
        self.tail = 0
        self.overflows = 0
        self.peak = 0

    def push(self, ch, snap, t_us, hw=0):
        i = self.head + 1
        if i == self.size:
            i = 0
        if i == self.tail:
            self.overflows += 1
            return
        h = self.head
        self._code[h] = (ch << 3) | snap
        self._t[h] = t_us
        self._hw[h] = hw
        self.head = i

    def __len__(self):
        n = self.head - self.tail
        return n + self.size if n < 0 else n

    def get(self, i):
        """(channel, snapshot, t_us) of the entry i places after the tail (tests)."""
        j = (self.tail + i) % self.size
        c = self._code[j]
        return c >> 3, c & 7, self._t[j]


def irq_handler(ring, ch, pins, invert):
    """Pin.irq handler for beam ch (pair ch >> 1); pins = (pin_a, pin_b,
    switch or None, PCNT encoder or None). Stores ch, the levels when it
    runs (bit 0 A blocked, bit 1 B blocked, bit 2 door open), now, and the
    pair's hardware count. Allocates nothing."""
    push = ring.push
    code = (ch << 1) | invert  # a closure over more than 4 names allocates per call

    def handler(pin):
        inv = code & 1
        sw = pins[2]
        enc = pins[3]
        push(code >> 1, (pins[0].value() ^ inv) | ((pins[1].value() ^ inv) << 1)
             | (0 if sw is None else (sw.value() ^ inv) << 2), ticks_us(), 0 if enc is None else enc.value())
    return handler


def aux_handler(ring, index, pin, invert):
    """Pin.irq handler for auxiliary pin `index` (a door switch): stores its
    level (xor invert) read when the handler runs, and now. Allocates nothing."""
    push = ring.push
    code = ((AUX | index) << 1) | invert

    def handler(p):
        push(code >> 1, pin.value() ^ (code & 1), ticks_us())
    return handler
