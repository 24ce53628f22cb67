#!/usr/bin/env python3
"""Opt-in: the fleet load on a two-node RabbitMQ cluster (MQTT plugin), one node killed mid-run.

    .venv/bin/python bench/bench_city_cluster.py --run [--buses 1000] [--seconds 120]

Without --run it only says how to run it (so `make bench` stays broker-neutral
and never installs anything). With --run: installs Debian's rabbitmq-server if
missing (tools/ensure_rabbitmq.sh, as root), starts two nodes on loopback,
clusters them and mirrors the MQTT session queues. The bridge consumes
through the broker's own queue (its persistent MQTT session on node B,
mirrored to A). Synthetic buses (tools/city/loadgen.py --hosts) are spread
over both nodes, plus real firmware instances (tools/sim.py) whose
`broker.host` lists both nodes, starting on A. Halfway through, node A is
SIGKILLed: its boards must reconnect to B and nothing may be lost. Prints
the same figures as bench_city.py plus reconnections and the time until
every board published again.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, TOOLS)
sys.path.insert(0, HERE)

from bench_city import Poller, close_window, cpu_s, get, mem_kib, pct, start_bridge  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="really run it (installs rabbitmq-server as root)")
    ap.add_argument("--buses", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--sims", type=int, default=2)
    a = ap.parse_args(argv)
    if not a.run:
        print("bench_city_cluster: opt-in; run `.venv/bin/python bench/bench_city_cluster.py --run` "
              "(installs Debian's rabbitmq-server as root, about 3 minutes)")
        return 0
    subprocess.run(["bash", os.path.join(TOOLS, "ensure_rabbitmq.sh")], check=True)
    import rabbit_nodes as rn
    import sim
    work = os.path.join(ROOT, "build", "bench_city_cluster")
    subprocess.run(["rm", "-rf", work])
    os.makedirs(work)
    na, nb = rn.Node(work, "phsa"), rn.Node(work, "phsb")
    bridge = gen = None
    try:
        t = time.time()
        na.start()
        nb.start()
        rn.cluster(na, nb)
        print("cluster: up in %.0f s (MQTT ports %d, %d)" % (time.time() - t, na.mqtt, nb.mqtt), flush=True)
        bridge, base = start_bridge("127.0.0.1", nb.mqtt, "city-bridge-1", os.path.join(work, "bridge"), tries=200)
        time.sleep(1)
        out = os.path.join(work, "gen.json")
        gen = subprocess.Popen([sys.executable, os.path.join(TOOLS, "city", "loadgen.py"), "--hosts",
                                "127.0.0.1:%d,127.0.0.1:%d" % (na.mqtt, nb.mqtt), "--buses", str(a.buses),
                                "--seconds", str(a.seconds), "--settle", "30", "--out", out],
                               stdout=subprocess.PIPE, text=True)
        gen.stdout.readline()
        poller = Poller(base + "/gtfs-rt/vehicle-positions.pb")
        poller.start()

        class NodeB:  # the sims' listener: on the surviving node (the cluster routes between nodes)
            host, port, running = "127.0.0.1", nb.mqtt, True
        runs = []
        for i in range(a.sims):  # each board logs in as itself (user = client id = device id)
            na.ctl("add_user", "bus-sim%02d" % i, "sim-pw-%d" % i)
            na.ctl("set_permissions", "-p", "/", "bus-sim%02d" % i, ".*", ".*", ".*")
            args = sim.parse(["--mqtt-password", "sim-pw-%d" % i, "--broker", "127.0.0.1:%d" % nb.mqtt, "--broker-hosts",
                              "127.0.0.1:%d,127.0.0.1:%d" % (na.mqtt, nb.mqtt), "--accel", "10", "--no-table",
                              "--device", "bus-sim%02d" % i, "--stops", "9", "--seed", str(21 + i),
                              "--batch-s", "60", "--gps-loss-at", "-1", "--drain-s", "240", "--outage-after", "0"])
            r = sim.Run(args, NodeB(), out=None)
            th = threading.Thread(target=r.run, daemon=True)
            th.start()
            runs.append((r, th))
        c0, t0, s0 = cpu_s(bridge.pid), time.time(), json.loads(get(base + "/api/stats"))
        time.sleep(a.seconds / 2)
        na.kill()
        t_kill = time.time()
        print("cluster: node A killed at %.0f s" % (t_kill - t0), flush=True)
        rss = 0
        while gen.poll() is None:
            rss = max(rss, mem_kib(bridge.pid, "VmRSS"))
            time.sleep(1)
        c1, t1, s1, res = close_window(bridge, base, out, poller, runs, 60, 900)
        acked = res["acked"]
        stats = json.loads(get(base + "/api/stats"))
        got = stats["per_device"]
        lost = sum(max(0, n - got.get(d, 0)) for d, n in acked.items())
        sim_lost, sim_moved, detail = 0, 0, []
        for r, _ in runs:
            v = r.fleet.vehicles.get(r.args.device)
            detail.append({"device": r.args.device, "appended": ((r.truth or {}).get("queue") or {}).get("appended"),
                           "bridge_records": got.get(r.args.device, 0), "left_on_board": (r.truth or {}).get("depth"),
                           "status_uplink": (v.stream.status or {}).get("uplink") if v else None,
                           "last_lines": r.lines[-2:-1]})
            # every record the firmware appended to its queue must be in the bridge
            sim_lost += max(0, ((r.truth or {}).get("queue") or {}).get("appended", 1 << 30) - got.get(r.args.device, 0))
            sim_moved += 1 if v and v.stream.status and v.stream.status.get("uplink", {}).get("reconnects") else 0
        lat = [poller.first[k] - t for k, t in res["pubtimes"].items() if k in poller.first]
        after = [poller.first[k] - t for k, t in res["pubtimes"].items() if k in poller.first and t > t_kill]
        row = {"buses": a.buses, "nodes": 2, "seconds": round(t1 - t0, 1),
               "msgs_per_s": round((s1["messages"] - s0["messages"]) / (t1 - t0), 1),
               "bridge_cpu_core": round((c1 - c0) / (t1 - t0), 3), "bridge_rss_mib": round(rss / 1024, 1),
               "latency_p50_ms": round(pct(lat, 50) * 1000), "latency_p99_ms": round(pct(lat, 99) * 1000),
               "latency_p99_after_kill_ms": round(pct(after, 99) * 1000), "latency_max_ms": round(max(lat) * 1000) if lat else None,
               "feed_build_p50_ms": stats["feed"]["build_ms_p50"], "feed_build_p99_ms": stats["feed"]["build_ms_p99"],
               "bus_reconnects": res["moves"]["reconnects"], "reconnect_failures": res["moves"]["failed"],
               "records_acked": sum(acked.values()), "records_lost": lost, "unacked_at_end": res["unacked"],
               "sims": len(runs), "sims_reconnected": sim_moved, "sim_records_lost": sim_lost,
               "bridge_connects": stats["connects"], "invalid": stats["invalid"],
               "loadavg": os.getloadavg()[0]}
        print("bench_city_cluster: " + json.dumps(row), flush=True)
        for d in detail:
            print("bench_city_cluster: sim " + json.dumps(d), flush=True)
        return 0
    finally:
        for p in (gen, bridge):
            if p and p.poll() is None:
                p.terminate()
                p.wait(10)
        na.kill()
        nb.stop()


if __name__ == "__main__":
    sys.exit(main())
