"""End to end: the simulated bus on a shortened Phitsanulok route, the real
firmware under the unix port, a real Mosquitto that goes away in the middle
(stopped, killed with SIGKILL, frozen with SIGSTOP), checked from the
broker's side; and a second simulator for the same device is refused."""

import math
import os
import shutil
import subprocess
import sys
import time

import pytest

from harness import paths, tlsprobe

sys.path.insert(0, paths.TOOLS)
import sim  # noqa: E402


@pytest.fixture
def run_sim(broker_factory):
    def go(*argv):
        # --timeout: a bus that hangs fails the test instead of the suite.
        args = sim.parse(["--accel", "0", "--no-table", "--device", "bus-e2e", "--timeout", "180"] + list(argv))
        broker = broker_factory(persistence=True)
        r = sim.Run(args, broker, out=None)
        rc = r.run()
        return r, rc
    return go


def _route_distance_m(lat_e6, lon_e6, waypoints):
    """Distance from a point to the route polyline (flat earth, fine at city scale)."""
    k = math.cos(math.radians(lat_e6 / 1e6))
    best = 1e9
    for (a_lat, a_lon), (b_lat, b_lon) in zip(waypoints, waypoints[1:]):
        ax, ay = a_lon * k * 0.111195, a_lat * 0.111195
        bx, by = b_lon * k * 0.111195, b_lat * 0.111195
        px, py = lon_e6 * k * 0.111195, lat_e6 * 0.111195
        dx, dy = bx - ax, by - ay
        t = 0 if dx == dy == 0 else max(0, min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
        best = min(best, math.hypot(px - ax - t * dx, py - ay - t * dy))
    return best


def test_shortened_route_with_broker_outage_arrives_complete(run_sim):
    r, rc = run_sim("--stops", "5", "--outage-after", "2", "--outage-stops", "2", "--gps-loss-at", "200")
    assert rc == 0, "\n".join(r.lines[-30:])
    assert [e[0] for e in r.outage] == ["down", "up"]
    assert r.check() == []
    v = r.fleet.vehicles["bus-e2e"]
    truth = r.truth["stops"]
    visits = sorted((rec for k, rec in v.stream.records.values() if k == "stop"), key=lambda x: x["to"])
    # Every stop visit arrived once (after removing duplicates), in the order served.
    assert len(visits) == len(truth) == 5
    for got, (sid, tin, tout, t_open) in zip(visits, truth):
        b = sum(d[0] for d in got["dr"])
        a = sum(d[1] for d in got["dr"])
        assert abs(b - tin) + abs(a - tout) <= 1, (sid, b, a, tin, tout)
    # Nothing recorded during the outage is missing: sequence numbers have no
    # holes apart from the block the queue reserves at boot.
    seqs = v.stream.seqs()
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    # Positions follow the route.
    import json
    with open(sim.ROUTE) as f:
        wps = json.load(f)["waypoints"]
    pos = [rec for k, rec in v.stream.records.values() if k == "pos"]
    assert len(pos) >= 10
    worst = max(_route_distance_m(p["lat_e6"], p["lon_e6"], wps) for p in pos)
    assert worst < 30, worst
    # The load on departure from the last stop is what the passengers left behind.
    assert visits[-1]["ld"] == sum(t[1] - t[2] for t in truth)


def _in(window, rec):
    return window[0] <= rec["ts"] < window[1]


def test_a_frozen_broker_does_not_freeze_the_bus_and_its_connect_timeout_fires(run_sim):
    # SIGSTOP: the kernel still accepts TCP, nothing answers CONNACK or PUBACK.
    r, rc = run_sim("--stops", "3", "--outage-after", "1", "--outage-stops", "1", "--outage-kind", "freeze",
                    "--connect-ms", "400", "--gps-loss-at", "-1")
    assert not r.timed_out, "the bus stood still while the broker was frozen:\n" + "\n".join(r.lines[-20:])
    assert rc == 0, "\n".join(r.lines[-30:])
    assert [e[0] for e in r.outage] == ["down", "up"]
    c = r.truth["connect"]
    assert c["fail_timeout"] >= 1, c  # the connect deadline fired, on the bus's own clock
    # No step longer than one connect attempt (TCP, CONNACK, SUBACK within connect_ms).
    assert 400 <= r.truth["longest_step_ms"] <= 400 + 500, r.truth["longest_step_ms"]
    # The bus kept recording during the freeze: stops served and positions made,
    # all delivered once the broker came back.
    assert r.check() == []
    t_down, t_up = r.stops[0][3], r.stops[1][3]  # doors of stop 1 and stop 2 (unix s)
    v = r.fleet.vehicles["bus-e2e"]
    during = [(k, rec) for k, rec in v.stream.records.values() if _in((t_down, t_up), rec)]
    assert sum(1 for k, _ in during if k == "stop") >= 1
    pos = sorted(rec["ts"] for k, rec in during if k == "pos")
    assert len(pos) >= (t_up - t_down) // 40, (len(pos), t_up - t_down)
    assert max(b - a for a, b in zip([t_down] + pos, pos + [t_up])) <= 45  # no hole in the bus's time line


def test_the_listener_misses_nothing_when_a_persistent_broker_is_killed(run_sim):
    r, rc = run_sim("--stops", "5", "--outage-after", "2", "--outage-stops", "1", "--outage-kind", "kill",
                    "--gps-loss-at", "-1")
    assert rc == 0 and not r.timed_out, "\n".join(r.lines[-30:])
    assert [e[0] for e in r.outage] == ["down", "up"]
    assert r.check() == []


def test_a_second_simulator_for_the_same_device_is_refused_and_the_first_keeps_its_queue(broker_factory, tmp_path):
    broker = broker_factory()
    folder = os.path.join(sim.ROOT, "build", "sim", "bus-twin")
    lock = folder + ".lock"
    shutil.rmtree(folder, ignore_errors=True)  # no files of an earlier run to mistake for the first bus's
    first = subprocess.Popen([sys.executable, os.path.join(paths.TOOLS, "sim.py"), "--device", "bus-twin",
                              "--broker", "%s:%d" % (broker.host, broker.port), "--accel", "1", "--stops", "3",
                              "--no-table"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            if _holder(lock) == first.pid and os.path.exists(os.path.join(folder, "scenario.json")) and any(
                    n not in ("boards", "device.json", "secrets.json", "scenario.json") for n in os.listdir(folder)):
                break  # the first bus has started writing its own files
            assert first.poll() is None, first.stdout.read()
            time.sleep(0.1)
        before = _inodes(folder)
        out = subprocess.run([sys.executable, os.path.join(paths.TOOLS, "sim.py"), "--device", "bus-twin",
                              "--broker", "%s:%d" % (broker.host, broker.port), "--accel", "0", "--stops", "1",
                              "--no-table"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stdout[-2000:]
        assert "refused" in out.stdout and "bus-twin" in out.stdout and "--device" in out.stdout
        assert first.poll() is None  # still driving
        after = _inodes(folder)
        assert all(after.get(n) == ino for n, ino in before.items()), (before, after)  # nothing deleted and remade
    finally:
        first.send_signal(2)  # SIGINT: the first simulator stops its bus and releases the device
        try:
            first.wait(30)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
    assert not os.path.exists(lock)


def _inodes(folder):
    """name -> inode of the folder's subfolders (the queue, the board description)."""
    return {n: os.stat(os.path.join(folder, n)).st_ino for n in os.listdir(folder)
            if os.path.isdir(os.path.join(folder, n))}


def _holder(path):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def test_a_socket_wait_moves_the_virtual_clock_as_time_passes_on_a_board():
    import select
    import socket
    from fakeclock import CLOCK, VirtualPoll
    a, b = socket.socketpair()
    try:
        CLOCK.set_virtual(0)
        p = VirtualPoll(select.poll())
        p.register(a, select.POLLIN)
        assert p.poll(30) == [] and CLOCK.now_us() == 30000  # nothing came: the whole wait passed
        b.send(b"x")
        assert p.poll(1000) and 30000 <= CLOCK.now_us() < 1030000  # ready at once: only the real time taken
    finally:
        CLOCK.set_real()
        a.close()
        b.close()


@pytest.mark.parametrize("days, seen", [(0, "tls ok"), (-400, "tls refused: The certificate validity starts in "
                                                                  "the future")])
def test_tls_in_the_simulator_judges_certificates_by_the_simulated_clock(broker_factory, tls_material, days, seen):
    # What the simulated firmware imports as `ssl` (sim.import_path()) is the
    # fake that checks dates as a board's mbedTLS does, against the bus's clock.
    b = broker_factory(tls=tls_material)
    # the simulated bus's clock, as simbus sets it
    clock = "import fakeclock\nfakeclock.CLOCK.set_virtual(0, utc_s=%d)\n" % (int(time.time()) + days * 86400)
    code = tlsprobe.code(b.port, tls_material.ca_der, clock)
    out = subprocess.run([sim.micropython(), "-X", "heapsize=256K", "-c", code], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, MICROPYPATH=sim.import_path()))
    assert out.stdout.strip() == seen, out.stdout + out.stderr


def test_a_cold_bus_over_tls_connects_after_its_gps_fix_and_delivers_everything(broker_factory, tls_material):
    # `make sim SIM_ARGS=--tls`: the broker over TLS, the bus starting as an
    # ESP32 after power-on (its clock at 2000-01-01): its first handshakes are
    # refused as on a board, the GPS fix sets the clock, then it delivers.
    args = sim.parse(["--tls", "--accel", "0", "--no-table", "--device", "bus-e2e-tls", "--timeout", "180",
                      "--stops", "3", "--outage-after", "0", "--gps-loss-at", "0"])  # no fix for 30 s
    broker = broker_factory(persistence=True, tls=tls_material, users={"bus-e2e-tls": sim.TLS_PASSWORD},
                            anonymous=True)
    r = sim.Run(args, broker, out=None)
    assert r.run() == 0, r.lines[-20:]
    assert r.check() == [], r.lines[-20:]
    status = r.fleet.vehicles["bus-e2e-tls"].stream.status
    assert status["time"]["src"] == "gps" and status["time"]["synced"] is True, status.get("time")
    up = status["uplink"]
    assert up.get("fail_tls", 0) >= 1 and up["connects"] == 1, up  # refused before the fix, as on a board
    assert "The certificate validity starts in the future" in up["last_error"]
