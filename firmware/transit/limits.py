"""What a remote `set` may change on this device, beyond the configuration's
ranges: the real flash, the settings that go together, and the safety
checks a command must not switch off.

transit.config knows ranges that hold for every board (a queue budget of
64..4096 KiB); only the board knows its filesystem. A safety check (the
publish check `uplink.verify`) is switched off remotely only when the
device's own file says so: `"allow_remote_unsafe": true` in device.json,
which needs a technician and a deploy.
"""

import os

QUEUE_FOLDER = "data/q"
MARGIN_KIB = 64  # flash kept free beside the queue (config saves, bootstate, logs)
# key -> (value that switches a check off, which check)
UNSAFE = {"uplink.verify": (0, "the publish check")}


class Limits:
    """statvfs: os.statvfs (injected on the host to model a board's LittleFS)."""

    def __init__(self, statvfs=None, fs_root="/", queue_folder=QUEUE_FOLDER, margin_kib=MARGIN_KIB):
        self._statvfs = statvfs or os.statvfs
        self.fs_root = fs_root
        self.queue_folder = queue_folder
        self.margin_kib = margin_kib

    def queue_max_kib(self):
        """The largest queue budget this filesystem holds: everything not used
        by other files, less the margin."""
        st = self._statvfs(self.fs_root)
        total = st[1] * st[2]  # f_frsize * f_blocks
        free = st[1] * st[3]
        others = total - free - self._queue_bytes(st[1])
        return (total - others) // 1024 - self.margin_kib

    def _queue_bytes(self, block):
        """Flash the queue's files take, in whole blocks (LittleFS allocates blocks)."""
        n = 0
        try:
            names = os.listdir(self.queue_folder)
        except OSError:
            return 0  # no queue yet
        for name in names:
            try:
                size = os.stat(self.queue_folder + "/" + name)[6]
            except OSError:
                continue  # removed meanwhile (the queue deletes acknowledged segments)
            n += (size + block - 1) // block * block
        return n

    def refuse(self, key, val, cfg):
        """'' when key may become val by a remote command, else why not."""
        bad = UNSAFE.get(key)
        if bad is not None and val == bad[0] and not cfg.get("allow_remote_unsafe", False):
            return ("%s: %s would switch off %s; refused remotely (allow_remote_unsafe in device.json "
                    "permits it)" % (key, _config_short(val), bad[1]))
        if key == "queue.budget_kib" and isinstance(val, int):
            top = self.queue_max_kib()
            if val > top:
                return "queue.budget_kib: %d KiB does not fit this board's flash (at most %d KiB)" % (val, top)
        if key == "uplink.connect_ms":
            from transit.config import connect_vs_watchdog
            why = connect_vs_watchdog(val, cfg.get("watchdog_ms"))
            if why:
                return why
        if key == "uplink.backoff_min_ms" and isinstance(val, int) and val > cfg.get("uplink.backoff_max_ms", 300000):
            return "uplink.backoff_min_ms: %d is above uplink.backoff_max_ms" % val
        if key == "uplink.backoff_max_ms" and isinstance(val, int) and val < cfg.get("uplink.backoff_min_ms", 1000):
            return "uplink.backoff_max_ms: %d is below uplink.backoff_min_ms" % val
        return ""


def _config_short(val):
    import json
    return json.dumps(val)
