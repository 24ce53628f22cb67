# Drives the real uplink over the real durable queue under the MicroPython unix port.
# Usage: micropython drive.py SCENARIO.json
# Prints "@up N" / "@down N" on link changes, "@acked N" as records are acknowledged,
# and "@result {json}" at the end. A scenario may stop early when STOP file appears.
import sys
import json
import os
import time

sc = json.loads(open(sys.argv[1]).read())
from transit import config, identity, records as R, commands, health
from transit import uplink as U
from dqueue import DurableQueue

try:
    import esp32socket
    esp32socket.GUARD_S = sc.get("guard_s", 2.0)
except ImportError:
    esp32socket = None

cfg = config.Config(config.validate(sc["device"], sc["secrets"]), sc["secrets"], sc.get("cfg_path"))
q = DurableQueue(sc["qdir"], commit_ms=200, priority_types=R.PRIORITY_TYPES)
events = []
hooks = {"reboot": lambda: events.append("reboot"), "flush": lambda: up.flush_now(),
         "reset_load": lambda: events.append("reset_load")}
cmds = commands.Commands(cfg, cfg.get("device_id"), hooks)
epoch = identity.adopt(sc["qdir"], cfg.get("device_id"), q)  # as the app does: the queue's epoch
hl = health.Health(cfg.get("device_id"), reset_cause=sc.get("reset_cause", 1), epoch=epoch)
import gc; gc.collect(); print("@mem_before_uplink", gc.mem_free())
ca = open(sc["ca"], "rb").read() if sc.get("ca") else None
START = [0]


class FlappingLink:
    """The link is down during the scenario's link_down windows (ms from start)."""

    def isconnected(self):
        el = time.ticks_diff(time.ticks_ms(), START[0])
        return not any(a <= el < b for a, b in sc.get("link_down", []))


link = FlappingLink() if sc.get("link_down") else None
up = U.Uplink(cfg, q, commands=cmds, status_doc=hl.document, ca_der=ca, link=link, epoch=epoch,
              **sc.get("settings", {}))
gc.collect(); print("@mem_after_uplink", gc.mem_free())
hl.register("uplink", up.status)
hl.register("queue", health.queue_source(q))
hl.register("link", lambda: {"type": "none", "up": True})
if sc.get("status_pad"):  # a status larger than the uplink's receive buffer
    hl.register("pad", lambda: {"x": "p" * sc["status_pad"]})

T0 = 1700000000
appended = [0]  # a count: a list of 10,000 seqs would not fit the heap


def add_pos(i):
    if sc.get("noisy"):  # worst case for the column encoding: every value far from the last
        j = (i * 2654435761) % 4294967291
        p = R.pack_position(j % 179000000 - 89000000, -(j % 359000000) + 179000000, j % 65535, j % 3600,
                            (j % 60000) - 30000, j % 255, j % 255, j % 255, (j * 1013) % 4294967295)
    else:
        p = R.pack_position(16821234 + 37 * i, 100262345 - 29 * i, 833 + i % 7, 900 + i % 50, 450, 9, 12, 1, 40 * i)
    ts = T0 + 5 * i
    seq = q.append(R.POS, p, ts)
    appended[0] += 1
    up.offer_live(R.POS, seq, ts, 0, p)


def add_stop(i):
    p = R.pack_stop(i, T0 + 5 * i - 30, T0 + 5 * i, 16821234, 100262345, 40 * i, 30, 12, 2, 0, [(3, 1), (0, 2)])
    seq = q.append(R.STOP, p, T0 + 5 * i)
    appended[0] += 1
    up.offer_live(R.STOP, seq, T0 + 5 * i, 0, p)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


n = 0
for _ in range(sc.get("prefill", 0)):
    add_pos(n)
    n += 1
    if sc.get("stop_every") and n % sc["stop_every"] == 0:
        add_stop(n)
q.commit()

total = sc.get("total", n)
rate_ms = sc.get("rate_ms", 0)
duration_ms = sc.get("duration_ms", 20000)
doors = sc.get("doors_open", [])  # [[from_ms, to_ms], ...]: may_block False
stop_file = sc.get("stop_file")
hold_file = sc.get("hold_file")
held = False
attempts_while_held = 0
start = time.ticks_ms()
START[0] = start
next_add = start
last_up = None
last_acked = -1
steps = 0
sock_types = {}
worst_nb_us = 0  # longest step with may_block False
worst_us = 0
worst_conn_us = 0
while True:
    now = time.ticks_ms()
    el = time.ticks_diff(now, start)
    if el > duration_ms:
        break
    if rate_ms and n < total and time.ticks_diff(now, next_add) >= 0:
        add_pos(n)
        n += 1
        if sc.get("stop_every") and n % sc["stop_every"] == 0:
            add_stop(n)
        next_add = time.ticks_add(next_add, rate_ms)
    q.poll()
    may_block = not held and not any(a <= el < b for a, b in doors)
    was_up = up.connected
    t = time.ticks_us()
    up.step(may_block)
    dt = time.ticks_diff(time.ticks_us(), t)
    steps += 1
    if was_up:
        worst_us = max(worst_us, dt)
    elif not up.connected and not may_block:
        worst_nb_us = max(worst_nb_us, dt)
    else:
        worst_conn_us = max(worst_conn_us, dt)
    if not may_block:
        worst_nb_us = max(worst_nb_us, dt)
    if up.connected != last_up:
        last_up = up.connected
        if last_up:
            sock_types[type(up.conn.sock).__name__] = 1
        print("@up" if last_up else "@down", up.stats["connects"] if last_up else up.stats["lost"])
    if up.stats["recs_acked"] != last_acked:
        last_acked = up.stats["recs_acked"]
        print("@acked", last_acked)
    if n >= total and q.depth() == 0 and up.connected and sc.get("until_drained", True) and up.conn.tx_empty():
        break
    if held:
        attempts_while_held = up.stats["attempts"] - held_at
    if steps % 50 == 0:
        if stop_file and _exists(stop_file):
            break
        if hold_file:
            h = _exists(hold_file)
            if h != held:
                held = h
                held_at = up.stats["attempts"]
                print("@held" if held else "@released")
    if sc.get("idle_ms"):
        time.sleep_ms(sc["idle_ms"])
res = {"appended": appended[0], "last_seq": q.last_seq, "depth": q.depth(), "steps": steps,
       "worst_step_us": worst_us, "worst_noblock_us": worst_nb_us, "worst_connect_us": worst_conn_us,
       "stats": up.stats, "events": events, "status": hl.document(),
       "hangs": esp32socket.HANGS if esp32socket else None, "elapsed_ms": time.ticks_diff(time.ticks_ms(), start),
       "attempts_while_held": attempts_while_held, "sock_types": sorted(sock_types)}
if sc.get("close", True):
    up.close()
print("@result", json.dumps(res))
