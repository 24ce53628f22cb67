"""What survives a reset: crash counter, boot count, last error and reset cause.

The counter is raised before the application starts and cleared once it has
run healthy for a while, so a crash loop of any kind (exception, watchdog,
brownout in the middle of start-up) ends in safe mode after `crash_limit`
boots instead of looping forever.
"""

import json
import os

STATE_FILE = "bootstate.json"
RESET_NAMES = {1: "power_on", 2: "hard", 3: "watchdog", 4: "deep_sleep", 5: "soft"}


class BootState:
    def __init__(self, path=STATE_FILE):
        self.path = path
        self.crashes = 0
        self.boots = 0
        self.last_error = ""
        self.reset_cause = 0
        self.read_error = ""
        try:
            with open(path) as f:
                doc = json.load(f)
            self.crashes = int(doc.get("crashes", 0))
            self.boots = int(doc.get("boots", 0))
            self.last_error = str(doc.get("last_error", ""))[:200]
            self.reset_cause = int(doc.get("reset_cause", 0))
        except OSError:
            pass  # first boot: no file yet
        except (ValueError, TypeError, AttributeError) as e:
            self.read_error = "bootstate unreadable: %s" % e  # torn by a power cut: start afresh, say so

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"crashes": self.crashes, "boots": self.boots, "last_error": self.last_error,
                       "reset_cause": self.reset_cause}, f)
        os.rename(tmp, self.path)

    def starting(self, reset_cause):
        """Count this boot as a possible crash until `healthy()` says otherwise."""
        self.boots += 1
        self.reset_cause = reset_cause
        self.crashes += 1
        self.save()

    def healthy(self):
        if self.crashes:
            self.crashes = 0
            self.save()

    def not_a_crash(self):
        """Undo this boot's count (it ended on purpose, e.g. Ctrl-C)."""
        if self.crashes:
            self.crashes -= 1
            self.save()

    def record_error(self, text):
        self.last_error = text[:200]
        self.save()

    def reset_name(self):
        return RESET_NAMES.get(self.reset_cause, "unknown")
