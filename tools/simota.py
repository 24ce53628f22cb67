"""The simulated bus takes an over-the-air update while it drives (host side).

Used by host_tests/test_memory.py and bench/bench_memory.py --ota to measure
the bus role and an update together in one heap (docs/memory.md): a signed
release of this tree (tools/release.py, a key made for the run) served with
Range (tools/ota.py serve), the bus of tools/sim.py with `ota_key`
provisioned and its ignition on, and an operator that publishes the `ota`
command (id, expiry) over the broker once the bus's offline backlog has
drained and it has served a stop, again every 2 s until the board takes it.
"""

import functools
import hashlib
import http.server
import json
import os
import tempfile
import threading
import time

import ota as ota_tool
import release
import sim

START_UNIX = 1795766400  # tools/simbus.py's default start: the board's clock comes from it (GPS)


class SlowRangeHandler(ota_tool.RangeHandler):
    """tools/ota.py's handler, sending at most `rate` bytes a second (in
    1 KiB pieces): a download that spans minutes of the bus's driving."""

    rate = 0

    def copyfile(self, source, outputfile):
        while True:
            piece = source.read(1024)
            if not piece:
                return
            outputfile.write(piece)
            outputfile.flush()
            time.sleep(len(piece) / self.rate)


def serve(folder, rate=0):
    """tools/ota.py serve(), or with rate > 0 a server as slow as that."""
    if not rate:
        return ota_tool.serve(folder)
    handler = functools.partial(type("Slow", (SlowRangeHandler,), {"rate": rate}), directory=folder)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def make_release(folder, version="99.0.0", rate=0):
    """(public key hex, release folder, URL, server) of a signed release of this tree."""
    key = os.path.join(folder, "keys", "release.pem")
    pub = release.init_key(key)
    out = os.path.join(folder, "releases")
    os.makedirs(out)
    path = release.build(out, key, version=version, build_id="simota", chip="sim", say=lambda *_: None)
    srv = serve(out, rate)
    return pub, path, "http://127.0.0.1:%d/%s/" % (srv.server_port, os.path.basename(path)), srv


def run(args, broker, at="idle", folder=None, rate=0):
    """Drive the bus of `args` (tools/sim.py's options) and update it on the
    way; `rate`: the release server's bytes per second of real time (0: as
    fast as it goes). Returns (sim.Run, exit code, release folder)."""
    import paho.mqtt.publish as publish
    folder = folder or tempfile.mkdtemp(prefix="simota-")
    pub, path, url, srv = make_release(folder, rate=rate)
    cmd = ota_tool.command(url, at=at)
    cmd["exp"] = START_UNIX + 12 * 3600  # against the board's clock (at most a day ahead of it)
    r = sim.Run(args, broker, out=None)
    r.device_extra = {"ota_key": pub}
    r.scenario_extra = {"ignition": True}  # the engine runs: an "idle" update stages, then waits to switch
    taken = threading.Event()
    drained = threading.Event()
    topic = "phs/bus/%s/cmd" % args.device

    def operator():
        drained.wait()
        while not taken.is_set():
            try:
                publish.single(topic, json.dumps(cmd), qos=1, hostname=broker.host, port=broker.port)
            except OSError:
                pass  # the broker is in its outage: again in 2 s
            taken.wait(2.0)

    def on_line(line):
        f = line.split()
        if line.startswith("SIM status ") and f[2] == "depth" and int(f[3]) < 16 and f[7] == "True" and r.stops:
            drained.set()  # the backlog is gone and the bus is on its way
        elif line.startswith("SIM ota "):
            taken.set()

    r.on_line = on_line
    threading.Thread(target=operator, daemon=True).start()
    try:
        rc = r.run()
    finally:
        taken.set()
        drained.set()
        srv.shutdown()
    return r, rc, path


def board_folder(args):
    return os.path.join(sim.ROOT, "build", "sim", args.device)


def staged_problems(board, release_path):
    """Every file of the release's manifest in the board's ota/stage/, whole
    and with its SHA-256. Returns (problems, number of files)."""
    stage = os.path.join(board, "ota", "stage")
    with open(os.path.join(release_path, "manifest.txt")) as f:
        lines = f.read().splitlines()
    try:
        with open(os.path.join(stage, "manifest.txt")) as f:
            problems = [] if f.read().splitlines() == lines else ["manifest.txt differs"]
    except OSError:
        return ["no staged manifest"], len(lines) - 1
    for line in lines[1:]:
        digest, size, p = line.split(" ", 2)
        try:
            with open(os.path.join(stage, p), "rb") as f:
                data = f.read()
        except OSError:
            problems.append("missing " + p)
            continue
        if len(data) != int(size) or hashlib.sha256(data).hexdigest() != digest:
            problems.append("wrong " + p)
    return problems, len(lines) - 1


def steps(r):
    """The job's steps the bus said, with the simulated second of each."""
    return [(f[2], int(f[4])) for f in (l.split() for l in r.lines if l.startswith("SIM ota "))]
