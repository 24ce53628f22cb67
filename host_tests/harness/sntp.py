"""A tiny SNTP server on loopback: it stands in for the network's time
servers, so the firmware's own SNTP client is what the tests exercise."""

import socket
import struct
import threading
import time

NTP_UNIX_DELTA = 2208988800


class SntpServer:
    """Answers mode-3 requests with `clock()` (Unix seconds, float); counts them."""

    def __init__(self, clock=time.time, host="127.0.0.1"):
        self.clock = clock
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def _serve(self):
        while not self._stop:
            try:
                req, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            if len(req) < 48 or req[0] & 7 != 3:
                continue
            self.requests += 1
            now = self.clock() + NTP_UNIX_DELTA
            secs = int(now)
            frac = int((now - secs) * (1 << 32))
            # LI 0, version 4, mode 4 (server); stratum 2; poll 6; precision -20
            head = struct.pack("!BBbb", 0x24, 2, 6, -20) + bytes(8) + b"LOCL"
            reply = head + struct.pack("!II", secs, frac) + req[40:48] + struct.pack("!IIII", secs, frac, secs, frac)
            self.sock.sendto(reply, peer)

    def close(self):
        self._stop = True
        self._t.join(1)
        self.sock.close()


def dead_port():
    """A loopback UDP port where nobody answers (its datagrams are refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "127.0.0.1:%d" % port
