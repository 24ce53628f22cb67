"""Sockets that keep the ESP32's rules where they differ from the host's.

On the ESP32 port `setblocking(True)` clears any timeout set before (so a
later read waits forever), and a TLS socket has no `settimeout` at all. The
unix port keeps the timeout, so code that "works on the host" can hang on a
board. These wrappers make the difference visible: a read that would wait
with no timeout raises `HungOnBoard` after `GUARD_S` of real time instead
of hanging the test run, and records it in `HANGS`.
"""

import io
import select

try:
    import usocket as _socket  # MicroPython: the built-in module
except ImportError:
    import socket as _socket

GUARD_S = 3.0  # how long a "forever" wait may last on the host before we call it a hang
HANGS = []  # descriptions of calls that would have hung on a board


class HungOnBoard(OSError):
    """A socket call waited with no timeout: on an ESP32 it never returns."""


_MP_STREAM_POLL = 3
_MP_STREAM_CLOSE = 4


class _Base(io.IOBase):
    def __init__(self, raw):
        self._raw = raw
        self._timeout = None  # None: blocking forever (the ESP32 default)

    def setblocking(self, flag):
        # ESP32: blocking mode means no timeout at all, whatever was set before.
        self._timeout = None if flag else 0
        self._apply()

    def _apply(self):
        t = self._timeout
        self._raw.settimeout(GUARD_S if t is None else t)

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            if self._timeout is None and _is_timeout(e):
                what = "%s blocked with no timeout (ESP32: never returns)" % (fn.__name__ if hasattr(fn, "__name__") else "call")
                HANGS.append(what)
                raise HungOnBoard(what)
            raise

    def read(self, n=-1):
        return self._guard(self._raw.read, n) if n is not None and n >= 0 else self._guard(self._raw.read)

    def readinto(self, buf, n=None):
        if n is None:
            return self._guard(self._raw.readinto, buf)
        return self._guard(self._raw.readinto, buf, n)

    def readline(self):
        return self._guard(self._raw.readline)

    def write(self, buf, n=None):
        if n is not None:
            buf = memoryview(buf)[:n]
        return self._guard(self._raw.write, buf)

    def close(self):
        self._raw.close()

    def ioctl(self, req, arg):
        # Lets select.poll() watch the wrapper the way it watches a socket.
        if req == _MP_STREAM_POLL:
            p = select.poll()
            p.register(self._raw, arg)
            r = p.poll(0)
            return (r[0][1] & (arg | select.POLLERR | select.POLLHUP)) if r else 0
        if req == _MP_STREAM_CLOSE:
            self._raw.close()
            return 0
        return -1


class Esp32Socket(_Base):
    def __init__(self, af=None, kind=None, proto=None, raw=None):
        if raw is None:
            raw = _socket.socket() if af is None else _socket.socket(af, kind or _socket.SOCK_STREAM)
        _Base.__init__(self, raw)
        self._apply()

    def settimeout(self, t):
        self._timeout = t
        self._apply()

    def connect(self, addr):
        return self._guard(self._raw.connect, addr)

    def send(self, buf):
        return self._guard(self._raw.send, buf)

    def recv(self, n):
        return self._guard(self._raw.recv, n)

    def setsockopt(self, *a):
        return self._raw.setsockopt(*a)

    def fileno(self):
        return self._raw.fileno()


class Esp32TlsSocket(_Base):
    """A TLS socket as the ESP32 gives it: no settimeout."""

    def __init__(self, tls_raw, tcp_raw, timeout):
        _Base.__init__(self, tls_raw)
        self._tcp = tcp_raw
        self._timeout = timeout

    def _apply(self):
        # The TLS object has no settimeout; the timeout lives on the TCP socket below.
        self._tcp.settimeout(GUARD_S if self._timeout is None else self._timeout)


def _is_timeout(e):
    code = e.args[0] if e.args else None
    return code in (110, 11, "timed out") or "timed out" in str(e)
