"""Shared pytest set-up: hardware fakes, the MicroPython runner, Mosquitto.

Under CPython the fakes are installed as the `machine` and `network` modules
and CPython's `time` gains the MicroPython ticks API, so firmware modules
import unchanged. Tests in host_tests/dual/ are collected twice: once here
under CPython and once under the MicroPython unix port (items marked [mpy]),
with the heap the module asks for in MP_HEAP (64K by default).
"""

import ast
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import paths  # noqa: E402

for p in (paths.FAKES, paths.FIRMWARE, paths.LIB, paths.MPYLIB, paths.TOOLS):
    if p not in sys.path:
        sys.path.insert(1, p)

import fakeclock  # noqa: E402

fakeclock.install_cpython_time()
import machine  # noqa: E402,F401  the fake, found on the path before anything else
import network  # noqa: E402,F401
import fakereset  # noqa: E402

from harness.mpy import MicroPython, compile_tree  # noqa: E402
from harness.broker import Broker, Subscriber, TlsMaterial  # noqa: E402

DUAL_DIR = os.path.join(HERE, "dual")


# --------------------------------------------------------------------------
# Two workers: `make test` runs pytest-xdist with -n 2 --dist loadfile, so the
# tests of one file run in one worker, in their order, sharing module fixtures.
# What a file writes outside its tmp_path is its own (build/deploy/bus-0107:
# test_deploy only; build/sim/<device>: one device name per file;
# build/<name>_tools: one name per file) or written atomically
# (build/mpycache), so two files may run at the same time.
# --------------------------------------------------------------------------

# Seconds each file took serially on 2 cores (measured, rounded): a worker
# takes the slowest files first so that both finish together (longest
# processing time first). A file missing here only starts later.
SLOW_FILES = {"test_deploy.py": 190, "test_memory.py": 170, "test_ota.py": 80, "test_sim_e2e.py": 35,
              "test_uplink_faults.py": 26, "test_provision.py": 25, "test_city_page.py": 24,
              "test_vboard.py": 15, "test_uplink_mqtt.py": 14, "test_board_swap.py": 13,
              "test_doctor.py": 11, "test_listen.py": 11, "test_tls_time.py": 10, "test_city_loadgen.py": 10}


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):  # an xdist worker: slowest files first, each file's order kept
        items.sort(key=lambda it: -SLOW_FILES.get(os.path.basename(str(it.path)), 0))


@pytest.fixture(autouse=True)
def _fresh_hardware():
    """Every test starts with the fakes at power-on state."""
    fakereset.reset()
    yield
    fakereset.reset()


@pytest.fixture(scope="session")
def mp():
    """The MicroPython unix port runner (see harness/mpy.py)."""
    return MicroPython()


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory):
    return TlsMaterial(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def broker_factory(tmp_path):
    """Start private brokers: broker_factory(users=..., acl=..., tls=...)."""
    started = []

    def make(**kw):
        b = Broker(str(tmp_path / ("broker%d" % len(started))), **kw)
        started.append(b)
        return b.start()

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory):
    """An anonymous Mosquitto on a free loopback port."""
    return broker_factory()


@pytest.fixture
def subscriber_factory():
    subs = []

    def make(broker, topics=("#",), **kw):
        s = Subscriber(broker, topics, **kw)
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.close()


# --------------------------------------------------------------------------
# Dual-runtime tests: the same module again under the MicroPython unix port.
# --------------------------------------------------------------------------


def pytest_collect_file(file_path, parent):
    p = str(file_path)
    if os.path.dirname(p) == DUAL_DIR and os.path.basename(p).startswith("test_") and p.endswith(".py"):
        # Its own node id (<file>[mpy]::test_x): the CPython module's ids stay distinct from
        # these, which pytest-xdist needs to run both.
        rel = os.path.relpath(p, str(parent.config.rootpath)).replace(os.sep, "/")
        return MpModule.from_parent(parent, path=file_path, name=os.path.basename(p) + "[mpy]", nodeid=rel + "[mpy]")
    return None


class MpModule(pytest.File):
    def collect(self):
        with open(self.path) as f:
            tree = ast.parse(f.read())
        self.heap = "64K"
        names = []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.append(node.name)
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MP_HEAP" for t in node.targets):
                self.heap = node.value.value
        self.test_names = names
        self._results = None
        for n in names:
            yield MpItem.from_parent(self, name=n)

    def results(self):
        if self._results is None:
            runner = MicroPython()
            res = runner.run(script=os.path.join(HERE, "harness", "mprunner.py"), heap=self.heap,
                             args=[compile_tree(DUAL_DIR), os.path.basename(str(self.path))[:-3]] + self.test_names,
                             check=False, timeout=600)
            self._results = _parse_runner(res)
        return self._results


def _parse_runner(res):
    out = {}
    current = None
    buf = []
    for line in res.stdout.splitlines():
        if line.startswith("@@PASS "):
            out[line.split()[1]] = None
        elif line.startswith("@@FAIL "):
            current = line[7:].strip()
            buf = []
        elif line.startswith("@@ENDFAIL") and current:
            out[current] = "\n".join(buf)
            current = None
        elif current:
            buf.append(line)
    out["__raw__"] = "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (res.rc, res.stdout[-4000:], res.stderr[-4000:])
    out["__done__"] = "@@DONE" in res.stdout
    return out


class MpItem(pytest.Item):
    def runtest(self):
        results = self.parent.results()
        if self.name not in results:
            raise MpFailure("test did not run under MicroPython (crash?)\n" + results["__raw__"])
        if results[self.name] is not None:
            raise MpFailure(results[self.name])

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MpFailure):
            return "MicroPython (heap %s):\n%s" % (self.parent.heap, excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, "[mpy] " + self.name


class MpFailure(Exception):
    pass
