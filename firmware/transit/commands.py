"""Remote commands from the cmd topic, answered on the ack topic (commands v2).

A command is a JSON object {"id": "...", "op": "...", "exp": <Unix s>, ...}:
  ping                       -> "pong"
  get        key             -> the setting's value (secrets are not settings)
  set        key, val        -> validated by transit.config and against this
                                device's limits (transit.limits), persisted
  flush                      -> the uplink drains the queue now
  reset_load                 -> the app zeroes the passenger load
  reboot                     -> answered first, then the app reboots
  ota        url, at         -> "accepted"; the update runs in the loop (docs/ota.md)
Further ops come through hooks: hooks[op](cmd) returns the answer, or
(answer, fn to run once the answer is sent); raising CommandError refuses.

Every command needs an id (a string of 1..32 characters) and exp. Each id
runs once: recent ids are kept in `cmdseen.json` (bounded, written before
the command runs, so a reboot cannot make it run twice) and a replay, a
retained copy delivered again on reconnect included, is answered
err "replayed". After exp: err "expired"; an exp more than MAX_AHEAD_S
ahead is refused too (a replay could outlive the memory of its id). With
the clock not set (before 2024: no GPS or NTP time yet) exp cannot be
checked: only ping and get run, anything else is refused with err
"clock not set". Anything malformed, unknown or out of range gets
{"ok": false, "err": ...} and changes nothing.
"""

import json
import os

from transit import schema
from transit.cfgstore import ConfigError, short as _short

MAX_BYTES = 512  # a longer command is refused unread
MAX_AHEAD_S = 86400  # exp at most a day ahead
SEEN_MAX = 32  # ids remembered (unexpired ones; expired ones cannot be replayed)
SEEN_FILE = "cmdseen.json"
MIN_UNIX = 1704067200  # 2024-01-01: a clock before this is not set
_OPS = ("ping", "get", "set", "flush", "reset_load", "reboot")
_READ_ONLY = ("ping", "get")


class CommandError(ValueError):
    pass


def _unix_now():
    from transit.health import unix_now
    return unix_now()


class Seen:
    """Recently executed command ids with their exp, persisted atomically.

    Entries whose exp has passed are dropped first (a replay of them is
    refused as expired anyway); if SEEN_MAX unexpired ids are held, the one
    that expires first is dropped and `floor` keeps its exp: a command that
    expires no later than a forgotten one is refused as a possible replay."""

    def __init__(self, path=SEEN_FILE):
        self.path = path
        self.ids = []  # [id, exp]
        self.floor = 0
        self.errors = 0
        if path is None:
            return
        try:
            with open(path) as f:
                doc = json.load(f)
            self.ids = [[str(i), int(e)] for i, e in doc["ids"]][-SEEN_MAX:]
            self.floor = int(doc.get("floor", 0))
        except OSError:
            pass  # none yet
        except (ValueError, KeyError, TypeError):
            self.errors += 1  # torn: start empty (exp still bounds what can be replayed)

    def has(self, cid):
        for entry in self.ids:
            if entry[0] == cid:
                return True
        return False

    def add(self, cid, exp, now):
        if now is not None:
            self.ids = [e for e in self.ids if e[1] >= now]
        while len(self.ids) >= SEEN_MAX:
            k = 0
            for i in range(1, len(self.ids)):
                if self.ids[i][1] < self.ids[k][1]:
                    k = i
            self.floor = max(self.floor, self.ids.pop(k)[1])
        self.ids.append([cid, exp])
        if self.path is None:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"ids": self.ids, "floor": self.floor}, f)
        os.rename(tmp, self.path)


class Commands:
    """hooks: {"reboot": fn(), "flush": fn(), "reset_load": fn(), "on_set": fn(key, value),
    "<new op>": fn(cmd)}; utc_s: Unix seconds now; limits: transit.limits.Limits, or a
    function making one when a `set` arrives (the application's: the module stays unloaded)
    (None: only the configuration's ranges apply); seen_path None: ids in RAM only."""

    def __init__(self, cfg, device_id, hooks=None, utc_s=None, limits=None, seen_path=SEEN_FILE):
        self.cfg = cfg
        self.device_id = device_id
        self.hooks = hooks or {}
        self._utc = utc_s or _unix_now
        self.limits = limits
        self.seen = Seen(seen_path)
        self.stats = {"ok": 0, "err": 0, "replayed": 0, "expired": 0}

    def handle(self, raw):
        """-> (ack JSON text, ok, action to run once the answer is sent, or None)."""
        cmd_id = None
        op = None
        try:
            cmd = self._parse(raw)
            cmd_id = self._id(cmd)
            op = cmd.get("op")
            if not isinstance(op, str) or (op not in _OPS and (op == "on_set" or op not in self.hooks)):
                op = None
                raise CommandError("unknown op %s" % _short(cmd.get("op")))
            self._admit(cmd_id, op, cmd.get("exp"))
            result, after = self._run(op, cmd)
        except (CommandError, ConfigError) as e:
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
        if not isinstance(cid, str) or not 1 <= len(cid) <= 32:
            raise CommandError("id: a string of 1..32 characters is required")
        return cid

    def _admit(self, cid, op, exp):
        """Refuse replays, expired commands and, without a clock, changes."""
        if not isinstance(exp, int) or isinstance(exp, bool) or exp <= 0:
            raise CommandError("exp: Unix seconds are required")
        if self.seen.has(cid):
            self.stats["replayed"] += 1
            raise CommandError("replayed")
        now = self._utc()
        if now < MIN_UNIX:
            if op not in _READ_ONLY:
                raise CommandError("clock not set: exp cannot be checked, only ping and get run")
            now = None
        else:
            if exp < now:
                self.stats["expired"] += 1
                raise CommandError("expired")
            if exp > now + MAX_AHEAD_S:
                raise CommandError("exp: at most %d s ahead" % MAX_AHEAD_S)
        if exp <= self.seen.floor:
            self.stats["replayed"] += 1
            raise CommandError("replayed")  # may be a command whose id was forgotten
        self.seen.add(cid, exp, now)  # before it runs: a reboot never makes it run twice

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
            val = cmd["val"]
            if self.cfg.settable(key):
                from transit.config import check_value  # boot module, imported again for a `set`
                check_value(key, val)  # the configuration's range first
            lim = self.limits
            if lim is not None:
                if not hasattr(lim, "refuse"):  # a factory: transit.limits loads only for a `set`
                    lim = lim()
                why = lim.refuse(key, val, self.cfg)
                if why:
                    raise CommandError(why)
            self.cfg.set(key, val)  # validates and persists, or raises ConfigError
            fn = self.hooks.get("on_set")
            if fn is not None:
                fn(key, val)
            return self.cfg.get(key), None
        fn = self.hooks.get(op)
        if fn is None:
            raise CommandError("%s: not available on this device" % op)
        if op == "reboot":
            return "rebooting", fn  # after the answer is on the wire
        if op not in _OPS:
            r = fn(cmd)
            return r if isinstance(r, tuple) else (r, None)
        fn()
        return "done", None
