#!/usr/bin/env python3
"""Broker-side listener: a live fleet table, or every record as JSON lines / CSV.

    .venv/bin/python tools/listen.py --creds build/fleet/broker/consumer.json [--jsonl out.jsonl]
    .venv/bin/python tools/listen.py --host mqtt.example --port 8883 --ca ca.crt \
        --user consumer --password-file consumer.pw [--csv out.csv] [--seconds N]

--creds takes any credential file provisioning writes (consumer.json,
operator.json: username, password, host, port, CA); --host/--port/--ca given
on the command line win over the file. A refused login or a refused
subscription ends the listener with exit code 2 and one clear sentence.
Mosquitto grants a subscription even where the ACL forbids reading (it just
delivers nothing), so a run that received no message at all ends with exit
code 3 and says so, instead of an empty table and exit 0.

Every message is validated against the telemetry schema (docs/schema);
records are de-duplicated by (device, epoch, seq) (schema v2; v1 messages
count as epoch 0), so a replacement board starting again at seq 1 loses
nothing; a board in safe mode shows as SAFE with its reason; a vehicle is
moved only by live positions, never by backlog, so the table never shows a
bus going backwards. Invalid messages are counted and shown, never fatal.
"""

import argparse
import csv
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import telemetry  # noqa: E402
from transit import schema  # noqa: E402

OCCUPANCY = {0: "empty", 1: "many seats", 2: "few seats", 3: "standing", 4: "crushed", 5: "full", 7: "no data"}
CSV_FIELDS = ("device", "kind", "e", "seq", "ts", "lat", "lon", "speed_kmh", "stop_id", "boardings", "alightings",
              "load", "detail")


class Vehicle:
    def __init__(self, device_id, role):
        self.device_id = device_id
        self.role = role
        self.stream = telemetry.Stream()
        self.pos = None  # newest live position record
        self.pos_ts = 0
        self.load = None
        self.occupancy = None
        self.visits = 0
        self.boardings = 0
        self.alightings = 0
        self.last_visit = None
        self.status = None
        self.online = None
        self.last_seen = 0.0
        self.counts = [0, 0]
        self.yard = set()


class Fleet:
    """The broker's view of every device, rebuilt from messages."""

    def __init__(self, on_record=None):
        self.vehicles = {}
        self.invalid = 0
        self.messages = 0  # every message received, valid or not
        self.last_error = ""
        self.on_record = on_record
        self.lock = threading.Lock()

    def feed(self, topic, payload):
        self.messages += 1
        try:
            _, role, device_id, kind = schema.parse_topic(topic)
        except ValueError:
            return
        with self.lock:
            v = self.vehicles.get(device_id)
            if v is None:
                v = self.vehicles[device_id] = Vehicle(device_id, role)
            v.last_seen = time.time()
            before = set(v.stream.records)
            try:
                v.stream.feed(topic, payload)
            except Exception as e:  # jsonschema.ValidationError, ValueError: count and show, keep going
                self.invalid += 1
                self.last_error = "%s: %s" % (topic, str(e).splitlines()[0][:120])
                return
            if kind == "status":
                v.status = v.stream.status
                v.online = v.status.get("on")
                return
            if kind == "pos":
                doc = json.loads(payload)
                recs = schema.decode_batch(schema.TYPE_OF_KIND[kind], doc)
                if not doc.get("bl") and recs and recs[-1]["ts"] >= v.pos_ts:  # by time: seqs restart per epoch
                    v.pos = recs[-1]
                    v.pos_ts = recs[-1]["ts"]
            for key in sorted(set(v.stream.records) - before):  # (epoch, seq)
                k, rec = v.stream.records[key]
                rec = dict(rec, e=key[0])
                self._apply(v, k, rec)
                if self.on_record:
                    self.on_record(v, k, rec)

    def _apply(self, v, kind, rec):
        if kind == "stop":
            v.visits += 1
            b = sum(d[0] for d in rec["dr"])
            a = sum(d[1] for d in rec["dr"])
            v.boardings += b
            v.alightings += a
            if v.last_visit is None or rec["tc"] >= v.last_visit["tc"]:
                v.last_visit = rec
                v.load = rec["ld"]
                v.occupancy = rec["oc"]
        elif kind == "count":
            for i, o in rec["g"]:
                v.counts[0] += i
                v.counts[1] += o
        elif kind == "roster":
            (v.yard.add if rec["k"] == 1 else v.yard.discard)(rec["bus"])

    def table(self):
        """Lines of the live fleet table."""
        rows = ["%-12s %-6s %-22s %6s %5s %-11s %6s %9s %6s %s" % (
            "device", "state", "position", "km/h", "load", "occupancy", "visits", "on/off", "queue", "link")]
        safe = []
        with self.lock:
            for dev in sorted(self.vehicles):
                v = self.vehicles[dev]
                st = v.status or {}
                q = (st.get("queue") or {}).get("depth", "")
                link = st.get("link") or {}
                state = "online" if v.online else ("offline" if v.online is False else "?")
                if v.online and st.get("safe"):
                    state = "SAFE"
                    safe.append("safe mode %s: %s" % (dev, st["safe"].get("why", "?")))
                if v.role == "depot":
                    pos = "gates in %d out %d" % tuple(v.counts)
                    rows.append("%-12s %-6s %-22s %6s %5s %-11s %6s %9s %6s %s" % (
                        dev, state, pos, "", "", "yard %d" % len(v.yard), "", "", q, link.get("type", "")))
                    continue
                if v.pos:
                    pos = "%.5f,%.5f" % (v.pos["lat_e6"] / 1e6, v.pos["lon_e6"] / 1e6)
                    kmh = "%.0f" % (v.pos["speed_cmps"] * 0.036)
                else:
                    pos, kmh = "-", ""
                rows.append("%-12s %-6s %-22s %6s %5s %-11s %6d %4d/%-4d %6s %s" % (
                    dev, state, pos, kmh, "" if v.load is None else v.load, OCCUPANCY.get(v.occupancy, ""),
                    v.visits, v.boardings, v.alightings, q, link.get("type", "")))
        rows += safe
        if self.invalid:
            rows.append("invalid messages: %d (last: %s)" % (self.invalid, self.last_error))
        return rows


def record_row(v, kind, rec):
    """One flat dict per record, for JSON lines and CSV."""
    row = {"device": v.device_id, "kind": kind, "e": rec.get("e", 0), "seq": rec["seq"], "ts": rec["ts"]}
    if kind == "pos":
        row.update(lat=rec["lat_e6"] / 1e6, lon=rec["lon_e6"] / 1e6, speed_kmh=round(rec["speed_cmps"] * 0.036, 1))
    elif kind == "stop":
        row.update(lat=rec["la"] / 1e6, lon=rec["lo"] / 1e6, stop_id=rec["id"], load=rec["ld"],
                   boardings=sum(d[0] for d in rec["dr"]), alightings=sum(d[1] for d in rec["dr"]))
    else:
        row["detail"] = json.dumps({k: rec[k] for k in rec if k not in ("e", "seq", "ts", "flags")})
    return row


class ListenError(Exception):
    pass


def credentials(args):
    """(user, password, host, port, ca, cert, key) from --creds and the command line."""
    doc = {}
    if args.creds:
        try:
            with open(args.creds) as f:
                doc = json.load(f)
            doc["username"], doc["mqtt_password"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ListenError("cannot use the credential file %s (%s): give one that provisioning wrote, e.g. "
                              "build/fleet/broker/consumer.json" % (args.creds, e))
    user = args.user or doc.get("username")
    pw = doc.get("mqtt_password") if not args.password_file else open(args.password_file).read().strip()
    host = args.host or doc.get("host") or "127.0.0.1"
    port = args.port or doc.get("port") or 1883
    ca = args.ca or (doc.get("ca") if doc.get("tls") else None)
    return user, pw, host, int(port), ca, doc.get("cert"), doc.get("key")


def connect(args, fleet, timeout_s=10.0, topics=None, client_id=None):
    """Connect, log in and subscribe (to `topics`, default <root>/#); raise ListenError with the reason
    instead of showing an empty table. fleet.feed(topic, payload) gets every message."""
    import paho.mqtt.client as mqtt
    user, pw, host, port, ca, cert, key = credentials(args)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "phs-listener-%d" % os.getpid())
    if user:
        client.username_pw_set(user, pw)
    if ca:
        client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    state = {"connack": None, "suback": None}
    done = threading.Event()

    def on_connect(c, u, flags, rc, props=None):
        state["connack"] = rc
        if rc.is_failure:
            done.set()
        else:
            c.subscribe([(t, 1) for t in topics or [args.root + "/#"]])

    def on_subscribe(c, u, mid, codes, props=None):
        state["suback"] = codes
        done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda c, u, m: fleet.feed(m.topic, bytes(m.payload))
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ValueError) as e:
        raise ListenError("cannot reach the broker at %s:%d: %s" % (host, port, e))
    client.loop_start()
    ok = done.wait(timeout_s)
    rc, codes = state["connack"], state["suback"]
    why = None
    if not ok:
        why = "the broker at %s:%d did not answer the login within %.0f s" % (host, port, timeout_s)
    elif rc is not None and rc.is_failure:
        why = ("the broker refused the login as %s (%s): check the credential file or ask for a provisioned "
               "account (consumer.json)" % (user or "anonymous", rc))
    elif codes and any(getattr(c, "is_failure", False) for c in codes):
        why = ("logged in as %s but not allowed to read %s: use the consumer or operator account"
               % (user or "anonymous", " ".join(topics or [args.root + "/#"])))
    if why:
        client.loop_stop()
        client.disconnect()
        raise ListenError(why)
    client.on_disconnect = lambda c, u, f, rc, p=None: print(
        "listen: lost the broker (%s); reconnecting" % rc, file=sys.stderr, flush=True)
    return client


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--creds", help="credential file from provisioning (build/fleet/broker/consumer.json)")
    ap.add_argument("--host", help="broker host (default: from --creds, else 127.0.0.1)")
    ap.add_argument("--port", type=int, help="broker port (default: from --creds, else 1883)")
    ap.add_argument("--root", default="phs", help="topic root (default phs)")
    ap.add_argument("--user")
    ap.add_argument("--password-file", help="file holding the password (never typed on the command line)")
    ap.add_argument("--ca", help="CA certificate (PEM) to verify the broker; enables TLS")
    ap.add_argument("--jsonl", help="append every record as a JSON line to this file")
    ap.add_argument("--csv", help="write every record as a CSV row to this file")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (default: run until Ctrl-C)")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between table refreshes")
    ap.add_argument("--quiet", action="store_true", help="no table, only files")
    args = ap.parse_args(argv)

    jf = open(args.jsonl, "a") if args.jsonl else None
    cf = open(args.csv, "w", newline="") if args.csv else None
    cw = csv.DictWriter(cf, CSV_FIELDS) if cf else None
    if cw:
        cw.writeheader()

    def on_record(v, kind, rec):
        row = record_row(v, kind, rec)
        if jf:
            jf.write(json.dumps(row) + "\n")
            jf.flush()
        if cw:
            cw.writerow(row)
            cf.flush()

    fleet = Fleet(on_record)
    try:
        client = connect(args, fleet)
    except ListenError as e:
        print("listen: %s" % e, file=sys.stderr)
        return 2
    t_start = time.time()
    t_end = t_start + args.seconds if args.seconds else None
    user = credentials(args)[0] or "anonymous"
    silent = ("received no message at all: either no board ever connected to this broker, or %s is not "
              "allowed to read %s/# (the broker accepts the subscription and delivers nothing): use "
              "build/fleet/broker/consumer.json" % (user, args.root))
    warned = False
    try:
        while t_end is None or time.time() < t_end:
            time.sleep(args.every)
            if not args.quiet and fleet.messages:
                print("\n".join([time.strftime("%H:%M:%S")] + fleet.table()), flush=True)
            if not fleet.messages and not warned and time.time() - t_start >= 10:
                print("listen: %s" % silent, file=sys.stderr, flush=True)
                warned = True
    except KeyboardInterrupt:
        pass
    client.loop_stop()
    client.disconnect()
    for f in (jf, cf):
        if f:
            f.close()
    if not fleet.messages:
        print("listen: %s" % silent, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
