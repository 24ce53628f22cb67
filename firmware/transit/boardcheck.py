"""Board descriptions checked against the chip's pin rules (boot only).

Split from transit.board so the running board keeps only the Board class:
the chip tables and the checks are needed when a description is loaded,
then forgotten with the other boot modules (transit.app.forget_boot_modules;
docs/memory.md).
"""

import json

from transit.board import BOARD_DIRS, BoardError

# Per chip: valid GPIOs, pins that belong to the flash (never usable),
# input-only pins (no pull-ups, no output) and strapping pins.
_ESP32_VALID = tuple(range(0, 20)) + (21, 22, 23, 25, 26, 27) + tuple(range(32, 40))
_CHIPS = {
    "esp32": {"valid": _ESP32_VALID, "flash": (6, 7, 8, 9, 10, 11), "input_only": (34, 35, 36, 37, 38, 39),
              "strapping": (0, 2, 5, 12, 15), "psram": {"quad": (16, 17)}},
    "esp32s3": {"valid": tuple(range(0, 22)) + tuple(range(26, 49)), "flash": (26, 27, 28, 29, 30, 31, 32),
                "input_only": (), "strapping": (0, 3, 45, 46), "psram": {"octal": (33, 34, 35, 36, 37), "quad": ()}},
    "sim": {"valid": tuple(range(0, 49)), "flash": (), "input_only": (), "strapping": (), "psram": {}},
}
# Roles for which a strapping pin is the usual choice (BOOT button, on-board LED).
_STRAP_ROLES = ("safe_mode_pin", "status_led.pin")


def _pins(desc):
    """Yield (key, pin, needs_pull_up, is_output, strapping_ok) for every pin used."""
    if desc.get("safe_mode_pin", -1) >= 0:
        yield "safe_mode_pin", desc["safe_mode_pin"], True, False, False
    led = desc.get("status_led")
    if led:
        yield "status_led.pin", led["pin"], False, True, False
    gps = desc.get("gps")
    if gps:
        yield "gps.tx", gps["tx"], False, True, False
        yield "gps.rx", gps["rx"], False, False, False
    for group in ("doors", "gates"):
        for i, d in enumerate(desc.get(group) or ()):
            ok = d.get("strapping_ok", False)
            pull = d.get("active_low", True)
            for k in ("beam_a", "beam_b", "switch"):
                if k in d:
                    yield "%s[%d].%s" % (group, i, k), d[k], pull, False, ok
    ign = desc.get("ignition")
    if ign:
        yield "ignition.pin", ign["pin"], False, False, False
    modem = desc.get("modem")
    if modem:
        yield "modem.tx", modem["tx"], False, True, False
        yield "modem.rx", modem["rx"], False, False, False
        if "power_pin" in modem:
            yield "modem.power_pin", modem["power_pin"], False, True, False


def validate(desc):
    """Check a board description; return it, or raise BoardError for the first problem."""
    if not isinstance(desc, dict):
        raise BoardError("board: must be a JSON object")
    for key in ("name", "chip", "gps"):
        if key not in desc:
            raise BoardError("board: %s missing" % key)
    chip = _CHIPS.get(desc["chip"])
    if chip is None:
        raise BoardError("chip: unknown chip %r (known: %s)" % (desc["chip"], ", ".join(sorted(_CHIPS))))
    forbidden = chip["flash"] + chip["psram"].get(desc.get("psram") or "", ())
    seen = {}
    try:
        pins = list(_pins(desc))
    except (KeyError, TypeError, AttributeError) as e:
        raise BoardError("board: malformed entry (%s)" % e)
    for key, pin, pull, output, strap_ok in pins:
        if not isinstance(pin, int) or pin not in chip["valid"]:
            raise BoardError("%s: GPIO %r does not exist on %s" % (key, pin, desc["chip"]))
        if pin in forbidden:
            raise BoardError("%s: GPIO %d belongs to the flash/PSRAM on this module" % (key, pin))
        if pin in chip["input_only"] and (pull or output):
            raise BoardError("%s: GPIO %d is input-only without pull-up; needs %s"
                             % (key, pin, "an output pin" if output else "an external pull-up (set active_low false) or another pin"))
        if pin in chip["strapping"] and key not in _STRAP_ROLES and not strap_ok:
            raise BoardError("%s: GPIO %d is a strapping pin; choose another or set strapping_ok" % (key, pin))
        if pin in seen and not _shared_ok(key, seen[pin]):
            raise BoardError("%s: GPIO %d already used by %s" % (key, pin, seen[pin]))
        seen.setdefault(pin, key)
    if len(desc.get("doors") or ()) > 3:
        raise BoardError("doors: a bus has one to three doors")
    return desc


def _shared_ok(a, b):
    # A board serves either as bus (doors) or depot (gates): the two may share pins.
    return a.split("[")[0] != b.split("[")[0] and {a.split("[")[0], b.split("[")[0]} == {"doors", "gates"}


def load(name, dirs=BOARD_DIRS):
    """Read and validate boards/<name>.json."""
    for d in dirs:
        try:
            f = open(d + "/" + name + ".json")
        except OSError:
            continue
        try:
            desc = json.load(f)  # streams: no copy of the whole text on the heap
        except ValueError:
            raise BoardError("board %s: not valid JSON" % name)
        finally:
            f.close()
        return validate(desc)
    raise BoardError("board %s: no description found in %s" % (name, ", ".join(dirs)))
