"""Commands on the cmd topic: validated, persisted, always answered.

Runs under CPython and under the MicroPython unix port."""

import json
import os

from transit import config
from transit.commands import Commands

# config + settings + schema + records + commands and the fakes do not fit a
# 64K heap on the 64-bit unix port (objects are twice their ESP32 size).
MP_HEAP = "96K"

DEV = {"device_id": "bus-001", "role": "bus", "board": "sim", "broker": {"host": "mq.example"}}
SECRETS = {"mqtt_password": "pw"}
PATH = "/tmp/phs_test_commands_device.json"


def _cmds(path=None, **hooks):
    cfg = config.Config(config.validate(dict(DEV), SECRETS), SECRETS, path)
    return cfg, Commands(cfg, "bus-001", hooks)


def _ack(result):
    text, ok, after = result
    doc = json.loads(text)
    assert doc["ok"] == ok
    return doc, after


def test_ping_answers_pong_with_the_command_id():
    _, c = _cmds()
    doc, after = _ack(c.handle(b'{"id":"a1","op":"ping"}'))
    assert doc == {"v": 2, "d": "bus-001", "id": "a1", "op": "ping", "ok": True, "r": "pong"}
    assert after is None


def test_get_returns_a_setting_and_never_a_secret():
    _, c = _cmds()
    doc, _ = _ack(c.handle(b'{"id":2,"op":"get","key":"status_period_s"}'))
    assert doc["r"] == 300
    doc, _ = _ack(c.handle(b'{"id":3,"op":"get","key":"mqtt_password"}'))
    assert doc["err"] == "mqtt_password: unknown setting"


def test_set_validates_persists_and_answers_the_new_value():
    try:
        os.remove(PATH)
    except OSError:
        pass
    cfg, c = _cmds(PATH)
    doc, _ = _ack(c.handle(b'{"id":"s1","op":"set","key":"status_period_s","val":600}'))
    assert doc["r"] == 600
    assert cfg.get("status_period_s") == 600
    with open(PATH) as f:
        assert json.load(f)["status_period_s"] == 600
    os.remove(PATH)


def test_set_out_of_range_is_refused_and_changes_nothing():
    cfg, c = _cmds()
    doc, _ = _ack(c.handle(b'{"id":"s2","op":"set","key":"status_period_s","val":5}'))
    assert doc["err"] == "status_period_s: expected an integer 30..3600, got 5"
    assert cfg.get("status_period_s") == 300


def test_set_of_a_key_that_is_not_remotely_settable_is_refused():
    cfg, c = _cmds()
    doc, _ = _ack(c.handle(b'{"op":"set","key":"device_id","val":"bus-999"}'))
    assert doc["err"] == "device_id: cannot be changed remotely"
    assert doc["id"] is None
    assert cfg.get("device_id") == "bus-001"


def test_malformed_commands_get_error_answers():
    _, c = _cmds()
    cases = [
        (b"not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"op":"format_flash"}', 'unknown op "format_flash"'),
        (b'{"id":"x"}', "unknown op null"),
        (b'{"op":"get"}', "key: missing"),
        (b'{"op":"set","key":"status_period_s"}', "val: missing"),
        (b'{"op":"ping","id":[1]}', "id: a string or integer of at most 32 characters"),
        (b'{"op":"ping","pad":"' + b"x" * 600 + b'"}', "command longer than 512 bytes"),
        (b"\xff\xfe", "not JSON"),
    ]
    for raw, err in cases:
        doc, after = _ack(c.handle(raw))
        assert doc["err"] == err, (raw, doc)
        assert after is None
    assert c.stats == {"ok": 0, "err": len(cases)}


def test_flush_and_reset_load_run_their_hooks_at_once():
    log = []
    _, c = _cmds(flush=lambda: log.append("flush"), reset_load=lambda: log.append("reset_load"))
    doc, after = _ack(c.handle(b'{"id":1,"op":"flush"}'))
    assert (doc["r"], after, log) == ("done", None, ["flush"])
    _ack(c.handle(b'{"id":2,"op":"reset_load"}'))
    assert log == ["flush", "reset_load"]


def test_reboot_runs_only_after_the_answer_is_sent():
    log = []
    _, c = _cmds(reboot=lambda: log.append("reboot"))
    doc, after = _ack(c.handle(b'{"id":"r","op":"reboot"}'))
    assert doc["r"] == "rebooting"
    assert log == []
    after()
    assert log == ["reboot"]


def test_an_op_without_a_hook_is_an_error_not_a_crash():
    _, c = _cmds()
    doc, _ = _ack(c.handle(b'{"op":"reboot"}'))
    assert doc["err"] == "reboot: not available on this device"


def test_a_tuning_group_key_set_calls_on_set():
    seen = []
    config.register_group("testgrp", {"gain": (1, 9)})
    cfg, c = _cmds(on_set=lambda k, v: seen.append((k, v)))
    doc, _ = _ack(c.handle(b'{"op":"set","key":"testgrp.gain","val":7}'))
    assert (doc["r"], seen) == (7, [("testgrp.gain", 7)])
