"""Remote commands from the cmd topic, answered on the ack topic.

A command is a JSON object {"id": "...", "op": "...", ...}:
  ping                       -> "pong"
  get        key             -> the setting's value (secrets are not settings)
  set        key, val        -> validated by transit.config, persisted, new value
  flush                      -> the uplink drains the queue now
  reset_load                 -> the app zeroes the passenger load
  reboot                     -> answered first, then the app reboots
  ota        url, at         -> "accepted"; the update runs in the loop (docs/ota.md)
Anything malformed, unknown or out of range gets {"ok": false, "err": ...}
and changes nothing. Effects come through hooks the app supplies, so this
module never touches hardware and runs the same on the host.
"""

import json

from transit import config as _config
from transit import schema

MAX_BYTES = 512  # a longer command is refused unread
_OPS = ("ping", "get", "set", "flush", "reset_load", "reboot", "ota")


class CommandError(ValueError):
    pass


class Commands:
    """hooks: {"reboot": fn(), "flush": fn(), "reset_load": fn(), "on_set": fn(key, value)}."""

    def __init__(self, cfg, device_id, hooks=None):
        self.cfg = cfg
        self.device_id = device_id
        self.hooks = hooks or {}
        self.stats = {"ok": 0, "err": 0}

    def handle(self, raw):
        """-> (ack JSON text, ok, action to run once the answer is sent, or None)."""
        cmd_id = None
        op = None
        try:
            cmd = self._parse(raw)
            cmd_id = self._id(cmd)
            op = cmd.get("op")
            if op not in _OPS:
                op = None
                raise CommandError("unknown op %s" % _config._short(cmd.get("op")))
            result, after = self._run(op, cmd)
        except (CommandError, _config.ConfigError) as e:
            self.stats["err"] += 1
            return schema.ack_doc(self.device_id, cmd_id, op, False, error=str(e)), False, None
        self.stats["ok"] += 1
        return schema.ack_doc(self.device_id, cmd_id, op, True, result=result), True, after

    def _parse(self, raw):
        if len(raw) > MAX_BYTES:
            raise CommandError("command longer than %d bytes" % MAX_BYTES)
        try:
            cmd = json.loads(raw)
        except (ValueError, UnicodeError):
            raise CommandError("not JSON")
        if not isinstance(cmd, dict):
            raise CommandError("not a JSON object")
        return cmd

    def _id(self, cmd):
        cid = cmd.get("id")
        if cid is not None and not (isinstance(cid, (str, int)) and not isinstance(cid, bool)
                                    and len(str(cid)) <= 32):
            raise CommandError("id: a string or integer of at most 32 characters")
        return cid

    def _key(self, cmd):
        key = cmd.get("key")
        if not isinstance(key, str) or not key:
            raise CommandError("key: missing")
        return key

    def _run(self, op, cmd):
        if op == "ping":
            return "pong", None
        if op == "get":
            key = self._key(cmd)
            summary = self.cfg.summary()
            if key not in summary:
                raise CommandError("%s: unknown setting" % key)
            return summary[key], None
        if op == "set":
            key = self._key(cmd)
            if "val" not in cmd:
                raise CommandError("val: missing")
            self.cfg.set(key, cmd["val"])  # validates and persists, or raises ConfigError
            fn = self.hooks.get("on_set")
            if fn is not None:
                fn(key, cmd["val"])
            return self.cfg.get(key), None
        fn = self.hooks.get(op)
        if fn is None:
            raise CommandError("%s: not available on this device" % op)
        if op == "reboot":
            return "rebooting", fn  # after the answer is on the wire
        if op == "ota":
            return fn(cmd), None  # "accepted"; the outcome follows as a second answer
        fn()
        return "done", None
