#!/usr/bin/env python3
"""City bridge: broker -> fleet state -> GTFS-Realtime feed, live page and planner export.

    .venv/bin/python tools/city/bridge.py --host 127.0.0.1 --port 1883 \\
        --credentials out/broker/consumer.json --id city-bridge-1 --data build/city/b1 \\
        [--share city] [--peer http://10.0.0.2:8080/] [--http-port 8080] [--tiles URL]

Consumer side (docs/city.md): the read-only `consumer` account, a fixed
client id, a persistent session (clean_session false) and QoS 1, so what
arrives while the bridge is down waits in the broker for this id. With
`--share GROUP` copies subscribe to `$share/GROUP/<root>/#` (MQTT shared
subscription, Mosquitto): the broker splits the messages between them, each
copy keeping its own persistent session.

Nothing is acknowledged before it is safe: the client acknowledges a message
(manual PUBACK) only after its line is written to this copy's journal
(<data>/journal.log: receive time, topic, payload). On start the journal is
replayed, so a killed copy restarted with the same id and folder loses
nothing: the broker redelivers what was not acknowledged and keeps what
arrived meanwhile. Copies read each other's journals (`--peer`, over HTTP,
/api/journal) so each one serves the whole fleet; the state is idempotent
(records de-duplicated by (device, e, seq)), so order and repeats do not
matter.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
sys.path.insert(0, TOOLS)

from city.feed import Feed  # noqa: E402
from city.state import FleetState  # noqa: E402
from city.statics import GTFS_DIR, INVENTORY, Static  # noqa: E402
from city.web import Web  # noqa: E402

PEER_POLL_S = 0.25
PEER_CHUNK = 1 << 20


class Journal:
    """Append-only log of received messages: one line per message, tab separated."""

    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "journal.log")
        self.lock = threading.Lock()
        self.f = open(self.path, "ab")
        self.lines = 0

    def write(self, rx, topic, payload):
        # JSON payloads never hold a raw tab or newline (json escapes them).
        line = b"%.3f\t%s\t%s\n" % (rx, topic.encode(), payload.replace(b"\n", b" "))
        with self.lock:
            self.f.write(line)
            self.f.flush()  # in the OS before the PUBACK: survives a killed process
            self.lines += 1

    def size(self):
        with self.lock:
            self.f.flush()
            return os.path.getsize(self.path)


def parse_lines(data, feed):
    """Feed complete journal lines of data to feed(topic, payload, rx); return bytes consumed."""
    end = data.rfind(b"\n") + 1
    for line in data[:end].split(b"\n"):
        if line:
            rx, topic, payload = line.split(b"\t", 2)
            feed(topic.decode(), payload, float(rx))
    return end


def replay(path, state):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return parse_lines(f.read(), state.feed)


class Peer(threading.Thread):
    """Tail another copy's journal over HTTP into our state."""

    def __init__(self, url, state, stopping):
        super().__init__(daemon=True)
        self.url = url.rstrip("/") + "/api/journal"
        self.state = state
        self.stopping = stopping
        self.offset = 0
        self.errors = 0
        self.lines = 0

    def run(self):
        while not self.stopping.is_set():
            try:
                with urllib.request.urlopen("%s?offset=%d&max=%d" % (self.url, self.offset, PEER_CHUNK), timeout=5) as r:
                    data = r.read()
                used = parse_lines(data, self.state.feed)
                self.lines += data[:used].count(b"\n")
                self.offset += used
                if used == len(data) and len(data) < PEER_CHUNK:
                    self.stopping.wait(PEER_POLL_S)
            except OSError:
                self.errors += 1  # the peer is down or restarting: try again
                self.stopping.wait(1.0)


class Bridge:
    """One copy: MQTT consumer, journal, peers and the web server."""

    def __init__(self, args):
        self.args = args
        self.static = Static(args.gtfs, args.inventory)
        self.state = FleetState(self.static, validate=not args.no_validate)
        self.feed = Feed(self.state)
        self.journal = Journal(args.data)
        self.replayed = replay(self.journal.path, self.state)
        self.stopping = threading.Event()
        self.peers = [Peer(u, self.state, self.stopping) for u in args.peer]
        self.web = Web(self.state, self.feed, args.http_host, args.http_port, args.tiles, self.extra_stats)
        self.web.route_journal = self.serve_journal
        self.connects = 0
        self.client = None

    def extra_stats(self):
        return {"id": self.args.id, "journal_lines": self.journal.lines, "connects": self.connects,
                "peers": [{"url": p.url, "lines": p.lines, "errors": p.errors} for p in self.peers]}

    def serve_journal(self, h, q):
        off = int((q.get("offset") or ["0"])[0])
        cap = int((q.get("max") or [str(PEER_CHUNK)])[0])
        size = self.journal.size()
        with open(self.journal.path, "rb") as f:
            f.seek(min(off, size))
            data = f.read(min(cap, max(0, size - off)))
        self.web.send(h, 200, "application/octet-stream", data)

    def on_message(self, client, userdata, m):
        rx = time.time()
        payload = bytes(m.payload)
        self.journal.write(rx, m.topic, payload)
        client.ack(m.mid, m.qos)
        self.state.feed(m.topic, payload, rx)

    def start_mqtt(self):
        import paho.mqtt.client as mqtt
        a = self.args
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.id, clean_session=False, manual_ack=True)
        if a.credentials:
            with open(a.credentials) as f:
                cred = json.load(f)
            c.username_pw_set(cred["username"], cred.get("mqtt_password"))
        if a.ca:
            c.tls_set(ca_certs=a.ca)
        topic = ("$share/%s/" % a.share if a.share else "") + a.root + "/#"

        def on_connect(client, userdata, flags, rc, props=None):
            self.connects += 1
            client.subscribe(topic, qos=1)
        c.on_connect = on_connect
        c.on_message = self.on_message
        c.max_inflight_messages_set(100)
        c.reconnect_delay_set(0.2, 5)
        c.connect_async(a.host, a.port, keepalive=20)
        c.loop_start()
        self.client = c

    def start(self):
        self.web.start()
        for p in self.peers:
            p.start()
        self.start_mqtt()
        return self

    def stop(self):
        self.stopping.set()
        if self.client:
            self.client.disconnect()
            self.client.loop_stop()
        self.web.stop()


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="broker host")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--credentials", help="consumer.json from tools/provision.py ({username, mqtt_password})")
    ap.add_argument("--ca", help="CA certificate (PEM): connect with TLS")
    ap.add_argument("--root", default="phs", help="topic root")
    ap.add_argument("--id", default="city-bridge-1", help="fixed MQTT client id: the persistent session's name")
    ap.add_argument("--share", help="shared-subscription group: copies with the same group split the messages")
    ap.add_argument("--peer", action="append", default=[], help="URL of another copy (repeatable)")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(TOOLS), "build", "city", "bridge"),
                    help="folder of this copy's journal")
    ap.add_argument("--gtfs", default=GTFS_DIR, help="static GTFS folder")
    ap.add_argument("--inventory", default=INVENTORY, help="provisioning inventory CSV (route per bus)")
    ap.add_argument("--http-host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, default=8080, help="0: a free port")
    ap.add_argument("--tiles", help="map tile URL template from a local tile server, {z}/{x}/{y}")
    ap.add_argument("--no-validate", action="store_true", help="skip JSON Schema validation (decode only)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    b = Bridge(args).start()
    print("bridge: %s listening, page at %s (replayed %d journal bytes)" % (args.id, b.web.url, b.replayed),
          flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    try:
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
