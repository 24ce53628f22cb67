"""Configuration: validation names the first wrong key; commands change only settable keys."""

import json
import os

from transit import config

DOC = {"device_id": "bus-0107", "role": "bus", "board": "esp32_devkitc",
       "broker": {"host": "mqtt.phitsanulok.example", "port": 8883},
       "networks": [{"ssid": "depot-north"}, {"ssid": "terminal-nu"}],
       "bus": {"plate": "10-1234", "route": "1", "capacity_seated": 32}}
SECRETS = {"wifi": {"depot-north": "k1", "terminal-nu": "k2"}, "mqtt_password": "pw"}


def _copy(d):
    return json.loads(json.dumps(d))


def _err(doc, secrets=SECRETS):
    try:
        config.validate(doc, secrets)
    except config.ConfigError as e:
        return str(e)
    return None


def test_valid_document_gets_defaults_filled_in():
    v = config.validate(_copy(DOC), SECRETS)
    assert v["broker.port"] == 8883 and v["broker.tls"] is True and v["broker.keepalive_s"] == 60
    assert v["bus.capacity_seated"] == 32 and v["bus.capacity_standing"] == 50
    assert v["topic_root"] == "phs"


def test_each_kind_of_mistake_names_its_key():
    d = _copy(DOC)
    del d["device_id"]
    assert _err(d) == "device_id: missing (required)"
    d = _copy(DOC)
    d["broker"]["port"] = "8883"
    assert _err(d) == 'broker.port: expected an integer 1..65535, got "8883"'
    d = _copy(DOC)
    d["role"] = "tram"
    assert _err(d) == 'role: expected one of bus, depot, got "tram"'
    d = _copy(DOC)
    d["broker"]["tls"] = "yes"
    assert _err(d) == 'broker.tls: expected true or false, got "yes"'
    d = _copy(DOC)
    d["colour"] = "red"
    assert _err(d) == "colour: unknown setting"


def test_network_without_a_key_in_secrets_is_refused():
    s = _copy(SECRETS)
    del s["wifi"]["terminal-nu"]
    assert _err(_copy(DOC), s) == "networks[1]: no Wi-Fi key for terminal-nu in secrets"


def test_load_reports_missing_and_broken_files(tmp=None):
    base = "cfgtest_%d" % (os.getpid() if hasattr(os, "getpid") else 1)
    try:
        config.load(base + "_none.json", base + "_none2.json")
        assert False
    except config.ConfigError as e:
        assert str(e).startswith("device.json: file missing")
    with open(base + ".json", "w") as f:
        f.write("{not json")
    try:
        config.load(base + ".json", base + "_none2.json")
        assert False
    except config.ConfigError as e:
        assert str(e) == "device.json: not valid JSON"
    os.remove(base + ".json")


def test_set_validates_persists_and_refuses_identity_keys():
    base = "cfgset_%d" % (os.getpid() if hasattr(os, "getpid") else 1)
    with open(base + ".json", "w") as f:
        json.dump(DOC, f)
    with open(base + "_s.json", "w") as f:
        json.dump(SECRETS, f)
    cfg = config.load(base + ".json", base + "_s.json")
    cfg.set("bus.capacity_standing", 60)
    try:
        cfg.set("bus.capacity_standing", 900)
        assert False
    except config.ConfigError as e:
        assert str(e) == "bus.capacity_standing: expected an integer 0..200, got 900"
    try:
        cfg.set("device_id", "bus-9999")
        assert False
    except config.ConfigError as e:
        assert str(e) == "device_id: cannot be changed remotely"
    again = config.load(base + ".json", base + "_s.json")
    assert again.get("bus.capacity_standing") == 60
    assert again.get("device_id") == "bus-0107"
    os.remove(base + ".json")
    os.remove(base + "_s.json")


def test_tuning_groups_are_validated_by_their_registered_ranges():
    config.register_group("track", {"period_moving_s": (5, 600)})
    d = _copy(DOC)
    d["track"] = {"period_moving_s": 2}
    assert _err(d) == "track.period_moving_s: expected an integer 5..600, got 2"
    d["track"] = {"period_moving_s": 20}
    v = config.validate(d, SECRETS)
    cfg = config.Config(v, SECRETS)
    assert cfg.group("track") == {"period_moving_s": 20}


def test_summary_never_contains_secrets():
    cfg = config.Config(config.validate(_copy(DOC), SECRETS), SECRETS)
    text = json.dumps(cfg.summary())
    assert "pw" not in text and "k1" not in text


def test_a_connect_timeout_the_watchdog_would_cut_short_is_refused():
    # A connect attempt blocks the loop for up to uplink.connect_ms; the watchdog
    # must not fire inside it (it did: 10 s connects against an 8 s watchdog).
    doc = _copy(DOC)
    doc["watchdog_ms"] = 8000
    doc["uplink"] = {"connect_ms": 10000}
    assert _err(doc) == ("uplink.connect_ms 10000 must be at least 2000 ms below watchdog_ms 8000: a connect "
                         "attempt blocks the loop that long, and the watchdog would reset the board")
    doc["uplink"] = {"connect_ms": 6000}
    assert config.validate(doc, SECRETS)["uplink.connect_ms"] == 6000
    defaults = config.validate(_copy(DOC), SECRETS)
    assert config.connect_vs_watchdog(config.CONNECT_MS_DEFAULT, defaults["watchdog_ms"]) == ""
