"""The virtual board: the real mpremote against the unix port behind the raw-REPL bridge."""

import os
import subprocess
import sys
import time

import pytest

from harness import paths, tlsprobe

sys.path.insert(0, paths.TOOLS)
from vboard import VBoard  # noqa: E402


def mpremote(board, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", board.url] + list(args),
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def board_factory(tmp_path):
    boards = []

    def make(**kw):
        if "flash_image" not in kw:
            kw.setdefault("fs", str(tmp_path / ("fs%d" % len(boards))))
            os.makedirs(kw["fs"], exist_ok=True)
        b = VBoard(**kw)
        boards.append(b)
        b.start()
        return b

    yield make
    for b in boards:
        b.stop()


def read_for(board, seconds, until=None):
    """Open the port with mpremote's own transport and collect what the board prints."""
    from mpremote.transport_serial import SerialTransport
    t = SerialTransport(board.url, baudrate=115200)
    data = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until in data):
        n = t.serial.inWaiting()
        data += t.serial.read(n) if n else b""
        time.sleep(0.02)
    return t, data


def test_mpremote_runs_code_and_copies_files_on_the_board_folder(board_factory, tmp_path):
    b = board_factory()
    assert mpremote(b, "exec", "print(6 * 7)").stdout == "42\n"
    src = tmp_path / "hello.txt"
    src.write_bytes(b"sawasdee\n" * 100)
    mpremote(b, "resume", "fs", "cp", str(src), ":hello.txt")
    assert (tmp_path / "fs0" / "hello.txt").read_bytes() == src.read_bytes()
    again = mpremote(b, "resume", "fs", "cp", str(src), ":hello.txt").stdout
    assert "Up to date: hello.txt" in again  # mpremote's own SHA-256 skip works here
    out = mpremote(b, "resume", "fs", "sha256sum", ":hello.txt").stdout
    import hashlib
    assert hashlib.sha256(src.read_bytes()).hexdigest() in out
    err = mpremote(b, "resume", "exec", "1/0", check=False)
    assert err.returncode == 1 and "ZeroDivisionError" in err.stdout


def test_board_paths_look_like_an_esp32(board_factory):
    b = board_factory()
    out = mpremote(b, "exec", "import sys, os; print(sys.path); print(os.getcwd())").stdout.splitlines()
    assert out[0] == "['', '.frozen', '/lib', '/.vboard/fakes']"
    assert out[1] == "/"


def test_soft_reset_runs_boot_py_but_not_main_py(board_factory, tmp_path):
    fs = tmp_path / "flash"
    fs.mkdir()
    (fs / "boot.py").write_text("f = open('boots.txt', 'a'); f.write('b'); f.close()\n")
    (fs / "main.py").write_text("f = open('mains.txt', 'a'); f.write('m'); f.close()\n")
    b = board_factory(fs=str(fs))
    mpremote(b, "exec", "pass")  # mpremote's default soft reset
    mpremote(b, "exec", "pass")
    assert (fs / "boots.txt").read_text() == "bbb"  # power on, then two soft resets
    assert (fs / "mains.txt").read_text() == "m"  # only the power-on boot ran main.py


def test_reset_restarts_the_interpreter_with_banner_boot_and_main(board_factory):
    b = board_factory()
    with open(os.path.join(b.fs, "main.py"), "w") as f:
        f.write("print('main says hello')\n")
    mpremote(b, "exec", "import builtins; builtins.marker = 1")
    t, seen = None, b""
    from mpremote.transport_serial import SerialTransport
    t = SerialTransport(b.url, baudrate=115200)
    t.enter_raw_repl(soft_reset=False)
    t.exec_raw_no_follow("import machine\nmachine.reset()")
    seen = t.read_until(1, b">>> ", timeout=10)
    t.close()
    assert b"MicroPython v1.29.0-preview" in seen and b"main says hello" in seen
    out = mpremote(b, "resume", "exec", "import builtins, machine; print(hasattr(builtins, 'marker'), "
                   "machine.reset_cause())").stdout
    assert out == "False 5\n"  # a fresh interpreter; machine.reset() reads back as SOFT_RESET like an ESP32


def test_ctrl_c_interrupts_a_main_py_that_runs_forever(board_factory):
    b = board_factory()
    with open(os.path.join(b.fs, "main.py"), "w") as f:
        f.write("import time\nn = 0\nwhile True:\n    n += 1\n    time.sleep_ms(10)\n")
    mpremote(b, "reset")  # mpremote's hard reset: main.py starts and never ends
    time.sleep(0.5)
    out = mpremote(b, "resume", "exec", "print(n > 0)").stdout  # Ctrl-C stopped main.py where it was
    assert out == "True\n"


def test_board_can_report_another_micropython_version(board_factory):
    b = board_factory(report_version="1.19.1", report_mpy="6.1")
    out = mpremote(b, "exec", "import sys; print(sys.implementation.version[:3], sys.implementation._mpy & 0x3ff)")
    assert out.stdout == "(1, 19, 1) 262\n"


def test_littlefs_flash_image_fills_up_like_a_board(board_factory, tmp_path):
    b = board_factory(flash_image=str(tmp_path / "flash.img"), flash_kib=64)
    out = mpremote(b, "exec", "import os; s = os.statvfs('/'); print(s[0], s[2])").stdout
    assert out == "4096 16\n"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(80 * 1024))
    res = mpremote(b, "resume", "fs", "cp", str(big), ":big.bin", check=False)
    assert res.returncode == 1 and "No space left on device" in res.stderr


def test_second_client_is_refused_like_a_busy_serial_port(board_factory):
    b = board_factory()
    import socket
    first = socket.create_connection(("127.0.0.1", b.port))
    time.sleep(0.2)
    res = mpremote(b, "exec", "print(1)", check=False)
    first.close()
    assert res.returncode != 0


def test_tls_on_the_virtual_board_judges_certificate_dates_by_the_board_clock(board_factory, broker_factory,
                                                                              tls_material, tmp_path):
    # A developer sees what a board sees: a board clock at 2000-01-01 (after
    # power-on) refuses the broker's certificate, a set clock accepts it.
    b = board_factory()
    broker = broker_factory(tls=tls_material)
    with open(tls_material.ca_der, "rb") as f:
        (tmp_path / "fs0" / "ca.der").write_bytes(f.read())
    probe = "import machine\nmachine.RTC().datetime(%r)\n"
    cold = mpremote(b, "exec", tlsprobe.code(broker.port, "ca.der", probe % ((2000, 1, 1, 5, 0, 0, 0, 0),))).stdout
    assert cold.strip() == "tls refused: The certificate validity starts in the future", cold
    now = time.gmtime()
    rtc = (now.tm_year, now.tm_mon, now.tm_mday, now.tm_wday, now.tm_hour, now.tm_min, now.tm_sec, 0)
    ok = mpremote(b, "exec", tlsprobe.code(broker.port, "ca.der", probe % (rtc,))).stdout
    assert ok.strip() == "tls ok", ok


def test_esp32_clock_starts_at_2000_after_power_on_and_keeps_time_over_a_reset(board_factory):
    b = board_factory(clock="esp32")
    probe = "import time, machine; print('%d %d' % (time.gmtime(0)[0], machine.RTC().datetime()[0]))"
    assert mpremote(b, "exec", probe).stdout.split() == ["2000", "2000"]  # epoch and RTC of an ESP32 at power-on
    mpremote(b, "exec", "import machine; machine.RTC().datetime((2026, 12, 1, 1, 8, 0, 0, 0))")
    year = mpremote(b, "exec", probe).stdout.split()  # after mpremote's soft reset
    assert year == ["2000", "2026"], year  # a reset keeps the RTC, as on a board
    mpremote(b, "reset")  # machine.reset(): a new interpreter, the RTC still set
    year = mpremote(b, "exec", probe).stdout.split()
    assert year == ["2000", "2026"], year
