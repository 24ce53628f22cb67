"""Run drive.py under the MicroPython unix port while a test plays with the broker."""

import json
import os
import subprocess
import threading
import time

from harness import paths

DRIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drive.py")


def device(broker, device_id="bus-001", role="bus", tls=False, port=None, host=None, **extra):
    doc = {"device_id": device_id, "role": role, "board": "sim",
           "broker": {"host": host or "127.0.0.1", "port": port or broker.port, "tls": tls, "keepalive_s": 30}}
    doc.update(extra)
    return doc


class Run:
    """One drive.py process; stdout lines are collected as they come."""

    def __init__(self, mp, tmp_path, dev, secrets=None, esp32=False, heap="256K", **scenario):
        self.tmp = str(tmp_path)
        os.makedirs(os.path.join(self.tmp, "q"), exist_ok=True)
        sc = {"device": dev, "secrets": secrets or {}, "qdir": os.path.join(self.tmp, "q"),
              "stop_file": os.path.join(self.tmp, "STOP")}
        sc.update(scenario)
        self.stop_file = sc["stop_file"]
        path = os.path.join(self.tmp, "scenario.json")
        with open(path, "w") as f:
            json.dump(sc, f)
        env = mp.env([paths.ESP32NET] if esp32 else [])
        self.proc = subprocess.Popen(mp.command(DRIVE, heap, [path]), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=self.tmp)
        self.lines = []
        self._cond = threading.Condition()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append(None)
            self._cond.notify_all()

    def wait_for(self, pred, timeout=15.0):
        """Wait for a stdout line with pred(line) true; return it (None at timeout)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self.lines):
                    line = self.lines[seen]
                    seen += 1
                    if line is None:
                        return None
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def acked_at_least(self, n, timeout=15.0):
        return self.wait_for(lambda s: s.startswith("@acked ") and int(s.split()[1]) >= n, timeout)

    def stop(self):
        open(self.stop_file, "w").close()

    def result(self, timeout=60.0):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._t.join(5)
        err = self.proc.stderr.read()
        for line in self.lines:
            if line and line.startswith("@result "):
                return json.loads(line[8:])
        raise AssertionError("drive.py gave no result (exit %s)\n%s\n%s" % (
            self.proc.returncode, "\n".join(l for l in self.lines[-30:] if l), err[-4000:]))


def rebuild(messages, device_id="bus-001"):
    """A consumer: validate every message of one device, rebuild its stream."""
    import telemetry
    st = telemetry.Stream()
    order = []  # (kind, [seqs], backlog, qos) per batch message in arrival order
    for topic, payload, qos, retain in messages:
        if "/%s/" % device_id not in topic or topic.endswith("/cmd"):
            continue
        st.feed(topic, payload)
        kind = topic.rsplit("/", 1)[1]
        if kind in telemetry.BATCH_KINDS:
            _, _, recs, doc = telemetry.decode(topic, payload)
            order.append((kind, [r["seq"] for r in recs], bool(doc.get("bl")), qos))
    return st, order


def first_seen_in_order(order, kind):
    """True when, within kind, each record first arrives after every smaller seq."""
    seen = set()
    last = 0
    for k, seqs, backlog, qos in order:
        if k != kind or qos == 0:  # live copies (QoS 0) jump ahead by design
            continue
        for s in seqs:
            if s in seen:
                continue
            if s < last:
                return False
            seen.add(s)
            last = s
    return True
