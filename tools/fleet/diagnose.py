"""Why a board is offline, from what `make doctor` read on it and on the broker.

    problems(st)     what stops the board from working (the doctor exits 3)
    link_line(st)    the Wi-Fi state: connected, or why not and what is in range
    offline_why(st)  the first cause, in the order a technician checks them
    broker_status()  the status the broker keeps for the board (retained)
    broker_line()    that status in one line: online, SAFE MODE, last will, nothing

`st` is the JSON the doctor's on-board script prints (tools/doctor.py STATUS).
"""

import json
import time


WIFI_STATUS = {"STAT_NO_AP_FOUND": "the network is not in range", "STAT_WRONG_PASSWORD": "wrong Wi-Fi key",
               "STAT_BEACON_TIMEOUT": "lost the access point", "STAT_ASSOC_FAIL": "the access point refused it",
               "STAT_HANDSHAKE_TIMEOUT": "Wi-Fi handshake timed out (wrong key?)",
               "STAT_CONNECTING": "still connecting", "STAT_IDLE": "not trying (stopped, or off)"}


def link_line(st):
    w = st.get("wifi") or {}
    if w.get("error"):
        return "unknown (%s)" % w["error"]
    if w.get("connected"):
        return "Wi-Fi connected, address %s" % w.get("ip", "?")
    seen = ", ".join("%s (%d dBm)" % (n, r) for n, r in sorted(w.get("in_range") or [], key=lambda x: -x[1]))
    state = WIFI_STATUS.get(w.get("status_name"), "status %s" % w.get("status"))
    return "Wi-Fi not connected (%s); in range: %s" % (state, seen or w.get("scan_error") or "nothing")


def offline_why(st):
    """The first reason, in the order a technician checks them, that the broker sees this board offline."""
    d = st.get("device") if isinstance(st.get("device"), dict) else {}
    if st.get("safemode"):
        return "safe mode: %s" % st["safemode"]
    if problems(st):
        return problems(st)[0]
    w = st.get("wifi") or {}
    if not w.get("connected"):
        wanted = [n.get("ssid") for n in d.get("networks", [])]
        seen = {n for n, _ in (w.get("in_range") or [])}
        near = [n for n in wanted if n in seen]
        if not wanted:
            return "no network link: device.json lists no Wi-Fi network"
        if not near:
            return "no network link: none of %s is in range" % ", ".join(wanted)
        return ("no network link: %s is in range but the board is not connected (%s; check the Wi-Fi key in "
                "secrets.json)" % (near[0], WIFI_STATUS.get(w.get("status_name"), "status %s" % w.get("status"))))
    if str(st.get("broker_tcp", "")).startswith("unreachable"):
        b = d.get("broker") or {}
        return "the broker %s:%s is not reachable from the board (%s)" % (b.get("host"), b.get("port", 8883),
                                                                          st["broker_tcp"])
    bs = st.get("bootstate") if isinstance(st.get("bootstate"), dict) else {}
    if bs.get("last_error"):
        return "link and broker reachable; the last error recorded was: %s" % bs["last_error"]
    return None


def problems(st):
    """What stops the board from working, each in one sentence (the doctor then exits 3)."""
    out = []
    s = st.get("secrets")
    if s is None:
        out.append("no secrets.json: the board has no Wi-Fi keys or broker password (run make flash)")
    elif isinstance(s, dict) and s.get("mqtt_password") != "set":
        out.append("secrets.json has no broker password: the board cannot log in (run make provision, then "
                   "make flash)")
    elif not isinstance(s, dict):
        out.append("secrets.json is %s: run make flash" % s)
    return out


def broker_status(creds, device, wait_s=3.0):
    """The retained status the broker keeps for this board (None: nothing retained), or {"error": ...}."""
    import threading
    import paho.mqtt.client as mqtt
    try:
        with open(creds) as f:
            c = json.load(f)
        user, pw = c["username"], c["mqtt_password"]
    except (OSError, ValueError, KeyError) as e:
        return {"error": "cannot use %s (%s)" % (creds, e)}
    topic = "%s/%s/%s/status" % (device.get("topic_root", "phs"), device.get("role"), device.get("device_id"))
    got, done = {}, threading.Event()
    cl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    cl.username_pw_set(user, pw)
    if c.get("tls") and c.get("ca"):
        cl.tls_set(ca_certs=c["ca"], certfile=c.get("cert"), keyfile=c.get("key"))

    def on_connect(cli, u, f, rc, p=None):
        if rc.is_failure:
            got["error"] = "the broker refused the login as %s (%s)" % (user, rc)
            done.set()
        else:
            cli.subscribe(topic, 1)

    def on_message(cli, u, m):
        try:
            got["doc"] = json.loads(m.payload)
        except ValueError:
            got["error"] = "the retained status is not JSON"
        done.set()

    cl.on_connect, cl.on_message = on_connect, on_message
    try:
        cl.connect(c.get("host", "127.0.0.1"), int(c.get("port", 8883)), keepalive=10)
    except (OSError, ValueError) as e:
        return {"error": "cannot reach the broker: %s" % e}
    cl.loop_start()
    done.wait(wait_s)  # a retained message comes right after the subscription, or never
    cl.loop_stop()
    cl.disconnect()
    if "error" in got:
        return {"error": got["error"]}
    return got.get("doc")


def broker_line(view):
    """One line: what the back office sees of this board."""
    if view is None:
        return "nothing retained: the board has never published its status to this broker"
    if "error" in view:
        return "unknown (%s)" % view["error"]
    if not view.get("on"):
        return "offline: the broker published its last will (the connection was lost without a goodbye)"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(view["t"])) if isinstance(view.get("t"), int) else "?"
    parts = []
    link = view.get("link") or {}
    if link:
        bits = ["%s %s" % (link.get("type", "link"), "up" if link.get("up") else "down"), link.get("ssid"),
                "%s dBm" % link["rssi"] if link.get("rssi") else None]
        parts.append(", ".join(b for b in bits if b))
    up = view.get("uplink") or {}
    if up:
        counters = ["%s %s" % (k, up[k]) for k in sorted(up) if (k == "connects" or k.startswith("fail_")) and up[k]]
        parts.append("uplink " + ", ".join(counters) + (", last error: %s" % up["last_error"]
                                                        if up.get("last_error") else ""))
    head = "SAFE MODE (%s)" % view["safe"].get("why", "?") if view.get("safe") else "online"
    return "%s (status of %s)%s" % (head, when, (": " + "; ".join(parts)) if parts else "")
