#!/usr/bin/env python3
"""A board's health over mpremote: `make doctor PORT=...`.

    .venv/bin/python tools/doctor.py --port /dev/ttyUSB0
    .venv/bin/python tools/doctor.py --port socket://127.0.0.1:4567 --json
    .venv/bin/python tools/doctor.py --port /dev/ttyUSB0 --creds build/fleet/broker/consumer.json

Stops the application (Ctrl-C, as mpremote does), reads in one round trip:
MicroPython version and .mpy version, reset cause and boot counters, last
error and safe-mode reason, heap, flash, the durable queue's depth, which
umqtt.simple is imported, the deployed manifest (and whether the files still
match it) and the configuration without secrets (Wi-Fi keys and the broker
password show only as "set"), the Wi-Fi state (status code, networks in
range) and, with the link up, whether the broker's port answers from the
board; from those, one line saying why the broker would see it offline.
Then it resets the board so the application runs again (--stay keeps it in
the REPL for a technician). Exit code 3 when something needs fixing (safe
mode, files differ from the manifest, no broker password...). With --creds
it also shows the status the broker keeps for the board (its link, uplink
failure counters and last error as the board last reported them, safe mode,
or the last will that says the broker lost it).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from deploy import DeployError, check_port, explain, mpremote_cmd  # noqa: E402
from fleet.diagnose import broker_line, broker_status, link_line, offline_why, problems  # noqa: E402

RESET_NAMES = {1: "power on (or brownout)", 2: "hard reset", 3: "watchdog", 4: "deep sleep wake",
               5: "soft reset (machine.reset() or a crash)"}

STATUS = r"""
import sys, os, gc, json
_r = {}
_i = sys.implementation
_r['version'] = list(_i.version[:3])
_r['mpy'] = getattr(_i, '_mpy', 0)
_r['platform'] = sys.platform
try:
    import machine
    _r['reset_cause'] = machine.reset_cause()
except Exception as e:
    _r['reset_cause'] = None
def _load(n):
    try:
        with open(n) as f:
            return json.load(f)
    except OSError:
        return None
    except ValueError:
        return 'unreadable'
_r['bootstate'] = _load('bootstate.json')
_r['time'] = _load('data/time.json')
import time as _tm
_r['clock'] = int(_tm.time()) + (946684800 if _tm.gmtime(0)[0] == 2000 else 0)
try:
    with open('safemode.txt') as f:
        _r['safemode'] = f.read().strip()
except OSError:
    _r['safemode'] = None
_d = _load('device.json')
_r['device'] = _d
_s = _load('secrets.json')
if isinstance(_s, dict):
    _r['secrets'] = {'wifi': sorted((_s.get('wifi') or {}).keys()), 'mqtt_password': 'set' if _s.get('mqtt_password') else 'missing'}
else:
    _r['secrets'] = _s
_m = _load('manifest.json')
if isinstance(_m, dict):
    import hashlib, binascii
    _bad = []
    for _p, _h in (_m.get('files') or {}).items():
        if _h is None:
            continue
        try:
            _x = hashlib.sha256()
            with open(_p, 'rb') as f:
                while True:
                    _b = f.read(1024)
                    if not _b:
                        break
                    _x.update(_b)
            if binascii.hexlify(_x.digest()).decode() != _h:
                _bad.append(_p)
        except OSError:
            _bad.append(_p)
    _r['manifest'] = {'commit': _m.get('commit'), 'deployed_utc': _m.get('deployed_utc'), 'mpy': _m.get('mpy'),
                      'files': len(_m.get('files') or {}), 'mismatch': _bad}
else:
    _r['manifest'] = _m
_q = {'bytes': 0}
try:
    for _e in os.ilistdir('data/q'):
        _q['bytes'] += _e[3] if len(_e) > 3 else os.stat('data/q/' + _e[0])[6]
    try:
        from dqueue import DurableQueue
        _q['depth'] = DurableQueue('data/q').depth()
    except Exception as e:
        _q['depth_error'] = repr(e)
except OSError:
    _q = None
_r['queue'] = _q
try:
    import umqtt.simple as _u
    _r['umqtt'] = getattr(_u, '__file__', '(frozen)')
except ImportError:
    _r['umqtt'] = 'missing'
_n = {}
try:
    import network
    _w = network.WLAN(network.STA_IF)
    _a = _w.active()
    _n = {'active': _a, 'connected': _w.isconnected(), 'status': _w.status()}
    if _n['connected']:
        _n['ip'] = _w.ifconfig()[0]
    else:
        _w.active(True)
        try:
            _n['in_range'] = [[_x[0].decode(), _x[3]] for _x in _w.scan()]
        except OSError as e:
            _n['scan_error'] = repr(e)
        _w.active(_a)
    for _k in ('STAT_IDLE', 'STAT_CONNECTING', 'STAT_GOT_IP', 'STAT_NO_AP_FOUND', 'STAT_WRONG_PASSWORD',
               'STAT_BEACON_TIMEOUT', 'STAT_ASSOC_FAIL', 'STAT_HANDSHAKE_TIMEOUT'):
        if getattr(network, _k, None) == _n['status']:
            _n['status_name'] = _k
except Exception as e:
    _n['error'] = repr(e)
_r['wifi'] = _n
if isinstance(_d, dict) and _n.get('connected'):
    import socket
    _b = _d.get('broker') or {}
    try:
        _ai = socket.getaddrinfo(_b.get('host'), _b.get('port', 8883))[0][-1]
        _so = socket.socket()
        _so.settimeout(3)
        try:
            _so.connect(_ai)
            _r['broker_tcp'] = 'reachable'
        finally:
            _so.close()
    except OSError as e:
        _r['broker_tcp'] = 'unreachable: ' + repr(e)
gc.collect()
_r['heap'] = {'free': gc.mem_free(), 'used': gc.mem_alloc()}
_v = os.statvfs('/')
_r['flash'] = {'free': _v[0] * _v[3], 'total': _v[0] * _v[2]}
print(json.dumps(_r))
"""


class DoctorError(Exception):
    pass


def read_status(port):
    cmd = mpremote_cmd() + ["connect", port, "resume", "exec", STATUS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if proc.returncode != 0:
        raise DoctorError(explain(proc.stdout + proc.stderr, port))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise DoctorError("the board did not answer the status question: press RESET and try again")
    return json.loads(lines[-1])


def restart(port):
    subprocess.run(mpremote_cmd() + ["connect", port, "resume", "reset"], capture_output=True, timeout=60, cwd=ROOT)


def _kib(n):
    return "%.0f KiB" % (n / 1024)


def _utc(s):
    import time
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(s)) if isinstance(s, int) else "?"


def clock_line(t, clock):
    """The board's clock and, from data/time.json (firmware/transit/timesync.py),
    whether it was ever set: TLS refuses the broker's certificate until it is."""
    if not isinstance(t, dict):
        return "clock        board says %s; no time record yet (data/time.json)" % _utc(clock)
    if t.get("synced"):
        return "clock        board says %s; last set by %s" % (_utc(clock), t.get("src"))
    return ("clock        NOT SET: %s. Board says %s, last good time %s; TLS to the broker fails until the "
            "clock is set (check time.sntp in device.json, the network, the GPS aerial)"
            % (t.get("why") or "no time source", _utc(clock), _utc(t.get("floor"))))


def report(st):
    """Human-readable lines (secrets never appear: the board sends none)."""
    out = []
    v = ".".join(str(x) for x in st["version"])
    mpy = st["mpy"]
    out.append("MicroPython  %s (.mpy %d.%d) on %s" % (v, mpy & 0xFF, (mpy >> 8) & 3, st["platform"]))
    rc = st.get("reset_cause")
    out.append("reset cause  %s" % (RESET_NAMES.get(rc, "unknown (%r)" % rc)))
    bs = st.get("bootstate")
    if isinstance(bs, dict):
        out.append("boots        %d (crashes in a row: %d)" % (bs.get("boots", 0), bs.get("crashes", 0)))
        out.append("last error   %s" % (bs.get("last_error") or "none"))
    else:
        out.append("boot state   %s" % ("none yet (never booted the application)" if bs is None else bs))
    out.append("safe mode    %s" % (st["safemode"] or "no"))
    out.append(clock_line(st.get("time"), st.get("clock")))
    h = st["heap"]
    out.append("heap         %s free, %s used" % (_kib(h["free"]), _kib(h["used"])))
    fl = st["flash"]
    out.append("flash        %s free of %s" % (_kib(fl["free"]), _kib(fl["total"])))
    q = st.get("queue")
    if q is None:
        out.append("queue        none (no data/q yet)")
    else:
        depth = q.get("depth")
        out.append("queue        %s records waiting, %s on flash" % ("?" if depth is None else depth, _kib(q["bytes"])))
    out.append("umqtt.simple %s" % st["umqtt"])
    m = st.get("manifest")
    if isinstance(m, dict):
        state = "all files match" if not m["mismatch"] else "%d file(s) differ: %s" % (len(m["mismatch"]), ", ".join(m["mismatch"][:5]))
        out.append("deployed     commit %s at %s, %d files%s: %s" % (m["commit"], m["deployed_utc"], m["files"],
                                                                    " (.mpy)" if m["mpy"] else "", state))
    else:
        out.append("deployed     no manifest: never deployed, or the last deploy did not finish (run make flash)")
    d = st.get("device")
    if isinstance(d, dict):
        b = d.get("broker", {})
        out.append("device       %s (%s) board %s" % (d.get("device_id"), d.get("role"), d.get("board")))
        if d.get("role") == "bus":
            bus = d.get("bus", {})
            out.append("bus          plate %s, route %s" % (bus.get("plate", "?"), bus.get("route", "?")))
        out.append("broker       %s:%s tls=%s topic root %s" % (b.get("host"), b.get("port", 8883), b.get("tls", True),
                                                               d.get("topic_root", "phs")))
        out.append("networks     %s" % (", ".join(n.get("ssid", "?") for n in d.get("networks", [])) or "none"))
    else:
        out.append("device       %s" % ("no device.json" if d is None else d))
    s = st.get("secrets")
    if isinstance(s, dict):
        out.append("secrets      Wi-Fi keys for %s; broker password %s" % (", ".join(s["wifi"]) or "no network", s["mqtt_password"]))
    else:
        out.append("secrets      %s" % ("no secrets.json" if s is None else s))
    out.append("link         %s" % link_line(st))
    if st.get("broker_tcp"):
        out.append("broker tcp   %s" % st["broker_tcp"])
    why = offline_why(st)
    if why:
        out.append("offline why  %s" % why)
    out += ["problem      %s" % p for p in problems(st)]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Show a board's status over mpremote (no secrets).")
    ap.add_argument("--port", required=True, help="serial port or socket://127.0.0.1:PORT")
    ap.add_argument("--json", action="store_true", help="print the raw status as JSON")
    ap.add_argument("--stay", action="store_true", help="leave the board in the REPL instead of restarting it")
    ap.add_argument("--creds", help="a credential file from provisioning (build/fleet/broker/consumer.json): also "
                    "show the status the broker keeps for this board")
    args = ap.parse_args(argv)
    try:
        check_port(args.port)
        st = read_status(args.port)
    except (DeployError, DoctorError) as e:
        print("doctor: FAILED: %s" % e, file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired:
        print("doctor: FAILED: the board at %s does not answer: press RESET and try again" % args.port, file=sys.stderr)
        return 1
    if args.creds and isinstance(st.get("device"), dict):
        st["broker_view"] = broker_status(args.creds, st["device"])
    if args.json:
        print(json.dumps(st, indent=1, sort_keys=True))
    else:
        for line in report(st):
            print(line)
        if args.creds:
            print("broker view  %s" % broker_line(st.get("broker_view")))
    if not args.stay:
        restart(args.port)
    bad = bool(st.get("safemode")) or not isinstance(st.get("manifest"), dict) or bool(
        (st.get("manifest") or {}).get("mismatch")) or bool(problems(st)) or (
        isinstance(st.get("time"), dict) and not st["time"].get("synced"))
    return 3 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
