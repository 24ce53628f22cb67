"""Commands on the cmd topic (v2): validated, executed once per id, checked
against the device's limits, persisted, always answered.

Runs under CPython and under the MicroPython unix port."""

import json
import os

from transit import config
from transit.commands import Commands
from transit.limits import Limits

# config + settings + schema + records + commands and the fakes do not fit a
# 64K heap on the 64-bit unix port (objects are twice their ESP32 size).
MP_HEAP = "96K"

DEV = {"device_id": "bus-001", "role": "bus", "board": "sim", "broker": {"host": "mq.example"}}
SECRETS = {"mqtt_password": "pw"}
PATH = "/tmp/phs_test_commands_device.json"
SEEN = "/tmp/phs_test_commands_seen.json"
NOW = 1795766400
# A 4 MB board's 2 MiB LittleFS (512 blocks of 4096 bytes) with 400 KiB free
# and no queue yet: os.statvfs's tuple as the ESP32 returns it.
FLASH_2MIB = (4096, 4096, 512, 100, 100, 0, 0, 0, 0, 255)


def _cmds(path=None, now=NOW, seen_path=None, dev=None, **hooks):
    cfg = config.Config(config.validate(dict(dev or DEV), SECRETS), SECRETS, path)
    lim = Limits(statvfs=lambda p: FLASH_2MIB, queue_folder="/tmp/phs_test_commands_no_queue")
    return cfg, Commands(cfg, "bus-001", hooks, utc_s=lambda: now, limits=lim, seen_path=seen_path)


def _c(cid, op, exp=NOW + 60, **kw):
    doc = {"id": cid, "op": op, "exp": exp}
    doc.update(kw)
    return json.dumps(doc).encode()


def _ack(result):
    text, ok, after = result
    doc = json.loads(text)
    assert doc["ok"] == ok
    return doc, after


def test_ping_answers_pong_with_the_command_id():
    _, c = _cmds()
    doc, after = _ack(c.handle(_c("a1", "ping")))
    assert doc == {"v": 2, "d": "bus-001", "id": "a1", "op": "ping", "ok": True, "r": "pong"}
    assert after is None


def test_get_returns_a_setting_and_never_a_secret():
    _, c = _cmds()
    doc, _ = _ack(c.handle(_c("2", "get", key="status_period_s")))
    assert doc["r"] == 300
    doc, _ = _ack(c.handle(_c("3", "get", key="mqtt_password")))
    assert doc["err"] == "mqtt_password: unknown setting"


def test_set_validates_persists_and_answers_the_new_value():
    try:
        os.remove(PATH)
    except OSError:
        pass
    cfg, c = _cmds(PATH)
    doc, _ = _ack(c.handle(_c("s1", "set", key="status_period_s", val=600)))
    assert doc["r"] == 600
    assert cfg.get("status_period_s") == 600
    with open(PATH) as f:
        assert json.load(f)["status_period_s"] == 600
    os.remove(PATH)


def test_set_out_of_range_is_refused_and_changes_nothing():
    cfg, c = _cmds()
    doc, _ = _ack(c.handle(_c("s2", "set", key="status_period_s", val=5)))
    assert doc["err"] == "status_period_s: expected an integer 30..3600, got 5"
    assert cfg.get("status_period_s") == 300


def test_set_of_a_key_that_is_not_remotely_settable_is_refused():
    cfg, c = _cmds()
    doc, _ = _ack(c.handle(_c("d1", "set", key="device_id", val="bus-999")))
    assert doc["err"] == "device_id: cannot be changed remotely"
    assert doc["id"] == "d1"
    assert cfg.get("device_id") == "bus-001"


def test_malformed_commands_get_error_answers():
    _, c = _cmds()
    cases = [
        (b"not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (_c("m1", "format_flash"), 'unknown op "format_flash"'),
        (b'{"id":"x","exp":1795766460}', "unknown op null"),
        (_c("m2", "get"), "key: missing"),
        (_c("m3", "set", key="status_period_s"), "val: missing"),
        (b'{"op":"ping","id":[1],"exp":1795766460}', "id: a string of 1..32 characters is required"),
        (b'{"op":"ping","id":7,"exp":1795766460}', "id: a string of 1..32 characters is required"),
        (b'{"op":"ping","exp":1795766460}', "id: a string of 1..32 characters is required"),
        (_c("x" * 33, "ping"), "id: a string of 1..32 characters is required"),
        (b'{"op":"ping","id":"m4"}', "exp: Unix seconds are required"),
        (_c("m5", "ping", exp="soon"), "exp: Unix seconds are required"),
        (b'{"op":"ping","pad":"' + b"x" * 600 + b'"}', "command longer than 512 bytes"),
        (b"\xff\xfe", "not JSON"),
    ]
    for raw, err in cases:
        doc, after = _ack(c.handle(raw))
        assert doc["err"] == err, (raw, doc)
        assert after is None
    assert c.stats["ok"] == 0 and c.stats["err"] == len(cases)


def test_flush_and_reset_load_run_their_hooks_at_once():
    log = []
    _, c = _cmds(flush=lambda: log.append("flush"), reset_load=lambda: log.append("reset_load"))
    doc, after = _ack(c.handle(_c("1", "flush")))
    assert (doc["r"], after, log) == ("done", None, ["flush"])
    _ack(c.handle(_c("2", "reset_load")))
    assert log == ["flush", "reset_load"]


def test_reboot_runs_only_after_the_answer_is_sent():
    log = []
    _, c = _cmds(reboot=lambda: log.append("reboot"))
    doc, after = _ack(c.handle(_c("r", "reboot")))
    assert doc["r"] == "rebooting"
    assert log == []
    after()
    assert log == ["reboot"]


def test_an_op_without_a_hook_is_an_error_not_a_crash():
    _, c = _cmds()
    doc, _ = _ack(c.handle(_c("r2", "reboot")))
    assert doc["err"] == "reboot: not available on this device"


def test_a_tuning_group_key_set_calls_on_set():
    seen = []
    config.register_group("testgrp", {"gain": (1, 9)})
    cfg, c = _cmds(on_set=lambda k, v: seen.append((k, v)))
    doc, _ = _ack(c.handle(_c("g1", "set", key="testgrp.gain", val=7)))
    assert (doc["r"], seen) == (7, [("testgrp.gain", 7)])


# --- issue 19, finding 5: ids, expiry, limits -----------------------------


def _rm(path):
    try:
        os.remove(path)
    except OSError:
        pass


def test_a_replayed_command_is_refused_and_its_op_runs_once():
    log = []
    _, c = _cmds(reboot=lambda: log.append("reboot"))
    doc, after = _ack(c.handle(_c("r-1", "reboot")))
    after()
    doc, after = _ack(c.handle(_c("r-1", "reboot")))
    assert (doc["err"], after, log) == ("replayed", None, ["reboot"])
    assert c.stats["replayed"] == 1


def test_executed_ids_survive_a_reboot_so_a_retained_reboot_does_not_loop():
    _rm(SEEN)
    log = []
    _, c = _cmds(seen_path=SEEN, reboot=lambda: log.append("reboot"))
    doc, after = _ack(c.handle(_c("r-2", "reboot")))
    after()
    # The board restarts: a new Commands reads the ids back; the retained copy
    # of the same command arrives on the new connection.
    _, c2 = _cmds(seen_path=SEEN, reboot=lambda: log.append("reboot"))
    doc, after = _ack(c2.handle(_c("r-2", "reboot")))
    assert doc["err"] == "replayed" and after is None and log == ["reboot"]
    _rm(SEEN)


def test_an_expired_command_is_refused():
    log = []
    _, c = _cmds(reboot=lambda: log.append("reboot"))
    doc, after = _ack(c.handle(_c("r-3", "reboot", exp=NOW - 1)))
    assert (doc["err"], after, log) == ("expired", None, [])
    doc, _ = _ack(c.handle(_c("p-1", "ping", exp=NOW + 2 * 86400)))
    assert doc["err"] == "exp: at most 86400 s ahead"


def test_with_the_clock_not_set_only_ping_and_get_run():
    log = []
    _, c = _cmds(now=5, reboot=lambda: log.append("reboot"))  # ESP32 after power-on, no GPS/NTP yet
    doc, _ = _ack(c.handle(_c("p-2", "ping")))
    assert doc["r"] == "pong"
    doc, _ = _ack(c.handle(_c("r-4", "reboot")))
    assert doc["err"] == "clock not set: exp cannot be checked, only ping and get run"
    doc, _ = _ack(c.handle(_c("p-2", "ping")))
    assert doc["err"] == "replayed"


def test_the_id_memory_is_bounded_and_a_forgotten_id_cannot_be_replayed():
    from transit import commands
    _rm(SEEN)
    _, c = _cmds(seen_path=SEEN)
    n = commands.SEEN_MAX + 8
    for i in range(n):
        doc, _ = _ack(c.handle(_c("p%d" % i, "ping", exp=NOW + 100 + i)))
    with open(SEEN) as f:
        kept = json.load(f)
    assert len(kept["ids"]) == commands.SEEN_MAX and kept["floor"] == NOW + 107
    doc, _ = _ack(c.handle(_c("p0", "ping", exp=NOW + 100)))  # forgotten, but not newer than the floor
    assert doc["err"] == "replayed"
    doc, _ = _ack(c.handle(_c("p-new", "ping", exp=NOW + 300)))
    assert doc["r"] == "pong"
    _rm(SEEN)


def test_expired_ids_make_room_first():
    from transit import commands
    cfg = config.Config(config.validate(dict(DEV), SECRETS), SECRETS)
    now = [NOW]
    c = Commands(cfg, "bus-001", utc_s=lambda: now[0], seen_path=None)
    for i in range(commands.SEEN_MAX):
        _ack(c.handle(_c("q%d" % i, "ping", exp=NOW + 10)))
    now[0] = NOW + 20
    _ack(c.handle(_c("late", "ping", exp=NOW + 80)))
    assert c.seen.ids == [["late", NOW + 80]] and c.seen.floor == 0


def test_a_queue_budget_larger_than_the_flash_is_refused_and_not_saved():
    _rm(PATH)
    cfg, c = _cmds(PATH)
    doc, _ = _ack(c.handle(_c("b1", "set", key="queue.budget_kib", val=4096)))
    assert doc["err"] == "queue.budget_kib: 4096 KiB does not fit this board's flash (at most 336 KiB)"
    assert cfg.get("queue.budget_kib") is None
    try:
        open(PATH).close()
        assert False, "nothing may be saved"
    except OSError:
        pass
    doc, _ = _ack(c.handle(_c("b2", "set", key="queue.budget_kib", val=320)))
    assert doc["r"] == 320
    _rm(PATH)


def test_switching_off_the_publish_check_needs_the_device_file_to_allow_it():
    cfg, c = _cmds()
    doc, _ = _ack(c.handle(_c("v1", "set", key="uplink.verify", val=0)))
    assert doc["err"].startswith("uplink.verify: 0 would switch off the publish check; refused remotely")
    assert cfg.get("uplink.verify") is None
    cfg, c = _cmds(dev=dict(DEV, allow_remote_unsafe=True))
    doc, _ = _ack(c.handle(_c("v2", "set", key="uplink.verify", val=0)))
    assert doc["r"] == 0


def test_settings_that_go_together_are_checked_together():
    cfg, c = _cmds()
    doc, _ = _ack(c.handle(_c("k1", "set", key="uplink.backoff_min_ms", val=400000)))
    assert doc["err"] == "uplink.backoff_min_ms: 400000 is above uplink.backoff_max_ms"


def test_an_op_added_through_hooks_gets_the_command_and_answers():
    seen = []
    _, c = _cmds(ota=lambda cmd: (seen.append(cmd["url"]) or "started", lambda: seen.append("after")))
    doc, after = _ack(c.handle(_c("o1", "ota", url="https://x/fw.bin")))
    assert doc["r"] == "started" and seen == ["https://x/fw.bin"]
    after()
    assert seen[-1] == "after"
    doc, _ = _ack(c.handle(_c("o2", "on_set")))
    assert doc["err"] == 'unknown op "on_set"'


def test_limits_made_by_a_factory_only_when_a_set_arrives():
    """The application passes a function, so transit.limits loads only for a `set`."""
    made = []

    def factory():
        made.append(1)
        return Limits(statvfs=lambda p: FLASH_2MIB, queue_folder="/tmp/phs_test_commands_no_queue")
    cfg = config.Config(config.validate(dict(DEV), SECRETS), SECRETS, None)
    c = Commands(cfg, "bus-001", {}, utc_s=lambda: NOW, limits=factory, seen_path=None)
    doc, _ = _ack(c.handle(_c("f1", "ping")))
    assert made == []
    doc, _ = _ack(c.handle(_c("f2", "set", key="uplink.verify", val=0)))
    assert doc["err"].startswith("uplink.verify: 0 would switch off the publish check; refused remotely")
    assert made == [1] and cfg.get("uplink.verify") is None
