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

With --hosts h:p,h:p (a broker cluster) bus i starts on node i mod n and,
like a board with a node list in broker.host, moves to the next node when its connection
dies: it reconnects after about a second and re-sends whatever the broker
had not acknowledged plus what it recorded meanwhile (at least once).
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
from city.mqttload import Conn, MqttError  # noqa: E402
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
        acked.setdefault(info[0], set()).update(info[1])

    hosts = [(h.rpartition(":")[0] or a.host, int(h.rpartition(":")[2])) for h in a.hosts.split(",")] \
        if a.hosts else [(a.host, a.port)]
    node = {}  # bus id -> index into hosts
    backlog = {b.id: [] for b in buses}  # recorded while disconnected
    moves = {"reconnects": 0, "failed": 0}

    async def dial(b, i):
        node[b.id] = i % len(hosts)
        h, p = hosts[node[b.id]]
        return await Conn(b.id, on_ack).connect(h, p, will=(schema.topic("phs", "bus", b.id, "status"),
                                                            schema.offline_doc(b.id).encode(), True))

    conns = []
    for k in range(0, len(buses), 200):  # connect in waves: a broker restart looks the same
        conns += await asyncio.gather(*[dial(b, k + j) for j, b in enumerate(buses[k:k + 200])])
    print("loadgen: %d buses connected" % len(conns), flush=True)
    redial = set()

    async def move(i):
        b, old = buses[i], conns[i]
        while True:
            await asyncio.sleep(0.5 + (i % 100) / 100)  # backoff with jitter, as the firmware does
            try:
                c = await dial(b, node[b.id] + 1)
                break
            except (OSError, asyncio.TimeoutError, MqttError):
                moves["failed"] += 1
        conns[i] = c
        moves["reconnects"] += 1
        for info in list(old.pending.values()) + backlog[b.id]:
            c.publish(info[2], info[3], info[4], info[5], info if info[4] else None)
        backlog[b.id] = []
        redial.discard(i)

    t_end = time.time() + a.seconds
    while time.time() < t_end:
        now = time.time()
        for i, b in enumerate(buses):
            c = conns[i]
            for topic, payload, qos, retain in b.due(now):
                info = [None, None, topic, payload, qos, retain]
                if qos:
                    kind, dev, recs, doc = telemetry.decode(topic, payload) if a.check else _fast(topic, payload)
                    info[0], info[1] = dev, [r["seq"] for r in recs]
                    if kind == "pos":
                        pubtimes["%s %d" % (dev, recs[-1]["ts"])] = time.time()
                    sent["qos1"] += 1
                if c.closed:
                    backlog[b.id].append(info)
                else:
                    c.publish(topic, payload, qos, retain, info if qos else None)
                sent["msgs"] += 1
                sent["bytes"] += len(payload)
            if c.closed and i not in redial:
                redial.add(i)
                asyncio.ensure_future(move(i))
        await asyncio.sleep(max(0.0, TICK_S - (time.time() - now)))
    end = time.time() + a.settle  # outstanding PUBACKs and reconnections
    while time.time() < end and (redial or any(c.pending for c in conns)):
        await asyncio.sleep(0.2)
    pending = sum(len(c.pending) for c in conns) + sum(len(v) for v in backlog.values())
    for c in conns:
        if not c.closed:
            await c.close()
    return {"buses": a.buses, "seconds": a.seconds, "sent": sent, "unacked": pending, "moves": moves,
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
    ap.add_argument("--hosts", help="broker nodes HOST:PORT,HOST:PORT (a cluster); buses spread over them")
    ap.add_argument("--buses", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--batch-s", type=int, default=60, help="uplink.batch_s of every bus (firmware default 60)")
    ap.add_argument("--prefix", default="bus-")
    ap.add_argument("--settle", type=float, default=10.0, help="at most this long for the last PUBACKs")
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
