"""UART bytes to merged fixes without blocking: line assembly and resync.

Bytes are read with uart.readinto straight into the parser's buffer; each
complete line is parsed where it lies, and only an unfinished tail is moved
to the front. A line is taken from its last `$`, so a UART overflow or
garbage costs only the damaged sentence. Use it through nmea.NmeaReader.
"""

import time

import nmea



class NmeaReader(nmea.NmeaParser):
    """reader.step(max_bytes) every loop: returns a merged Fix or None.

    An epoch closes when a sentence with a new UTC time arrives, or when the
    line stream has been quiet for idle_ms after a burst (so a fix does not
    wait for the next second). max_line: longest sentence accepted, without
    CR LF (NMEA says 80; receivers send up to ~100)."""

    def __init__(self, uart=None, allow_no_checksum=False, max_line=120, idle_ms=150, buf_size=256):
        nmea.NmeaParser.__init__(self, allow_no_checksum, max(buf_size, 2 * max_line + 8))
        self.uart = uart
        self.max_line = max_line
        self.idle_ms = idle_ms
        self._mv = memoryview(self._buf)
        self._head = 0  # first unprocessed byte
        self._tail = 0  # end of data in the buffer
        self._scan = 0  # where to look for the next line end
        self._dropping = False  # the current line's start was dropped
        self._last_ms = time.ticks_ms()

    def _line(self, s, e):
        """A complete line buf[s:e] without its LF: find its sentence and parse."""
        buf = self._buf
        e0 = e
        while e > s and buf[e - 1] <= 32:  # CR, spaces, NULs at the end
            e -= 1
        dropping = self._dropping
        self._dropping = False
        if e <= s:
            if e0 > s and buf[s] != 13 and buf[s] != 32 and not dropping:
                self.stats["garbage"] += 1  # a line of NULs or control bytes
            return None
        d = buf.rfind(b"$", s, e)
        if d < 0:
            if not dropping:
                self.stats["garbage"] += 1
            return None
        if d > s and not dropping:
            self.stats["garbage"] += 1  # junk or a cut sentence before the `$`
        if e - d > self.max_line:
            self.stats["too_long"] += 1
            return None
        try:
            return self.parse(d, e)
        except Exception:  # a parser bug must not stop the bus: count it
            self.stats["errors"] += 1
            return None

    def _lines(self):
        """Parse complete lines until one closes an epoch; that Fix or None."""
        buf = self._buf
        while True:
            nl = buf.find(b"\n", self._scan, self._tail)
            if nl < 0:
                self._scan = self._tail
                return None
            s = self._head
            self._head = self._scan = nl + 1
            self._last_ms = time.ticks_ms()
            fix = self._line(s, nl)
            if fix is not None:
                return fix

    def _make_room(self):
        """Move the unfinished line to the front; drop it when too long."""
        head, tail = self._head, self._tail
        if tail - head > self.max_line + 2:
            d = self._buf.rfind(b"$", head + 1, tail)
            if d > head and tail - d <= self.max_line + 2:
                head = d
            else:
                head = tail
            if not self._dropping:
                self.stats["too_long" if self._buf[self._head] == 36 else "garbage"] += 1
            self._dropping = head == tail
        n = tail - head
        if head:
            if n:
                self._buf[0:n] = self._mv[head:tail]
            self._head = 0
            self._tail = n
            self._scan = n

    def step(self, max_bytes=512):
        """Read what the UART holds (at most max_bytes), never waiting."""
        fix = self._lines()
        if fix is not None:
            return fix
        uart = self.uart
        budget = max_bytes
        while uart is not None and budget > 0:
            avail = uart.any()
            if not avail:
                break
            self._make_room()
            n = min(avail, budget, len(self._buf) - self._tail)
            got = uart.readinto(self._mv[self._tail:self._tail + n], n)
            if not got:
                break
            self._tail += got
            budget -= got
            fix = self._lines()
            if fix is not None:
                return fix
        if self._work.sentences and time.ticks_diff(time.ticks_ms(), self._last_ms) >= self.idle_ms:
            return self.flush()
        return None

    def feed(self, data):
        """Push bytes from elsewhere (tests, simulator); list of Fix copies."""
        out = []
        i = 0
        while i < len(data):
            self._make_room()
            n = min(len(data) - i, len(self._buf) - self._tail)
            self._buf[self._tail:self._tail + n] = data[i:i + n]
            self._tail += n
            i += n
            while True:
                fix = self._lines()
                if fix is None:
                    break
                out.append(fix.copy())
        return out

    def parse_line(self, line):
        """Parse one sentence (bytes, line ending optional): the Fix it closes or None."""
        n = len(line)
        if n > len(self._buf):
            self.stats["too_long"] += 1
            return None
        self._buf[0:n] = line
        return self._line(0, n)
