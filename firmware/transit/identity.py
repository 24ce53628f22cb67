"""Who the durable queue belongs to: its owner device id and its epoch.

Sequence numbers restart when a queue is wiped or a board is replaced, so
consumers de-duplicate by (device, epoch, seq) (docs/telemetry.md). The
epoch is a random 32-bit number (1..0xFFFFFFFF) made when the queue is first
created and kept beside it, in `owner.json` inside the queue's folder, with
the device id it was made for: wiping the folder makes a new epoch.

A board re-flashed as another device finds a queue owned by the old id. It
must not send those records under the new id: `check()` says whether the
queue may be used (same owner, or nothing left in it), and startup keeps a
non-empty foreign queue untouched and goes to safe mode naming it, until the
technician deploys the old id again (the queue drains as its owner) or
confirms a wipe with `"queue_wipe": "<old device id>"` in device.json.
"""

import json
import os

OWNER_FILE = "owner.json"


def new_epoch():
    """A random epoch 1..0xFFFFFFFF (os.urandom: the ESP32's hardware RNG)."""
    while True:
        b = os.urandom(4)
        e = (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
        if e:
            return e


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass  # exists already; a real problem shows when the file is written


def _join(folder, name):
    return folder + "/" + name if folder else name


class Owner:
    """The owner record of the queue in `folder` (e.g. "data/q").

    device: the owner's device id ("" when no owner file was found);
    epoch: its epoch (0 when none); problem: why an existing file was unusable."""

    def __init__(self, folder):
        self.folder = folder
        self.path = _join(folder, OWNER_FILE)
        self.device = ""
        self.epoch = 0
        self.problem = ""
        try:
            with open(self.path) as f:
                doc = json.load(f)
            dev = doc["d"]
            e = doc["e"]
            if not isinstance(dev, str) or not dev or not isinstance(e, int) or not 0 < e <= 0xFFFFFFFF:
                raise ValueError("bad d or e")
            self.device = dev
            self.epoch = e
        except OSError:
            pass  # a new queue: no owner yet
        except (ValueError, KeyError, TypeError) as e:
            self.problem = "%s unreadable: %s" % (self.path, e)  # torn by a power cut: a new epoch

    def claim(self, device_id):
        """Make this queue device_id's with a new epoch; returns the epoch."""
        _mkdir(self.folder)
        e = new_epoch()
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"d": device_id, "e": e}, f)
        os.rename(tmp, self.path)
        self.device = device_id
        self.epoch = e
        return e

    def foreign(self, device_id):
        """True when the queue belongs to another device."""
        return bool(self.device) and self.device != device_id


def queue_files(folder):
    """Names of the queue's segment files (records that may be unsent)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [n for n in names if len(n) == 9 and n[0] in "pn" and n[1:].isdigit()]


def wipe(folder):
    """Delete the queue's files and its owner record (the folder stays)."""
    n = 0
    for name in queue_files(folder) + ["state0", "state1", OWNER_FILE]:
        try:
            os.remove(_join(folder, name))
            n += 1
        except OSError:
            pass  # not there
    return n


class ForeignQueue(Exception):
    """The queue holds unsent records of another device: startup keeps them
    and goes to safe mode with this message (it starts with "queue:")."""

    safe_mode = True  # transit.startup: safe mode, not a crash (it need not import this module)

    def __init__(self, owner, depth, device_id):
        super().__init__("queue: %d unsent records belong to %s (this board is now %s); "
                           "deploy the board as %s once to send them, or set \"queue_wipe\": \"%s\" in "
                           "device.json to delete them" % (depth, owner, device_id, owner, owner))
        self.owner = owner
        self.depth = depth


def adopt(folder, device_id, queue):
    """The epoch to send the open queue in `folder` with, as device_id.
    Raises ForeignQueue when it holds records another device made."""
    owner = Owner(folder)
    if owner.problem:
        print(owner.problem)
    if owner.device == device_id:
        return owner.epoch
    if owner.device and queue.depth():
        raise ForeignQueue(owner.device, queue.depth(), device_id)
    return owner.claim(device_id)


def open_queue(folder, device_id, make_queue, wipe_confirm=""):
    """Open the queue with make_queue() and return (queue, epoch).

    A queue of another device with records in it is kept and reported
    (ForeignQueue), unless wipe_confirm names that device: then its files
    are deleted and a new queue with a new epoch starts."""
    q = make_queue()
    owner = Owner(folder)
    if owner.foreign(device_id) and wipe_confirm == owner.device and q.depth():
        n = q.depth()
        q.close()
        wipe(folder)
        print("queue: wiped %d unsent records of %s (queue_wipe in device.json)" % (n, owner.device))
        q = make_queue()
    try:
        return q, adopt(folder, device_id, q)
    except ForeignQueue:
        q.close()
        raise
