"""The bridge's HTTP side: GTFS-Realtime, the live page and its Server-Sent Events, the export.

    /                                   the live operations page (page.html; no internet needed)
    /events                             Server-Sent Events: changed vehicles and today's stop counts
    /gtfs-rt/vehicle-positions.pb       GTFS-Realtime VehiclePositions (?format=json: debug view)
    /gtfs/static.zip                    the static GTFS feed the real-time one refers to
    /api/static  /api/fleet  /api/stats route shapes and stops; fleet snapshot; bridge counters
    /export/stop_visits.csv[?day=YYYY-MM-DD]   planner export (city.export)
    /api/journal?offset=N               this copy's journal from byte N (read by peer copies)

SSE rather than WebSocket: one-way updates are all the page needs, the
standard library serves them, and the browser reconnects by itself.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from city import export

HERE = os.path.dirname(os.path.abspath(__file__))
PUSH_S = 0.5  # the page's refresh granularity


class Web:
    """Serve one FleetState and Feed on host:port (port 0: a free one) in a thread."""

    def __init__(self, state, feed, host="127.0.0.1", port=0, tiles=None, stats=None):
        self.state = state
        self.feed = feed
        self.tiles = tiles  # e.g. "http://tiles.local/{z}/{x}/{y}.png"; None: draw shapes only
        self.extra_stats = stats or (lambda: {})
        self.stopping = threading.Event()
        self.clients_gone = 0
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet: the bench polls many times a second
                pass

            def do_GET(self):
                try:
                    web.route(self)
                except (BrokenPipeError, ConnectionResetError):
                    web.clients_gone += 1  # the client went away (a closed page, a poller's timeout)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.thread = None
        self.route_journal = None  # set by the bridge: fn(handler, query) serving its journal to peers

    @property
    def url(self):
        return "http://%s:%d/" % (self.host, self.port)

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- routes -----------------------------------------------------------
    def route(self, h):
        u = urlparse(h.path)
        q = parse_qs(u.query)
        p = u.path
        if p in ("/", "/index.html"):
            with open(os.path.join(HERE, "page.html"), "rb") as f:
                return self.send(h, 200, "text/html; charset=utf-8", f.read())
        if p == "/gtfs-rt/vehicle-positions.pb":
            if q.get("format") == ["json"]:
                return self.send(h, 200, "application/json", self.feed.json().encode())
            return self.send(h, 200, "application/x-protobuf", self.feed.protobuf())
        if p == "/events":
            return self.events(h)
        if p == "/api/static":
            doc = self.state.static.page_doc()
            doc["tiles"] = self.tiles
            return self.json(h, doc)
        if p == "/api/fleet":
            return self.json(h, self.snapshot())
        if p == "/api/stats":
            return self.json(h, self.stats())
        if p == "/api/journal" and self.route_journal:
            return self.route_journal(h, q)
        if p == "/export/stop_visits.csv":
            day = (q.get("day") or [None])[0]
            body = export.csv_text(self.state, day).encode("utf-8")
            return self.send(h, 200, "text/csv; charset=utf-8", body,
                             {"Content-Disposition": 'attachment; filename="stop_visits%s.csv"'
                              % ("_" + day if day else "")})
        if p == "/gtfs/static.zip":
            from routes.gtfs_build import zip_bytes
            return self.send(h, 200, "application/zip", zip_bytes(self.state.static.folder))
        return self.send(h, 404, "text/plain", b"not found\n")

    def send(self, h, code, ctype, body, headers=None):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def json(self, h, doc):
        self.send(h, 200, "application/json", json.dumps(doc).encode())

    def snapshot(self, since=0):
        s = self.state
        with s.lock:
            return {"ver": s.version, "now": int(s.clock()), "vehicles": s.changes(since),
                    "day": s.service_day(), "today": {k: list(v) for k, v in s.today().items()}}

    def stats(self):
        s = self.state
        with s.lock:
            doc = dict(s.stats)
            doc["vehicles"] = len(s.vehicles)
            doc["per_device"] = {d: v.records for d, v in s.vehicles.items()}
            doc["visits"] = len(s.visits)
        b = sorted(self.feed.build_ms)
        doc["feed"] = {"builds": self.feed.builds,
                       "build_ms_p50": b[len(b) // 2] if b else None,
                       "build_ms_p99": b[min(len(b) - 1, len(b) * 99 // 100)] if b else None}
        doc["http_clients_gone"] = self.clients_gone
        doc.update(self.extra_stats())
        return doc

    def events(self, h):
        """Server-Sent Events: a full snapshot, then changed vehicles every PUSH_S."""
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-store")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        since = 0
        last_beat = 0.0
        while not self.stopping.is_set():
            if self.state.version != since or time.monotonic() - last_beat > 15:
                doc = self.snapshot(since)
                since = doc["ver"]
                h.wfile.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
                h.wfile.flush()
                last_beat = time.monotonic()
            self.stopping.wait(PUSH_S)
