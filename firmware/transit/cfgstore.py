"""The validated settings the running application reads (and a command changes).

Split from transit.config so the running board keeps only this small
module: the key table, the tuning-group ranges and the validator are needed
at boot and when a remote `set` arrives, so transit.config is imported then
and forgotten after start-up (transit.app.forget_boot_modules; on a 32-bit
heap the validator's tables cost ~2.4 KB; docs/memory.md).
"""


class ConfigError(ValueError):
    """A configuration problem a technician can fix; the message says where."""


def short(value):
    """A value as JSON, cut to 40 characters, for messages."""
    import json
    s = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def _spec():
    from transit import config  # the key table, re-imported only when needed
    return config


class Config:
    """Validated settings with dotted keys ("broker.port")."""

    def __init__(self, values, secrets, path=None):
        self._values = values
        self._secrets = secrets
        self.path = path

    def get(self, key, default=None):
        return self._values.get(key, default)

    def __getitem__(self, key):
        return self._values[key]

    def group(self, name):
        """Settings of one tuning group as a plain dict (keys without the prefix)."""
        pre = name + "."
        spec = _spec().SPEC_BY_KEY
        return {k[len(pre):]: v for k, v in self._values.items() if k.startswith(pre) and k not in spec}

    def secret(self, name, default=None):
        return self._secrets.get(name, default)

    def wifi_key(self, ssid):
        return self._secrets.get("wifi", {}).get(ssid)

    def settable(self, key):
        return _spec().settable(key)

    def set(self, key, value):
        """Validate, apply and persist one setting (remote command path)."""
        c = _spec()
        if not c.settable(key):
            raise ConfigError("%s: cannot be changed remotely" % key if key in c.SPEC_BY_KEY
                              else "%s: unknown setting" % key)
        c.check_value(key, value)
        self._values[key] = value
        if self.path:
            self.save()

    def summary(self):
        """Everything but secrets, for status and the technician's doctor."""
        return dict(self._values)

    def to_document(self):
        return _spec().to_document(self._values)

    def save(self):
        """Write atomically: a temporary file renamed over the old one
        (a rename is atomic on LittleFS, so a power cut leaves one or the other)."""
        import json
        import os
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_document(), f)
        os.rename(tmp, self.path)
