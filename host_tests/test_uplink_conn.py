"""mqttio.Conn: the bounded stream umqtt.simple talks through (CPython, fake socket).

A packet is handed to umqtt only when it is complete, writes never wait, an
oversized incoming packet is discarded without losing the framing."""

import binascii
import errno
import socket
import struct
import sys

import pytest

# umqtt.simple 1.3.4 imports the u-names MicroPython aliases; CPython needs them spelled out.
for _u, _m in (("usocket", socket), ("ustruct", struct), ("ubinascii", binascii)):
    sys.modules.setdefault(_u, _m)

from transit import mqttio  # noqa: E402
from transit.schema import Writer


class FakeSock:
    """Non-blocking socket: reads what was fed; takes `room` more bytes, then EAGAIN."""

    def __init__(self, room=1 << 20):
        self.inbox = bytearray()
        self.sent = bytearray()
        self.room = room
        self.closed = False

    def readinto(self, buf):
        if not self.inbox:
            return None
        n = min(len(buf), len(self.inbox))
        buf[:n] = self.inbox[:n]
        del self.inbox[:n]
        return n

    def write(self, data):
        n = min(len(data), self.room)
        if n == 0:
            return None
        self.room -= n
        self.sent += bytes(data[:n])
        return n

    def close(self):
        self.closed = True


def _conn(room=1 << 20, rx=64):
    c = mqttio.Conn(tx_bytes=256, rx_bytes=rx)
    c.sock = FakeSock(room)
    return c


def test_a_partial_packet_is_not_handed_over_until_complete():
    c = _conn()
    c.sock.inbox += b"\x40\x02\x00"  # PUBACK missing its last byte
    c.fill()
    c.setblocking(False)
    assert c.read(1) is None
    c.sock.inbox += b"\x07"
    c.fill()
    assert c.read(1) == b"\x40"
    c.setblocking(True)
    assert c.read(3) == b"\x02\x00\x07"


def test_a_read_past_the_buffered_packet_times_out_at_once_in_steady_state():
    c = _conn()
    c._poll = type("P", (), {"poll": lambda self, ms: []})()
    c.allow_wait(0)
    with pytest.raises(OSError) as e:
        c.read(2)
    assert e.value.args[0] == errno.ETIMEDOUT


def test_an_oversized_packet_is_skipped_and_the_next_one_survives():
    c = _conn(rx=32)
    c.sock.inbox += b"\x30\x64" + b"x" * 100 + b"\xd0\x00"  # 102-byte PUBLISH, then PINGRESP
    for _ in range(6):
        c.fill()
        if c.packet_ready():
            break
    assert c.oversize == 1
    c.setblocking(False)
    assert c.read(1) == b"\xd0"


def test_writes_queue_and_flush_in_pieces_as_the_socket_takes_them():
    c = _conn(room=3)
    c.write(b"\xc0\x00")
    c.write("abc")
    assert c.flush() is False  # 3 of 5 bytes went
    assert c.tx_pending() == 2
    assert c.flush() is False  # the socket is still full: no wait, no error
    c.sock.room = 10
    assert c.flush() is True
    assert bytes(c.sock.sent) == b"\xc0\x00abc"
    assert c.tx_total == 5


def test_a_full_transmit_buffer_refuses_instead_of_blocking():
    c = _conn(room=0)
    c.write(b"x" * 250)
    with pytest.raises(OSError) as e:
        c.write(b"y" * 10)
    assert e.value.args[0] == errno.ENOBUFS


@pytest.mark.parametrize("size, header", [(0, b"\x32\x07"), (120, b"\x32\x7f"), (121, b"\x32\x80\x01"),
                                          (200, b"\x32\xcf\x01")])
def test_publish_framing_exact_bytes_at_length_boundaries(size, header):
    c = _conn()
    w = c.begin_publish(b"a/b", qos=1, pid=258)
    w.raw(b"p" * size)
    n = c.end_publish(w)
    c.flush()
    assert bytes(c.sock.sent) == header + b"\x00\x03a/b\x01\x02" + b"p" * size
    assert n == len(c.sock.sent)


def test_retained_qos0_publish_has_no_packet_id():
    c = _conn()
    w = c.begin_publish("s", qos=0, retain=True)
    w.raw(b"{}")
    c.end_publish(w)
    c.flush()
    assert bytes(c.sock.sent) == b"\x31\x05\x00\x01s{}"


def test_umqtt_info_names_the_imported_copy():
    info = mqttio.umqtt_info()
    assert info["api"] == "1.3"
    assert info["file"].endswith("umqtt/simple.py")
