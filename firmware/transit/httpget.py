"""A bounded HTTP/1.1 range download, for over-the-air releases.

One GET per file with `Range: bytes=<offset>-`, so a download resumes where
the file on flash ends after a link drop or a power cut. Opening (DNS, TCP,
the response header) waits up to a deadline and runs only when the app may
block; after that every read is non-blocking and returns at once, so the
main loop keeps its step time and pin callbacks keep running. Reads go into
the caller's preallocated buffer, and so does the response header (the
object itself holds no buffer: docs/ota.md, heap). https:// verifies the server against the
board's CA; plain http:// is enough for integrity, since every byte is
checked against the signed manifest's SHA-256 (docs/ota.md).
"""

import errno
import select
import socket
import time

_EINPROGRESS = (errno.EINPROGRESS, 119)
_EAGAIN = (errno.EAGAIN, 11)
_SLICE_MS = 5


class HttpError(ValueError):
    """A response the download cannot use (status, header, https without a
    CA): a ValueError, so callers need not import this module to catch it."""


def split_url(url):
    """'http[s]://host:port/path' -> (host, port, path, tls?)."""
    if url.startswith("http://"):
        rest, tls, port = url[7:], False, 80
    elif url.startswith("https://"):
        rest, tls, port = url[8:], True, 443
    else:
        raise HttpError("only http:// and https:// URLs: %s" % url[:40])
    i = rest.find("/")
    hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    host, _, p = hostport.partition(":")
    return host, int(p) if p else port, path, tls


class RangeGet:
    def __init__(self, ticks_ms=time.ticks_ms):
        self.sock = None
        self._poll = None
        self._ticks = ticks_ms
        self.length = -1  # bytes still to come in this response, -1 unknown
        self.total = -1   # the whole file's size, from Content-Range

    def open(self, url, offset, timeout_ms, tls=None, buf=None):
        """Connect (TLS with `tls`, an SSLContext that verifies the server, for
        https://) and read the response header into `buf` (the caller's
        download buffer; its length bounds the header): one deadline of
        timeout_ms for all of it. Raises HttpError (status, header, https
        without a context) or OSError (network, TLS)."""
        self.close()
        host, port, path, secure = split_url(url)
        if secure and tls is None:
            raise HttpError("https: no CA to check the server with")
        t0 = self._ticks()
        addr = socket.getaddrinfo(host, port)[0][-1]
        s = socket.socket()
        self.sock = s
        s.setblocking(False)
        try:
            s.connect(addr)
        except OSError as e:
            if e.args[0] not in _EINPROGRESS:
                raise
        p = select.poll()
        p.register(s, select.POLLOUT)
        while not p.poll(_SLICE_MS):
            if time.ticks_diff(self._ticks(), t0) >= timeout_ms:
                raise OSError(errno.ETIMEDOUT, "http connect")
        if secure:
            left = timeout_ms - time.ticks_diff(self._ticks(), t0)
            if left <= 0:
                raise OSError(errno.ETIMEDOUT, "before the TLS handshake")
            s.settimeout(left / 1000)  # the handshake blocks: bounded by what is left
            try:
                s = tls.wrap_socket(s, server_hostname=host)
            except ValueError as e:  # mbedTLS: the certificate does not check out; a timeout is an OSError
                raise HttpError("tls: %s" % (str(e).strip() or repr(e)))
            s.setblocking(False)
            self.sock = s
        p = select.poll()
        p.register(s, select.POLLIN)
        self._poll = p
        head = buf if buf is not None else bytearray(512)
        mv = memoryview(head)
        n = 0  # the request is built in the buffer too: no string of it in the heap
        for part in (b"GET ", path, b" HTTP/1.1\r\nHost: ", host, b"\r\nRange: bytes=", str(offset),
                     b"-\r\nConnection: close\r\n\r\n"):
            if isinstance(part, str):
                part = part.encode()
            if n + len(part) > len(head):
                raise HttpError("request longer than %d bytes" % len(head))
            head[n:n + len(part)] = part
            n += len(part)
        self._send(mv[:n], t0, timeout_ms)
        n = 0
        while True:
            if n >= len(head):
                raise HttpError("response header longer than %d bytes" % len(head))
            got = self._recv(mv[n:n + 1], t0, timeout_ms)
            if got == 0:
                raise HttpError("connection closed in the header")
            n += 1
            if n >= 4 and head[n - 4] == 13 and head[n - 3] == 10 and head[n - 2] == 13 and head[n - 1] == 10:
                break
        self._parse(head, n, offset)

    def _send(self, data, t0, timeout_ms):
        mv = memoryview(data)
        while len(mv):
            try:
                k = self.sock.write(mv)
            except OSError as e:
                if e.args[0] not in _EAGAIN and e.args[0] not in _EINPROGRESS:
                    raise
                k = 0
            if k:
                mv = mv[k:]
            elif time.ticks_diff(self._ticks(), t0) >= timeout_ms:
                raise OSError(errno.ETIMEDOUT, "http send")
            else:
                time.sleep_ms(_SLICE_MS)

    def _recv(self, mv, t0, timeout_ms):
        while True:
            n = self.read_into(mv)
            if n != 0:
                return max(n, 0)
            if time.ticks_diff(self._ticks(), t0) >= timeout_ms:
                raise OSError(errno.ETIMEDOUT, "http header")
            self._poll.poll(_SLICE_MS)

    def _parse(self, head, n, offset):
        """Status line, Content-Length and Content-Range from the first n bytes
        of `head` (the buffer), in place and one line at a time: a response
        header is ~250 bytes, and no copy or list of its lines is made."""
        i = head.find(b"\r\n", 0, n)
        sp = head.find(b" ", 0, i)
        status = int(bytes(head[sp + 1:sp + 4])) if 0 < sp and head[sp + 1:sp + 4].isdigit() else 0
        if status == 416:
            raise HttpError("range not satisfiable at %d" % offset)
        if status not in (200, 206) or (offset and status != 206):
            raise HttpError("http status %d" % status)
        while True:
            i += 2
            j = head.find(b"\r\n", i, n)
            if j <= i:
                break
            k = head.find(b":", i, j)
            if k > i:
                key = bytes(head[i:k]).strip().lower()
                if key == b"content-length":
                    self.length = int(bytes(head[k + 1:j]).strip())
                elif key == b"content-range":
                    self.total = int(bytes(head[head.rfind(b"/", k, j) + 1:j]).strip())
            i = j
        if status == 200:
            self.total = self.length

    def read_into(self, mv):
        """Non-blocking: bytes read into mv (> 0), 0 when none yet, -1 at the end."""
        if self.length == 0:
            return -1
        try:
            n = self.sock.readinto(mv if self.length < 0 or self.length >= len(mv) else mv[:self.length])
        except OSError as e:
            if e.args[0] in _EAGAIN:
                return 0
            raise
        if n is None:
            return 0
        if n == 0:
            if self.length > 0:
                raise OSError(errno.ECONNRESET, "http: closed early")
            return -1
        if self.length > 0:
            self.length -= n
        return n

    def close(self):
        s = self.sock
        self.sock = None
        self.length = -1
        self.total = -1
        if s is not None:
            try:
                s.close()
            except OSError:
                pass  # a dead socket: nothing to save
