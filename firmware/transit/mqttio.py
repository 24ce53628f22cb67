"""Bounded MQTT transport: socket, TLS, and the stream umqtt.simple talks through.

umqtt.simple keeps the MQTT framing (CONNECT, SUBSCRIBE, incoming PUBLISH,
PINGREQ) but never touches a socket: it gets a `Conn`, whose reads serve a
receive buffer that is filled by non-blocking reads, and whose writes append
to a transmit buffer flushed by non-blocking writes. Its `setblocking(True)`
only changes how long a read may wait for bytes already announced; in the
steady state that is zero (a packet is handed over only when it is complete),
so no call can wait for the network, on a board or on the host.
Waiting is allowed only in `open()` and during the CONNECT/SUBSCRIBE exchange,
which the uplink runs only when it may block, each bounded by a deadline.
"""

import errno
import select
import socket
import time

from umqtt import simple as _simple

from transit.jsonw import Writer

_EINPROGRESS = (errno.EINPROGRESS, 119)  # 119: lwIP's EINPROGRESS on the ESP32
_EAGAIN = (errno.EAGAIN, 11)
_POLL_SLICE_MS = 5  # waits are sliced so pending pin callbacks keep running


class ConnectError(Exception):
    """Connecting failed at `stage`: dns, tcp, refused, timeout, tls."""

    def __init__(self, stage, detail):
        super().__init__(stage, detail)
        self.stage = stage
        self.detail = detail


def umqtt_info():
    """Which umqtt.simple is imported: file and API generation.

    1.3.x takes ssl_params and wraps TLS itself with `ussl`; 1.4+ takes an
    SSLContext as ssl=, 1.5+ adds connect(timeout=). We pass neither: TLS
    and timeouts are ours, so all three behave the same here."""
    try:
        _simple.MQTTClient("x", "h", ssl_params={})
        api = "1.3"
    except TypeError:
        api = "1.4+"
    return {"file": getattr(_simple, "__file__", "frozen"), "api": api}


class _SocketShim:
    # Stands in for the `socket` module inside umqtt.simple during connect():
    # its socket() is our already connected Conn.
    def __init__(self, conn):
        self._conn = conn

    def socket(self, *args):
        return self._conn

    def getaddrinfo(self, host, port, *args):
        return [(2, 1, 0, "", (host, port))]


def mqtt_connect(client, conn, clean_session=True):
    """Run umqtt's connect() over conn (CONNECT framing stays umqtt's)."""
    saved = _simple.socket
    _simple.socket = _SocketShim(conn)
    try:
        return client.connect(clean_session)
    finally:
        _simple.socket = saved


class Conn:
    """One broker connection with preallocated transmit and receive buffers."""

    def __init__(self, tx_bytes=4096, rx_bytes=1024, ticks_ms=time.ticks_ms):
        self.tx = bytearray(tx_bytes)
        self.rx = bytearray(rx_bytes)
        self._txv = memoryview(self.tx)
        self._rxv = memoryview(self.rx)
        self._ticks = ticks_ms
        self.sock = None
        self.tx_total = 0  # bytes handed to the socket, all connections (data budget)
        self.rx_total = 0
        self.oversize = 0  # incoming packets too large for rx, discarded
        self.big_rem = 0  # the last one's remaining length and (PUBLISH) topic
        self.big_topic = None
        self.close_errors = 0
        self._reset()

    def _reset(self):
        self._txh = self._txt = 0
        self._rxh = self._rxt = 0
        self._skip = 0
        self._eof = False
        self.blocking = True
        self._deadline = self._ticks()
        self.last_rx_ms = self.last_tx_ms = self._ticks()

    # --- opening and closing ------------------------------------------
    def open(self, host, port, timeout_ms, tls=None, server_hostname=None):
        """DNS, non-blocking TCP connect polled to a deadline, then TLS.
        Blocks up to about timeout_ms (plus DNS): call only when allowed."""
        self.close()
        self._reset()
        t0 = self._ticks()  # one deadline for DNS, TCP and TLS together
        try:
            addr = socket.getaddrinfo(host, port)[0][-1]
        except (OSError, IndexError) as e:
            raise ConnectError("dns", e)
        s = socket.socket()
        try:
            s.setblocking(False)
            try:
                s.connect(addr)
            except OSError as e:
                if e.args[0] not in _EINPROGRESS:
                    raise ConnectError("refused" if e.args[0] == errno.ECONNREFUSED else "tcp", e)
            p = select.poll()
            p.register(s, select.POLLOUT)
            while True:
                ev = p.poll(_POLL_SLICE_MS)
                if ev:
                    if ev[0][1] & (select.POLLERR | select.POLLHUP):
                        raise ConnectError("refused", ev[0][1])
                    break
                if time.ticks_diff(self._ticks(), t0) >= timeout_ms:
                    raise ConnectError("timeout", "tcp connect")
            if tls is not None:
                # The handshake must block: bound it by what is left of the deadline.
                left = timeout_ms - time.ticks_diff(self._ticks(), t0)
                if left <= 0:
                    raise ConnectError("timeout", "before the TLS handshake")
                s.settimeout(left / 1000)
                try:
                    s = tls.wrap_socket(s, server_hostname=server_hostname)
                except (OSError, ValueError) as e:  # mbedTLS reports a bad certificate as ValueError
                    raise ConnectError("tls", e)
                s.setblocking(False)
        except BaseException:
            s.close()
            raise
        self.sock = s
        self._poll = select.poll()
        self._poll.register(s, select.POLLIN)
        self.last_rx_ms = self.last_tx_ms = self._ticks()

    def close(self):
        """Close; what is already in tx (a DISCONNECT) goes first if the socket takes it."""
        s = self.sock
        if s is not None:
            try:
                self.flush()
            except OSError:
                self.close_errors += 1  # the link is gone; closing is all that is left
        self.sock = None
        if s is not None:
            try:
                s.close()
            except OSError:
                self.close_errors += 1  # closing a dead socket: nothing left to save

    # --- the stream umqtt.simple sees ---------------------------------
    def allow_wait(self, ms):
        """Reads may wait up to ms from now (connect phase); 0 in steady state."""
        self._deadline = time.ticks_add(self._ticks(), ms)

    def setblocking(self, flag):
        self.blocking = flag  # never reaches the socket: the bound stays ours

    def settimeout(self, t):
        pass  # umqtt 1.5+ connect() calls this; our deadlines apply instead

    def connect(self, addr):
        pass  # already connected by open()

    def write(self, buf, n=None):
        if isinstance(buf, str):
            buf = buf.encode()  # umqtt sends str client ids and topics as they came
        n = len(buf) if n is None else n
        t = self._txt
        if t + n > len(self.tx):
            raise OSError(errno.ENOBUFS)
        self.tx[t:t + n] = buf if n == len(buf) else memoryview(buf)[:n]
        self._txt = t + n
        return n

    def read(self, n):
        if not self.blocking and not self.packet_ready():
            return None  # check_msg's probe: nothing complete yet
        while self._rxt - self._rxh < n:
            if self._eof:
                raise OSError(errno.ECONNRESET)
            if not self._wait_rx():
                raise OSError(errno.ETIMEDOUT)
        h = self._rxh
        self._rxh = h + n
        return bytes(self._rxv[h:h + n])

    # --- buffers ------------------------------------------------------
    def tx_empty(self):
        return self._txh == self._txt

    def tx_pending(self):
        return self._txt - self._txh

    def flush(self):
        """Write what the socket takes now; True when everything is out."""
        while self._txh < self._txt:
            try:
                n = self.sock.write(self._txv[self._txh:self._txt])
            except OSError as e:
                if e.args[0] in _EAGAIN:
                    return False
                raise
            if not n:
                return False
            self._txh += n
            self.tx_total += n
            self.last_tx_ms = self._ticks()
        self._txh = self._txt = 0
        return True

    def fill(self):
        """Read what has arrived (non-blocking); return the byte count."""
        got = 0
        while True:
            if self._rxh == self._rxt:
                self._rxh = self._rxt = 0
            elif self._rxh and self._rxt == len(self.rx):
                n = self._rxt - self._rxh
                self.rx[0:n] = self._rxv[self._rxh:self._rxt]
                self._rxh, self._rxt = 0, n
            if self._rxt == len(self.rx):
                return got
            try:
                n = self.sock.readinto(self._rxv[self._rxt:])
            except OSError as e:
                if e.args[0] in _EAGAIN:
                    return got
                raise
            if n is None:
                return got
            if n == 0:
                self._eof = True
                return got
            self._rxt += n
            got += n
            self.rx_total += n
            self.last_rx_ms = self._ticks()
            self._discard()

    def _discard(self):
        # Drop the bytes of a packet that can never fit in rx.
        if self._skip:
            k = min(self._skip, self._rxt - self._rxh)
            self._rxh += k
            self._skip -= k

    def packet_ready(self):
        """True when a whole MQTT packet waits in rx (so umqtt never waits)."""
        self._discard()
        avail = self._rxt - self._rxh
        if avail < 2 or self._skip:
            return False
        rem = 0
        shift = 0
        i = self._rxh + 1
        while True:
            if i >= self._rxt:
                return False
            b = self.rx[i]
            rem |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise OSError(errno.EINVAL)  # malformed length
        total = i - self._rxh + rem
        if total > len(self.rx):
            self.oversize += 1
            # Keep what identifies it (a PUBLISH's topic and length): the
            # uplink's publish check can know its own status by them.
            self.big_rem = rem
            self.big_topic = None
            if self.rx[self._rxh] & 0xF0 == 0x30 and i + 2 <= self._rxt:
                tl = (self.rx[i] << 8) | self.rx[i + 1]
                if i + 2 + tl <= self._rxt:
                    self.big_topic = bytes(self._rxv[i + 2:i + 2 + tl])
            self._skip = total
            self._discard()
            return False
        return avail >= total

    def eof(self):
        return self._eof and self._rxh == self._rxt

    def _wait_rx(self):
        if self.tx_pending():
            self.flush()
        if self.fill():
            return True
        left = time.ticks_diff(self._deadline, self._ticks())
        if left <= 0 or self._eof:
            return self._eof
        self._poll.poll(min(left, _POLL_SLICE_MS))
        return True

    def flush_wait(self):
        """Flush up to the allowed deadline (connect phase only)."""
        while not self.flush():
            if time.ticks_diff(self._deadline, self._ticks()) <= 0:
                raise OSError(errno.ETIMEDOUT)
            p = select.poll()
            p.register(self.sock, select.POLLOUT)
            p.poll(_POLL_SLICE_MS)

    # --- publish framing (QoS 1 without umqtt's blocking PUBACK loop) --
    def begin_publish(self, topic, qos=0, retain=False, pid=0):
        """Start a PUBLISH in the empty tx buffer; returns a Writer for the payload."""
        if self._txh != self._txt:
            raise OSError(errno.EALREADY)  # tx still busy
        self._flags = 0x30 | (qos << 1) | (1 if retain else 0)
        w = Writer(self.tx, 5)
        tb = topic.encode() if isinstance(topic, str) else topic
        w.byte(len(tb) >> 8)
        w.byte(len(tb) & 0xFF)
        w.raw(tb)
        if qos:
            w.byte(pid >> 8)
            w.byte(pid & 0xFF)
        return w

    def abort_publish(self):
        self._txh = self._txt = 0

    def end_publish(self, w):
        """Put the fixed header in front of what w wrote; the packet is then queued."""
        rem = w.pos - 5
        k = 1 if rem < 128 else (2 if rem < 16384 else 3)
        start = 4 - k
        self.tx[start] = self._flags
        i = start + 1
        while True:
            b = rem & 0x7F
            rem >>= 7
            self.tx[i] = b | (0x80 if rem else 0)
            i += 1
            if not rem:
                break
        self._txh = start
        self._txt = w.pos
        return self._txt - start
