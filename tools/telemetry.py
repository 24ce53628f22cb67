"""Host side of telemetry schema v1: validate, decode and rebuild a device's stream.

    validate(topic, payload)  -> (kind, doc); raises jsonschema.ValidationError / ValueError
    decode(topic, payload)    -> (kind, device_id, records, doc) for batch kinds
    Stream                    -> feed messages; de-duplicates by seq, tracks gaps,
                                 moves the vehicle only on live (non-backlog) positions

Runs under CPython; uses firmware/transit/schema.py so there is one definition.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (os.path.join(ROOT, "firmware"),):
    if p not in sys.path:
        sys.path.insert(0, p)

from transit import schema  # noqa: E402

SCHEMA_DIR = os.path.join(ROOT, "docs", "schema")
BATCH_KINDS = ("pos", "stop", "count", "event", "roster")
_validators = {}


def validator(kind):
    import jsonschema
    v = _validators.get(kind)
    if v is None:
        with open(os.path.join(SCHEMA_DIR, kind + ".json")) as f:
            doc = json.load(f)
        v = jsonschema.Draft202012Validator(doc)
        _validators[kind] = v
    return v


def validate(topic, payload):
    """Check one message against its JSON Schema; return (kind, doc)."""
    _, _, device_id, kind = schema.parse_topic(topic)
    if kind not in _validators and not os.path.exists(os.path.join(SCHEMA_DIR, kind + ".json")):
        raise ValueError("unknown message kind: " + kind)
    doc = json.loads(payload)
    validator(kind).validate(doc)
    if "d" in doc and doc["d"] != device_id:
        raise ValueError("device id %r in %s does not match the topic" % (doc["d"], topic))
    if kind == "pos":
        n = doc["n"]
        for key, value in doc.items():
            if isinstance(value, list) and len(value) != n:
                raise ValueError("pos column %s has %d entries, n=%d" % (key, len(value), n))
    return kind, doc


def decode(topic, payload):
    kind, doc = validate(topic, payload)
    if kind not in BATCH_KINDS:
        raise ValueError("not a batch: " + topic)
    return kind, doc["d"], schema.decode_batch(schema.TYPE_OF_KIND[kind], doc), doc


class Stream:
    """Rebuild one device's records from messages in arrival order."""

    def __init__(self):
        self.records = {}  # seq -> (kind, record)
        self.duplicates = 0
        self.messages = 0
        self.live_positions = []  # seqs of positions that moved the vehicle
        self.backlog_messages = 0
        self.status = None
        self.acks = []

    def feed(self, topic, payload):
        kind, doc = validate(topic, payload)
        self.messages += 1
        if kind == "status":
            self.status = doc
            return
        if kind == "ack":
            self.acks.append(doc)
            return
        if kind not in BATCH_KINDS:
            return
        recs = schema.decode_batch(schema.TYPE_OF_KIND[kind], doc)
        if doc.get("bl"):
            self.backlog_messages += 1
        for r in recs:
            if r["seq"] in self.records:
                self.duplicates += 1
            else:
                self.records[r["seq"]] = (kind, r)
        if kind == "pos" and not doc.get("bl"):
            last = recs[-1]["seq"]
            if not self.live_positions or last > self.live_positions[-1]:
                self.live_positions.append(last)

    def seqs(self):
        return sorted(self.records)

    def gaps(self, first, last):
        """Sequence numbers in first..last never received."""
        return [s for s in range(first, last + 1) if s not in self.records]
