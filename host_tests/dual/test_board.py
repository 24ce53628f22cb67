"""Board descriptions obey the chip's pin rules; the board layer builds peripherals."""

import json
import os

import machine
from transit import board



def _boards_dir():
    # The boards/ folder beside firmware/: found from the import path.
    import sys
    for p in sys.path:
        for cand in (p + "/../boards", p + "/../../boards", p + "/../../../boards"):
            try:
                os.stat(cand + "/sim.json")
                return cand
            except OSError:
                pass
    raise AssertionError("boards/ not found from sys.path")


def _desc(**over):
    d = {"name": "t", "chip": "esp32", "gps": {"uart": 2, "tx": 17, "rx": 16, "baud": 9600},
         "doors": [{"beam_a": 25, "beam_b": 26, "switch": 27, "active_low": True}]}
    d.update(over)
    return d


def _error(desc):
    try:
        board.validate(desc)
    except board.BoardError as e:
        return str(e)
    return None


def test_every_committed_board_file_loads_and_validates():
    d = _boards_dir()
    names = sorted(n[:-5] for n in os.listdir(d) if n.endswith(".json"))
    assert "esp32_devkitc" in names and "esp32s3_devkitc" in names and "sim" in names
    assert "lilygo_t_sim7600" in names
    for n in names:
        desc = board.load(n, dirs=(d,))
        assert desc["name"] == n
        assert 1 <= len(desc["doors"]) <= 3


def test_cellular_board_describes_its_modem():
    desc = board.load("lilygo_t_sim7600", dirs=(_boards_dir(),))
    assert desc["modem"]["type"] == "sim7600" and desc["modem"]["baud"] == 115200


def test_flash_pins_are_refused():
    assert _error(_desc(doors=[{"beam_a": 6, "beam_b": 26, "switch": 27}])) == \
        "doors[0].beam_a: GPIO 6 belongs to the flash/PSRAM on this module"


def test_input_only_pin_cannot_take_a_pull_up():
    err = _error(_desc(doors=[{"beam_a": 25, "beam_b": 36, "switch": 27, "active_low": True}]))
    assert err.startswith("doors[0].beam_b: GPIO 36 is input-only")


def test_input_only_pin_is_fine_for_ignition_sense():
    assert _error(_desc(ignition={"pin": 34})) is None


def test_strapping_pin_needs_explicit_consent():
    assert _error(_desc(doors=[{"beam_a": 12, "beam_b": 26, "switch": 27}])) == \
        "doors[0].beam_a: GPIO 12 is a strapping pin; choose another or set strapping_ok"
    assert _error(_desc(doors=[{"beam_a": 12, "beam_b": 26, "switch": 27, "strapping_ok": True}])) is None


def test_psram_pins_depend_on_the_module():
    assert _error(_desc(gps={"uart": 2, "tx": 17, "rx": 16, "baud": 9600}, psram="quad")) == \
        "gps.tx: GPIO 17 belongs to the flash/PSRAM on this module"


def test_pin_used_twice_is_refused_but_doors_and_gates_may_share():
    err = _error(_desc(doors=[{"beam_a": 25, "beam_b": 25, "switch": 27}]))
    assert err == "doors[0].beam_b: GPIO 25 already used by doors[0].beam_a"
    assert _error(_desc(gates=[{"beam_a": 25, "beam_b": 26}])) is None


def test_unknown_chip_and_missing_gps():
    assert _error(_desc(chip="esp8266")).startswith("chip: unknown chip")
    d = _desc()
    del d["gps"]
    assert _error(d) == "board: gps missing"


def test_more_than_three_doors_is_refused():
    door = {"beam_a": 25, "beam_b": 26, "switch": 27, "strapping_ok": True}
    doors = [dict(door, beam_a=a, beam_b=b, switch=s) for a, b, s in ((25, 26, 27), (32, 33, 14), (18, 19, 23), (21, 22, 4))]
    assert _error(_desc(doors=doors)) == "doors: a bus has one to three doors"


def test_board_layer_builds_pins_and_uart_from_the_description():
    desc = board.load("sim", dirs=(_boards_dir(),))
    b = board.Board(desc, machine)
    doors = b.door_pins()
    assert len(doors) == 2
    a, bb, sw, low = doors[0]
    assert low is True and a.value() == 1 and sw.value() == 1  # pulled up: beams clear, door closed
    u = b.gps_uart()
    chunk = b"x" * 100
    for _ in range(21):
        u.feed(chunk)
    assert u.any() == 2048  # rxbuf from the board file
    assert u.overflow_bytes == 52
    assert b.safe_mode_requested() is False
    assert b.safe_mode_requested() is False
