"""A hung step ends in a watchdog reset, and the queue is intact afterwards.

Runs the bus role under the unix port: a minute of driving fills the queue,
then a step blocks (as a socket read without timeout would on a board); the
watchdog resets the board; the next boot finds every committed record and
reports the watchdog as the reset cause."""

import json
import os

from harness import paths

HEAP = "512K"
DEVICE = {"device_id": "bus-wdt1", "role": "bus", "board": "sim",
          "broker": {"host": "127.0.0.1", "port": 9, "tls": False},  # nothing listens: the link stays down
          "networks": [{"ssid": "phs-sim"}], "watchdog_ms": 5000, "uplink": {"connect_ms": 2000},
          "queue": {"commit_ms": 5000}}
SECRETS = {"wifi": {"phs-sim": "k"}, "mqtt_password": ""}

FIRST_BOOT = """
import machine, network, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
network.set_aps([{"ssid": "phs-sim", "key": "k"}])
from simgps import Drive
import transit.startup
from transit import app as appmod

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    uart = machine.UART(2)
    drive = Drive([(16815440, 100263670), (16824700, 100261600)], seed=5, start_unix=1795766400)
    epochs = drive.epochs()
    for second in range(90):
        uart.feed(next(epochs)[2])
        a.run(max_loops=50)
    a.queue.commit()
    print('before', a.queue.last_seq, a.queue.depth(), a.loops)
    def hung():
        machine.stall(60000, 0)  # blocked: no callbacks, no return for a minute
    a.doors.step = hung
    a.run(max_loops=10)
    print('not reached')

transit.startup.main(run=run, board_dirs=(%(boards)r,))
"""

SECOND_BOOT = """
import machine, network, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
import transit.startup
from transit import app as appmod

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    doc = a.health.document()
    batch = a.queue.peek(500, 60000)
    print('after', a.queue.last_seq, a.queue.depth(), doc['rst'], len(batch), a.queue.stats.get('crc_errors', 0))
    print('crashes', state.crashes, 'boots', state.boots)

transit.startup.main(run=run, board_dirs=(%(boards)r,))
"""


def test_hung_step_resets_the_board_and_the_queue_survives(mp, tmp_path):
    (tmp_path / "device.json").write_text(json.dumps(DEVICE))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    sim_tools = os.path.join(paths.ROOT, "build", "wdt_tools")
    os.makedirs(sim_tools, exist_ok=True)
    with open(os.path.join(paths.TOOLS, "simgps.py")) as f, open(os.path.join(sim_tools, "simgps.py"), "w") as g:
        g.write(f.read())
    res = mp.run(FIRST_BOOT % {"boards": paths.BOARDS}, cwd=str(tmp_path), heap=HEAP, path=[sim_tools], check=False)
    out = res.stdout + res.stderr
    assert "ResetRequested: 3" in out, out[-3000:]  # WDT_RESET
    assert "not reached" not in out
    before = [l for l in res.stdout.splitlines() if l.startswith("before")][0].split()
    last_seq, depth = int(before[1]), int(before[2])
    assert depth >= 5  # a minute and a half of driving made position records
    res2 = mp.run(SECOND_BOOT % {"boards": paths.BOARDS}, cwd=str(tmp_path), heap=HEAP,
                  env={"FAKE_RESET_CAUSE": "3"})
    after = [l for l in res2.stdout.splitlines() if l.startswith("after")][0].split()
    assert int(after[2]) == depth  # every committed record is still there
    assert after[3] == "watchdog"
    assert int(after[4]) == depth and int(after[5]) == 0  # all readable, none corrupt
    assert int(after[1]) >= last_seq  # sequence numbers never go back
    crashes = [l for l in res2.stdout.splitlines() if l.startswith("crashes")][0].split()
    # The first boot ran healthy for more than a minute before it hung, so it
    # cleared the crash counter: only this boot counts until it is healthy.
    assert crashes[1:] == ["1", "boots", "2"]


FLAKY_STEP = """
import machine, network, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
import transit.startup
from transit import app as appmod

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    real = a.doors.step
    calls = [0]
    def sometimes_broken():
        calls[0] += 1
        if calls[0] in (3, 4):
            raise ValueError('sensor glitch %%d' %% calls[0])
        real()
    a.doors.step = sometimes_broken
    a.run(max_loops=400)
    st = a.loop_status()
    print('survived', a.loops, st['errors'], st['last_error'], a.health.document()['loop']['errors'])
    def always_broken():
        raise ValueError('sensor bus dead')
    a.doors.step = always_broken
    a.run(max_loops=100)
    print('not reached')

transit.startup.main(run=run, board_dirs=(%(boards)r,))
"""


def test_an_error_in_one_step_is_counted_and_the_loop_goes_on_but_a_burst_resets(mp, tmp_path):
    (tmp_path / "device.json").write_text(json.dumps(DEVICE))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    res = mp.run(FLAKY_STEP % {"boards": paths.BOARDS}, cwd=str(tmp_path), heap=HEAP, check=False)
    out = res.stdout + res.stderr
    line = [l for l in res.stdout.splitlines() if l.startswith("survived")][0]
    # 400 iterations, 2 failed: 398 completed, both errors counted, the last one shown in the status.
    assert line.startswith("survived 398 2 ValueError(") and "sensor glitch 4" in line and line.endswith(" 2")
    assert "not reached" not in out
    assert "ValueError: sensor bus dead" in out and "ResetRequested: 5" in out  # recorded, then a reset
    state = json.loads((tmp_path / "bootstate.json").read_text())
    assert "sensor bus dead" in state["last_error"]
