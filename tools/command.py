#!/usr/bin/env python3
"""Send a command to one or more boards and wait for each board's answer.

    .venv/bin/python tools/command.py --creds build/fleet/broker/operator.json bus-0107 ping
    .venv/bin/python tools/command.py --creds ... bus-0107 bus-0108 set status_period_s 600
    .venv/bin/python tools/command.py --creds ... bus-0107 get uplink.connect_ms
    .venv/bin/python tools/command.py --creds ... --clear-retained bus-0107
    make cmd DEVICES="bus-0107 bus-0108" CMD="set status_period_s 600"

Commands v2 (docs/telemetry.md): each command gets a fresh id and an expiry
(`--ttl-s`, default 120 s: a board that comes back later must not act on a
stale order). Commands are not retained: a board between two connections
does not get one, so the same command (same id: a board runs an id once and
answers a copy `replayed`) is sent again every `--resend-s` until the board
answers or `--timeout-s` passes. The board's role (bus or depot) is read
from its retained status; give `--role` for a board that has never
connected.

Exit codes: 0 every board answered ok; 1 a board refused (its reason is
printed); 2 the tool could not run (credentials, broker, arguments); 3 a
board did not answer in time (with when it was last seen, if ever).

`--clear-retained` removes a retained message from a board's command topic
(someone published one by hand): otherwise the broker hands it to the board
on every reconnect, and the board answers it `replayed` each time.
"""

import argparse
import json
import os
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from listen import ListenError, connect, credentials  # noqa: E402

OPS = {"ping": 0, "get": 1, "set": 2, "flush": 0, "reset_load": 0, "reboot": 0}  # op -> arguments
ROLES = ("bus", "depot")


class CmdError(Exception):
    pass


def value(text):
    """A setting's value from the command line: JSON when it parses (600, true, "x"), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def build(words, ttl_s, now=None):
    """The command document for `words` (op and its arguments), with a new id and exp."""
    if not words:
        raise CmdError("give a command: one of %s" % ", ".join(sorted(OPS)))
    op, args = words[0], words[1:]
    if op not in OPS:
        raise CmdError('unknown command "%s": one of %s (an update goes through tools/ota.py)'
                       % (op, ", ".join(sorted(OPS))))
    if len(args) != OPS[op]:
        raise CmdError("%s takes %s" % (op, ("no argument", "a setting's key", "a key and a value")[OPS[op]]))
    doc = {"id": "op-" + uuid.uuid4().hex[:16], "op": op, "exp": int(now or time.time()) + ttl_s}
    if args:
        doc["key"] = args[0]
    if len(args) > 1:
        doc["val"] = value(args[1])
    return doc


class Board:
    """What we know of one board: its role (from its retained status), when it was last
    seen, and its answer."""

    def __init__(self, device):
        self.device = device
        self.role = None
        self.online = None
        self.seen = None  # status ts (Unix s) of the last status seen
        self.answer = None


class Waiter:
    """Collects the boards' statuses and answers from the broker's callback thread."""

    def __init__(self, devices, root):
        self.root = root
        self.boards = {d: Board(d) for d in devices}
        self.ids = {}
        self.cond = threading.Condition()

    def feed(self, topic, payload):
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != self.root or parts[2] not in self.boards:
            return
        try:
            doc = json.loads(payload)
        except ValueError:
            return  # a foreign message: not ours to judge (tools/listen.py reports those)
        if not isinstance(doc, dict):
            return
        b = self.boards[parts[2]]
        with self.cond:
            if parts[3] == "status":
                b.role = parts[1] if parts[1] in ROLES else b.role
                b.online = doc.get("on")
                b.seen = doc.get("ts", b.seen)
            elif parts[3] == "ack" and doc.get("id") == self.ids.get(b.device) and b.answer is None:
                b.answer = doc
            self.cond.notify_all()

    def wait(self, until, done):
        with self.cond:
            while not done() and time.monotonic() < until:
                self.cond.wait(min(0.5, max(0.0, until - time.monotonic())))
            return done()


def describe_unanswered(b, timeout_s):
    if b.seen is None:
        return "no answer within %.0f s; no status from this board on the broker (never connected, " \
               "or another --root / account)" % timeout_s
    ago = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(b.seen)) if isinstance(b.seen, int) else b.seen
    return "no answer within %.0f s; its last status (%s) says %s" % (
        timeout_s, ago, "online" if b.online else "offline")


def run(args, say=print):
    devices = list(dict.fromkeys(args.devices))
    topics = ["%s/+/%s/%s" % (args.root, d, k) for d in devices for k in ("status", "ack")]
    w = Waiter(devices, args.root)
    try:
        client = connect(args, w, timeout_s=10.0, topics=topics, client_id="phs-cmd-%s" % uuid.uuid4().hex[:8])
    except ListenError as e:
        raise CmdError(str(e))
    try:
        # Retained statuses arrive right after the subscription: they tell each board's role.
        w.wait(time.monotonic() + args.find_s, lambda: all(b.role for b in w.boards.values()))
        for b in w.boards.values():
            if b.role is None:
                if not args.role:
                    raise CmdError("%s: no retained status on the broker, so its role is unknown: give --role "
                                   "bus or --role depot" % b.device)
                b.role = args.role
        if args.clear_retained:
            for b in w.boards.values():
                client.publish("%s/%s/%s/cmd" % (args.root, b.role, b.device), b"", qos=1, retain=True).wait_for_publish(5)
                say("%s: retained command cleared" % b.device)
            return 0
        docs = {d: build(args.command, args.ttl_s) for d in devices}
        with w.cond:
            w.ids.update({d: docs[d]["id"] for d in devices})
        deadline = time.monotonic() + args.timeout_s
        while True:
            waiting = [b for b in w.boards.values() if b.answer is None]
            if not waiting or time.monotonic() >= deadline:
                break
            for b in waiting:
                client.publish("%s/%s/%s/cmd" % (args.root, b.role, b.device), json.dumps(docs[b.device]), qos=1)
            w.wait(min(deadline, time.monotonic() + args.resend_s),
                   lambda: all(b.answer is not None for b in w.boards.values()))
    finally:
        client.on_disconnect = None  # ours: not "lost the broker"
        client.loop_stop()
        client.disconnect()
    code = 0
    for d in devices:
        b = w.boards[d]
        a = b.answer
        if a is None:
            say("%s: %s" % (d, describe_unanswered(b, args.timeout_s)))
            code = max(code, 3)
        elif a.get("ok"):
            say("%s: ok %s" % (d, json.dumps(a.get("r"))))
        else:
            say("%s: refused: %s" % (d, a.get("err")))
            code = max(code, 1)
    return code


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="commands: ping | get KEY | set KEY VALUE | flush | reset_load | reboot")
    ap.add_argument("--creds", help="operator credentials from provisioning (build/fleet/broker/operator.json)")
    ap.add_argument("--host", help="broker host (default: from --creds, else 127.0.0.1)")
    ap.add_argument("--port", type=int, help="broker port (default: from --creds, else 1883)")
    ap.add_argument("--user")
    ap.add_argument("--password-file", help="file holding the password (never typed on the command line)")
    ap.add_argument("--ca", help="CA certificate (PEM) to verify the broker; enables TLS")
    ap.add_argument("--root", default="phs", help="topic root (default %(default)s)")
    ap.add_argument("--role", choices=ROLES, help="role of a board with no retained status")
    ap.add_argument("--ttl-s", type=int, default=120, help="the command expires after this (default %(default)s)")
    ap.add_argument("--timeout-s", type=float, default=60, help="wait this long for answers (default %(default)s)")
    ap.add_argument("--resend-s", type=float, default=5, help="send again this often until answered")
    ap.add_argument("--find-s", type=float, default=3, help="wait this long for the retained statuses")
    ap.add_argument("--clear-retained", action="store_true", help="remove a retained command; sends nothing")
    ap.add_argument("devices", nargs="+", metavar="DEVICE [COMMAND ARGS]",
                    help="device ids, then the command and its arguments")
    a = ap.parse_args(argv)
    # Device ids come first; the command starts at the first known op.
    words = a.devices
    at = next((i for i, w in enumerate(words) if w in OPS), len(words))
    a.devices, a.command = words[:at], words[at:]
    if not a.devices:
        ap.error("give at least one device id before the command")
    if not a.command and not a.clear_retained:
        ap.error("give a command: ping | get KEY | set KEY VALUE | flush | reset_load | reboot")
    if a.command:
        try:
            build(a.command, 1)
        except CmdError as e:
            ap.error(str(e))
    if not 1 <= a.ttl_s <= 86400:
        ap.error("--ttl-s must be 1..86400 (a board refuses an expiry more than a day ahead)")
    return a


def main(argv=None):
    a = parse(argv)
    try:
        credentials(a)  # a bad credential file is reported before anything is sent
        return run(a)
    except (CmdError, ListenError) as e:
        print("command: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
