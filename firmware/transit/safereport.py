"""Safe mode speaks: one short, bounded connection that tells the broker.

Without it a board in safe mode looks the same as a bus switched off (the
broker shows only the last will). With a loaded configuration (and
`safe_mode_report` true) safe mode joins the network, connects, publishes

- the status, retained, with "safe": {"why": reason} (schema v2), and
- the safe-mode event (kind 8; `i` the cause, `va` the crash count),

then disconnects cleanly, so the retained status stays (no last will is
set: an "offline" will would hide why). Everything is bounded (Wi-Fi
JOIN_MS, the clock SNTP_MS, broker CONNECT_MS) and small: no queue, no
uplink, no schema module (the two documents are plain json, checked against
docs/schema by the tests), a 1 KiB buffer.

Over TLS the clock comes first: a board powered on straight into safe mode
reads 2000-01-01, and mbedTLS refuses the broker's certificate as "not yet
valid". As the application does (transit/timesync.py), the RTC is moved up
to the floor kept in flash (data/time.json, never below the build date) and
the configured SNTP servers get one round, cut at SNTP_MS; certificate
checks stay on. A clock that is only the floor is a lower bound: the event
is then stamped with seconds since boot and flagged "time unknown".

Safe-mode events have a stream of their own: their epoch `se` and last seq
`ss` live in bootstate.json (the queue may be the very thing that is broken),
so consumers de-duplicate them by (device, e, seq) like every other record.
"""

import gc
import json
import time

from transit import identity

JOIN_MS = 20000  # Wi-Fi association, scans included
CONNECT_MS = 10000  # TCP, TLS, CONNACK and each PUBACK
SNTP_MS = 4000  # before a TLS report: one SNTP round over the servers, at most this long
TIME_FILE = "data/time.json"  # the application's floor (transit.app.QUEUE_DIR + "/time.json")
QUEUE_FOLDER = "data/q"  # transit.app's queue: its epoch goes in the status
# The cause, as the event's `i`
CAUSE_CRASH_LOOP = 1
CAUSE_CONFIG = 2
CAUSE_BOARD = 3
CAUSE_BUTTON = 4
CAUSE_QUEUE_OWNER = 5
_CAUSES = (("the application failed", CAUSE_CRASH_LOOP), ("configuration", CAUSE_CONFIG), ("board", CAUSE_BOARD),
           ("safe-mode button", CAUSE_BUTTON), ("queue", CAUSE_QUEUE_OWNER))
_MIN_UNIX = 1704067200  # 2024-01-01: an earlier clock is not set
_VERSION = 2  # transit.schema.VERSION (not imported: it costs ~11 KB of heap)
_EV_SAFE_MODE = 8  # transit.records.EV_SAFE_MODE
_FLAG_TIME_UNKNOWN = 1  # transit.records.FLAG_TIME_UNKNOWN


def cause_of(reason):
    for prefix, code in _CAUSES:
        if reason.startswith(prefix):
            return code
    return 0


def _unix_now():
    """Unix seconds whatever the port's epoch (the ESP32 counts from 2000)."""
    t = int(time.time())
    return t + 946684800 if time.gmtime(0)[0] == 2000 else t


def _topic(cfg, kind):
    return "%s/%s/%s/%s" % (cfg.get("topic_root"), cfg["role"], cfg["device_id"], kind)


def status_doc(cfg, reason, state, epoch, clock=None):
    """The retained status in safe mode (status.json, v2); `clock` the
    TimeSync that set the clock for a TLS report (its `time` section)."""
    from transit import VERSION as FW
    free = getattr(gc, "mem_free", None)
    doc = {"v": _VERSION, "d": cfg["device_id"], "e": epoch, "on": True, "t": _unix_now(), "fw": FW,
           "up_s": time.ticks_ms() // 1000, "rst": state.reset_name() if state is not None else "unknown",
           "heap": free() if free is not None else -1, "safe": {"why": reason}}
    if state is not None:
        doc["boot"] = {"boots": state.boots, "crashes": state.crashes, "last_error": state.last_error,
                       "ended": state.ended}
    if clock is not None:
        doc["time"] = clock.status()
    return doc


def event_batch(cfg, reason, state, known=True):
    """The safe-mode event as a one-record batch of its own stream; `known`
    False when the clock is only a lower bound (the floor)."""
    if not state.se:
        state.se = identity.new_epoch()
    state.ss += 1
    state.save()  # the seq is spent even if the send fails: never two events with one seq
    now = _unix_now()
    ts, flags = (now, 0) if known and now >= _MIN_UNIX else (time.ticks_ms() // 1000, _FLAG_TIME_UNKNOWN)
    row = {"q": state.ss, "t": ts, "k": _EV_SAFE_MODE, "i": cause_of(reason), "va": state.crashes, "la": 0, "lo": 0}
    if flags:
        row["f"] = flags
    return json.dumps({"v": _VERSION, "d": cfg["device_id"], "e": state.se, "s": state.ss, "t": ts, "r": [row]})


def _join(cfg, board):
    """Bring the network up within JOIN_MS; True when it is. Wi-Fi: each
    configured network in turn (no scan: fewer buffers); a board with only a
    modem uses transit.link (PPP)."""
    wlan = board.wlan() if board is not None else None
    t0 = time.ticks_ms()
    if wlan is None:
        ppp = board.ppp_factory() if board is not None else None
        if ppp is None:
            return True  # the unix port without fakes: the host's network
        from transit.link import Link
        link = Link(cfg["networks"], cfg.wifi_key, ppp_factory=ppp)
        while not link.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > JOIN_MS:
                return False
            link.step(True)
            time.sleep_ms(50)
        return True
    wlan.active(True)
    nets = cfg["networks"]
    each_ms = JOIN_MS // max(1, len(nets))
    for n in nets:
        if wlan.isconnected():
            return True
        wlan.connect(n["ssid"], cfg.wifi_key(n["ssid"]))
        t1 = time.ticks_ms()
        while not wlan.isconnected() and time.ticks_diff(time.ticks_ms(), t1) < each_ms:
            time.sleep_ms(100)
    return wlan.isconnected()


def set_clock(cfg, board):
    """Before a TLS report: the RTC up to the floor in flash, then SNTP until
    it answers, every server failed once, or SNTP_MS passed. Returns the
    TimeSync (the status says where the time came from), or None without a
    board (its file did not load: no RTC to set)."""
    if board is None:
        return None
    from transit.timesync import TimeSync
    clock = TimeSync(cfg, board.rtc(), path=TIME_FILE)
    t0 = time.ticks_ms()
    while clock.gate() is not None and time.ticks_diff(time.ticks_ms(), t0) < SNTP_MS:
        clock.step(True)  # never blocks but for a name lookup; the answer is polled
        time.sleep_ms(20)
    clock.close()
    if clock.source == "floor":  # timesync.SRC_FLOOR: only a lower bound
        print("safe mode: clock not set (%s): the broker's certificate may be refused" %
              (clock.why() if clock.gate() is None else "no sntp answer within %d s" % (SNTP_MS // 1000)))
    return clock


def _tls(cfg):
    if not cfg.get("broker.tls"):
        return None
    import ssl
    with open(cfg.get("broker.ca"), "rb") as f:
        ca = f.read()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # never less in safe mode either
    ctx.load_verify_locations(cadata=ca)
    return ctx


def send(cfg, board, reason, state):
    """Tell the broker; True when the broker acknowledged both messages.
    Raises on failures the caller prints (every wait is bounded)."""
    if not _join(cfg, board):
        print("safe mode: no network within %d s" % (JOIN_MS // 1000))
        return False
    dev = cfg["device_id"]
    owner = identity.Owner(QUEUE_FOLDER)
    tls = cfg.get("broker.tls")
    clock = None
    if tls:
        import sys
        from transit.safemode import unload
        loaded = set(sys.modules)
        clock = set_clock(cfg, board)
    known = clock is None or clock.source != "floor"  # timesync.SRC_FLOOR: a lower bound
    status = json.dumps(status_doc(cfg, reason, state, owner.epoch if owner.device == dev else 0, clock)).encode()
    event = event_batch(cfg, reason, state, known) if state is not None else None
    if tls:
        clock = None
        unload(sys, loaded)  # the clock's code leaves the heap before the TLS handshake
    gc.collect()
    from umqtt.simple import MQTTClient
    from transit.mqttio import Conn, mqtt_connect
    host = cfg.get("broker.host").split(",")[0]  # the first node of a cluster list (transit.uplink)
    conn = Conn(1024, 256)
    client = MQTTClient(dev, host, port=cfg.get("broker.port"), user=cfg.secret("mqtt_user", dev),
                        password=cfg.secret("mqtt_password", ""), keepalive=cfg.get("broker.keepalive_s"))
    try:
        conn.open(host, cfg.get("broker.port"), CONNECT_MS, _tls(cfg), host)
        conn.allow_wait(CONNECT_MS)
        mqtt_connect(client, conn)
        conn.allow_wait(CONNECT_MS)
        client.publish(_topic(cfg, "status"), status, retain=True, qos=1)
        if event is not None:
            conn.allow_wait(CONNECT_MS)
            client.publish(_topic(cfg, "event"), event, qos=1)
        client.disconnect()  # clean: the retained status stays, no will
    finally:
        conn.close()
    return True
