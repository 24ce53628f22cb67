"""Uplink benchmark (prints figures, asserts nothing about wall time).

1. Drain a backlog of 10,000 positions from the real durable queue to a local
   Mosquitto under the MicroPython unix port (plain and TLS): records/s, bytes
   on the wire per position (every byte written to the socket: CONNECT,
   SUBSCRIBE, status, live copy, batches; TCP/TLS framing excluded).
2. Live operation: bytes per position when a message carries the positions of
   one batching period (uplink.batch_s), from the same encoder.

Usage: .venv/bin/python bench/bench_uplink.py [records]
"""

import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
sys.path.insert(0, os.path.join(ROOT, "host_tests", "uplink_scripts"))
import conftest  # noqa: E402,F401  paths and fakes, as the tests set them
from harness.broker import Broker, Subscriber, TlsMaterial  # noqa: E402
from harness.mpy import MicroPython  # noqa: E402
from scenario import Run, device  # noqa: E402

from transit import records as R, schema  # noqa: E402


def drain(mp, tmp, n, tls=None):
    b = Broker(os.path.join(tmp, "broker-%s" % bool(tls)), tls=tls).start()
    try:
        sub = Subscriber(b, ["phs/#"], ca_cert=tls.ca_cert if tls else None)
        kw = {"ca": tls.ca_der} if tls else {}
        folder = os.path.join(tmp, "run-%s" % bool(tls))
        os.makedirs(folder)
        run = Run(mp, folder, device(b, tls=bool(tls), host="localhost" if tls else None), prefill=n, total=n,
                  duration_ms=300000, settings={"batch_s": 0}, **kw)
        res = run.result(timeout=600)
        sub.wait_for(3, timeout=5)
        sub.close()
    finally:
        b.stop()
    st = res["stats"]
    secs = res["elapsed_ms"] / 1000
    print("%-5s drain %d positions: %.2f s, %.0f records/s, %d messages, %.1f bytes/position on the wire, "
          "longest step %.1f ms" % ("TLS" if tls else "plain", st["recs_acked"], secs, st["recs_acked"] / secs,
                                    st["msgs"], st["tx_bytes"] / n, res["worst_step_us"] / 1000))


def live_table():
    topic = schema.topic("phs", "bus", "bus-001", "pos")
    print("live: positions every 5 s, one QoS 1 message per batching period")
    for batch_s in (5, 15, 30, 60, 120, 200):
        k = batch_s // 5
        recs = []
        for i in range(k):
            p = R.pack_position(16821234 + 37 * i, 100262345 - 29 * i, 833 + i % 7, 900 + i % 50, 450, 9, 12, 1, 40 * i)
            recs.append((1000 + i, R.POS, 0, 1700000000 + 5 * i, p))
        w = schema.Writer(bytearray(8192))
        schema.encode_batch(w, "bus-001", R.POS, recs)
        body = w.pos
        rem = 2 + len(topic) + 2 + body
        wire = 1 + (1 if rem < 128 else 2) + rem + 4  # PUBLISH + its PUBACK (4 bytes down)
        print("  batch_s %3d: %2d positions/message, %4d bytes/message, %.1f bytes/position (incl. PUBACK)"
              % (batch_s, k, wire, wire / k))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    mp = MicroPython()
    tmp = tempfile.mkdtemp(prefix="bench_uplink_")
    drain(mp, tmp, n)
    drain(mp, tmp, n, TlsMaterial(os.path.join(tmp, "tls")))
    live_table()


if __name__ == "__main__":
    main()
