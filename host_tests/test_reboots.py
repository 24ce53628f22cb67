"""Planned reboots and power-ons are not crashes; a crash loop names its
real error and safe mode is left by itself once the cause is gone.

Issue 19, finding 2. Runs the real boot path (transit.startup, the real
App's reboot hook) under the MicroPython unix port. FAKE_RESET_CAUSE gives
each boot the reset cause the ESP32 reports: machine.reset() and a panic
both read as soft (5), a brownout as power-on (1)."""

import json

from harness import paths
from test_safemode import HEAP, _assert_safe_mode, _layout

SOFT, POWER_ON, WATCHDOG = 5, 1, 3

BOOT = """
import machine, fakeclock
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
%(before)s
import transit.startup
result = transit.startup.main(board_dirs=(%(boards)r,)%(extra)s)
print('main returned', result)
%(after)s
"""

APP_REBOOT = """
def reboot_cmd(cfg, board, state):
    from transit import app as appmod
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    print('app up, boot', state.boots)
    a.reboot()  # what the reboot command's hook does once the answer is out
"""
OK = "def ok(cfg, board, state):\n    print('app ran, boot', state.boots)\n"
POWER_CUT = "def cut(cfg, board, state):\n    print('app up, then the power goes')\n    raise SystemExit\n"
HANG = """
def hang(cfg, board, state):
    board.watchdog(2000)
    print('app up, then the loop hangs')
    fakeclock.CLOCK.sleep_ms(3000)
"""
CRASH = "def crash(cfg, board, state):\n    raise OSError(28)\n"


def _boot(mp, tmp_path, before="", run=None, cause=SOFT, after="", heap=HEAP):
    code = BOOT % {"before": before, "boards": paths.BOARDS, "after": after,
                   "extra": (", run=" + run) if run else ""}
    return mp.run(code, cwd=str(tmp_path), interactive=True, input="print(6 * 7)\n", check=False, heap=heap,
                  env={"FAKE_RESET_CAUSE": str(cause)})


def _state(tmp_path):
    return json.loads((tmp_path / "bootstate.json").read_text())


def test_three_reboot_commands_in_a_minute_do_not_count_as_crashes(mp, tmp_path):
    _layout(tmp_path)
    for i in range(4):
        res = _boot(mp, tmp_path, before=APP_REBOOT, run="reboot_cmd", cause=POWER_ON if i == 0 else SOFT,
                    heap="512K")
        assert "app up, boot %d" % (i + 1) in res.stdout, res.stdout[-3000:]
        assert "ResetRequested" in res.stdout + res.stderr
        assert _state(tmp_path)["crashes"] == 0
    res = _boot(mp, tmp_path, before=OK, run="ok")
    assert "app ran, boot 5" in res.stdout, res.stdout[-3000:]
    assert "SAFE MODE" not in res.stdout


def test_power_ons_in_quick_succession_are_not_crashes(mp, tmp_path):
    _layout(tmp_path)
    for i in range(4):
        res = _boot(mp, tmp_path, before=POWER_CUT, run="cut", cause=POWER_ON)
        assert "app up, then the power goes" in res.stdout, res.stdout[-3000:]
    res = _boot(mp, tmp_path, before=OK, run="ok", cause=POWER_ON)
    assert "app ran, boot 5" in res.stdout, res.stdout[-3000:]
    assert _state(tmp_path)["crashes"] == 0


def test_a_watchdog_loop_ends_in_safe_mode_naming_the_watchdog(mp, tmp_path):
    _layout(tmp_path)
    for i in range(3):
        res = _boot(mp, tmp_path, before=HANG, run="hang", cause=POWER_ON if i == 0 else WATCHDOG)
        assert "app up, then the loop hangs" in res.stdout, res.stdout[-3000:]
    res = _boot(mp, tmp_path, before=HANG, run="hang", cause=WATCHDOG)
    _assert_safe_mode(res, "the application failed 3 times in a row; last error: watchdog reset")
    assert "none recorded" not in res.stdout


def _crash_loop(mp, tmp_path):
    for i in range(3):
        _boot(mp, tmp_path, before=CRASH, run="crash", cause=POWER_ON if i == 0 else SOFT)
    assert _state(tmp_path)["crashes"] == 3


def test_safe_mode_after_a_crash_loop_retries_normal_boot_after_an_hour(mp, tmp_path):
    _layout(tmp_path)
    _crash_loop(mp, tmp_path)
    wait = "try:\n    fakeclock.CLOCK.sleep_ms(3601 * 1000)\nexcept machine.ResetRequested:\n    print('retry reset')\n"
    res = _boot(mp, tmp_path, before=OK, run="ok", after=wait)
    assert "SAFE MODE: the application failed 3 times in a row; last error: OSError" in res.stdout, res.stdout
    assert "retry reset" in res.stdout, res.stdout[-3000:]
    # The cause is gone: the retry boots the application, which then clears the counter.
    res = _boot(mp, tmp_path, before=OK + "    state.healthy()\n", run="ok")
    assert "app ran" in res.stdout and "SAFE MODE" not in res.stdout, res.stdout[-3000:]
    assert _state(tmp_path)["crashes"] == 0


def test_a_retry_that_crashes_again_goes_back_to_safe_mode_with_the_same_error(mp, tmp_path):
    _layout(tmp_path)
    _crash_loop(mp, tmp_path)
    res = _boot(mp, tmp_path, before=CRASH, run="crash", cause=POWER_ON)  # a power cycle: one more try
    assert "SAFE MODE" not in res.stdout and "OSError" in res.stdout, res.stdout[-3000:]
    res = _boot(mp, tmp_path, before=CRASH, run="crash", cause=SOFT)
    _assert_safe_mode(res, "the application failed 3 times in a row; last error: OSError")


APP_BOOT = """
import machine, network, fakeclock, select
fakeclock.CLOCK.set_virtual(0, utc_s=1795766400)
network.set_aps([{"ssid": "depot-north", "key": "k1"}])
import transit.startup
from transit import app as appmod

def run(cfg, board, state):
    a = appmod.build(cfg, board, state, wlan=board.wlan())
    print('app up, boot', state.boots)
    idle = select.poll()
    for i in range(1500):
        a.run(max_loops=1, loop_ms=20)
        idle.poll(2)  # real time for the broker (the loop's clock is virtual)
        if a.uplink.stats['cmd_err']:  # the refusal is on the wire
            break
    print('still running, replayed', a.commands.stats['replayed'])

transit.startup.main(run=run, board_dirs=(%(boards)r,))
"""


def test_a_retained_reboot_command_reboots_once_and_is_then_refused_as_a_replay(mp, tmp_path, broker,
                                                                             subscriber_factory):
    import paho.mqtt.publish as publish
    dev = {"device_id": "bus-0107", "role": "bus", "board": "sim", "networks": [{"ssid": "depot-north"}],
           "broker": {"host": broker.host, "port": broker.port, "tls": False}, "uplink": {"ack_ms": 60000}}
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "secrets.json").write_text(json.dumps({"wifi": {"depot-north": "k1"}, "mqtt_password": ""}))
    cmd = {"id": "ops-7", "op": "reboot", "exp": 1795766400 + 3600}
    publish.single("phs/bus/bus-0107/cmd", json.dumps(cmd), qos=1, retain=True, hostname=broker.host,
                   port=broker.port)
    sub = subscriber_factory(broker, ["phs/bus/bus-0107/ack"])
    for boot in range(3):
        res = mp.run(APP_BOOT % {"boards": paths.BOARDS}, cwd=str(tmp_path), heap="512K", check=False,
                     timeout=120, env={"FAKE_RESET_CAUSE": "1" if boot == 0 else "5"})
        assert "app up, boot %d" % (boot + 1) in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
        if boot == 0:
            assert "ResetRequested" in res.stdout + res.stderr  # the reboot ran
        else:
            assert "still running, replayed 1" in res.stdout, res.stdout[-3000:]
        assert _state(tmp_path)["crashes"] == 0
    acks = [json.loads(p) for _, p, _, _ in sub.wait_for(3, timeout=10)]
    assert [(a["id"], a.get("r"), a.get("err")) for a in acks] == [
        ("ops-7", "rebooting", None), ("ops-7", None, "replayed"), ("ops-7", None, "replayed")]
    assert _state(tmp_path)["boots"] == 3
