"""Device configuration: load, validate, read and change settings.

`device.json` holds identity, role, board, networks, broker and tuning;
`secrets.json` holds Wi-Fi keys and the broker password and is never printed.
Every key is declared once in SPEC with its type, range, default and whether
a remote command may change it. A bad file raises ConfigError naming the
first wrong key, so boot can fall back to safe mode with a clear message.
"""

import json

# The running board keeps only transit.cfgstore (Config, ConfigError); this
# module is imported at boot and for a remote `set`, then forgotten.
from transit.cfgstore import Config, ConfigError, short as _short  # noqa: F401 - re-exported

# kinds
_STR = 0
_INT = 1
_BOOL = 2
_CHOICE = 3
_LIST = 4
REQUIRED = object()

# key, kind, default, lo (min / min length / choices), hi, settable by command
SPEC = (
    ("device_id", _STR, REQUIRED, 3, 32, False),
    ("role", _CHOICE, REQUIRED, ("bus", "depot"), None, False),
    ("board", _STR, REQUIRED, 1, 48, False),
    ("topic_root", _STR, "phs", 1, 32, False),
    ("networks", _LIST, [], 0, 8, False),
    ("geofences", _LIST, [], 0, 16, False),
    ("broker.host", _STR, REQUIRED, 1, 128, False),  # "host" or a cluster "host,host:port,..." (uplink)
    ("broker.port", _INT, 8883, 1, 65535, False),
    ("broker.tls", _BOOL, True, None, None, False),
    ("broker.ca", _STR, "ca.der", 1, 64, False),
    ("broker.keepalive_s", _INT, 60, 10, 1200, True),
    ("bus.plate", _STR, "", 0, 16, False),
    ("bus.route", _STR, "", 0, 16, True),
    ("bus.capacity_seated", _INT, 30, 0, 150, True),
    ("bus.capacity_standing", _INT, 50, 0, 200, True),
    ("depot.name", _STR, "", 0, 32, False),
    ("depot.zone_id", _INT, -1, -1, 255, False),  # geofence id the buses report for this depot
    ("time.sntp", _LIST, [], 0, 4, False),  # SNTP servers, "host" or "host:port", tried in turn
    ("status_period_s", _INT, 300, 30, 3600, True),
    ("safe_mode_pin", _INT, -1, -1, 39, False),
    ("watchdog_ms", _INT, 15000, 2000, 60000, False),  # above uplink.connect_ms + 2 s (validate)
    ("crash_limit", _INT, 3, 1, 20, False),
    ("ota_key", _STR, "", 0, 64, False),  # hex Ed25519 key that signs releases (docs/ota.md)
    ("safe_mode_report", _BOOL, True, None, None, False),  # safe mode tells the broker (transit.safereport)
    ("allow_remote_unsafe", _BOOL, False, None, None, False),  # commands may switch safety checks off
    ("queue_wipe", _STR, "", 0, 32, False),  # confirms wiping a queue left by this device id (transit.identity)
)
_SPEC_BY_KEY = {}
for _s in SPEC:
    _SPEC_BY_KEY[_s[0]] = _s
SPEC_BY_KEY = _SPEC_BY_KEY

# Groups whose keys tune a pipeline stage: ranges in transit/settings.py,
# defaults beside each stage's code. register_group adds or narrows one.
try:
    from transit.settings import GROUPS as _DECLARED
except ImportError:  # config.py used on its own by a host tool
    _DECLARED = {}
_GROUPS = dict(_DECLARED)  # register_group replaces a group, never edits one: no copies (heap)


def register_group(name, ranges):
    """Declare a tuning group: ranges maps key -> (lo, hi) for integers."""
    _GROUPS[name] = ranges


def _describe(kind, lo, hi):
    if kind == _INT:
        return "an integer %d..%d" % (lo, hi)
    if kind == _BOOL:
        return "true or false"
    if kind == _CHOICE:
        return "one of " + ", ".join(lo)
    if kind == _LIST:
        return "a list of at most %d entries" % hi
    return "a string of %d..%d characters" % (lo, hi)


def check_value(key, value):
    """Return value if it is valid for key, else raise ConfigError."""
    spec = _SPEC_BY_KEY.get(key)
    if spec is None:
        group, _, name = key.partition(".")
        ranges = _GROUPS.get(group)
        if ranges is None or name not in ranges:
            raise ConfigError("%s: unknown setting" % key)
        lo, hi = ranges[name]
        spec = (key, _INT, None, lo, hi, True)
    _, kind, _, lo, hi, _ = spec
    ok = False
    if kind == _INT:
        ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
    elif kind == _BOOL:
        ok = isinstance(value, bool)
    elif kind == _CHOICE:
        ok = value in lo
    elif kind == _LIST:
        ok = isinstance(value, list) and len(value) <= hi
    elif kind == _STR:
        ok = isinstance(value, str) and lo <= len(value) <= hi
    if not ok:
        raise ConfigError("%s: expected %s, got %s" % (key, _describe(kind, lo, hi), _short(value)))
    return value




def _flatten(doc, prefix, out):
    for k, v in doc.items():
        key = prefix + k
        if isinstance(v, dict) and key not in _SPEC_BY_KEY:
            _flatten(v, key + ".", out)
        else:
            out[key] = v


def _read_json(path, what):
    try:
        f = open(path)
    except OSError:
        raise ConfigError("%s: file missing (%s)" % (what, path))
    try:
        doc = json.load(f)  # streams from the file: no second copy of the text
    except ValueError:
        raise ConfigError("%s: not valid JSON" % what)
    finally:
        f.close()
    if not isinstance(doc, dict):
        raise ConfigError("%s: must hold a JSON object" % what)
    return doc


def settable(key):
    """True when a remote command may change key."""
    spec = _SPEC_BY_KEY.get(key)
    if spec is not None:
        return spec[5]
    group, _, name = key.partition(".")
    return name in _GROUPS.get(group, {})


def to_document(values):
    """The device.json document of flat values (defaults of nested keys left out)."""
    doc = {}
    for key, value in values.items():
        spec = _SPEC_BY_KEY.get(key)
        if spec is not None and spec[2] is not REQUIRED and spec[2] == value and "." in key:
            continue
        node = doc
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return doc


def validate(doc, secrets):
    """Check a device document and secrets; return the flat dict of values."""
    flat = {}
    _flatten(doc, "", flat)
    for key in flat:
        check_value(key, flat[key])
    values = {}
    for key, kind, default, lo, hi, _ in SPEC:
        if key in flat:
            values[key] = flat[key]
        elif default is REQUIRED:
            raise ConfigError("%s: missing (required)" % key)
        else:
            values[key] = default
    for key in flat:
        if key not in values:
            values[key] = flat[key]
    for i, net in enumerate(values["networks"]):
        if not isinstance(net, dict) or not isinstance(net.get("ssid"), str) or not net["ssid"]:
            raise ConfigError("networks[%d]: expected {\"ssid\": \"...\"}" % i)
        if not isinstance(secrets.get("wifi", {}).get(net["ssid"]), str):
            raise ConfigError("networks[%d]: no Wi-Fi key for %s in secrets" % (i, net["ssid"]))
    for i, srv in enumerate(values["time.sntp"]):
        if not isinstance(srv, str) or not 1 <= len(srv) <= 64:
            raise ConfigError("time.sntp[%d]: expected \"host\" or \"host:port\"" % i)
    if "mqtt_password" in secrets and not isinstance(secrets["mqtt_password"], str):
        raise ConfigError("secrets: mqtt_password must be a string")
    why = connect_vs_watchdog(values.get("uplink.connect_ms", CONNECT_MS_DEFAULT), values["watchdog_ms"])
    if why:
        raise ConfigError(why)
    return values


CONNECT_MS_DEFAULT = 10000  # transit.uplink's default uplink.connect_ms
WATCHDOG_MARGIN_MS = 2000


def connect_vs_watchdog(connect_ms, watchdog_ms):
    """'' when a connect attempt (which blocks the loop up to connect_ms) ends
    well before the watchdog would reset the board, else why not."""
    if isinstance(connect_ms, int) and isinstance(watchdog_ms, int) and \
            connect_ms + WATCHDOG_MARGIN_MS > watchdog_ms:
        return ("uplink.connect_ms %d must be at least %d ms below watchdog_ms %d: a connect attempt blocks the "
                "loop that long, and the watchdog would reset the board" % (connect_ms, WATCHDOG_MARGIN_MS,
                                                                             watchdog_ms))
    return ""


def load(device_path="device.json", secrets_path="secrets.json"):
    """Read and validate both files; raise ConfigError with the first problem."""
    doc = _read_json(device_path, "device.json")
    secrets = _read_json(secrets_path, "secrets.json")
    return Config(validate(doc, secrets), secrets, device_path)
