"""One simulator per device id: a lock file beside the device's folder.

tools/sim.py lays out build/sim/<device>/ afresh at start (the board's
filesystem, its durable queue included), so a second simulator with the
same id would delete the queue of the first one while it runs. The lock
holds the owner's pid; a second simulator is refused with a message that
names the owner, and a lock left by a process that died is taken over.
"""

import errno
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Busy(RuntimeError):
    """Another simulator runs with the same device id (its queue is in use)."""


def lock(device):
    """Hold build/sim/<device>.lock (our pid) for the run; Busy when a live
    simulator holds it. A lock left by a dead process is taken over."""
    os.makedirs(os.path.join(ROOT, "build", "sim"), exist_ok=True)
    path = os.path.join(ROOT, "build", "sim", device + ".lock")
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise Busy("another simulator (pid %d) is running device %s and uses build/sim/%s/; "
                           "stop it or choose another id with --device" % (pid, device, device))
            try:
                os.unlink(path)  # left by a simulator that died
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write("%d\n" % os.getpid())
        return path
    raise Busy("could not take %s" % path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def unlock(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
