"""What survives a reset: crash counter, boot count, the last real error, why
the last boot ended, and a planned reset's reason.

A boot is judged when the next one starts, by the reset cause the ESP32
reports and by what the firmware wrote before it reset:
- a planned reset (`planned()` before machine.reset(): a reboot command, the
  safe-mode retry, an update) is never a crash;
- a power-on is not a crash (the ESP32 reports a brownout as power-on too;
  a board that browns out in a loop shows it as many power-on boots);
- an error the application recorded (`record_error()`) is a crash;
- a watchdog reset, or a soft reset nobody planned (a panic reads as soft on
  the ESP32), is a crash, and becomes the last error when none was recorded.
`crash_limit` crashes in a row end in safe mode; a healthy run clears them.
"""

import json
import os

STATE_FILE = "bootstate.json"
RESET_NAMES = {1: "power_on", 2: "hard", 3: "watchdog", 4: "deep_sleep", 5: "soft"}
_POWER_ON = 1
_HARD = 2
_WATCHDOG = 3
_DEEP_SLEEP = 4
_KEYS = ("crashes", "boots", "last_error", "reset_cause", "running", "planned", "ended", "se", "ss")


class BootState:
    def __init__(self, path=STATE_FILE):
        self.path = path
        self.crashes = 0
        self.boots = 0
        self.last_error = ""  # the last real error (never a planned reset)
        self.reset_cause = 0
        self.running = False  # a boot started and has not been judged yet
        self.planned = ""  # why the running boot will reset on purpose
        self.ended = ""  # how the previous boot ended, e.g. "planned: reboot command"
        self.se = 0  # epoch of the safe-mode event stream (transit.safereport)
        self.ss = 0  # its last sequence number
        self.read_error = ""
        try:
            with open(path) as f:
                doc = json.load(f)
            self.crashes = int(doc.get("crashes", 0))
            self.boots = int(doc.get("boots", 0))
            self.last_error = str(doc.get("last_error", ""))[:200]
            self.reset_cause = int(doc.get("reset_cause", 0))
            self.running = bool(doc.get("running", False))
            self.planned = str(doc.get("planned", ""))[:60]
            self.ended = str(doc.get("ended", ""))[:80]
            self.se = int(doc.get("se", 0))
            self.ss = int(doc.get("ss", 0))
        except OSError:
            pass  # first boot: no file yet
        except (ValueError, TypeError, AttributeError) as e:
            self.read_error = "bootstate unreadable: %s" % e  # torn by a power cut: start afresh, say so

    def save(self):
        doc = {}
        for k in _KEYS:
            doc[k] = getattr(self, k)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, self.path)

    def judge(self, reset_cause):
        """Decide how the previous boot ended (call once, early at boot)."""
        self.reset_cause = reset_cause
        if self.planned:
            self.ended = "planned: " + self.planned
        elif not self.running:
            return  # it ended on its own terms (error recorded, Ctrl-C, safe mode)
        elif reset_cause in (_POWER_ON, _HARD, _DEEP_SLEEP):
            self.ended = RESET_NAMES[reset_cause]
        else:
            why = "watchdog reset (the main loop stopped)" if reset_cause == _WATCHDOG else \
                "%s reset without a recorded error (a panic, or a reset nobody planned)" % \
                RESET_NAMES.get(reset_cause, "unknown")
            self.crashes += 1
            self.last_error = why
            self.ended = "crash: " + why
        self.running = False
        self.planned = ""
        self.save()

    def retry_after_power_on(self, limit):
        """A power cycle after a crash loop allows one more normal boot."""
        if self.crashes >= limit and self.reset_cause == _POWER_ON:
            self.crashes = limit - 1
            self.save()
            return True
        return False

    def retry(self, limit, why):
        """Allow one more normal boot after the reset that follows (safe-mode retry)."""
        if self.crashes >= limit:
            self.crashes = limit - 1
        self.plan(why)

    def starting(self, reset_cause=None):
        """The application starts: this boot is judged at the next one."""
        if reset_cause is not None:
            self.reset_cause = reset_cause
        self.boots += 1
        self.running = True
        self.save()

    def healthy(self):
        if self.crashes:
            self.crashes = 0
            self.save()

    def not_a_crash(self):
        """This boot ends on purpose (e.g. Ctrl-C): nothing to judge."""
        if self.running:
            self.running = False
            self.ended = "stopped"
            self.save()

    def plan(self, why):
        """Call right before a reset the firmware makes on purpose."""
        self.planned = why[:60]
        self.save()

    def record_error(self, text):
        """The application failed with text (it resets next): a crash."""
        self.last_error = text[:200]
        self.crashes += 1
        self.running = False
        self.ended = "crash: " + self.last_error[-60:]
        self.save()

    def reset_name(self):
        return RESET_NAMES.get(self.reset_cause, "unknown")
