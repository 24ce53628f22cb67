"""A board flashed as another device keeps the old device's unsent records
out of the new device's stream (issue 19, finding 4): it keeps them, says so
(safe mode: console, safemode.txt, the retained status and the safe-mode
event) and lets the technician choose: deploy the old id once (the queue
drains as its owner) or confirm a wipe with "queue_wipe": "<old id>".

Real boot path and the real App and queue under the MicroPython unix port,
real Mosquitto."""

import json
import os
import sys

from harness import paths

sys.path.insert(0, paths.TOOLS)
import telemetry  # noqa: E402

OLD, NEW = "bus-0303", "bus-0302"
SECRETS = {"wifi": {"depot-north": "k1"}, "mqtt_password": ""}

FILL = """
from dqueue import DurableQueue
from transit import identity, records as R
import os
try:
    os.mkdir('data')
except OSError:
    pass
q = DurableQueue('data/q', priority_types=R.PRIORITY_TYPES)
e = identity.adopt('data/q', %(dev)r, q)
for i in range(%(n)d):
    q.append(R.EVENT, R.pack_event(R.EV_SENSOR_FAULT, i, 77), 1795766000 + i, 0)
q.close()
print('filled', e, q.depth())
"""

BOOT = """
import machine, network, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
network.set_aps([{"ssid": "depot-north", "key": "k1"}])
import transit.startup
from transit import app as appmod

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    a.boot_event()
    print('app running as', cfg['device_id'], 'epoch', a.epoch, 'depth', a.queue.depth())
    a.run(max_loops=400, loop_ms=20)
    import select
    idle = select.poll()
    for i in range(3000):
        if a.queue.depth() == 0:
            break
        a.run(max_loops=1, loop_ms=20)
        idle.poll(2)  # real time for the broker (the loop's clock is virtual)
    print('depth after', a.queue.depth(), a.uplink.status())

result = transit.startup.main(run=run, board_dirs=(%(boards)r,))
print('main returned', result)
"""


def _device(broker, dev, **extra):
    d = {"device_id": dev, "role": "bus", "board": "sim", "networks": [{"ssid": "depot-north"}],
         "broker": {"host": broker.host, "port": broker.port, "tls": False}, "uplink": {"batch_s": 1, "verify": 0, "ack_ms": 60000}}
    d.update(extra)
    return d


def _fill(mp, tmp_path, dev, n):
    res = mp.run(FILL % {"dev": dev, "n": n}, cwd=str(tmp_path), heap="256K")
    return int(res.stdout.split("filled ")[1].split()[0])


def _boot(mp, tmp_path, broker, dev, **extra):
    (tmp_path / "device.json").write_text(json.dumps(_device(broker, dev, **extra)))
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    return mp.run(BOOT % {"boards": paths.BOARDS}, cwd=str(tmp_path), heap="512K", check=False, timeout=120,
                  env={"FAKE_RESET_CAUSE": "1"})


def _owner(tmp_path):
    return json.loads((tmp_path / "data" / "q" / "owner.json").read_text())


def test_a_board_flashed_as_another_bus_does_not_send_the_old_bus_records_under_the_new_id(
        mp, tmp_path, broker, subscriber_factory):
    old_epoch = _fill(mp, tmp_path, OLD, 5)
    files_before = sorted(os.listdir(tmp_path / "data" / "q"))
    sub = subscriber_factory(broker, ["phs/#"])
    res = _boot(mp, tmp_path, broker, NEW)
    out = res.stdout
    assert "app running" not in out, out[-3000:]
    assert ("SAFE MODE: queue: 5 unsent records belong to bus-0303 (this board is now bus-0302)" in out), out[-3000:]
    assert "queue_wipe" in out
    # Kept as it was, owner and all.
    assert _owner(tmp_path) == {"d": OLD, "e": old_epoch}
    assert sorted(os.listdir(tmp_path / "data" / "q")) == files_before
    # Reported to the broker: retained safe status and the safe-mode event (cause 5), no records.
    got = sub.wait_for(2, timeout=10, topic_prefix="phs/bus/")
    kinds = sorted(t.rsplit("/", 1)[1] for t, _, _, _ in got)
    assert kinds == ["event", "status"], got
    for t, p, _, _ in got:
        assert t.startswith("phs/bus/%s/" % NEW)
        telemetry.validate(t, p)
        doc = json.loads(p)
        if t.endswith("/status"):
            assert doc["safe"]["why"].startswith("queue: 5 unsent records belong to bus-0303")
        else:
            assert [r["k"] for r in doc["r"]] == [8] and doc["r"][0]["i"] == 5
    # Not a crash: the choice is the technician's.
    assert json.loads((tmp_path / "bootstate.json").read_text())["crashes"] == 0


def test_deploying_the_old_id_again_drains_the_queue_as_its_owner(mp, tmp_path, broker, subscriber_factory):
    old_epoch = _fill(mp, tmp_path, OLD, 5)
    sub = subscriber_factory(broker, ["phs/bus/+/event"])
    res = _boot(mp, tmp_path, broker, OLD)
    assert "app running as bus-0303 epoch %d depth" % old_epoch in res.stdout, res.stdout[-3000:]
    assert "depth after 0" in res.stdout, res.stdout[-3000:]
    st = telemetry.Stream()
    for t, p, _, _ in sub.wait_for(2, timeout=10):
        assert t == "phs/bus/bus-0303/event"
        st.feed(t, p)
    assert st.epoch == old_epoch and [r["va"] for k, r in st.records.values() if r["k"] == 7] == [77] * 5


def test_a_confirmed_wipe_deletes_the_old_queue_and_starts_a_new_epoch(mp, tmp_path, broker, subscriber_factory):
    old_epoch = _fill(mp, tmp_path, OLD, 5)
    sub = subscriber_factory(broker, ["phs/bus/+/event"])
    res = _boot(mp, tmp_path, broker, NEW, queue_wipe=OLD)
    assert "queue: wiped 5 unsent records of bus-0303" in res.stdout, res.stdout[-3000:]
    owner = _owner(tmp_path)
    assert owner["d"] == NEW and owner["e"] != old_epoch
    assert "app running as bus-0302 epoch %d depth 1" % owner["e"] in res.stdout  # just its boot event
    st = telemetry.Stream()
    for t, p, _, _ in sub.wait_for(1, timeout=10):
        assert t == "phs/bus/bus-0302/event"
        st.feed(t, p)
    assert [r["k"] for _, r in st.records.values()] == [1] and st.epoch == owner["e"]


def test_a_wipe_naming_another_device_is_not_a_confirmation(mp, tmp_path, broker):
    _fill(mp, tmp_path, OLD, 2)
    res = _boot(mp, tmp_path, broker, NEW, queue_wipe="bus-9999")
    assert "SAFE MODE: queue: 2 unsent records belong to bus-0303" in res.stdout, res.stdout[-3000:]
    assert _owner(tmp_path)["d"] == OLD


def test_an_empty_queue_of_another_device_is_taken_over_with_a_new_epoch(mp, tmp_path, broker):
    old_epoch = _fill(mp, tmp_path, OLD, 0)
    res = _boot(mp, tmp_path, broker, NEW)
    owner = _owner(tmp_path)
    assert owner["d"] == NEW and owner["e"] != old_epoch
    assert "app running as bus-0302 epoch %d" % owner["e"] in res.stdout, res.stdout[-3000:]
