#!/usr/bin/env python3
"""`make sim`: a simulated bus on a Phitsanulok route, publishing to Mosquitto.

Starts a private Mosquitto on loopback (or uses --broker HOST:PORT), lays out
a board filesystem in build/sim/<device>/, and runs the real bus firmware
under the MicroPython unix port on the simulated board (tools/simbus.py):
1 Hz NMEA along the route with noise and a GPS signal loss, passengers
boarding and alighting through the door beams at every stop. In the middle
of the run the broker goes away for a few stops and comes back (stopped,
killed with SIGKILL, or frozen with SIGSTOP: --outage-kind). A live table
shows what the broker receives; at the end the broker's view is checked
against the generated passengers. The listener holds a persistent session
that the broker has saved to disk before the bus starts, so it misses
nothing even when a persistent broker is killed. One simulator per device
id at a time: a second one is refused (it would delete the first's queue).

    make sim                                  # whole route, 20x real time
    make sim SIM_ARGS="--accel 0 --stops 4"   # as fast as possible, first 4 stops
    make sim SIM_ARGS="--outage-kind freeze --connect-ms 5000"  # a hung broker: TCP open, nothing answers
    make sim CITY=1                           # also the city bridge: live page, GTFS-RT (docs/city.md)
    make sim SIM_ARGS="--tls --stops 6"       # TLS broker, the bus powered on with its clock at 2000-01-01

A socket wait moves the bus's virtual clock as real time passes on a board
(tools/simnet/select.py), so a blocking connect costs the bus what it costs
a board. One connect attempt blocks at most connect_ms (10000 by default),
which the configuration keeps 2 s under watchdog_ms (15000); if a step ever
outlasts the watchdog, the simulator stops and says so (a board would reboot).
Where the firmware speaks TLS, `ssl` is the test fake that checks the
broker's certificate dates against the bus's simulated clock, as mbedTLS on
a board checks them against its RTC (not under --mp32, whose frozen build
has the port's own `ssl`). With --tls the private broker speaks TLS
(certificates made at start, valid from now) and the bus starts as an ESP32
after power-on: its handshakes are refused ("The certificate validity starts
in the future") until the GPS fix sets the clock, then it delivers.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from localbroker import Broker, TlsMaterial  # noqa: E402
from listen import Fleet  # noqa: E402
from mpbuild import compile_tree  # noqa: E402
from simlisten import Listener  # noqa: E402
from simlock import Busy, lock, unlock  # noqa: E402

ROUTE = os.path.join(HERE, "routes", "phitsanulok_line1.json")
SIM_FILES = ("simbus.py", "simgps.py", "passenger_gen.py")
# glibc: heaps below 512 KiB come from the low half of the 32-bit address
# space, where id() is a small int (tools/heapcap.py reads addresses on a full heap).
MP32_ENV = {"MALLOC_MMAP_THRESHOLD_": "524288"}
TLS_PASSWORD = "sim-tls-pw"  # --tls: the board's password (TLS refuses an empty one)
BACKLOG_ON = BACKLOG_OFF = 4  # passengers of each stop visit in an offline backlog (simbus.make_backlog)


def micropython():
    cand = os.path.join(ROOT, ".venv", "bin", "micropython")
    return cand if os.path.exists(cand) else shutil.which("micropython")


def layout(folder, device_id, host, port, route, batch_s=10, connect_ms=10000, hosts=None, password="",
           ca_der=None):
    """A board filesystem: device.json, secrets.json, boards/sim.json (and
    ca.der: TLS with the CA checked, when ca_der is given)."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(os.path.join(folder, "boards"))
    shutil.copy(os.path.join(ROOT, "boards", "sim.json"), os.path.join(folder, "boards", "sim.json"))
    with open(route) as f:
        fences = json.load(f).get("geofences", [])
    device = {"device_id": device_id, "role": "bus", "board": "sim", "topic_root": "phs",
              "broker": {"host": ",".join([host] + list(hosts or ())), "port": port, "tls": bool(ca_der),
                         "keepalive_s": 30},
              "networks": [{"ssid": "phs-sim"}],
              "bus": {"plate": "10-7777", "route": "1"},
              "geofences": [{"id": g["id"], "kind": g["kind"], "at": g["at"], "radius_m": g["radius_m"]}
                            for g in fences],
              # Virtual ms. A socket wait moves virtual time as fast as real time
              # (tools/simnet/select.py), so connect_ms is what a board waits. Acks
              # are awaited between loop steps, where free-running virtual time
              # passes much faster than a real round trip: ack_ms stays generous.
              "uplink": {"batch_s": batch_s, "ack_ms": 30000, "connect_ms": connect_ms,
                         "backoff_min_ms": 1000, "backoff_max_ms": 15000}}
    if ca_der:
        device["broker"]["ca"] = "ca.der"
        shutil.copy(ca_der, os.path.join(folder, "ca.der"))
    with open(os.path.join(folder, "device.json"), "w") as f:
        json.dump(device, f, indent=1)
    with open(os.path.join(folder, "secrets.json"), "w") as f:
        json.dump({"wifi": {"phs-sim": "sim-wifi-key"}, "mqtt_password": password}, f)


def import_path():
    # simnet first: its select.poll moves the virtual clock while the firmware waits on a socket.
    parts = [compile_tree(os.path.join(HERE, "simnet")),
             compile_tree(os.path.join(ROOT, "tools"), "sim", only=SIM_FILES)]
    # mpfakes: `ssl` judges certificate dates by the bus's (virtual) clock, as
    # mbedTLS on a board does; the unix port's own would use the host's clock.
    for p in (os.path.join(ROOT, "host_tests", "mpfakes"), os.path.join(ROOT, "host_tests", "fakes"),
              os.path.join(ROOT, "firmware"), os.path.join(ROOT, "lib"), os.path.join(ROOT, "build", "mpylib")):
        parts.append(compile_tree(p))
    return ":".join(parts + [".frozen"])


class Run:
    """One simulator run; usable from tests (returns the broker's view)."""

    def __init__(self, args, broker=None, out=sys.stdout, held=None):
        self.args = args
        self.held = held  # the device lock, when the caller took it already
        self.out = out
        self.broker = broker
        self.fleet = Fleet()
        self.truth = None
        self.lines = []
        self.outage = []  # (event, stop number, wall time)
        self.code_heap = None
        self.run_baseline = None
        self.stops = []
        self.hourly = []  # live heap after a collection, at each simulated hour
        self.listener = None
        self.reset = None  # the firmware hit a board reset (watchdog): what the line said
        self.timed_out = False
        self._down = False
        self.mem = {}  # "SIM mem" lines: sim, plan, cap (32-bit build only)
        self.backlog = [0, 0, 0]  # stop visits, positions, queue depth made offline before the run
        self.device_extra = {}  # more keys for device.json (e.g. ota_key), set before run()
        self.scenario_extra = {}  # more keys for tools/simbus.py's scenario (e.g. ignition)
        self.on_line = None  # fn(line): every line of the firmware's output as it comes (tests)

    def say(self, text):
        if self.out:
            print(text, file=self.out, flush=True)

    def start_listener(self):
        """The broker-side listener, subscribed and saved before the bus starts."""
        self.listener = Listener(self.broker, self.args.device, self.fleet.feed, self.say)

    def stop_listener(self):
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def run(self):
        held = None if self.held else lock(self.args.device)
        try:
            return self._run()
        finally:
            self.stop_listener()
            if held:
                unlock(held)

    def _run(self):
        a = self.args
        folder = os.path.join(ROOT, "build", "sim", a.device)
        host, port, more = self.broker.host, self.broker.port, None
        if a.broker_hosts:  # the board's own broker list; the listener stays on --broker
            nodes = a.broker_hosts.split(",")
            host, port, more = nodes[0].rpartition(":")[0], int(nodes[0].rpartition(":")[2]), nodes[1:]
        ca_der = None
        if a.tls:  # the certificate names localhost; the bus's clock starts cold, its GPS says today
            ca_der, host = self.broker.tls.ca_der, "localhost"
        layout(folder, a.device, host, port, a.route, a.batch_s, a.connect_ms, more,
               a.mqtt_password or (TLS_PASSWORD if a.tls else ""), ca_der)
        if self.device_extra:
            with open(os.path.join(folder, "device.json")) as f:
                device = json.load(f)
            device.update(self.device_extra)
            with open(os.path.join(folder, "device.json"), "w") as f:
                json.dump(device, f, indent=1)
        scenario = {"route": a.route, "seed": a.seed, "accel": a.accel, "stops": a.stops, "laps": a.laps,
                    "gps_loss": [a.gps_loss_at, a.gps_loss_at + 30] if a.gps_loss_at >= 0 else None,
                    "profile": a.profile, "drain_s": a.drain_s, "busy": a.busy, "hours": a.hours}
        scenario.update(self.scenario_extra)
        if a.tls:
            scenario.update(cold=True, start_unix=int(time.time()))
        with open(os.path.join(folder, "scenario.json"), "w") as f:
            json.dump(scenario, f)
        if a.mp32:
            # Everything frozen into the 32-bit build (tools/mp32.py): the firmware's
            # share of the heap is measured apart from the fakes and the simulator.
            scenario["mem"] = {"cap": a.cap, "startup_s": a.startup_s}
            with open(os.path.join(folder, "scenario.json"), "w") as f:
                json.dump(scenario, f)
        env = dict(os.environ, MICROPYPATH=".frozen" if a.mp32 else import_path())
        if a.mp32:
            env.update(MP32_ENV)
        if a.backlog_h:
            self.make_backlog(folder, env, scenario)
        self.start_listener()
        heap = a.heap
        if heap.startswith("+"):
            self.code_heap = self.measure_baseline(folder, env)
            extra = int(heap[1:])
            if a.mp32:
                # -X heapsize=65536 gives 64000 bytes of blocks: scale the
                # simulator's share the same way, so the firmware gets exactly
                # what a heap of `extra` bytes would give it.
                extra += -(-self.code_heap * 65536 // 64000)
            else:
                extra += self.code_heap
            heap = str(extra)
        self.heap = heap
        cmd = [a.mp32 or micropython(), "-X", "heapsize=" + heap] + self.script() + ["scenario.json"]
        self.say("sim: %s driving %s (%s), %s" % (a.device, os.path.basename(a.route),
                                                   "%sx real time" % a.accel if a.accel else "as fast as possible",
                                                   "broker %s:%d" % (self.broker.host, self.broker.port)))
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        stop_table = threading.Event()
        if a.table:
            threading.Thread(target=self._table, args=(stop_table,), daemon=True).start()
        guard = None
        if a.timeout:
            def overdue():
                self.timed_out = True
                proc.kill()
            guard = threading.Timer(a.timeout, overdue)
            guard.daemon = True
            guard.start()
        try:
            self._read(proc)
        finally:
            if guard:
                guard.cancel()
            if proc.poll() is None:
                proc.kill()
            rc = proc.wait()
            stop_table.set()
            if self._down:  # never leave the broker stopped or frozen
                self._outage_end(None)
        if self.timed_out:
            self.say("sim: the run took more than %.0f s of real time: stopped" % a.timeout)
        time.sleep(1.0)  # let the last messages reach the listener
        return rc

    def _read(self, proc):
        a = self.args
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self.on_line is not None:
                self.on_line(line)
            if line.startswith("SIM stop "):
                f = line.split()
                n = int(f[2])
                # (stop id, true boardings, true alightings, t_open_unix)
                self.stops.append((f[3], int(f[5]), int(f[7]), int(f[11])))
                self.say("sim: " + line[4:])
                self._outage(n, int(f[9]))
            elif line.startswith("SIM reset "):
                f = line.split()
                self.reset = {"cause": int(f[2]), "t": int(f[4]), "step_ms": int(f[6]), "watchdog_ms": int(f[8]),
                              "err": " ".join(f[10:])}
                self.say("sim: *** the board resets (cause %s) at second %s: one step took %s ms, the watchdog "
                         "allows %s ms (uplink: %s) ***" % (f[2], f[4], f[6], f[8], self.reset["err"]))
            elif line.startswith("SIM hour "):
                self.hourly.append(int(line.split()[3]))
            elif line.startswith("SIM mem "):
                f = line.split()
                self.mem[f[2]] = [int(x) if x.isdigit() else x for x in f[3:]]
            elif line.startswith("SIM baseline-run "):
                self.run_baseline = int(line.split()[2])
            elif line.startswith("SIM truth "):
                self.truth = json.loads(line[len("SIM truth "):])
                self.truth["stops"] = self.stops
            elif line.startswith("SIM "):
                if a.verbose:
                    self.say(line)
            else:
                self.say("firmware: " + line)

    def script(self):
        return ["-m", "simbus"] if self.args.mp32 else [os.path.join(HERE, "simbus.py")]

    def make_backlog(self, folder, env, scenario):
        """The board was offline before this run: fill its queue (a run of its own)."""
        with open(os.path.join(folder, "backlog.json"), "w") as f:
            json.dump(dict(scenario, backlog_s=int(self.args.backlog_h * 3600), mem=None), f)
        out = subprocess.run([self.args.mp32 or micropython(), "-X", "heapsize=2M"] + self.script() + ["backlog.json"],
                             cwd=folder, env=env, capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("SIM backlog "):
                self.backlog = [int(x) for x in line.split()[2:]]
                self.say("sim: %d stop visits and %d positions queued offline before the run" % tuple(self.backlog[:2]))
                return
        raise RuntimeError("could not make the offline backlog:\n" + (out.stdout + out.stderr)[-2000:])

    def measure_baseline(self, folder, env):
        """Heap taken by code, fakes and the simulator's plan, before the firmware's data."""
        path = os.path.join(folder, "scenario.json")
        with open(path) as f:
            sc = json.load(f)
        sc["measure"] = True
        with open(os.path.join(folder, "measure.json"), "w") as f:
            json.dump(sc, f)
        out = subprocess.run([self.args.mp32 or micropython(), "-X", "heapsize=8M"] + self.script() + ["measure.json"],
                             cwd=folder, env=env, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("SIM baseline "):
                return int(line.split()[2])
        raise RuntimeError("could not measure the baseline heap:\n" + out[-2000:])

    def _outage(self, n, t):
        """At stop n (bus second t): take the broker away or bring it back."""
        a = self.args
        if a.outage_after and n == a.outage_after and not self._down and self.broker.running:
            getattr(self.broker, {"stop": "stop", "kill": "kill", "freeze": "freeze"}[a.outage_kind])()
            self._down = True
            self.outage.append(("down", n, time.time(), t))
            self.say("sim: *** broker DOWN (%s) after stop %d (the bus keeps recording) ***" % (a.outage_kind, n))
        elif a.outage_after and n == a.outage_after + a.outage_stops and self._down:
            self._outage_end(n, t)

    def _outage_end(self, n, t=None):
        if self.args.outage_kind == "freeze":
            self.broker.thaw()
        else:
            self.broker.start()
        self._down = False
        self.outage.append(("up", n, time.time(), t))
        self.say("sim: *** broker UP again at stop %s: backlog drains ***" % n)

    def _table(self, stop):
        while not stop.wait(self.args.every):
            self.say("\n".join(["-- broker view %s --" % time.strftime("%H:%M:%S")] + self.fleet.table()))

    def check(self):
        """Compare the broker's view with the generated truth; return problems."""
        problems = []
        if self.reset is not None:
            return ["the board reset (cause %(cause)d) at second %(t)d: a step of %(step_ms)d ms, "
                    "watchdog %(watchdog_ms)d ms" % self.reset]
        if self.truth is None:
            return ["the simulated bus did not finish (no truth line)"]
        v = self.fleet.vehicles.get(self.args.device)
        if v is None:
            return ["the broker received nothing from " + self.args.device]
        visits = [r for k, r in v.stream.records.values() if k == "stop"]
        truth = self.truth["stops"]
        if len(visits) != len(truth) + self.backlog[0]:
            problems.append("stop visits: broker has %d, the bus served %d (and %d from the offline backlog)"
                            % (len(visits), len(truth), self.backlog[0]))
        tin = sum(s[1] for s in truth) + BACKLOG_ON * self.backlog[0]
        tout = sum(s[2] for s in truth) + BACKLOG_OFF * self.backlog[0]
        tol = max(1, (tin + tout) * 2 // 100)
        if abs(v.boardings - tin) + abs(v.alightings - tout) > tol:
            problems.append("passengers: broker counted %d on / %d off, truth %d / %d" % (
                v.boardings, v.alightings, tin, tout))
        seqs = sorted(v.stream.records)
        if self.truth.get("depth"):
            problems.append("%d records still queued on the bus at the end" % self.truth["depth"])
        if not seqs:
            problems.append("no records at all")
        return problems

    def summary(self):
        v = self.fleet.vehicles.get(self.args.device)
        t = self.truth or {}
        if v is None:
            return "sim: nothing received"
        pos = sum(1 for k, _ in v.stream.records.values() if k == "pos")
        return ("sim: done. %d s of driving, %d stop visits, %d positions, %d duplicate records removed, "
                "boardings %d (truth %d), alightings %d (truth %d), peak heap %s bytes"
                % (t.get("seconds", 0), v.visits, pos, v.stream.duplicates, v.boardings,
                   sum(s[1] for s in t.get("stops", [])), v.alightings, sum(s[2] for s in t.get("stops", [])),
                   t.get("peak_heap")))


def parse(argv=None):
    ap = argparse.ArgumentParser(description="Simulated Phitsanulok bus publishing to a local broker")
    ap.add_argument("--broker", help="HOST:PORT of an existing broker (default: start a private Mosquitto)")
    ap.add_argument("--broker-hosts", help="the board's broker nodes HOST:PORT,... (a cluster: broker.host "
                    "becomes their list); the listener stays on --broker")
    ap.add_argument("--mqtt-password", default="", help="the board's broker password (secrets.json)")
    ap.add_argument("--tls", action="store_true",
                    help="the private broker over TLS (certificates made now) and the bus starting as an ESP32 "
                         "after power-on, its clock at 2000-01-01 until the GPS fix: what a board sees")
    ap.add_argument("--device", default="bus-sim01")
    ap.add_argument("--route", default=ROUTE)
    ap.add_argument("--accel", type=float, default=20, help="times real time; 0 = as fast as possible (default 20)")
    ap.add_argument("--stops", type=int, default=0, help="only the first N stops (default: the whole route)")
    ap.add_argument("--laps", type=int, default=1, help="drive the route back and forth N times")
    ap.add_argument("--hours", type=float, default=0, help="stop after this many hours of driving (with --laps)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch-s", type=int, default=10,
                    help="uplink.batch_s: how late positions may go out (firmware default 60; 10 for a lively demo)")
    ap.add_argument("--busy", type=int, default=1, help="passenger volume factor (1 = normal)")
    ap.add_argument("--profile", choices=("clean", "noisy"), default="clean", help="beam signal quality")
    ap.add_argument("--outage-after", type=int, default=3, help="stop the broker after this stop (0 = never)")
    ap.add_argument("--outage-stops", type=int, default=2, help="bring it back this many stops later")
    ap.add_argument("--outage-kind", choices=("stop", "kill", "freeze"), default="stop",
                    help="how the broker goes away: stop (SIGTERM), kill (SIGKILL), freeze (SIGSTOP: TCP open, no answer)")
    ap.add_argument("--connect-ms", type=int, default=10000,
                    help="uplink.connect_ms: how long the firmware waits for TCP and CONNACK (firmware default 10000)")
    ap.add_argument("--timeout", type=float, default=0, help="stop the firmware after this many real seconds (0 = never)")
    ap.add_argument("--gps-loss-at", type=int, default=150, help="second of a 30 s GPS signal loss (-1 = none)")
    ap.add_argument("--drain-s", type=int, default=600, help="virtual seconds to wait for the queue to drain")
    ap.add_argument("--heap", default="512K",
                    help="MicroPython heap (-X heapsize), or +N: code and simulator plus N bytes for the firmware's data")
    ap.add_argument("--backlog-h", type=float, default=0,
                    help="hours of driving the bus recorded offline before this run (queued on its flash)")
    ap.add_argument("--mp32", metavar="BINARY",
                    help="run on this 32-bit build with everything frozen (tools/mp32.py); --heap +N then gives "
                         "the firmware exactly N bytes of heap besides the fakes and the simulator")
    ap.add_argument("--cap", type=int, default=0,
                    help="with --mp32: after start-up no free hole exceeds this many bytes (tools/heapcap.py)")
    ap.add_argument("--startup-s", type=int, default=60, help="with --cap: seconds of driving counted as start-up")
    ap.add_argument("--every", type=float, default=3.0, help="seconds between live table refreshes")
    ap.add_argument("--no-table", dest="table", action="store_false")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--bridge", action="store_true", help="also run the city bridge and print the live page's address")
    ap.add_argument("--bridge-port", type=int, default=8080, help="HTTP port of the bridge (0: a free one)")
    return ap.parse_args(argv)


def start_bridge(args, broker):
    """The city bridge (tools/city) on the sim's broker; returns it after printing the page's address."""
    from city.bridge import Bridge, parse as bridge_args
    b = Bridge(bridge_args(["--host", broker.host, "--port", str(broker.port), "--id", "city-bridge-sim",
                            "--data", os.path.join(ROOT, "build", "sim", "city"), "--http-port",
                            str(args.bridge_port)])).start()
    print("sim: live operations page at %s  (GTFS-Realtime: %sgtfs-rt/vehicle-positions.pb?format=json)"
          % (b.web.url, b.web.url), flush=True)
    return b


def main(argv=None):
    args = parse(argv)
    if args.stops and args.laps <= 1 and args.outage_after:
        # The broker must come back before the route ends, or the backlog can never drain.
        if args.outage_after >= args.stops:
            print("sim: no broker outage: the route has %d stops and the outage would start after stop %d "
                  "(--outage-after)" % (args.stops, args.outage_after))
            args.outage_after = 0
        elif args.outage_after + args.outage_stops > args.stops:
            args.outage_stops = args.stops - args.outage_after
            print("sim: the broker comes back at the last stop (%d)" % args.stops)
    own = None
    if args.broker:
        host, _, port = args.broker.rpartition(":")

        class External:
            running = True

            def stop(self):
                print("sim: (an external broker is not stopped; no outage)")

            def start(self):
                pass
        broker = External()
        broker.host, broker.port = host or "127.0.0.1", int(port)
        args.outage_after = 0
    if args.tls and (args.broker or args.bridge):
        print("sim: --tls runs with the private broker only (no --broker, no --bridge)")
        return 2
    bridge = None
    try:
        held = lock(args.device)  # before touching the device's folders
    except Busy as e:
        print("sim: refused: %s" % e)
        return 2
    try:
        if not args.broker:
            # A broker per device: simulators of different buses may run side by side.
            folder = os.path.join(ROOT, "build", "sim", "broker-" + args.device)
            for old in ("mosquitto.db", "mosquitto.db.new"):
                try:
                    os.unlink(os.path.join(folder, old))  # the last run's sessions and messages
                except FileNotFoundError:
                    pass
            tls = TlsMaterial(os.path.join(folder, "tls")) if args.tls else None
            users = {args.device: args.mqtt_password or TLS_PASSWORD} if args.tls else None
            own = broker = Broker(folder, persistence=True, tls=tls, users=users, anonymous=True).start()
        if args.bridge:
            bridge = start_bridge(args, broker)
        run = Run(args, broker, held=held)
        rc = run.run()
        if bridge and sys.stdin.isatty():
            input("sim: the page stays up at %s; press Enter to stop " % bridge.web.url)
    finally:
        if bridge:
            bridge.stop()
        if own:
            own.stop()
        unlock(held)
    print("\n".join(run.fleet.table()))
    print(run.summary())
    problems = run.check()
    for p in problems:
        print("sim: PROBLEM: " + p)
    if rc != 0:
        print("sim: the firmware exited with status %d (see the lines above)" % rc)
    return 1 if (problems or rc) else 0


if __name__ == "__main__":
    sys.exit(main())
