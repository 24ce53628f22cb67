"""JSON text written into a preallocated bytearray, without a string per number.

Used by transit.schema (batches) and transit.mqttio (the PUBLISH packets);
kept apart so the transport can load without the schema.
"""

import json


class Writer:
    """Append JSON text into a preallocated bytearray; IndexError when full."""

    def __init__(self, buf, pos=0, end=None):
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def raw(self, data):
        n = len(data)
        p = self.pos
        if p + n > self.end:
            raise IndexError("message buffer full")
        self.buf[p:p + n] = data
        self.pos = p + n

    def byte(self, c):
        if self.pos >= self.end:
            raise IndexError("message buffer full")
        self.buf[self.pos] = c
        self.pos += 1

    def int(self, n):
        """Decimal digits of n, written in place (no string per number)."""
        b = self.buf
        p = self.pos
        if n < 0:
            b[p] = 45  # '-'
            p += 1
            n = -n
        d = 1
        m = n
        while m >= 10:
            m //= 10
            d += 1
        e = p + d
        if e > self.end:
            raise IndexError("message buffer full")
        self.pos = e
        while True:
            e -= 1
            b[e] = 48 + n % 10
            n //= 10
            if not n:
                break

    def str(self, s):
        self.raw(json.dumps(s).encode() if isinstance(s, str) else s)

    def text(self):
        return bytes(self.buf[:self.pos])
