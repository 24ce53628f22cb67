#!/usr/bin/env python3
"""Operator side of over-the-air updates: serve releases, send them in waves.

    .venv/bin/python tools/ota.py serve --port 8070                 # HTTP with Range, build/release/
    .venv/bin/python tools/ota.py send --release build/release/0.2.0-ab12 \\
        --url http://10.0.0.5:8070/ --creds build/fleet/broker/operator.json \\
        --broker mqtt.example:8883 bus-0301 bus-0302 ... [--wave 2]

`send` publishes the `ota` command (operator account only) to a first wave
of boards, follows each board's retained status (`ota` part: progress, trial,
rejected) and its answers, and sends the next wave only when every board of
the previous one runs the new version with its trial passed. A board that
refuses or rolls back stops the rollout. See docs/ota.md.
"""

import argparse
import functools
import http.server
import json
import os
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESEND_S = 10  # a board that has not answered gets the same command again


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single `Range: bytes=N-` requests (what boards send)."""

    def log_message(self, fmt, *args):
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        try:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            self.send_error(400, "bad Range")
            return None
        size = os.path.getsize(path)
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", "bytes */%d" % size)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return f


def serve(folder, host="127.0.0.1", port=0, cert=None, key=None):
    """Start a release server in a thread; returns the server (server_port,
    shutdown()). With cert and key (PEM) it speaks HTTPS."""
    handler = functools.partial(RangeHandler, directory=folder)
    srv = http.server.ThreadingHTTPServer((host, port), handler)
    srv.daemon_threads = True
    if cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def command(url, at="idle", ttl_s=3600, trial_s=60, max_boots=3):
    return {"id": uuid.uuid4().hex[:16], "op": "ota", "exp": int(time.time()) + ttl_s, "url": url, "at": at,
            "trial_s": trial_s, "max_boots": max_boots}


class Rollout:
    """Follows boards through an update: sent -> accepted -> trial -> done / failed."""

    def __init__(self, client, root, version):
        self.client = client
        self.root = root
        self.version = version
        self.state = {}
        self.lock = threading.Condition()

    def on_message(self, topic, doc):
        parts = topic.split("/")
        if len(parts) != 4 or parts[2] not in self.state:
            return
        dev, kind = parts[2], parts[3]
        with self.lock:
            if kind == "ack" and doc.get("op") == "ota" and str(doc.get("err", "")).startswith("clock not set"):
                pass  # the board has no time yet (GPS, SNTP): the command is sent again
            elif kind == "ack" and doc.get("op") == "ota" and not doc.get("ok"):
                self.state[dev] = "failed: " + str(doc.get("err"))
            elif kind == "ack" and doc.get("op") == "ota" and self.state[dev] == "sent":
                self.state[dev] = "accepted"
            elif kind == "status":
                ota = doc.get("ota") or {}
                rej = ota.get("rejected") or {}
                if rej.get("ver") == self.version:
                    self.state[dev] = "failed: rolled back (%s)" % rej.get("why")
                elif ota.get("run") == self.version and not ota.get("trial"):
                    self.state[dev] = "done"
                elif ota.get("trial") == self.version:
                    self.state[dev] = "trial"
                elif "pct" in ota and not self.state[dev].startswith("failed"):
                    self.state[dev] = "download %d%%" % ota["pct"]
            self.lock.notify_all()

    def wave(self, devices, cmd_for, role, timeout_s, say=print):
        with self.lock:
            for d in devices:
                self.state[d] = "sent"
        cmds = {d: cmd_for() for d in devices}
        deadline = time.monotonic() + timeout_s
        last = None
        resend_at = 0
        with self.lock:
            while True:
                now = time.monotonic()
                if now >= resend_at:
                    # A board between connections does not get a command: send the
                    # same one (same id: the board runs it once) until it answers.
                    for d in devices:
                        if self.state[d] == "sent":
                            self.client.publish("%s/%s/%s/cmd" % (self.root, role, d), json.dumps(cmds[d]), qos=1)
                    resend_at = now + RESEND_S
                view = {d: self.state[d] for d in devices}
                if view != last:
                    say("  " + ", ".join("%s %s" % kv for kv in sorted(view.items())))
                    last = view
                if all(v == "done" or v.startswith("failed") for v in view.values()):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(min(left, 1.0))
            return {d: self.state[d] for d in devices}


def send(args, say=print):
    import paho.mqtt.client as mqtt
    with open(os.path.join(args.release, "manifest.json")) as f:
        version = json.load(f)["version"]
    with open(args.creds) as f:
        creds = json.load(f)
    host, _, port = args.broker.partition(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ota-%s" % uuid.uuid4().hex[:8])
    user = creds.get("username") or creds.get("user")
    if user:  # provisioning's credential files: {"username": ..., "mqtt_password": ...}
        c.username_pw_set(user, creds.get("mqtt_password", creds.get("password")))
    if args.ca:
        c.tls_set(ca_certs=args.ca)
    ro = Rollout(c, args.root, version)

    def on_message(client, userdata, msg):
        try:
            ro.on_message(msg.topic, json.loads(msg.payload))
        except ValueError:
            pass  # not ours to judge: a foreign message on the fleet's topics

    c.on_message = on_message
    c.connect(host, int(port or 1883))
    c.subscribe([("%s/%s/+/status" % (args.root, args.role), 1), ("%s/%s/+/ack" % (args.root, args.role), 1)])
    c.loop_start()
    url = args.url.rstrip("/") + "/" + os.path.basename(os.path.normpath(args.release)) + "/"
    devices = list(args.devices)
    first = True
    failed = False
    while devices:
        n = args.wave if first else len(devices)
        wave, devices = devices[:n], devices[n:]
        say("ota: wave of %d: %s" % (len(wave), " ".join(wave)))
        res = ro.wave(wave, lambda: command(url, args.at, trial_s=args.trial_s), args.role, args.timeout_s, say)
        bad = {d: s for d, s in res.items() if s != "done"}
        if bad:
            say("ota: stopping the rollout, %d board(s) did not pass: %s" % (
                len(bad), "; ".join("%s %s" % kv for kv in sorted(bad.items()))))
            failed = True
            break
        first = False
    c.loop_stop()
    c.disconnect()
    if not failed:
        say("ota: every board runs %s" % version)
    return 1 if failed else 0


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve build/release over HTTP with Range")
    s.add_argument("--dir", default=os.path.join(ROOT, "build", "release"))
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=8070)
    s.add_argument("--cert", help="server certificate (PEM) for HTTPS, signed by the CA the boards hold")
    s.add_argument("--key", help="its private key (PEM)")
    t = sub.add_parser("send", help="send a release to boards in waves")
    t.add_argument("--release", required=True, help="release folder made by tools/release.py")
    t.add_argument("--url", required=True, help="where boards fetch releases, e.g. http://10.0.0.5:8070/")
    t.add_argument("--broker", required=True, help="HOST:PORT")
    t.add_argument("--creds", required=True, help="operator credentials (build/fleet/broker/operator.json)")
    t.add_argument("--ca", help="broker CA certificate (PEM) for TLS")
    t.add_argument("--root", default="phs")
    t.add_argument("--role", default="bus", choices=("bus", "depot"))
    t.add_argument("--wave", type=int, default=2, help="boards in the first wave (default %(default)s)")
    t.add_argument("--at", default="idle", choices=("idle", "now"), help="switch when parked (idle) or at once")
    t.add_argument("--trial-s", type=int, default=60)
    t.add_argument("--timeout-s", type=int, default=900, help="per wave")
    t.add_argument("devices", nargs="+")
    return ap.parse_args(argv)


def main(argv=None):
    a = parse(argv)
    if a.cmd == "serve":
        srv = serve(a.dir, a.host, a.port, a.cert, a.key)
        print("ota: serving %s on %s://%s:%d/ (Ctrl-C stops)" % (a.dir, "https" if a.cert else "http", a.host,
                                                                srv.server_port))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            srv.shutdown()
        return 0
    return send(a)


if __name__ == "__main__":
    sys.exit(main())
