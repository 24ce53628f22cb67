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
