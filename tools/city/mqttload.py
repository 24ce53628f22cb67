"""A small asyncio MQTT 3.1.1 publisher: thousands of simulated boards from one process.

paho starts a thread per client; a load of 1,000-10,000 boards each on its
own connection (as in the field: one TCP connection per board, its own client
id, its own last will) needs something lighter. This speaks just what a board
uses: CONNECT (clean session, optional user/password and last will), PUBLISH
at QoS 0/1 with retain, PUBACK, DISCONNECT. `on_ack(pid_info)` fires when the
broker acknowledged a QoS 1 message, so the caller knows what the broker
took responsibility for.
"""

import asyncio
import struct


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(b):
    return struct.pack("!H", len(b)) + b


class MqttError(Exception):
    """The broker refused the connection or the stream broke."""


class Conn:
    """One MQTT connection; publish() queues bytes on the transport without waiting."""

    def __init__(self, client_id, on_ack=None):
        self.client_id = client_id
        self.on_ack = on_ack
        self.pending = {}  # pid -> caller's info, until PUBACK
        self.pid = 0
        self.reader = self.writer = None
        self.acked = 0
        self.task = None
        self.closed = False  # the broker went away: the caller reconnects and resends `pending`

    async def connect(self, host, port, user=None, password=None, will=None, keepalive=600, timeout=30):
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        flags = 0x02
        payload = _str(self.client_id.encode())
        if will:
            topic, msg, retain = will
            flags |= 0x04 | (0x08) | (0x20 if retain else 0)  # will, will QoS 1, will retain
            payload += _str(topic.encode()) + _str(msg)
        if user:
            flags |= 0x80
            payload += _str(user.encode())
            if password is not None:
                flags |= 0x40
                payload += _str(password.encode())
        var = _str(b"MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive)
        body = var + payload
        self.writer.write(b"\x10" + _varint(len(body)) + body)
        head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
        if head[0] != 0x20 or head[3] != 0:
            raise MqttError("%s: CONNACK %r" % (self.client_id, head))
        self.task = asyncio.ensure_future(self._read())
        return self

    def publish(self, topic, payload, qos=1, retain=False, info=None):
        """Queue one PUBLISH; info comes back through on_ack when QoS 1 is acknowledged."""
        t = topic.encode() if isinstance(topic, str) else topic
        var = _str(t)
        if qos:
            self.pid = self.pid % 65535 + 1
            var += struct.pack("!H", self.pid)
            self.pending[self.pid] = info
        body_len = len(var) + len(payload)
        self.writer.write(bytes((0x30 | (qos << 1) | (1 if retain else 0),)) + _varint(body_len) + var + payload)

    async def _read(self):
        r = self.reader
        try:
            while True:
                h = await r.readexactly(1)
                n, shift = 0, 0
                while True:
                    b = (await r.readexactly(1))[0]
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                body = await r.readexactly(n) if n else b""
                if h[0] & 0xF0 == 0x40:  # PUBACK
                    pid = struct.unpack("!H", body[:2])[0]
                    info = self.pending.pop(pid, None)
                    self.acked += 1
                    if self.on_ack and info is not None:
                        self.on_ack(info)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = True

    async def drain(self):
        await self.writer.drain()

    async def close(self):
        try:
            self.writer.write(b"\xe0\x00")
            await self.writer.drain()
        except ConnectionError:
            pass
        self.writer.close()
        if self.task:
            self.task.cancel()
