"""The bus main loop under the unix port: once warmed up, an idle iteration
(no fix, no door activity, no network in reach) allocates nothing, so the GC stays quiet
and pin callbacks are never held up by a collection the loop caused."""

import json

from harness import paths

DEVICE = {"device_id": "bus-loop1", "role": "bus", "board": "sim",
          "broker": {"host": "127.0.0.1", "port": 9, "tls": False}, "networks": [{"ssid": "phs-sim"}]}
SECRETS = {"wifi": {"phs-sim": "k"}, "mqtt_password": ""}

SCRIPT = """
import gc, time, machine, network, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
network.set_aps([])  # no network in reach: an idle bus between depots (no uplink work)
import transit.startup
from transit import app as appmod

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    a.run(max_loops=300)  # warm up: link attempts, first status, lazy buffers
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    for i in range(200):
        a.step()
    print('allocated', gc.mem_alloc() - before)

transit.startup.main(run=run, board_dirs=(%(boards)r,))
"""


def test_idle_bus_loop_iteration_allocates_nothing(mp, tmp_path):
    (tmp_path / "device.json").write_text(json.dumps(DEVICE))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    res = mp.run(SCRIPT % {"boards": paths.BOARDS}, cwd=str(tmp_path), heap="512K")
    assert res.lines[-1] == "allocated 0", res.stdout[-2000:]


FORGET = """
import gc, sys, json, machine, network, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
network.set_aps([])
import transit.startup
from transit import app as appmod

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    left = [m for m in appmod.BOOT_MODULES if m in sys.modules]
    import transit
    attrs = [m for m in appmod.BOOT_MODULES if m.startswith("transit.") and m[8:] in transit.__dict__]
    print("left", left, attrs)
    # a remote set later: the validator and the limits come back on demand
    for cid, key, val in (("c1", "bus.capacity_seated", 40), ("c2", "bus.capacity_seated", 999),
                          ("c3", "uplink.verify", 0)):
        text, ok, _ = a.commands.handle(json.dumps({"id": cid, "op": "set", "key": key, "val": val,
                                                    "exp": 1795766460}).encode())
        print("set", cid, ok, json.loads(text).get("err", ""))
    print("seated", a.cfg["bus.capacity_seated"])

transit.startup.main(run=run, board_dirs=(%(boards)r,))
"""


def test_boot_modules_are_forgotten_after_build_and_come_back_for_a_set(mp, tmp_path):
    """transit.app.forget_boot_modules: on MicroPython the validator, board checks,
    safe mode, queue owner check and recovery leave sys.modules once the app is
    built (docs/memory.md); a remote `set` afterwards still validates and persists."""
    (tmp_path / "device.json").write_text(json.dumps(DEVICE))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    res = mp.run(FORGET % {"boards": paths.BOARDS}, cwd=str(tmp_path), heap="512K")
    lines = res.lines
    assert "left [] []" in lines, res.stdout[-2000:]
    assert "set c1 True " in lines, res.stdout[-2000:]
    assert any(l.startswith("set c2 False bus.capacity_seated: expected an integer 0..150") for l in lines), lines
    assert any(l.startswith("set c3 False uplink.verify: 0 would switch off") for l in lines), lines
    assert "seated 40" in lines
    saved = json.loads((tmp_path / "device.json").read_text())
    assert saved["bus"]["capacity_seated"] == 40
