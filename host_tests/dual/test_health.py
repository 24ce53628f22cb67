"""The status document streamed source by source (Health.dump) says what
Health.document() says. CPython and the MicroPython unix port."""

import io
import json

from transit.health import Health


class _Out(io.IOBase):  # MicroPython's json.dump wants a stream object
    def __init__(self):
        self.parts = []

    def write(self, b):
        self.parts.append(b.encode() if isinstance(b, str) else bytes(b))
        return len(b)

    def text(self):
        return b"".join(self.parts)


def _health():
    h = Health("bus-042", reset_cause=1, ticks_ms=lambda: 5000, utc_s=lambda: 1795766400, epoch=3000000000)
    h.register("queue", lambda: {"depth": 12, "last_seq": 4000000000, "torn": 0})
    h.register("loop", lambda: {"loops": 0, "errors": 2, "last_error": "", "v": [0, 0]}, sparse=True)
    h.register("link", lambda: {"up": True, "ssid": "depot \"A\"", "rssi": -61})

    def broken():
        raise ValueError("no reading")
    h.register("gps", broken)
    return h


def test_dump_writes_the_document_as_json():
    out = _Out()
    _health().dump(out)
    got = json.loads(out.text())
    want = _health().document()
    want["up_s"] = got["up_s"]
    want["heap"] = got["heap"]  # free heap moves between the two calls
    assert got == want
    assert got["loop"] == {"errors": 2} and got["queue"]["last_seq"] == 4000000000
    assert list(got["gps"]) == ["error"] and got["gps"]["error"].startswith("ValueError")
    assert got["health_errors"] == 1


def test_a_full_stream_stops_the_dump():
    class Full(_Out):
        def write(self, b):
            if sum(len(p) for p in self.parts) + len(b) > 40:
                raise IndexError("message buffer full")
            return _Out.write(self, b)
    try:
        _health().dump(Full())
    except IndexError:
        return
    assert False, "a full buffer must stop the dump"
