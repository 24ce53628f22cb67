"""drain.Drain: batching, PUBACK bookkeeping, splitting, live first (CPython,
real durable queue, a fake non-blocking socket)."""

import binascii
import errno
import json
import socket
import struct
import sys

import pytest

for _u, _m in (("usocket", socket), ("ustruct", struct), ("ubinascii", binascii)):
    sys.modules.setdefault(_u, _m)

from dqueue import DurableQueue  # noqa: E402
from transit import records as R  # noqa: E402
from transit import schema  # noqa: E402
from transit.drain import Drain  # noqa: E402
from transit.mqttio import Conn  # noqa: E402
from transit.uplink import DEFAULTS  # noqa: E402

T0 = 1700000000


class Sink:
    def __init__(self):
        self.sent = bytearray()

    def write(self, data):
        self.sent += bytes(data)
        return len(data)

    def packets(self):
        """[(qos, pid, topic, payload bytes)] of the PUBLISH packets written so far."""
        out = []
        b = self.sent
        i = 0
        while i < len(b):
            flags = b[i]
            rem, shift, i = 0, 0, i + 1
            while True:
                rem |= (b[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not b[i - 1] & 0x80:
                    break
            body = bytes(b[i:i + rem])
            i += rem
            tl = (body[0] << 8) | body[1]
            topic = body[2:2 + tl].decode()
            qos = (flags >> 1) & 3
            pid = (body[2 + tl] << 8 | body[3 + tl]) if qos else 0
            out.append((qos, pid, topic, body[2 + tl + (2 if qos else 0):]))
        self.sent = bytearray()
        return out


def _setup(tmp_path, tx_bytes=4160, **settings):
    q = DurableQueue(str(tmp_path), priority_types=R.PRIORITY_TYPES)
    conn = Conn(tx_bytes=tx_bytes, rx_bytes=64)
    conn.sock = Sink()
    s = dict(DEFAULTS)
    s.update(settings)
    stats = {"recs_acked": 0, "puback_timeouts": 0, "live": 0, "recs_sent": 0, "split": 0, "msgs": 0}
    topics = {k: schema.topic("phs", "bus", "bus-001", k).encode() for k in ("pos", "stop", "count", "event", "roster")}
    clock = [0]
    d = Drain(q, conn, s, stats, topics, "bus-001", lambda: clock[0])
    return q, conn, d, stats, clock


def _pos(q, d, i, noisy=False):
    v = (i * 2654435761) % 4294967291 if noisy else i
    p = R.pack_position(v % 179000000 - 89000000 if noisy else 16821234 + i, 100262345, v % 65535, v % 3600,
                        0, 9, 12, 1, v)
    seq = q.append(R.POS, p, T0 + i)
    d.offer_live(R.POS, seq, T0 + i, 0, p)
    return seq


def _pump(conn, d, clock, ack=True, rounds=50):
    """Run the drain until idle, PUBACKing everything; return decoded messages."""
    msgs = []
    for _ in range(rounds):
        d.check(clock[0])
        if conn.flush():
            d.next_message(clock[0])
            conn.flush()
        for qos, pid, topic, payload in conn.sock.packets():
            msgs.append((qos, topic, json.loads(payload), len(payload)))
            if ack and qos:
                d.puback(pid)
        clock[0] += 10
    return msgs


def test_records_leave_the_queue_only_after_every_puback_of_the_batch(tmp_path):
    q, conn, d, stats, clock = _setup(tmp_path, msg_records=10)
    for i in range(10):
        _pos(q, d, i)
    q.append(R.STOP, R.pack_stop(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, [(1, 0)]), T0)
    d.reset(False)
    msgs = _pump(conn, d, clock, ack=False, rounds=3)
    assert [(m[0], m[1].rsplit("/", 1)[1]) for m in msgs] == [(1, "stop"), (1, "pos")]
    assert q.depth() == 11  # nothing acknowledged without PUBACKs
    d.puback(1)
    d.check(clock[0])
    assert q.depth() == 11  # one of two messages acknowledged: still nothing
    d.puback(2)
    d.check(clock[0])
    assert q.depth() == 1 and stats["recs_acked"] == 10


def test_a_late_puback_fails_and_the_same_seqs_go_again(tmp_path):
    q, conn, d, stats, clock = _setup(tmp_path, msg_records=5, ack_ms=1000)
    for i in range(5):
        _pos(q, d, i)
    d.reset(False)
    first = _pump(conn, d, clock, ack=False, rounds=2)
    clock[0] += 1000
    with pytest.raises(OSError) as e:
        d.check(clock[0])
    assert e.value.args[0] == errno.ETIMEDOUT and stats["puback_timeouts"] == 1
    d.reset(False)  # what the uplink does after reconnecting
    again = _pump(conn, d, clock)
    assert again[0][2]["s"] == first[0][2]["s"] == 1 and again[0][2]["n"] == 5
    assert q.depth() == 0


def test_a_batch_too_big_for_the_buffer_is_split_and_acknowledged_whole(tmp_path):
    q, conn, d, stats, clock = _setup(tmp_path, tx_bytes=1024 + 64, msg_records=40)
    for i in range(40):
        _pos(q, d, i, noisy=True)
    d.reset(False)
    msgs = _pump(conn, d, clock)
    assert stats["split"] >= 1 and len(msgs) >= 2 and max(m[3] for m in msgs) <= 1024
    seqs = [r["seq"] for m in msgs for r in schema.decode_batch(R.POS, m[2])]
    assert seqs == list(range(1, 41))
    assert q.depth() == 0 and stats["recs_acked"] == 40


def test_catching_up_sends_the_newest_position_live_then_the_backlog_marked(tmp_path):
    q, conn, d, stats, clock = _setup(tmp_path, msg_records=10)
    for i in range(25):
        _pos(q, d, i)
    d.reset(True)  # a reconnect with a backlog
    msgs = _pump(conn, d, clock)
    live = msgs[0]
    assert (live[0], live[2]["s"], live[2]["n"], "bl" in live[2]) == (0, 25, 1, False)
    assert [(m[2]["s"], m[2].get("bl")) for m in msgs[1:]] == [(1, 1), (11, 1), (21, 1)]
    assert stats["live"] == 1 and q.depth() == 0
    # Caught up: the next positions go as live batches, without bl.
    for i in range(25, 28):
        _pos(q, d, i)
    d.flush_now()
    msgs = _pump(conn, d, clock)
    assert [(m[0], m[2]["s"], m[2]["n"], m[2].get("bl")) for m in msgs] == [(1, 26, 3, None)]


def test_positions_wait_for_the_batching_period_but_a_stop_goes_at_once(tmp_path):
    q, conn, d, stats, clock = _setup(tmp_path, batch_s=30)
    d.reset(False)
    _pump(conn, d, clock, rounds=2)
    for i in range(3):
        _pos(q, d, i)
    assert _pump(conn, d, clock, rounds=5) == []
    seq = q.append(R.STOP, R.pack_stop(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, []), T0)
    d.offer_live(R.STOP, seq, T0, 0, b"")
    msgs = _pump(conn, d, clock, rounds=3)
    # The stop goes alone; the positions keep waiting so they travel many to a message.
    assert [m[1].rsplit("/", 1)[1] for m in msgs] == ["stop"]
    assert q.depth() == 3
    clock[0] += 30000  # batch_s later
    msgs = _pump(conn, d, clock, rounds=3)
    assert [(m[1].rsplit("/", 1)[1], m[2]["n"]) for m in msgs] == [("pos", 3)]
    assert q.depth() == 0
