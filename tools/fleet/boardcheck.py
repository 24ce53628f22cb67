"""What the deploy checks on the board before it copies anything (issue 19).

The probe (a few lines run on the board in the same round trip as the
version question) adds: the queue's owner and how many segment files it
holds, the board's device.json and the hash the last deploy recorded for it.
From that the deploy refuses
  - a queue of another device id (its unsent records would go out under the
    new id): deploy the old id again, or wipe it naming the old id;
  - settings changed on the board since the last deploy (a remote `set`):
    they would be undone silently; copy them into device.json or overwrite;
  - a board description for another chip (an ESP32-S3 pin map on a classic
    ESP32, whose GPIO 6-11 are the flash).
"""

import hashlib
import json
import os

from fleet import checks

QUEUE = "data/q"  # firmware/transit/app.py QUEUE_DIR + "/q"

# Runs on the board after PROBE's own lines; adds keys to its _r dict.
# (No '%' here: the probe is %-formatted.)
PROBE_EXTRA = """
def _rd(n):
    try:
        with open(n) as f:
            return f.read()
    except OSError:
        return None
_qo = _rd('""" + QUEUE + """/owner.json')
_qn = 0
_qb = 0
try:
    for _e in os.ilistdir('""" + QUEUE + """'):
        _n = _e[0]
        if len(_n) == 9 and _n[0] in 'pn' and _n[1:].isdigit():
            _qn += 1
            _qb += _e[3] if len(_e) > 3 else 0
except OSError:
    pass
_qd = None
if _qn:
    try:
        from dqueue import DurableQueue
        _qd = DurableQueue('""" + QUEUE + """').depth()
    except Exception as e:
        _qd = None
_mf = None
try:
    _mf = json.loads(_rd('manifest.json') or 'null')
except ValueError:
    pass
_x = {'queue_owner': _qo, 'queue_files': _qn, 'queue_depth': _qd, 'queue_bytes': _qb, 'device_json': _rd('device.json'),
      'deployed_device_json': (_mf.get('files') or {}).get('device.json') if isinstance(_mf, dict) else None}
"""

WIPE = """
import os
_n = 0
for _f in os.listdir('""" + QUEUE + """'):
    if (len(_f) == 9 and _f[0] in 'pn' and _f[1:].isdigit()) or _f in ('state0', 'state1', 'owner.json'):
        os.remove('""" + QUEUE + """/' + _f)
        _n += 1
print('{"wiped": ' + str(_n) + '}')
"""


class Refusal(Exception):
    """The board must not be deployed as asked; the message says what to do."""


def queue_owner(info):
    try:
        return json.loads(info.get("queue_owner") or "null") or {}
    except ValueError:
        return {}


def foreign_queue(info, device_id, wipe_of, config_wipe=""):
    """The old owner whose queue the deploy must wipe first (None: nothing to do); raises Refusal.

    `"queue_wipe": "<old id>"` in device.json is the firmware's own confirmation
    (transit.identity): the deploy lets it through and the board wipes at boot."""
    owner = queue_owner(info).get("d")
    depth = info.get("queue_depth")  # None when the board could not open it: judge by its files
    if not owner or owner == device_id or not info.get("queue_files") or depth == 0:
        return None
    if wipe_of == owner:
        return owner
    if config_wipe == owner:
        return None
    raise Refusal("this board holds unsent records of %s (%s in %d queue files, %d KiB in %s) and would be deployed as "
                  "%s: deploy %s again to let them drain under their own id, or pass --wipe-queue-of %s (or set "
                  "\"queue_wipe\": \"%s\" in device.json) to delete them (they are lost)%s"
                  % (owner, "?" if depth is None else depth, info["queue_files"], info.get("queue_bytes", 0) // 1024,
                     QUEUE, device_id, owner, owner, owner,
                     "" if not wipe_of else " (--wipe-queue-of %s names another device)" % wipe_of))


def _values(config, doc, secrets):
    try:
        return config.validate(doc, secrets)
    except (config.ConfigError, TypeError, AttributeError):
        return None


def settings_drift(info, device_dir, config):
    """Keys whose value the board changed since the last deploy ([] when untouched)."""
    text, recorded = info.get("device_json"), info.get("deployed_device_json")
    if text is None or not recorded or hashlib.sha256(text.encode()).hexdigest() == recorded:
        return []
    with open(os.path.join(device_dir, "device.json")) as f:
        mine = json.load(f)
    with open(os.path.join(device_dir, "secrets.json")) as f:
        secrets = json.load(f)
    try:
        board = json.loads(text)
    except ValueError:
        return ["device.json (unreadable on the board)"]
    a, b = _values(config, board, secrets), _values(config, mine, secrets)
    if a is None or b is None:
        return ["device.json (changed on the board)"]
    return ["%s: board %s, provisioned %s" % (k, json.dumps(a.get(k)), json.dumps(b.get(k)))
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def refuse_drift(drift):
    raise Refusal("the board's settings were changed since the last deploy (a remote `set`?): %s; put the values "
                  "you want to keep into the inventory or device.json and provision again, or pass "
                  "--overwrite-settings to replace them with the provisioned ones" % "; ".join(drift[:6]))


def chip_check(info, board_doc, board_name, port):
    want = board_doc.get("chip")
    got = checks.chip_of(info.get("machine"), info.get("platform"))
    if want and got != want:
        raise Refusal("boards/%s.json is for an %s but the board at %s is an %s (it reports %r): choose the right "
                      "board for this device in the inventory and provision again"
                      % (board_name, want, port, got, info.get("machine") or info.get("platform")))
    return got
