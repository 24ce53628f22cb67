"""Memory: each role runs in 64 KiB of 32-bit Python heap with its code frozen.

Runs on the 32-bit MicroPython 1.28.0 unix port built by `make mp32`
(tools/mp32.py; built here on first use and cached outside the clone), with
the firmware, umqtt.simple, the hardware fakes and the simulators frozen in:
object sizes and code layout as on an ESP32-WROOM-32 running a frozen image.

What the firmware gets: exactly a 64 KiB heap (-X heapsize=65536 gives
64000 bytes of blocks) on top of what is not the firmware's, measured in a
run of its own before the firmware's first import: the fakes' and
simulators' module objects and their whole plan (every stop's beam edges in
compact arrays), and the fake GPS UART's receive ring (the ESP-IDF's on a
board). Everything else, the firmware's module objects and data, must fit.

After start-up (60 s) tools/heapcap.py caps every free hole at 4 KiB, again
after every collection (every 50 loops), so an allocation above 4 KiB raises
MemoryError and fails the run. "No growth": live data at each simulated hour
stays within 2 KiB of the first hour's.

Bus: 2 hours of the busy line-1 route (bench/bench_memory.py drives 4), a
broker outage of 4 stops and a 6-hour offline backlog queued before boot,
drained while driving.
Depot: 2 hours of gate traffic and buses coming and going over BLE, an
outage in the second hour, a 6-hour offline backlog.
"""

import json
import os
import subprocess
import sys

import pytest

from harness import paths

sys.path.insert(0, paths.TOOLS)
import mp32  # noqa: E402
import sim  # noqa: E402

FIRMWARE_HEAP = 65536  # the goal, for both roles (the bus needed 82 KiB before; docs/memory.md)
# The bus role (time sync, fleet identity, OTA hooks, door-switch ring, the
# queue's 4 KiB RAM buffer) needed 72 KiB before the boot modules were
# dropped after start-up and the in-flight batch and status document slimmed
# (docs/memory.md): it is held to the 64 KiB goal like the depot.
BUS_HEAP = FIRMWARE_HEAP
CAP = 4096
GROWTH = 2048


@pytest.fixture(scope="session")
def mp32_binary():
    try:
        return mp32.ensure(say=lambda s: print(s))
    except mp32.BuildError as e:
        pytest.fail(str(e))


def run_bus(binary, broker, heap, hours, device="bus-mem"):
    args = sim.parse(["--accel", "0", "--no-table", "--device", device, "--laps", "12", "--hours", str(hours),
                      "--busy", "2", "--outage-after", "12", "--outage-stops", "4", "--gps-loss-at", "3000",
                      "--seed", "11", "--backlog-h", "6", "--mp32", binary, "--heap", "+%d" % heap,
                      "--cap", str(CAP)])
    r = sim.Run(args, broker, out=None)
    rc = r.run()
    return r, rc


def test_bus_role_runs_in_its_heap_with_frozen_code(mp32_binary, broker_factory):
    r, rc = run_bus(mp32_binary, broker_factory(persistence=True), BUS_HEAP, 2)
    log = "\n".join(l for l in r.lines if not l.startswith(("SIM t ", "SIM status", "SIM stop", "SIM mem peak")))
    assert rc == 0, log[-3000:]
    assert "MemoryError" not in log, log[-3000:]
    assert r.check() == []
    assert r.backlog[0] >= 150 and r.backlog[1] >= 1800  # six hours offline, then drained
    assert r.truth["seconds"] >= 2 * 3600
    other = r.mem["sim"][0]
    peak = r.truth["peak_heap"] - other
    hourly = [h - other for h in r.hourly]
    cap, pins = r.mem["cap"][0], r.mem["cap"][2]
    print("bus: heap %s = firmware %d + simulator %d; firmware peak %d, at each hour %s; %d heap caps at %d bytes"
          % (r.heap, BUS_HEAP, int(r.heap) - BUS_HEAP, peak, hourly, pins, cap))
    assert cap == CAP and pins > 3000  # the 4 KiB cap was in force after start-up
    assert r.mem["cap"][4] == 0  # and no hole above it ever formed between two caps
    assert len(hourly) >= 2 and max(hourly) - hourly[0] < GROWTH, hourly


DEPOT = {"device_id": "depot-mem", "role": "depot", "board": "sim_ble", "topic_root": "phs",
         "networks": [{"ssid": "depot-wifi"}], "depot": {"name": "Phitsanulok Central", "zone_id": 1},
         "counting": {"period_s": 60}, "roster": {"scan_every_s": 20, "scan_ms": 2000}}


def _depot_folder(folder, broker):
    os.makedirs(os.path.join(folder, "boards"), exist_ok=True)
    with open(os.path.join(folder, "device.json"), "w") as f:
        json.dump(dict(DEPOT, broker={"host": broker.host, "port": broker.port, "tls": False, "keepalive_s": 30},
                       uplink={"ack_ms": 30000, "connect_ms": 10000, "backoff_min_ms": 1000,
                               "backoff_max_ms": 15000}), f)
    with open(os.path.join(folder, "secrets.json"), "w") as f:
        json.dump({"wifi": {"depot-wifi": "k"}, "mqtt_password": ""}, f)
    with open(os.path.join(paths.BOARDS, "sim.json")) as f:
        board = json.load(f)
    board.update(name="sim_ble", ble=True)
    with open(os.path.join(folder, "boards", "sim_ble.json"), "w") as f:
        json.dump(board, f)


def _simdepot(binary, folder, name, scenario, heap):
    with open(os.path.join(folder, name), "w") as f:
        json.dump(scenario, f)
    env = dict(os.environ, MICROPYPATH=".frozen", **sim.MP32_ENV)
    return subprocess.Popen([binary, "-X", "heapsize=%d" % heap, "-m", "simdepot", name], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)


def test_depot_role_runs_in_64k_with_frozen_code(mp32_binary, broker_factory, subscriber_factory, tmp_path):
    broker = broker_factory(persistence=True)
    folder = str(tmp_path / "depot")
    _depot_folder(folder, broker)
    sc = {"seed": 3, "hours": 2, "burst_s": 120, "mem": {"cap": CAP, "startup_s": 60}}
    out = _simdepot(mp32_binary, folder, "measure.json", dict(sc, measure=True), 8 << 20).communicate()[0]
    other = int([l for l in out.splitlines() if l.startswith("SIM baseline ")][0].split()[2])
    out = _simdepot(mp32_binary, folder, "backlog.json", dict(sc, mem=None, backlog_s=6 * 3600), 2 << 20).communicate()[0]
    backlog = [l for l in out.splitlines() if l.startswith("SIM backlog ")]
    assert backlog and int(backlog[0].split()[4]) >= 300, out[-2000:]  # six hours of counts queued offline
    sub = subscriber_factory(broker, ["phs/#"])
    heap = FIRMWARE_HEAP + -(-other * 65536 // 64000)
    proc = _simdepot(mp32_binary, folder, "scenario.json", sc, heap)
    lines, hourly = [], []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("SIM hour "):
            hourly.append(int(line.split()[3]) - other)
            if len(hourly) == 1:
                broker.stop()  # an outage in the second hour: counts wait in the queue
            elif len(hourly) == 2 and not broker.running:
                broker.start()
    rc = proc.wait()
    log = "\n".join(l for l in lines if not l.startswith("SIM mem peak"))
    assert rc == 0 and "MemoryError" not in log, log[-3000:]
    truth = json.loads([l for l in lines if l.startswith("SIM truth ")][0][len("SIM truth "):])
    assert truth["depth"] == 0 and truth["bad"] == 0 and truth["errors"] == 0, truth
    assert truth["yard"] >= 8  # buses heard over BLE
    cap = [l for l in lines if l.startswith("SIM mem cap ")][0].split()
    peak = truth["peak_heap"] - other
    print("depot: heap %d = firmware %d + simulator %d; firmware peak %d, at each hour %s; %s heap caps"
          % (heap, FIRMWARE_HEAP, heap - FIRMWARE_HEAP, peak, hourly, cap[5]))
    assert int(cap[3]) == CAP and int(cap[5]) > 1000
    assert len(hourly) >= 2 and max(hourly) - hourly[0] < GROWTH, hourly
    assert sub.wait_for(1, timeout=5, topic_prefix="phs/depot/depot-mem/count")


HEAPCAP_SCRIPT = """
import gc, heapcap
junk = [bytearray(100) for i in range(60)]
lat = heapcap.Lattice(%(cap)d)
lat.pin()
def fits(n):
    try:
        b = bytearray(n)
        return True
    except MemoryError:
        return False
print("fits", fits(%(cap)d - 32), fits(%(cap)d + 1), "holes", lat.probe(), "pins", lat.n)
"""


def test_heap_cap_refuses_any_block_above_the_cap(mp32_binary):
    for cap in (4096, 1024):
        out = subprocess.run([mp32_binary, "-X", "heapsize=65536", "-c", HEAPCAP_SCRIPT % {"cap": cap}],
                             env=dict(os.environ, MICROPYPATH=".frozen", **sim.MP32_ENV), capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        fields = out.stdout.split()
        assert fields[1:3] == ["True", "False"], (cap, out.stdout)  # up to the cap fits, one byte more does not
        assert fields[4] == "False" and int(fields[6]) >= 40000 // cap, out.stdout  # a pin every cap bytes


def test_cache_key_covers_every_frozen_file():
    """Every file boards/unix32_manifest.py freezes is hashed into the binary's cache key."""
    named = []
    boards = os.path.join(paths.ROOT, "boards")

    def run(path):
        here = os.path.dirname(path)
        with open(path) as f:
            code = f.read()
        exec(code, {"include": lambda p: run(os.path.join(here, p)),
                    "module": lambda p, base_path=".": named.append(os.path.normpath(os.path.join(here, base_path, p))),
                    "package": lambda p, base_path=".": named.extend(
                        os.path.normpath(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(here, base_path, p))
                        for f in fs if f.endswith(".py"))})
        named.append(os.path.normpath(path))

    run(os.path.join(boards, "unix32_manifest.py"))
    hashed = set(os.path.normpath(p) for p in mp32.frozen_files())
    missing = [os.path.relpath(p, paths.ROOT) for p in named if p not in hashed and os.path.exists(p)]
    assert named and missing == []
    assert any(p.endswith(os.path.join("transit", "uplink.py")) for p in named)


# --- the bus role and an over-the-air update in the same 64 KiB ------------------

def test_bus_role_and_an_update_run_together_in_64k(mp32_binary, broker_factory, tmp_path):
    """The bus of test_bus_role_... (6-hour backlog, 4 KiB cap, 64 KiB) for
    half an hour, its ignition on, with `ota_key` provisioned: once the
    backlog has drained and it has served a stop, the operator publishes an
    `ota` command (id, expiry, at=idle) for a signed release of this tree
    over Mosquitto (tools/simota.py). While it drives and counts, the bus
    downloads, checks and stages the release in the same heap; staged, the
    agent is set aside until the bus parks; and the bus drives on with
    nothing lost."""
    import simota
    args = sim.parse(["--accel", "0", "--no-table", "--device", "bus-memota", "--laps", "12", "--hours", "0.5",
                      "--busy", "2", "--outage-after", "12", "--outage-stops", "4", "--gps-loss-at", "3000",
                      "--seed", "11", "--backlog-h", "6", "--mp32", mp32_binary, "--heap", "+%d" % BUS_HEAP,
                      "--cap", str(CAP)])
    # The release server sends 32 KB a second: the download spans minutes of driving and stops.
    r, rc, path = simota.run(args, broker_factory(persistence=True), folder=str(tmp_path), rate=32768)
    log = "\n".join(l for l in r.lines if not l.startswith(("SIM t ", "SIM status", "SIM stop", "SIM mem peak")))
    assert rc == 0, log[-3000:]
    assert "MemoryError" not in log, log[-3000:]
    steps = simota.steps(r)
    assert steps[:1] and steps[0][0] == "manifest" and steps[-1][0] == "ready-aside", log[-3000:]
    during = [s for s in r.stops if steps[0][1] < s[3] - simota.START_UNIX < steps[-1][1]]
    assert steps[-1][1] - steps[0][1] >= 60 and during, (steps, r.stops[:5])  # it drove and served stops meanwhile
    assert r.check() == []  # nothing lost: every stop visit and passenger at the broker, the queue empty
    assert r.backlog[0] >= 150 and r.truth["depth"] == 0
    assert r.truth["ota"] == {"run": r.truth["ota"]["run"], "st": "ready", "ver": "99.0.0", "pct": 100}
    problems, n = simota.staged_problems(simota.board_folder(args), path)
    assert problems == [] and n >= 30, problems
    other = r.mem["sim"][0]
    cap, pins = r.mem["cap"][0], r.mem["cap"][2]
    assert cap == CAP and pins > 1000 and r.mem["cap"][4] == 0  # the 4 KiB cap kept, no hole above it formed
    peak, ota_peak = r.truth["peak_heap"] - other, r.truth["ota_peak"] - other
    print("bus + update: heap %s = firmware %d + simulator %d; firmware peak %d, while updating %d; "
          "%d files staged; %d heap caps at %d bytes; steps %s, %d stops served meanwhile"
          % (r.heap, BUS_HEAP, int(r.heap) - BUS_HEAP, peak, ota_peak, n, pins, cap, steps, len(during)))
