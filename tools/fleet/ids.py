"""Device ids: one safe pattern, and the names the broker's own accounts use.

A device id becomes a folder name (<out>/<id>/), a broker user name, a client
id and a topic level, so it must be a plain name: lower-case letters, digits,
'-' and '_', 3..32 characters (the firmware's device_id limit), starting with
a letter or digit. Account names and the broker folder are reserved.
"""

import re

ACCOUNTS = ("consumer", "operator")
# "ops" was the single back-office account before issue 19; "broker" is the
# folder beside the devices' folders.
RESERVED = ACCOUNTS + ("ops", "broker")
_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{2,31}$")


def check(device_id):
    """None when device_id is usable, else the reason in a few words."""
    if not isinstance(device_id, str) or not _PATTERN.match(device_id):
        return ("must be 3-32 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")
    if device_id in RESERVED:
        return "is reserved for the broker's own %s" % ("folder" if device_id == "broker" else "accounts")
    return None
