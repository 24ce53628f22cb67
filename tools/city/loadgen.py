#!/usr/bin/env python3
"""Load generator: N synthetic buses, each on its own MQTT connection, for a bounded time.

    .venv/bin/python tools/city/loadgen.py --port 1883 --buses 1000 --seconds 120 --out gen.json

Each bus is a `fakefleet.SynthBus` (messages from the firmware's own encoder
at its default cadence) with its own client id, last will and QoS 1 batches,
publishing in real time (time stamps are the wall clock). Buses start spread
over the first batch period, as a fleet does. The output file lists what the
broker acknowledged (records per device) and, for every live position batch,
when it was written to the socket, keyed by device and the newest fix's time
stamp: the bench joins that with the time the fix first shows in the feed.
Loopback only (the default host); the run ends after --seconds.
"""

import argparse
import asyncio
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from city import fakefleet  # noqa: E402
from city.mqttload import Conn  # noqa: E402
import telemetry  # noqa: E402
from transit import schema  # noqa: E402

TICK_S = 0.1


async def run(a):
    route = fakefleet.load_route()
    fakefleet.BATCH_S = a.batch_s
    buses = [fakefleet.SynthBus("%s%04d" % (a.prefix, i), route, phase_s=i * 37 % 3000, seed=i)
             for i in range(a.buses)]
    acked = {}  # device -> set of seqs the broker acknowledged
    pubtimes = {}  # "device ts" -> wall time of the PUBLISH write
    sent = {"msgs": 0, "bytes": 0, "qos1": 0}

    def on_ack(info):
        dev, seqs = info
        acked.setdefault(dev, set()).update(seqs)

    conns = []
    for k in range(0, len(buses), 200):  # connect in waves: a broker restart looks the same
        group = buses[k:k + 200]
        conns += await asyncio.gather(*[
            Conn(b.id, on_ack).connect(a.host, a.port, will=(schema.topic("phs", "bus", b.id, "status"),
                                                             schema.offline_doc(b.id).encode(), True))
            for b in group])
    print("loadgen: %d buses connected" % len(conns), flush=True)
    t_end = time.time() + a.seconds
    while time.time() < t_end:
        now = time.time()
        for b, c in zip(buses, conns):
            for topic, payload, qos, retain in b.due(now):
                info = None
                if qos:
                    kind, dev, recs, doc = telemetry.decode(topic, payload) if a.check else _fast(topic, payload)
                    info = (dev, [r["seq"] for r in recs])
                    if kind == "pos":
                        pubtimes["%s %d" % (dev, recs[-1]["ts"])] = time.time()
                    sent["qos1"] += 1
                c.publish(topic, payload, qos, retain, info)
                sent["msgs"] += 1
                sent["bytes"] += len(payload)
        await asyncio.sleep(max(0.0, TICK_S - (time.time() - now)))
    await asyncio.sleep(a.settle)  # outstanding PUBACKs
    pending = sum(len(c.pending) for c in conns)
    for c in conns:
        await c.close()
    return {"buses": a.buses, "seconds": a.seconds, "sent": sent, "unacked": pending,
            "acked": {d: len(s) for d, s in acked.items()}, "pubtimes": pubtimes}


def _fast(topic, payload):
    """Decode without JSON Schema (the generator made the message itself)."""
    _, _, dev, kind = schema.parse_topic(topic)
    doc = json.loads(payload)
    return kind, dev, schema.decode_batch(schema.TYPE_OF_KIND[kind], doc), doc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--buses", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--batch-s", type=int, default=60, help="uplink.batch_s of every bus (firmware default 60)")
    ap.add_argument("--prefix", default="bus-")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--check", action="store_true", help="validate every message against the JSON Schema")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    res = asyncio.run(run(a))
    with open(a.out, "w") as f:
        json.dump(res, f)
    print("loadgen: %d messages, %d bytes, %d unacknowledged" % (res["sent"]["msgs"], res["sent"]["bytes"],
                                                                  res["unacked"]), flush=True)


if __name__ == "__main__":
    main()
