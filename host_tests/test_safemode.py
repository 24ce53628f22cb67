"""Safe mode: a technician's mistake gives a clear message, the LED pattern
and a free REPL, never a crash loop. Runs the real boot path under the
MicroPython unix port in a folder laid out like the board's filesystem."""

import json

import pytest

from harness import paths

DEVICE = {"device_id": "bus-0107", "role": "bus", "board": "sim",
          "broker": {"host": "127.0.0.1", "port": 1883, "tls": False},
          "networks": [{"ssid": "depot-north"}]}
SECRETS = {"wifi": {"depot-north": "k1"}, "mqtt_password": "pw"}
# The boot path plus the fakes (~17 KB of machine fakes on the 64-bit unix
# port, where every object is about twice its ESP32 size) needs more than 64K.
HEAP = "128K"  # and safe mode's report to the broker (umqtt, the bounded transport)

BOOT = """
import machine, fakeclock
fakeclock.CLOCK.set_virtual(0)
%(before)s
import transit.startup
result = transit.startup.main(board_dirs=(%(boards)r,)%(extra)s)
print('main returned', result)
"""


def _layout(tmp_path, device=DEVICE, secrets=SECRETS, device_text=None):
    (tmp_path / "device.json").write_text(device_text if device_text is not None else json.dumps(device))
    if secrets is not None:
        (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    return tmp_path


def _boot(mp, tmp_path, before="", extra="", check=True, cause=1):
    """cause: the reset cause the ESP32 reports for this boot (1 power-on; 5 soft,
    what machine.reset() and a crash read as)."""
    code = BOOT % {"before": before, "boards": paths.BOARDS, "extra": extra}
    return mp.run(code, cwd=str(tmp_path), interactive=True, input="print(6 * 7)\n", check=check, heap=HEAP,
                  env={"FAKE_RESET_CAUSE": str(cause)})


def _assert_safe_mode(res, reason):
    out = res.stdout
    assert "SAFE MODE: " + reason in out, out
    assert "main returned False" in out
    assert "\n42\n" in out, "the REPL did not answer after safe mode:\n" + out


def _with(**changes):
    d = json.loads(json.dumps(DEVICE))
    for k, v in changes.items():
        node = d
        parts = k.split(".")
        for p in parts[:-1]:
            node = node[p]
        if v is None:
            del node[parts[-1]]
        else:
            node[parts[-1]] = v
    return d


@pytest.mark.parametrize("case,device,text,reason", [
    ("broken_json", None, '{"device_id": "bus-0107", "role": ', "configuration: device.json: not valid JSON"),
    ("missing_key", _with(device_id=None), None, "configuration: device_id: missing (required)"),
    ("wrong_type", _with(**{"broker.port": "1883"}), None,
     'configuration: broker.port: expected an integer 1..65535, got "1883"'),
    ("unknown_board", _with(board="esp32_nosuch"), None, "board: board esp32_nosuch: no description found in"),
])
def test_bad_device_file_enters_safe_mode_with_the_reason(mp, tmp_path, case, device, text, reason):
    _layout(tmp_path, device=device or DEVICE, device_text=text)
    res = _boot(mp, tmp_path)
    _assert_safe_mode(res, reason)
    assert (tmp_path / "safemode.txt").read_text().startswith(reason)


def test_missing_secrets_enters_safe_mode(mp, tmp_path):
    _layout(tmp_path, secrets=None)
    _assert_safe_mode(_boot(mp, tmp_path), "configuration: secrets.json: file missing")


def test_secrets_without_the_wifi_key_enters_safe_mode(mp, tmp_path):
    _layout(tmp_path, secrets={"wifi": {}, "mqtt_password": "pw"})
    _assert_safe_mode(_boot(mp, tmp_path), "configuration: networks[0]: no Wi-Fi key for depot-north in secrets")


def test_held_safe_mode_button_enters_safe_mode(mp, tmp_path):
    _layout(tmp_path)
    res = _boot(mp, tmp_path, before="machine.drive(0, 0)  # BOOT button held")
    _assert_safe_mode(res, "safe-mode button held at boot")


def test_safe_mode_blinks_three_times_then_pauses(mp, tmp_path):
    _layout(tmp_path)
    code = BOOT % {"before": "machine.drive(0, 0)", "boards": paths.BOARDS, "extra": ""} + """
led = machine.Pin(2)
rises = []
last = led.value()
for ms in range(0, 4800, 10):
    fakeclock.CLOCK.sleep_ms(10)
    v = led.value()
    if v and not last:
        rises.append(fakeclock.CLOCK.now_us() // 1000)
    last = v
print('rises', rises)
"""
    res = mp.run(code, cwd=str(tmp_path), heap=HEAP)
    rises = [int(x) for x in res.stdout.split("rises [")[1].split("]")[0].split(",")]
    # 150 ms steps: on at steps 0, 2, 4 of every 16 (2.4 s cycle).
    assert rises == [150, 450, 750, 2550, 2850, 3150]


CRASHING_APP = """
def crash(cfg, board, state):
    raise RuntimeError('sensor bus exploded')
"""


def test_repeated_crashes_end_in_safe_mode_and_a_healthy_boot_would_not(mp, tmp_path):
    _layout(tmp_path)
    extra = ", run=crash"
    before = CRASHING_APP
    for boot in range(3):
        res = _boot(mp, tmp_path, before=before, extra=extra, check=False, cause=5 if boot else 1)
        assert "RuntimeError: sensor bus exploded" in res.stdout
        assert "ResetRequested" in res.stdout + res.stderr  # the board resets after recording the error
        state = json.loads((tmp_path / "bootstate.json").read_text())
        assert state["crashes"] == boot + 1
    res = _boot(mp, tmp_path, before=before, extra=extra, cause=5)
    _assert_safe_mode(res, "the application failed 3 times in a row; last error: RuntimeError: sensor bus exploded")


def test_healthy_run_clears_the_crash_counter(mp, tmp_path):
    _layout(tmp_path)
    (tmp_path / "bootstate.json").write_text(json.dumps({"crashes": 2, "boots": 9}))
    before = "def ok(cfg, board, state):\n    state.healthy()\n    print('app ran on', board.name)\n"
    res = _boot(mp, tmp_path, before=before, extra=", run=ok")
    assert "app ran on sim" in res.stdout
    state = json.loads((tmp_path / "bootstate.json").read_text())
    assert state == {"crashes": 0, "boots": 10, "last_error": "", "reset_cause": 1, "running": False,
                     "planned": "", "ended": "stopped", "se": 0, "ss": 0}


def test_tuning_groups_are_known_at_boot_before_the_stages_load(mp, tmp_path):
    # Validation runs before the pipeline modules are imported: their ranges
    # must be known to config.py by then, or every tuned board boots into safe mode.
    d = _with(uplink={"batch_s": 30}, track={"distance_m": 150}, counting={"grace_ms": 2000},
              queue={"commit_ms": 10000}, roster={"away_s": 900})
    _layout(tmp_path, device=d)
    before = "def ok(cfg, board, state):\n    print('tuned', cfg.group('track'), cfg.group('uplink'))\n"
    res = _boot(mp, tmp_path, before=before, extra=", run=ok")
    assert "tuned {'distance_m': 150} {'batch_s': 30}" in res.stdout, res.stdout


def test_out_of_range_tuning_value_enters_safe_mode(mp, tmp_path):
    _layout(tmp_path, device=_with(track={"distance_m": 5}))
    _assert_safe_mode(_boot(mp, tmp_path), "configuration: track.distance_m: expected an integer 20..5000, got 5")


def test_ctrl_c_from_a_technician_is_not_a_crash(mp, tmp_path):
    _layout(tmp_path)
    (tmp_path / "bootstate.json").write_text(json.dumps({"crashes": 2, "boots": 5}))
    before = "def interrupted(cfg, board, state):\n    raise KeyboardInterrupt\n"
    res = _boot(mp, tmp_path, before=before, extra=", run=interrupted")
    assert "stopped by Ctrl-C" in res.stdout and "\n42\n" in res.stdout
    state = json.loads((tmp_path / "bootstate.json").read_text())
    assert state["crashes"] == 2 and state["boots"] == 6  # counted as a boot, not as a crash
