"""Where things are, for the host tests and tools."""

import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")
LIB = os.path.join(ROOT, "lib")
BOARDS = os.path.join(ROOT, "boards")
TOOLS = os.path.join(ROOT, "tools")
HOST_TESTS = os.path.join(ROOT, "host_tests")
FAKES = os.path.join(HOST_TESTS, "fakes")
ESP32NET = os.path.join(HOST_TESTS, "esp32net")
MPFAKES = os.path.join(HOST_TESTS, "mpfakes")  # MicroPython-only shadows (ssl): never on CPython's path
MPYLIB = os.path.join(ROOT, "build", "mpylib")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def tool(name):
    """A binary from the project's virtualenv, else from PATH (and sbin)."""
    cand = os.path.join(VENV_BIN, name)
    if os.path.exists(cand):
        return cand
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    return found
