"""The foundation holds: toolchain versions, mpy-cross over the board code,
the broker fixture, the ESP32-like sockets, and the walking skeleton."""

import os
import socket
import subprocess
import threading
import time

import pytest

from harness import paths
from harness.broker import Broker


def _board_sources():
    for top in (paths.FIRMWARE, paths.LIB, paths.BOARDS):
        for folder, _, files in os.walk(top):
            for fn in files:
                if fn.endswith(".py"):
                    yield os.path.join(folder, fn)


def test_mpy_cross_matches_the_unix_port_bytecode_version(mp):
    out = subprocess.run([paths.tool("mpy-cross"), "--version"], capture_output=True, text=True).stdout
    assert "mpy v6.3" in out
    res = mp.run("import sys\nv = sys.implementation._mpy\nprint(v & 0xff, (v >> 8) & 3)\n")
    assert res.stdout.split() == ["6", "3"]


def test_every_board_source_compiles_with_mpy_cross(tmp_path):
    sources = list(_board_sources())
    assert any(s.endswith("publish_once.py") for s in sources)
    failures = []
    for src in sources:
        proc = subprocess.run([paths.tool("mpy-cross"), "-o", str(tmp_path / "out.mpy"), src],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(proc.stderr.strip())
    assert not failures, "\n".join(failures)


def test_mpy_cross_rejects_cpython_only_syntax(tmp_path):
    # The check above is only worth something if mpy-cross refuses what a board cannot run.
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    proc = subprocess.run([paths.tool("mpy-cross"), "-o", str(tmp_path / "bad.mpy"), str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0


def test_micropython_failure_shows_its_traceback(mp):
    from harness.mpy import MicroPythonError
    with pytest.raises(MicroPythonError) as err:
        mp.run("def boom():\n    raise ValueError('bad sentence')\nboom()\n")
    assert "ValueError: bad sentence" in str(err.value)
    assert "in boom" in str(err.value)


def test_small_heap_is_really_small(mp):
    from harness.mpy import MicroPythonError
    with pytest.raises(MicroPythonError) as err:
        mp.run("b = bytearray(80 * 1024)\n", heap="64K")
    assert "MemoryError" in str(err.value)


def test_broker_fixture_anonymous_roundtrip(broker, subscriber_factory):
    import paho.mqtt.publish as publish
    sub = subscriber_factory(broker, ["t/#"])
    publish.single("t/a", b"hello", qos=1, hostname=broker.host, port=broker.port)
    got = sub.wait_for(1)
    assert got == [("t/a", b"hello", 1, False)]


def test_broker_password_and_acl(broker_factory, subscriber_factory):
    import paho.mqtt.publish as publish
    b = broker_factory(users={"bus-001": "s3cret", "ops": "opspw"},
                       acl="user ops\ntopic read #\nuser bus-001\ntopic write city/bus/bus-001/#\n")
    sub = subscriber_factory(b, ["#"], username="ops", password="opspw")
    auth = {"username": "bus-001", "password": "s3cret"}
    publish.single("city/bus/bus-001/pos", b"mine", qos=1, hostname=b.host, port=b.port, auth=auth)
    publish.single("city/bus/bus-002/pos", b"not mine", qos=1, hostname=b.host, port=b.port, auth=auth)
    got = sub.wait_for(2, timeout=2)
    assert [m[:2] for m in got] == [("city/bus/bus-001/pos", b"mine")]
    with pytest.raises(Exception):
        publish.single("city/bus/bus-001/pos", b"x", hostname=b.host, port=b.port,
                       auth={"username": "bus-001", "password": "wrong"})


def test_broker_tls(broker_factory, subscriber_factory, tls_material):
    b = broker_factory(tls=tls_material)
    sub = subscriber_factory(b, ["#"], ca_cert=tls_material.ca_cert)
    import paho.mqtt.publish as publish
    publish.single("t", b"over tls", qos=1, hostname="localhost", port=b.port,
                   tls={"ca_certs": tls_material.ca_cert})
    assert sub.wait_for(1)[0][1] == b"over tls"


def test_broker_freeze_thaw_and_restart_on_same_port(broker):
    broker.freeze()
    s = socket.create_connection((broker.host, broker.port), timeout=2)
    s.settimeout(0.5)
    s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00")  # CONNECT, empty client id
    with pytest.raises(socket.timeout):
        s.recv(4)  # frozen: nobody answers
    broker.thaw()
    s.settimeout(5)
    assert s.recv(4)[:1] == b"\x20"  # CONNACK once it runs again
    s.close()
    port = broker.port
    broker.kill()
    with pytest.raises(OSError):
        socket.create_connection((broker.host, port), timeout=1)
    broker.start()
    assert broker.port == port
    socket.create_connection((broker.host, port), timeout=1).close()


def test_walking_skeleton_publishes_through_umqtt_simple_under_micropython(mp, broker, subscriber_factory):
    sub = subscriber_factory(broker, ["phs/#"])
    payload = '{"v":1,"msg":"sawasdee"}'
    mp.run(
        "from transit.publish_once import publish_once\n"
        "publish_once('bus-skel', '127.0.0.1', %d, 'phs/bus/bus-skel/hello', %r)\n"
        "print('sent')\n" % (broker.port, payload),
        heap="64K")
    got = sub.wait_for(1)
    assert got == [("phs/bus/bus-skel/hello", payload.encode(), 1, False)]


ESP32_SOCKET_SCRIPT = r"""
import socket, time, esp32socket
esp32socket.GUARD_S = 0.3
port = %d
s = esp32socket.Esp32Socket()
s.connect(socket.getaddrinfo('127.0.0.1', port)[0][-1])
s.settimeout(0.2)
try:
    s.read(1)
except OSError as e:
    print('timeout-kept', isinstance(e, esp32socket.HungOnBoard))
s.settimeout(0.2)
s.setblocking(True)   # on an ESP32 this drops the 0.2 s timeout
try:
    s.read(1)
    print('returned')
except esp32socket.HungOnBoard:
    print('hung-on-board')
s.setblocking(False)
print('nonblocking', s.read(1))
print('has-settimeout', hasattr(s, 'settimeout'))
"""


def test_esp32_socket_setblocking_true_drops_the_timeout(mp):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    conns = []
    t = threading.Thread(target=lambda: conns.append(srv.accept()), daemon=True)
    t.start()
    res = mp.run(ESP32_SOCKET_SCRIPT % port)
    srv.close()
    assert res.lines == ["timeout-kept False", "hung-on-board", "nonblocking None", "has-settimeout True"]


def test_esp32_tls_socket_has_no_settimeout(mp, broker_factory, tls_material):
    b = broker_factory(tls=tls_material)
    code = (
        "import socket, ssl\n"
        "s = socket.socket()\n"
        "s.connect(socket.getaddrinfo('127.0.0.1', %d)[0][-1])\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
        "print('default-verify', ctx.verify_mode == ssl.CERT_NONE)\n"
        "ctx.verify_mode = ssl.CERT_REQUIRED\n"
        "ctx.load_verify_locations(cadata=open(%r, 'rb').read())\n"
        "t = ctx.wrap_socket(s, server_hostname='localhost')\n"
        "print(type(t).__name__, hasattr(t, 'settimeout'))\n" % (b.port, tls_material.ca_der))
    res = mp.run(code, heap="128K", path=[paths.ESP32NET])
    assert res.lines == ["default-verify True", "Esp32TlsSocket False"]
