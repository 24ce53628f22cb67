"""Uplink: drains the durable queue to the broker over umqtt.simple, never blocking.

Call `step(may_block)` every loop iteration. Connecting (DNS, TCP, TLS
handshake, CONNECT, SUBSCRIBE) happens only when may_block is True (no door
open) and is bounded by `connect_ms`; every other step does non-blocking
socket work only and builds at most one message. Queue batches go QoS 1 and
are acknowledged in the queue only after every PUBACK of the batch arrived;
a missing PUBACK after `ack_ms` drops the connection and the same records go
again (same sequence numbers) after the reconnect, which backs off
exponentially with jitter. Which records go next (live first, backlog
behind) is transit/drain.py; the bounded socket/TLS stream is
transit/mqttio.py; the wire format is transit/schema.py (docs/telemetry.md).

Main loop: `offer_live(...)` after each queue append, `step(may_block)` each
iteration, `status()` as a health source, `apply_setting` as the commands'
on_set hook, `close()` before a planned reboot.
"""

import errno
import hashlib
import io
import json
import random
import time

from umqtt.simple import MQTTClient, MQTTException

from transit.config import CONNECT_MS_DEFAULT
from transit import schema
from transit.drain import Drain, _HEADROOM
from transit.mqttio import Conn, ConnectError, mqtt_connect, umqtt_info

class _Sink(io.IOBase):
    """A stream for json.dump (MicroPython wants an io.IOBase): the JSON goes
    into the message Writer, counted and hashed. json.dump hands over a buffer
    it reuses: copied into the message at once, never kept."""

    def __init__(self, w):
        self.w = w
        self.n = 0
        self.h = hashlib.sha256()

    def write(self, buf):
        self.w.raw(buf)
        self.h.update(buf)
        n = len(buf)
        self.n += n
        return n


# Tuning group "uplink" (device.json "uplink": {...}; ranges in transit/settings.py); defaults below.
DEFAULTS = {"batch_s": 60, "ack_ms": 10000, "connect_ms": CONNECT_MS_DEFAULT, "backoff_min_ms": 1000,
            "backoff_max_ms": 300000, "msg_records": 24, "verify": 1}

_MSG_BYTES = 2048  # largest message body; batches that do not fit are split (docs/memory.md)
_RX_BYTES = 1024  # largest incoming packet: a command, or our own retained status (publish check; ~0.7 KB)
_MAX_CMDS = 4
_CONNACK_AUTH = (4, 5)  # bad user name or password / not authorised
_SUBACK_REFUSED = 0x80
_ALWAYS = ("connects", "reconnects", "tx_bytes", "umqtt", "fail_auth")  # in the status even when 0


def load_ca(path):
    """The broker CA as DER bytes (MicroPython's mbedTLS wants DER)."""
    with open(path, "rb") as f:
        return f.read()


def tls_context(ca_der):
    """A client context that verifies the broker: CERT_REQUIRED set explicitly
    (the default verifies nothing) and the CA loaded."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca_der)
    return ctx


def broker_hosts(cfg):
    """[(host, port), ...] from broker.host, which may list more nodes of a
    cluster: "mq1.example,mq2.example,10.0.0.7:8884" (the first uses
    broker.port, the others broker.port unless they give their own). The
    uplink moves along this list after each failed or lost connection. A
    list in broker.host rather than a new key: config.py's size is at the
    edge of the safe-mode report's heap (test_safemode_speaks)."""
    port = cfg.get("broker.port")
    out = []
    for h in cfg.get("broker.host").split(","):
        name, _, p = h.partition(":")
        if name and (not p or p.isdigit() and out):  # a malformed entry is skipped (status: bad_hosts)
            out.append((name, int(p) if p else port))
    return out


class Uplink:
    def __init__(self, cfg, queue, commands=None, status_doc=None, link=None, ca_der=None,
                 ticks_ms=time.ticks_ms, watch=None, time_gate=None, epoch=0, status_dump=None, **settings):
        """watch: optional (topic filter, fn(topic bytes, msg bytes)) for other
        devices' messages (a depot follows the buses' geofence events); fn runs
        in a later step, never inside the socket read. time_gate: optional
        fn() -> None or why a TLS connect must wait for the clock (timesync).
        epoch: the queue's epoch, carried in every batch (transit.identity).
        status_dump: optional fn(stream) writing the status JSON (Health.dump),
        used instead of json.dump(status_doc()) to publish it."""
        self.cfg = cfg
        self.time_gate = time_gate
        self.watch = watch
        self._watched = []
        self.queue = queue
        self.commands = commands
        self.status_doc = status_doc
        self.status_dump = status_dump
        self.link = link
        self._ticks = ticks_ms
        s = dict(DEFAULTS)
        s.update(cfg.group("uplink"))
        s.update(settings)
        self.s = s
        dev = cfg.get("device_id")
        role = cfg.get("role")
        root = cfg.get("topic_root")
        self.device_id = dev
        self._topics = {k: schema.topic(root, role, dev, k).encode() for k in
                        ("pos", "stop", "count", "event", "roster", "status", "ack")}
        self.cmd_topic = schema.topic(root, role, dev, schema.KIND_CMD)
        self._cmd_b = self.cmd_topic.encode()
        self._hosts = broker_hosts(cfg) or [(cfg.get("broker.host"), cfg.get("broker.port"))]
        self._host_i = 0  # the uplink moves to the next node after each failure
        self.host, self.port = self._hosts[0]
        self.tls = None
        self._tls_error = None
        if cfg.get("broker.tls"):
            # Never a plain-text fallback: without a usable CA we do not connect.
            try:
                self.tls = tls_context(ca_der if ca_der is not None else load_ca(cfg.get("broker.ca")))
            except (OSError, ValueError) as e:
                self._tls_error = "tls config: %r" % (e,)
        self.conn = Conn(_MSG_BYTES + _HEADROOM, _RX_BYTES, ticks_ms)
        self.client = MQTTClient(dev, self.host, port=self.port, user=cfg.secret("mqtt_user", dev),
                                 password=cfg.secret("mqtt_password", ""), keepalive=cfg.get("broker.keepalive_s"))
        self.client.set_last_will(self._topics["status"], schema.offline_doc(dev), retain=True, qos=1)
        self.client.set_callback(self._on_msg)
        self.umqtt = umqtt_info()
        self.stats = {"up": False, "connects": 0, "reconnects": 0, "attempts": 0, "fail_dns": 0,
                      "fail_tcp": 0, "fail_refused": 0, "fail_timeout": 0, "fail_tls": 0, "fail_auth": 0,
                      "fail_acl": 0, "fail_mqtt": 0, "lost": 0, "puback_timeouts": 0, "ping_timeouts": 0, "msgs": 0,
                      "live": 0, "recs_sent": 0, "recs_acked": 0, "split": 0, "too_big": 0, "tx_bytes": 0, "rx_bytes": 0,
                      "cmd_ok": 0, "cmd_err": 0, "cmd_dropped": 0, "rx_oversize": 0, "step_max_ms": 0,
                      "connect_max_ms": 0, "last_error": self._tls_error or "", "umqtt": self.umqtt}
        bad = cfg.get("broker.host").count(",") + 1 - len(self._hosts)
        if bad:  # malformed entries in the broker list (only then: the dict stays its size)
            self.stats["bad_hosts"] = bad
        self.connected = False
        self._fails = 0
        self._next_try = ticks_ms()
        self._ping_at = None
        self.epoch = epoch
        self.drain = Drain(queue, self.conn, s, self.stats, self._topics, dev, ticks_ms, epoch)
        self._next_status = ticks_ms()
        self._status_due = False
        self._cmds = []
        self._acks = []
        self._after = None
        self._verified = False
        self._probe = None
        self._probe_deadline = 0
        self._unsubscribe = False

    # --- what the main loop calls -------------------------------------
    def offer_live(self, rtype, seq, ts, flags, payload):
        """Hand over a record just appended to the queue: the newest position
        goes live first after a reconnect; priority records trigger a drain."""
        self.drain.offer_live(rtype, seq, ts, flags, payload)

    def apply_setting(self, key, value):
        """commands' on_set hook: a changed uplink.* setting takes effect now."""
        if key.startswith("uplink."):
            self.s[key[7:]] = value

    def retry_now(self):
        """Connect at the next allowed step (the clock was just set)."""
        self._next_try = self._ticks()

    def flush_now(self):
        """Drain the queue at once instead of waiting for batch_s."""
        self.drain.flush_now()

    def step(self, may_block=True):
        """One bounded slice of uplink work; returns quickly unless connecting."""
        t0 = time.ticks_us()
        connecting = False
        try:
            if self.connected:
                self._service()
            elif may_block and self._link_up() and time.ticks_diff(self._ticks(), self._next_try) >= 0:
                connecting = True
                self._connect()
        except (OSError, MQTTException, AssertionError, IndexError, ValueError) as e:
            self._lost(e)  # counted; the connection is dropped and rebuilt
        ms = time.ticks_diff(time.ticks_us(), t0) // 1000
        key = "connect_max_ms" if connecting else "step_max_ms"
        if ms > self.stats[key]:
            self.stats[key] = ms
        self.stats["tx_bytes"] = self.conn.tx_total
        self.stats["rx_bytes"] = self.conn.rx_total
        self.stats["rx_oversize"] = self.conn.oversize

    def close(self):
        """Orderly DISCONNECT (the broker then drops the last will)."""
        if self.connected:
            try:
                self.client.disconnect()  # writes DISCONNECT, then closes the Conn (which flushes)
            except OSError:
                self.stats["lost"] += 1
        self.conn.close()
        self.connected = False
        self.stats["up"] = False

    # --- connecting ---------------------------------------------------
    def _link_up(self):
        return self.link is None or self.link.isconnected()

    def _connect(self):
        st = self.stats
        if self._tls_error:
            st["fail_tls"] += 1
            self._backoff(self._tls_error)
            return
        why = self.time_gate() if self.tls is not None and self.time_gate is not None else None
        if why:  # mbedTLS checks certificate dates: no handshake before the clock had its chance
            st["last_error"] = why
            self._next_try = time.ticks_add(self._ticks(), 1000)
            return
        st["attempts"] += 1
        c = self.conn
        t0 = self._ticks()
        try:
            # One deadline for the whole attempt (DNS, TCP, TLS, CONNACK, SUBACKs):
            # it blocks the loop, so it must end well before the watchdog does.
            c.open(self.host, self.port, self.s["connect_ms"], self.tls, self.host)
            c.allow_wait(max(0, self.s["connect_ms"] - time.ticks_diff(self._ticks(), t0)))
            mqtt_connect(self.client, c)
            if self.s["verify"]:
                self.client.subscribe(self._topics["status"], qos=0)
            self.client.subscribe(self.cmd_topic.encode(), qos=1)
            if self.watch is not None:
                self.client.subscribe(self.watch[0].encode(), qos=0)
            c.flush_wait()
        except ConnectError as e:
            st["fail_" + e.stage] += 1
            c.close()
            self._backoff("%s: %s" % (e.stage, e.detail))
            return
        except MQTTException as e:
            code = e.args[0] if e.args else -1
            if code == _SUBACK_REFUSED:  # the broker's ACL denies our own cmd topic
                st["fail_acl"] += 1
                why = "suback refused: %s" % self.cmd_topic
            else:
                st["fail_auth" if code in _CONNACK_AUTH else "fail_mqtt"] += 1
                why = "connack %s" % code
            c.close()
            self._backoff(why)
            return
        except (OSError, AssertionError, IndexError) as e:
            st["fail_timeout" if e.args and e.args[0] == errno.ETIMEDOUT else "fail_mqtt"] += 1
            c.close()
            self._backoff("mqtt: %r" % (e,))
            return
        c.allow_wait(0)
        self.connected = True
        self._fails = 0
        st["up"] = True
        st["connects"] += 1
        st["reconnects"] = st["connects"] - 1
        if not self.s["verify"]:
            st["last_error"] = ""
        self._status_due = True
        self._ping_at = None
        self._verified = not self.s["verify"]
        self._probe = None
        self.drain.reset(self.queue.depth() > 1)

    def _backoff(self, why):
        """Exponential backoff with +-50 % jitter, so a fleet does not reconnect in step."""
        self.stats["last_error"] = why
        if len(self._hosts) > 1:  # another cluster node may be up
            self._host_i = (self._host_i + 1) % len(self._hosts)
            self.host, self.port = self._hosts[self._host_i]
        self._fails += 1
        base = self.s["backoff_min_ms"] << min(self._fails - 1, 16)
        base = min(base, self.s["backoff_max_ms"])
        delay = base // 2 + random.getrandbits(16) * base // 65536
        self._next_try = time.ticks_add(self._ticks(), delay)

    def _lost(self, e):
        self.stats["lost"] += 1
        self._drop("lost: %r" % (e,))

    def _drop(self, why):
        self.conn.close()
        self.connected = False
        self.stats["up"] = False
        self.drain.reset(False)  # not acked: the same records go again
        self._backoff(why)

    def _write_unsubscribe(self, topic):
        pid = self.drain.next_pid()
        n = len(topic)
        self.conn.write(bytes((0xA2, 4 + n, pid >> 8, pid & 0xFF, n >> 8, n & 0xFF)))
        self.conn.write(topic)

    # --- connected ------------------------------------------------------
    def _oversize_probe(self, c):
        """Our status came back larger than the receive buffer (it was dropped
        unread): the same topic and exactly our length prove the broker took it
        as well as the bytes would (a refused publish never comes back)."""
        topic = c.big_topic
        c.big_topic = None
        p = self._probe
        if p is not None and topic == self._topics["status"] and c.big_rem == 2 + len(topic) + p[0]:
            self._verify_status()

    def _verify_status(self):
        self._verified = True
        self._probe = None
        self.stats["last_error"] = ""
        self._unsubscribe = True

    def _on_msg(self, topic, msg):
        if topic == self._topics["status"]:
            # Our own retained status coming back proves the broker accepts our
            # publishes (MQTT 3.1.1 PUBACKs even what an ACL silently drops).
            p = self._probe
            if p is not None and len(msg) == p[0] and hashlib.sha256(msg).digest() == p[1]:
                self._verify_status()
            return
        if self.watch is not None and topic != self._cmd_b:
            if len(self._watched) < _MAX_CMDS:
                self._watched.append((bytes(topic), bytes(msg)))
            else:
                self.stats["watch_dropped"] = self.stats.get("watch_dropped", 0) + 1
            return
        if len(self._cmds) < _MAX_CMDS:
            self._cmds.append(bytes(msg))
        else:
            self.stats["cmd_dropped"] += 1

    def _service(self):
        c = self.conn
        if not self._link_up():
            raise OSError(errno.ENOTCONN)  # the socket died with the link
        c.flush()
        c.fill()
        n = 0
        # Commands wait in the socket (TCP flow control) while _cmds is full.
        while n < 8 and len(self._cmds) < _MAX_CMDS and c.packet_ready():
            self._incoming(self.client.check_msg())
            n += 1
        if c.eof():
            raise OSError(errno.ECONNRESET)
        now = self._ticks()
        self.drain.check(now)
        if c.big_topic is not None:
            self._oversize_probe(c)
        if not self._verified and self._probe is not None and time.ticks_diff(now, self._probe_deadline) > 0:
            self.stats["fail_acl"] += 1
            self._drop("publish refused: %s" % self._topics["status"].decode())
            return
        self._keepalive(now)
        if self._watched:
            t, m = self._watched.pop(0)
            self.watch[1](t, m)
        if self._cmds and self.commands is not None and len(self._acks) < _MAX_CMDS:
            self._acks.append(self.commands.handle(self._cmds.pop(0)))
        if c.flush():
            if self._after is not None:
                fn = self._after
                self._after = None
                fn()
            self._build_next(now)
            c.flush()

    def _incoming(self, op):
        if op is None:
            return  # nothing, a PINGRESP, or a command (umqtt 1.3 returns None)
        if op == 0x40:  # PUBACK: 3 more bytes, already buffered
            rest = self.conn.read(3)
            self.drain.puback((rest[1] << 8) | rest[2])
        elif op & 0xF0 != 0x30:  # anything else (SUBACK...): skip its body
            n = 0
            shift = 0
            while True:
                b = self.conn.read(1)[0]
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if n:
                self.conn.read(n)

    def _keepalive(self, now):
        ka_ms = self.cfg.get("broker.keepalive_s") * 1000
        c = self.conn
        if self._ping_at is not None:
            if time.ticks_diff(c.last_rx_ms, self._ping_at) >= 0:
                self._ping_at = None
            elif time.ticks_diff(now, self._ping_at) > self.s["ack_ms"]:
                self.stats["ping_timeouts"] += 1
                raise OSError(errno.ETIMEDOUT)
        elif time.ticks_diff(now, c.last_tx_ms) > ka_ms // 2 and c.tx_empty():
            self.client.ping()
            self._ping_at = now

    def _build_next(self, now):
        """Queue at most one message: status, command answer, live, batch."""
        if self._status_due or time.ticks_diff(now, self._next_status) >= 0:
            self._status_due = False
            self._next_status = time.ticks_add(now, self.cfg.get("status_period_s") * 1000)
            probe = self._publish_status()
            if probe is not None and not self._verified and self._probe is None:
                self._probe = probe
                self._probe_deadline = time.ticks_add(now, self.s["ack_ms"])
            return
        if not self._verified:
            return  # nothing else until the broker proved it takes our messages
        if self._unsubscribe:
            self._unsubscribe = False
            self._write_unsubscribe(self._topics["status"])
            return
        if self._acks:
            text, ok, after = self._acks.pop(0)
            self._publish_doc("ack", text)
            self.stats["cmd_ok" if ok else "cmd_err"] += 1
            self._after = after  # e.g. reboot: runs once the answer is on the wire
            return
        self.drain.next_message(now)

    def _publish_doc(self, kind, text):
        c = self.conn
        w = c.begin_publish(self._topics[kind], 0, kind == "status")
        w.end = len(c.tx) - _HEADROOM
        try:
            w.raw(text.encode() if isinstance(text, str) else text)
        except IndexError:  # a status or answer over 4 KiB: dropped, counted
            c.abort_publish()
            self.stats["too_big"] += 1
            return
        c.end_publish(w)
        self.stats["msgs"] += 1

    def status_now(self):
        """Publish the status at the next chance (something an operator waits for changed)."""
        self._status_due = True

    def publish_checked(self):
        """Connected, and the broker proved it keeps what we publish."""
        return self.connected and self._verified

    def answer_later(self, text, ok):
        """Queue an answer that is not a direct reply (e.g. an update's outcome)."""
        if len(self._acks) < _MAX_CMDS:
            self._acks.append((text, ok, None))

    def status(self):
        """The uplink's part of the status: counters that are not zero, plus
        the ones consumers always need (kept small: it goes over cellular)."""
        out = {}
        for k, v in self.stats.items():
            if v or k in _ALWAYS:
                out[k] = v
        return out

    def _status(self):
        if self.status_doc is not None:
            return self.status_doc()
        return {"v": schema.VERSION, "d": self.device_id, "e": self.epoch, "on": True, "uplink": self.status()}

    def _publish_status(self):
        """The retained status, JSON streamed straight into the transmit buffer
        (no string of the whole document on the heap). Returns what the publish
        check compares it with: (length, SHA-256), or None when it did not fit."""
        c = self.conn
        w = c.begin_publish(self._topics["status"], 0, True)
        w.end = len(c.tx) - _HEADROOM
        sink = _Sink(w)
        try:
            if self.status_dump is not None:
                self.status_dump(sink)  # source by source: never the whole document as a dict
            else:
                json.dump(self._status(), sink)
        except IndexError:  # a status over the message size: dropped, counted
            c.abort_publish()
            self.stats["too_big"] += 1
            return None
        c.end_publish(w)
        self.stats["msgs"] += 1
        return (sink.n, sink.h.digest())
