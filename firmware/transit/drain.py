"""Draining policy: which queue records go next, live first, backlog behind.

The queue hands out priority records first, then the oldest positions; a
peeked batch is split into one message per record type and acknowledged in
the queue only when every PUBACK of the batch came back. After a reconnect
with a backlog, the newest offered position goes first as a live copy
(QoS 0), and positions older than one already sent live go with "bl":1, so
consumers never move a vehicle backwards (docs/telemetry.md).
"""

import errno
import time

from transit import records as R
from transit import schema

_HEADROOM = 64  # tx room kept for PUBACK/PINGREQ appended behind a message
# Payload bytes peeked per record of msg_records: a position's payload is 22
# bytes, so a full message of positions still comes in one peek, while stop
# visits (35+ bytes, ~150 of JSON, ~130 of heap each once peeked) come 16 at a
# time instead of 24: 1 KB less live while a backlog of them drains (docs/memory.md).
_PEEK_BYTES = 24


class Drain:
    """Shares conn, settings and the stats dict with the Uplink that owns it."""

    def __init__(self, queue, conn, settings, stats, topics, device_id, ticks_ms, epoch=0):
        self.queue = queue
        self.conn = conn
        self.s = settings
        self.stats = stats
        self._topics = topics
        self.device_id = device_id
        self.epoch = str(epoch).encode()  # the queue's epoch (transit.identity), rendered once
        self.pid = 0
        self._live = None  # newest offered position (queue tuple)
        self._hw = {}  # rtype -> highest seq sent in a non-backlog message
        self._drain_now = False
        self._priority_now = False
        self._last_drain = ticks_ms()
        self.reset(False)

    def next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def reset(self, catching_up):
        """A new connection: whatever was in flight goes again (same seqs)."""
        self._batch = None  # [(highest seq, rtype)] of the batch in flight: what queue.ack needs
        self._nbatch = 0  # records in it
        self._plan = []  # (rtype, records) messages of the batch still to send
        self._inflight = []  # packet ids waiting for PUBACK
        self._ack_deadline = 0
        self._catching_up = catching_up
        self._drain_now = True
        self._priority_now = False

    def offer_live(self, rtype, seq, ts, flags, payload):
        if rtype == R.POS:
            if self._live is None or seq > self._live[0]:
                self._live = (seq, rtype, flags, ts, payload)
        else:
            # A stop visit or an event goes at once, alone: positions keep
            # waiting for batch_s so they travel many to a message.
            self._priority_now = True

    def flush_now(self):
        self._drain_now = True

    def puback(self, pid):
        if pid in self._inflight:
            self._inflight.remove(pid)

    def check(self, now):
        """Acknowledge a completed batch; raise ETIMEDOUT when a PUBACK is late."""
        if self._batch is not None and not self._plan and not self._inflight:
            self.queue.ack(self._batch)
            self.stats["recs_acked"] += self._nbatch
            self._batch = None
        if self._inflight and time.ticks_diff(now, self._ack_deadline) > 0:
            self.stats["puback_timeouts"] += 1
            raise OSError(errno.ETIMEDOUT)

    def next_message(self, now):
        """Build at most one message into the (empty) tx buffer."""
        if self._live is not None and self._catching_up:
            rec = self._live
            self._live = None
            if rec[0] > self._hw.get(R.POS, -1):
                self._send([rec], R.POS, False, 0, 0)
                self._hw[R.POS] = rec[0]
                self.stats["live"] += 1
                return
        if self._plan:
            self._send_plan(now)
            return
        if self._batch is None and self._due(now):
            self._peek(now)

    def _due(self, now):
        depth = self.queue.depth()
        if depth == 0:
            self._drain_now = self._priority_now = False
            return False
        if depth > 2 * self.s["msg_records"]:
            self._catching_up = True
        return (self._drain_now or self._priority_now or self._catching_up or depth >= self.s["msg_records"]
                or time.ticks_diff(now, self._last_drain) >= self.s["batch_s"] * 1000)

    def _peek(self, now):
        m = self.s["msg_records"]
        batch = self.queue.peek(m, m * _PEEK_BYTES)
        only_priority = self._priority_now and not (
            self._drain_now or self._catching_up or self.queue.depth() >= m
            or time.ticks_diff(now, self._last_drain) >= self.s["batch_s"] * 1000)
        self._priority_now = False
        if only_priority:
            batch = [r for r in batch if r[1] != R.POS]  # the queue acks per lane: positions stay
        else:
            self._last_drain = now
            self._drain_now = False
        if not batch:
            return
        if len(batch) < m:
            self._catching_up = False
        groups = {}
        order = []
        for rec in batch:
            if rec[1] not in groups:
                groups[rec[1]] = []
                order.append(rec[1])
            groups[rec[1]].append(rec)
        # Kept until every PUBACK is in: only (highest seq, type) per message,
        # all queue.ack needs; each message's records go once it is written
        # (a whole batch held while waiting cost ~2.7 KB of a 32-bit heap).
        self._batch = [(max(r[0] for r in groups[t]), t) for t in order]
        self._nbatch = len(batch)
        batch = None
        self._plan = [(t, groups[t]) for t in order]
        groups = None
        self._send_plan(now)

    def _send_plan(self, now):
        rtype, recs = self._plan[0]
        # Old positions must never move a vehicle on the map: while catching up
        # they are backlog. Stop visits and events go as they are (in order).
        backlog = (self._catching_up and rtype == R.POS) or recs[0][0] <= self._hw.get(rtype, -1)
        pid = self.next_pid()
        try:
            self._send(recs, rtype, backlog, 1, pid)
        except IndexError:  # too big for one message: halve and try again next step
            # (one record always fits: the queue's largest payload, 1008 bytes,
            # is under 4 KiB of JSON)
            self.stats["split"] += 1
            h = len(recs) // 2
            self._plan[0:1] = [(rtype, recs[:h]), (rtype, recs[h:])]
            return
        self._plan.pop(0)
        self._inflight.append(pid)
        self._ack_deadline = time.ticks_add(now, self.s["ack_ms"])
        self.stats["recs_sent"] += len(recs)
        if not backlog:
            self._hw[rtype] = recs[-1][0]

    def _send(self, recs, rtype, backlog, qos, pid):
        c = self.conn
        w = c.begin_publish(self._topics[schema.KIND_OF_TYPE[rtype]], qos, False, pid)
        w.end = len(c.tx) - _HEADROOM
        try:
            schema.encode_batch(w, self.device_id, rtype, recs, backlog, self.epoch)
        except IndexError:
            c.abort_publish()
            raise
        c.end_publish(w)
        self.stats["msgs"] += 1
