"""`make flash`: the real mpremote deploy against the virtual board, then the
deployed firmware boots and publishes to Mosquitto with the provisioned ACL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from harness import paths

sys.path.insert(0, paths.TOOLS)
import deploy  # noqa: E402
import provision  # noqa: E402
from vboard import VBoard  # noqa: E402

WIFI = {"phs-depot-central": "central-key-123"}
INVENTORY = ("device_id,role,board,plate,route,depot,networks\n"
             "bus-0107,bus,sim,10-2207 PL,3,Phitsanulok Central,phs-depot-central\n")
SETUP = "import network\nnetwork.set_aps([{'ssid': 'phs-depot-central', 'key': 'central-key-123'}])\n"


def make_fleet(folder, broker_port=1883):
    inv = os.path.join(folder, "inventory.csv")
    with open(inv, "w") as f:
        f.write(INVENTORY)
    keys = os.path.join(folder, "wifi.json")
    with open(keys, "w") as f:
        json.dump(WIFI, f)
    out = os.path.join(folder, "fleet")
    assert provision.main(["--inventory", inv, "--out", out, "--no-tls", "--broker-host", "127.0.0.1",
                           "--broker-port", str(broker_port), "--wifi-keys", keys]) == 0
    return out


def run_deploy(board, device_dir, *extra):
    return subprocess.run([sys.executable, os.path.join(paths.TOOLS, "deploy.py"), "--port", board.url,
                           "--device", device_dir, "--settle", "1"] + list(extra),
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return make_fleet(str(tmp_path_factory.mktemp("fleet")))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, fleet):
    """One virtual board, deployed once from scratch; later tests re-deploy it."""
    fs = str(tmp_path_factory.mktemp("flash"))
    board = VBoard(fs=fs, setup=None)
    board.start()
    t0 = time.monotonic()
    res = run_deploy(board, os.path.join(fleet, "bus-0107"), "--mpy")
    board.first = res
    board.first_s = time.monotonic() - t0
    yield board
    board.stop()


def test_fresh_deploy_copies_everything_verifies_and_boots(deployed):
    res = deployed.first
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.load(open(os.path.join(deployed.fs, "manifest.json")))
    files = manifest["files"]
    assert "lib/umqtt/simple.mpy" in files and "transit/startup.mpy" in files and "boot.py" in files
    assert files["secrets.json"] is None  # no hash of the secrets on the board
    for rel, digest in files.items():
        if digest:
            assert deploy.sha256_file(os.path.join(deployed.fs, rel)) == digest
    out = res.stdout
    assert "copy: %d copied" % len(files) in out and " 0 unchanged" in out
    assert "verify: all %d files match the manifest" % len(files) in out
    assert "imports umqtt.simple from /lib/umqtt/simple.mpy" in out
    assert "board| MicroPython v1.29.0-preview" in out
    assert "central-key-123" not in out + res.stderr  # secrets never printed
    print("fresh deploy: %.1f s, %d files" % (deployed.first_s, len(files)))


def test_redeploy_copies_only_what_changed_and_removes_stale_files(deployed, fleet):
    dev = os.path.join(fleet, "bus-0107")
    doc = json.load(open(os.path.join(dev, "device.json")))
    doc["bus"]["route"] = "5"
    with open(os.path.join(dev, "device.json"), "w") as f:
        json.dump(doc, f)
    # leftovers of an older firmware, and data the application owns
    with open(os.path.join(deployed.fs, "transit", "oldstage.mpy"), "wb") as f:
        f.write(b"M\x06")
    with open(os.path.join(deployed.fs, "lib", "nmea.py"), "w") as f:
        f.write("# a .py would shadow lib/nmea.mpy\n")
    os.makedirs(os.path.join(deployed.fs, "data", "q"), exist_ok=True)
    with open(os.path.join(deployed.fs, "data", "q", "seg0"), "wb") as f:
        f.write(b"queued records")
    t0 = time.monotonic()
    res = run_deploy(deployed, dev, "--mpy")
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert "unchanged device.json" not in res.stdout
    n_files = len(json.load(open(os.path.join(deployed.fs, "manifest.json")))["files"])
    copied = int(res.stdout.split("copy: ")[-1].split(" copied")[0])
    # device.json, plus whatever a colleague edited in firmware/ meanwhile
    assert 1 <= copied <= 3, res.stdout
    assert "unchanged transit/startup.mpy" in res.stdout or copied > 1
    assert not os.path.exists(os.path.join(deployed.fs, "transit", "oldstage.mpy"))
    assert not os.path.exists(os.path.join(deployed.fs, "lib", "nmea.py"))
    assert open(os.path.join(deployed.fs, "data", "q", "seg0"), "rb").read() == b"queued records"
    assert json.load(open(os.path.join(deployed.fs, "device.json")))["bus"]["route"] == "5"
    print("re-deploy: %.1f s, %d of %d files copied" % (took, copied, n_files))


def test_verification_mismatch_is_detected(deployed, fleet):
    target = os.path.join(deployed.fs, "transit", "config.mpy")
    with open(target, "r+b") as f:
        f.seek(20)
        b = f.read(1)
        f.seek(20)
        f.write(bytes([b[0] ^ 0xFF]))
    res = run_deploy(deployed, os.path.join(fleet, "bus-0107"), "--mpy", "--verify-only")
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deploy: FAILED: verification failed: 1 file(s)")
    assert "transit/config.mpy" in err[0]
    # the next deploy repairs it (cp sees the hash differ)
    res = run_deploy(deployed, os.path.join(fleet, "bus-0107"), "--mpy", "--no-reset")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "copy: 1 copied" in res.stdout or "copy: 2 copied" in res.stdout


def test_interrupted_deploy_resumes_and_converges(tmp_path, fleet):
    board = VBoard(fs=str(tmp_path / "flash"))
    os.makedirs(board.fs)
    board.start()
    try:
        cmd = [sys.executable, os.path.join(paths.TOOLS, "deploy.py"), "--port", board.url,
               "--device", os.path.join(fleet, "bus-0107"), "--settle", "1"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
        for line in proc.stdout:
            if line.startswith("copy: mpremote"):
                break
        # Part of the way through the copy: a few files on the board (manifest.json comes last).
        deadline = time.monotonic() + 60
        while sum(len(f) for _, _, f in os.walk(board.fs)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the laptop's cable is pulled: deploy and mpremote die
        proc.wait()
        assert not os.path.exists(os.path.join(board.fs, "manifest.json"))
        time.sleep(0.3)
        res = run_deploy(board, os.path.join(fleet, "bus-0107"))
        assert res.returncode == 0, res.stdout + res.stderr
        unchanged = int(res.stdout.split("copied (")[1].split("), ")[1].split(" unchanged")[0])
        assert unchanged > 0  # what arrived before the cut is not copied again
        assert "verify: all" in res.stdout
        assert os.path.exists(os.path.join(board.fs, "manifest.json"))
    finally:
        board.stop()


@pytest.mark.parametrize("kw,extra,message", [
    ({"report_version": "1.19.1"}, [], "the board runs MicroPython 1.19.1 but this firmware needs 1.23.0 or newer"),
    ({"report_mpy": "6.1"}, ["--mpy"], "the board loads .mpy version 6.1 but mpy-cross makes 6.3"),
])
def test_refuses_an_incompatible_board_before_copying(tmp_path, fleet, kw, extra, message):
    board = VBoard(fs=str(tmp_path), **kw)
    board.start()
    try:
        res = run_deploy(board, os.path.join(fleet, "bus-0107"), *extra)
    finally:
        board.stop()
    assert res.returncode == 1
    assert res.stderr.strip() == "deploy: FAILED: " + res.stderr.strip()[len("deploy: FAILED: "):]
    assert message in res.stderr
    assert os.listdir(str(tmp_path)) == []  # nothing copied


def test_refuses_a_full_flash(tmp_path, fleet):
    board = VBoard(flash_image=str(tmp_path / "flash.img"), flash_kib=128)
    board.start()
    try:
        res = run_deploy(board, os.path.join(fleet, "bus-0107"))
    finally:
        board.stop()
    assert res.returncode == 1
    assert "deploy: FAILED: the board's flash is full" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_no_board_on_the_port(fleet):
    res = subprocess.run([sys.executable, os.path.join(paths.TOOLS, "deploy.py"), "--port", "/dev/ttyNOPE0",
                          "--device", os.path.join(fleet, "bus-0107")], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.startswith("deploy: FAILED: no board at /dev/ttyNOPE0: plug the USB cable in")


def test_deployed_firmware_boots_and_publishes_through_the_provisioned_acl(tmp_path, broker_factory,
                                                                           subscriber_factory):
    if not os.path.exists(os.path.join(paths.FIRMWARE, "transit", "app.py")):
        pytest.xfail("waiting on firmware/transit/app.py (the application main loop)")
    from localbroker import free_port
    port = free_port()
    out = make_fleet(str(tmp_path), broker_port=port)
    users = {"bus-0107": json.load(open(os.path.join(out, "bus-0107", "secrets.json")))["mqtt_password"]}
    ops = json.load(open(os.path.join(out, "broker", "consumer.json")))
    users["consumer"] = ops["mqtt_password"]
    broker = broker_factory(users=users, acl=open(os.path.join(out, "broker", "acl")).read(), port=port)
    sub = subscriber_factory(broker, ["phs/#"], username="consumer", password=ops["mqtt_password"])
    setup = tmp_path / "setup.py"
    setup.write_text(SETUP)
    board = VBoard(fs=str(tmp_path / "flash"), setup=str(setup))
    os.makedirs(board.fs)
    board.start()
    try:
        res = run_deploy(board, os.path.join(out, "bus-0107"), "--mpy")
        assert res.returncode == 0, res.stdout + res.stderr
        msgs = sub.wait_for(1, timeout=20, topic_prefix="phs/bus/bus-0107/")
        # A record (the boot event) flows only after the uplink's publish check
        # passed through the generated ACL.
        events = sub.wait_for(1, timeout=20, topic_prefix="phs/bus/bus-0107/event")
    finally:
        board.stop()
    assert msgs, "the deployed board published nothing\n" + broker.log()[-3000:]
    assert events, "no record got through the provisioned ACL\n" + broker.log()[-3000:]
    boot = json.loads(events[0][1])
    assert boot["r"][0]["k"] == 1  # records.EV_BOOT
    topic, payload = msgs[0][0], msgs[0][1]
    assert topic.startswith("phs/bus/bus-0107/")
    assert json.loads(payload)
    assert "u'bus-0107'" in broker.log()  # logged in with its own provisioned credentials


# --------------------------------------------------------------------------
# Issue 19: identity and the smaller deploy findings
# --------------------------------------------------------------------------

STAGE = os.path.join(paths.ROOT, "build", "deploy", "bus-0107")


def test_staged_secrets_are_private_and_removed_after_the_deploy(deployed, fleet, tmp_path):
    # the module's deploys used the default stage build/deploy/bus-0107
    assert not os.path.exists(os.path.join(STAGE, "secrets.json"))
    cfg = deploy.load_device(os.path.join(fleet, "bus-0107"))
    stage = str(tmp_path / "stage")
    deploy.stage_files(cfg, os.path.join(fleet, "bus-0107"), stage)
    assert oct(os.stat(os.path.join(stage, "secrets.json")).st_mode & 0o777) == oct(0o600)


def test_a_deploy_from_uncommitted_changes_is_recorded_as_dirty(tmp_path):
    repo = str(tmp_path)
    for cmd in (["init", "-q"], ["-c", "user.email=t@x", "-c", "user.name=t", "commit", "-q", "--allow-empty",
                                "-m", "first"]):
        subprocess.run(["git"] + cmd, cwd=repo, check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "a.py"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=t@x", "-c", "user.name=t", "commit", "-qm", "a"], cwd=repo, check=True)
    clean = deploy.git_version(repo)
    assert clean["dirty"] is False and len(clean["commit"]) >= 7
    (tmp_path / "a.py").write_text("x = 2\n")
    dirty = deploy.git_version(repo)
    assert dirty == {"commit": clean["commit"] + "-dirty", "dirty": True}
    manifest = deploy.write_manifest(str(tmp_path), {"device_id": "bus-0107", "role": "bus", "board": "sim"}, {},
                                     False, {"version": [1, 29, 0]}, version=dirty)
    doc = json.load(open(manifest))
    assert doc["commit"].endswith("-dirty") and doc["dirty"] is True


def test_a_remote_set_is_not_undone_silently_by_the_next_deploy(deployed, fleet):
    dev = os.path.join(fleet, "bus-0107")
    path = os.path.join(deployed.fs, "device.json")
    doc = json.load(open(path))
    doc.setdefault("uplink", {})["batch_s"] = 45  # what a remote `set uplink.batch_s 45` saves
    with open(path, "w") as f:
        json.dump(doc, f)
    res = run_deploy(deployed, dev, "--mpy", "--no-reset")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "uplink.batch_s" in res.stderr and "--overwrite-settings" in res.stderr
    assert json.load(open(path))["uplink"]["batch_s"] == 45  # nothing was copied
    res = run_deploy(deployed, dev, "--mpy", "--no-reset", "--overwrite-settings")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "uplink" not in json.load(open(path))


def _old_queue(folder):
    """Two unsent records of bus-0303, written by the firmware's own queue."""
    from dqueue import DurableQueue
    os.makedirs(folder)
    q = DurableQueue(folder, commit_records=1)
    q.append(1, b"old position 1", ts=1795766400)
    q.append(1, b"old position 2", ts=1795766415)
    q.commit()
    q.close()
    with open(os.path.join(folder, "owner.json"), "w") as f:
        json.dump({"d": "bus-0303", "e": 12345}, f)
    return sorted(n for n in os.listdir(folder) if n[0] in "pn" and n[1:].isdigit())


def test_a_queue_of_another_device_is_not_taken_over_without_a_flag(tmp_path, fleet):
    fs = tmp_path / "flash"
    segments = _old_queue(str(fs / "data" / "q"))
    assert segments
    board = VBoard(fs=str(fs))
    board.start()
    try:
        res = run_deploy(board, os.path.join(fleet, "bus-0107"), "--no-reset")
        assert res.returncode == 1
        err = res.stderr.strip()
        assert "holds unsent records of bus-0303" in err and "--wipe-queue-of bus-0303" in err
        assert not os.path.exists(fs / "boot.py")  # refused before copying
        # the firmware's own confirmation in device.json lets it through; the board wipes at boot
        dev = tmp_path / "dev"
        shutil.copytree(os.path.join(fleet, "bus-0107"), str(dev))
        doc = json.load(open(dev / "device.json"))
        doc["queue_wipe"] = "bus-0303"
        (dev / "device.json").write_text(json.dumps(doc))
        res = run_deploy(board, str(dev), "--no-reset")
        assert res.returncode == 0, res.stdout + res.stderr
        assert os.path.exists(fs / "data" / "q" / segments[0])
        res = run_deploy(board, os.path.join(fleet, "bus-0107"), "--no-reset", "--wipe-queue-of", "bus-0303")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "wiped the queue of bus-0303" in res.stdout
        assert not os.path.exists(fs / "data" / "q" / segments[0])
        assert not os.path.exists(fs / "data" / "q" / "owner.json")
    finally:
        board.stop()


def test_a_malformed_geofence_is_refused_before_copying(tmp_path, fleet):
    dev = tmp_path / "dev"
    shutil.copytree(os.path.join(fleet, "bus-0107"), str(dev))
    doc = json.load(open(dev / "device.json"))
    doc["geofences"] = [{"id": 1, "kind": "depot", "at": [16821234], "radius_m": 80}]
    (dev / "device.json").write_text(json.dumps(doc))
    board = VBoard(fs=str(tmp_path / "flash"))
    os.makedirs(board.fs)
    board.start()
    try:
        res = run_deploy(board, str(dev))
    finally:
        board.stop()
    assert res.returncode == 1
    assert res.stderr.startswith("deploy: FAILED: the configuration in") and "geofences[0]" in res.stderr
    assert os.listdir(board.fs) == []


def test_a_configuration_for_another_chip_is_refused(tmp_path, fleet):
    dev = tmp_path / "dev"
    shutil.copytree(os.path.join(fleet, "bus-0107"), str(dev))
    doc = json.load(open(dev / "device.json"))
    doc["board"] = "esp32s3_devkitc"
    (dev / "device.json").write_text(json.dumps(doc))
    board = VBoard(fs=str(tmp_path / "flash"), report_machine="Generic ESP32 module with ESP32")
    os.makedirs(board.fs)
    board.start()
    try:
        res = run_deploy(board, str(dev))
    finally:
        board.stop()
    assert res.returncode == 1, res.stdout + res.stderr
    assert "boards/esp32s3_devkitc.json is for an esp32s3 but the board at" in res.stderr
    assert "is an esp32" in res.stderr
    assert os.listdir(board.fs) == []


# A boot error whose last line comes a moment after the "Traceback" line
# (as on a board printing over a slow UART while it unwinds).
CRASH = """
import time
try:
    open('/crash-at-boot').close()
    crash = True
except OSError:
    crash = False
if crash:
    print('Traceback (most recent call last):')
    print('  File "main.py", line 12, in <module>')
    time.sleep(1.2)
    print('ValueError: geofences[0]: expected {id, kind, at, radius_m}')
"""


def test_the_deploy_shows_the_boot_error_line_in_full(tmp_path, fleet):
    setup = tmp_path / "setup.py"
    setup.write_text(CRASH)
    board = VBoard(fs=str(tmp_path / "flash"), setup=str(setup))
    os.makedirs(board.fs)
    board.start()
    try:
        res = run_deploy(board, os.path.join(fleet, "bus-0107"), "--no-reset")
        assert res.returncode == 0, res.stdout + res.stderr
        open(os.path.join(board.fs, "crash-at-boot"), "w").close()
        res = run_deploy(board, os.path.join(fleet, "bus-0107"))
    finally:
        board.stop()
    assert res.returncode == 1
    assert "board| ValueError: geofences[0]" in res.stdout, res.stdout
    assert "ValueError: geofences[0]" in res.stderr


def test_deployed_board_on_the_generated_broker_survives_a_stolen_password(subscriber_factory):
    """Finding 1 end to end: the firmware on the virtual board, the broker started from the generated
    mosquitto.conf; another board's password with this board's client id cannot knock it off."""
    import tempfile
    import types
    import paho.mqtt.client as mqtt
    from localbroker import free_port
    folder = tempfile.mkdtemp(prefix="phs-e2e-")
    os.chmod(folder, 0o755)  # the broker's user must reach its files
    port = free_port()
    inv = os.path.join(folder, "inventory.csv")
    with open(inv, "w") as f:
        f.write(INVENTORY + "bus-0108,bus,sim,10-2208 PL,3,Phitsanulok Central,phs-depot-central\n")
    keys = os.path.join(folder, "wifi.json")
    with open(keys, "w") as f:
        json.dump(WIFI, f)
    out = os.path.join(folder, "fleet")
    assert provision.main(["--inventory", inv, "--out", out, "--no-tls", "--broker-host", "127.0.0.1",
                           "--broker-port", str(port), "--wifi-keys", keys]) == 0
    broker = subprocess.Popen(["mosquitto", "-c", os.path.join(out, "broker", "mosquitto.conf")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    board = thief = None
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                __import__("socket").create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and broker.poll() is None, "the generated broker did not start"
                time.sleep(0.05)
        consumer = json.load(open(os.path.join(out, "broker", "consumer.json")))
        sub = subscriber_factory(types.SimpleNamespace(host="127.0.0.1", port=port),
                                 ["phs/bus/bus-0107/status", "phs/bus/bus-0107/event"],
                                 username="consumer", password=consumer["mqtt_password"])
        setup = os.path.join(folder, "setup.py")
        with open(setup, "w") as f:
            f.write(SETUP)
        board = VBoard(fs=os.path.join(folder, "flash"), setup=setup)
        os.makedirs(board.fs)
        board.start()
        res = run_deploy(board, os.path.join(out, "bus-0107"), "--mpy")
        assert res.returncode == 0, res.stdout + res.stderr
        assert sub.wait_for(1, timeout=20, topic_prefix="phs/bus/bus-0107/event"), "the board never got through"
        online = [m for m in sub.messages if m[0].endswith("/status") and json.loads(m[1]).get("on")]
        assert online
        before = len(sub.messages)
        thief = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bus-0107")
        pw = json.load(open(os.path.join(out, "bus-0108", "secrets.json")))["mqtt_password"]
        thief.username_pw_set("bus-0108", pw)
        thief.connect("127.0.0.1", port)
        thief.loop_start()
        time.sleep(3)
        offline = [m for m in sub.messages[before:] if m[0].endswith("/status") and not json.loads(m[1]).get("on")]
        assert offline == [], "the real bus-0107 was knocked off: its last will was published"
    finally:
        if thief:
            thief.disconnect()
            thief.loop_stop()
        if board:
            board.stop()
        broker.terminate()
        log = broker.communicate(timeout=10)[0].decode()
        shutil.rmtree(folder, ignore_errors=True)
    assert "already connected, closing old connection" not in log, log[-2000:]


def test_mpy_compiles_once_per_source_and_refuses_a_bad_one(tmp_path, monkeypatch):
    """--mpy: a source compiled before comes from build/mpycache/deploy (keyed by its bytes,
    its name and mpy-cross's version); a changed source is compiled again; a bad one is refused."""
    import deploy_stage
    calls = []
    real = subprocess.run

    def counting(cmd, *a, **kw):
        if "-o" in cmd:
            calls.append(cmd)
        return real(cmd, *a, **kw)

    monkeypatch.setattr(deploy_stage.subprocess, "run", counting)
    src = tmp_path / ("probe_%d.py" % os.getpid())
    src.write_text("X = %r\n" % str(tmp_path))  # unique content: not in the cache yet
    deploy_stage._compile(str(src), str(tmp_path / "a.mpy"))
    deploy_stage._compile(str(src), str(tmp_path / "b.mpy"))
    assert len(calls) == 1
    assert (tmp_path / "a.mpy").read_bytes() == (tmp_path / "b.mpy").read_bytes()
    assert (tmp_path / "a.mpy").read_bytes()[:2] == b"M\x06"  # an .mpy, version 6
    src.write_text("X = %r\nY = 1\n" % str(tmp_path))
    deploy_stage._compile(str(src), str(tmp_path / "c.mpy"))
    assert len(calls) == 2 and (tmp_path / "c.mpy").read_bytes() != (tmp_path / "a.mpy").read_bytes()
    src.write_text("def broken(:\n")
    with pytest.raises(deploy.DeployError, match="mpy-cross rejected"):
        deploy_stage._compile(str(src), str(tmp_path / "d.mpy"))
    assert not (tmp_path / "d.mpy").exists()
