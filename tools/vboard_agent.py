# The interpreter inside the virtual board (tools/vboard.py). MicroPython only.
#
# The bridge starts `micropython vboard_agent.py` with the board's settings in
# the environment, talks raw-REPL to mpremote on its side, and hands this
# agent the code to run over stdin. Here the board's filesystem (a folder or a
# LittleFS image) is mounted at "/" like the flash of an ESP32, the host
# folder with the fakes at "/.vboard" (read-only), sys.path is a board's
# ('' , '.frozen', '/lib') plus the fakes, `ssl` is the test fake that judges
# certificate dates by the board's clock (host_tests/mpfakes/ssl.py: the
# unix port's own would judge them by the host's), and boot.py/main.py run
# after a reset. With VBOARD_CLOCK=esp32 the clock is an ESP32's: epoch 2000,
# 2000-01-01 after power-on, kept across resets. Framing (stdout): program output, then SENT_E, the traceback, SENT_D.
# A hard reset (machine.reset(), watchdog) exits with 64 + reset cause; a soft
# reset (SystemExit) exits with 99; the bridge starts a fresh interpreter.
import os
import sys
import vfs

SENT_E = b"\x1b]vb;e\x07"
SENT_D = b"\x1b]vb;d\x07"
SENT_READY = b"\x1b]vb;ready\x07"
SENT_ALIVE = b"\x1b]vb;alive\x07"
EXIT_SOFT = 99
EXIT_HARD = 64
_out = sys.stdout.buffer
_in = sys.stdin.buffer


def _env(name, default=None):
    v = os.getenv(name)
    return default if v is None or v == "" else v


class FileBlockDev:
    """LittleFS block device over an image file (erased flash reads 0xff)."""

    def __init__(self, f, block_size=4096):
        self.f = f
        self.bs = block_size
        self.count = f.seek(0, 2) // block_size

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        if off is None:
            self.ioctl(6, n)
            off = 0
        self.f.seek(n * self.bs + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.count
        if op == 5:
            return self.bs
        if op == 6:
            self.f.seek(arg * self.bs)
            self.f.write(b"\xff" * self.bs)
            return 0
        return 0


class _SysProxy:
    # Stands in for `sys` when the bridge makes the board report another
    # MicroPython version; everything else is the real module.
    def __init__(self, real, impl):
        self._real = real
        self.implementation = impl
        self.version = "3.4.0; MicroPython v%s" % ".".join(str(x) for x in impl.version[:3])

    def __getattr__(self, name):
        return getattr(self._real, name)


class _Impl:
    def __init__(self, real, version, mpy, machine=None):
        self.name = real.name
        self.version = version
        self._mpy = mpy
        self._machine = machine or getattr(real, "_machine", "vboard")


def _report_version():
    ver = _env("VBOARD_VERSION")
    mpy = _env("VBOARD_MPY")
    machine = _env("VBOARD_MACHINE")
    if not ver and not mpy and not machine:
        return
    real = sys.implementation
    version = real.version
    if ver:
        parts = [int(p) for p in ver.split(".")]
        while len(parts) < 3:
            parts.append(0)
        version = (parts[0], parts[1], parts[2], "")
    code = real._mpy
    if mpy:
        major, _, sub = mpy.partition(".")
        code = (code & ~0x3FF) | int(major) | (int(sub or 0) << 8)
    sys.modules["sys"] = _SysProxy(sys, _Impl(real, version, code, machine))


_rtc_file = None  # the host file that keeps the ESP32 clock across resets (VBOARD_CLOCK=esp32)
_rtc_kept = None


def _mount():
    global _rtc_file
    host = _env("VBOARD_HOST")
    fs = _env("VBOARD_FS")
    kind, _, where = fs.partition(":")
    image = open(where, "r+b") if kind == "lfs" else None  # opened while "/" is still the host's
    if _env("VBOARD_CLOCK") == "esp32":
        _rtc_file = open(host + "/rtc", "r+")
    vfs.umount("/")
    vfs.mount(vfs.VfsPosix(host), "/.vboard", readonly=True)
    if kind == "dir":
        vfs.mount(vfs.VfsPosix(where), "/")
    else:
        bdev = FileBlockDev(image)
        try:
            root = vfs.VfsLfs2(bdev)
        except OSError:
            # A blank image: format it, as the ESP32 firmware does on first boot.
            vfs.VfsLfs2.mkfs(bdev)
            root = vfs.VfsLfs2(bdev)
        vfs.mount(root, "/")
    os.chdir("/")
    path = ["", ".frozen"]
    if _env("VBOARD_FROZEN"):
        path.append("/.vboard/frozen")  # plays the firmware's frozen modules
    path += ["/lib", "/.vboard/fakes"]
    sys.path[:] = [path[0], "/.vboard/mpfakes"] + path[1:]
    import ssl  # noqa: F401 - the fake that judges certificate dates by the board's clock, as mbedTLS on a board
    sys.path[:] = path  # the board's own path again; `ssl` stays loaded


def _clock():
    # An ESP32's clock (VBOARD_CLOCK=esp32): time.time() counts from 2000, the
    # RTC reads 2000-01-01 after power-on and keeps what it was set to across
    # resets (the bridge empties the file at power-on).
    if _rtc_file is None:
        return
    import fakeclock
    fakeclock.CLOCK.epoch_2000 = True
    _rtc_file.seek(0)
    kept = _rtc_file.read().strip()
    if kept:
        fakeclock.CLOCK.utc_adjust_s = int(kept)
    else:
        fakeclock.CLOCK.utc_adjust_s = fakeclock.EPOCH_2000_OFFSET_S - int(fakeclock._host_epoch_s())
    _keep_clock()


def _keep_clock():
    global _rtc_kept
    if _rtc_file is None:
        return
    import fakeclock
    adj = int(fakeclock.CLOCK.utc_adjust_s)
    if adj != _rtc_kept:
        _rtc_file.seek(0)
        _rtc_file.write("%-24d" % adj)  # fixed width: no truncate on the unix port's files
        _rtc_file.flush()
        _rtc_kept = adj


def _write(b):
    _out.write(b)


def _read_exact(n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = _in.read(n - len(buf))
        except KeyboardInterrupt:
            continue  # a Ctrl-C that arrived just after the code ended
        if not chunk:
            raise SystemExit(0)  # the bridge went away
        buf += chunk
    return buf


def _is_reset(e):
    return type(e).__name__ == "ResetRequested"


def _run(code, g, mode, file="<stdin>"):
    """Run one piece of code the way the board's REPL would; returns nothing,
    or exits the interpreter for a reset."""
    err = None
    try:
        exec(compile(code, file, mode), g)
    except SystemExit:
        _keep_clock()
        _write(SENT_E + SENT_D)
        sys.exit(EXIT_SOFT)
    except BaseException as e:  # noqa: B902 - the board prints every error, resets included
        _keep_clock()
        if _is_reset(e):
            sys.exit(EXIT_HARD + (e.args[0] if e.args else 2))
        err = e
    _keep_clock()
    _write(SENT_E)
    if err is not None:
        try:
            sys.print_exception(err, sys.stdout)
        except KeyboardInterrupt:
            pass
    _write(SENT_D)


def _run_file(name, g):
    try:
        os.stat(name)
    except OSError:
        return
    with open(name) as f:
        code = f.read()
    try:
        exec(compile(code, name, "exec"), g)
    except SystemExit:
        _keep_clock()
        sys.exit(EXIT_SOFT)
    except BaseException as e:  # noqa: B902
        _keep_clock()
        if _is_reset(e):
            sys.exit(EXIT_HARD + (e.args[0] if e.args else 2))
        sys.print_exception(e, sys.stdout)


def main():
    _write(SENT_ALIVE)  # from here on SIGINT raises KeyboardInterrupt
    _mount()
    _clock()
    _report_version()
    g = {"__name__": "__main__"}
    boot = _env("VBOARD_BOOT", "hard")
    try:
        setup = _env("VBOARD_SETUP")
        if setup:
            _run_file("/.vboard/" + setup, {"__name__": "vboard_setup"})
        if boot != "none":
            _run_file("boot.py", g)
        if boot == "hard" or boot == "friendly":
            _run_file("main.py", g)
    except KeyboardInterrupt:
        _write(b"Traceback (most recent call last):\nKeyboardInterrupt: \n")
    _keep_clock()
    _write(SENT_READY)
    while True:
        head = _read_exact(5)
        n = int.from_bytes(head[1:5], "big")
        code = _read_exact(n)
        if head[0:1] == b"Q":
            return
        _run(code, g, "single" if head[0:1] == b"S" else "exec")


main()
