"""Host side of telemetry schema v2: validate, decode and rebuild a device's stream.

    validate(topic, payload)  -> (kind, doc); raises jsonschema.ValidationError / ValueError
    decode(topic, payload)    -> (kind, device_id, records, doc) for batch kinds
    Stream                    -> feed messages; de-duplicates by (epoch, seq), tracks gaps,
                                 moves the vehicle only on live (non-backlog) positions

v1 messages (no "e") are accepted as epoch 0. A Stream is one device's, so
its key (e, seq) is the schema's (device, e, seq).

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
    """Rebuild one device's records from messages in arrival order.

    records: (e, seq) -> (kind, record); a new epoch (a wiped queue, a
    replaced board) starts its seqs again without losing or dropping a record.
    epoch: the epoch of the newest batch; seqs() and gaps() look at it unless
    told another."""

    def __init__(self):
        self.records = {}  # (e, seq) -> (kind, record)
        self.duplicates = 0
        self.messages = 0
        self.epoch = None  # epoch of the last batch received
        self._pos_epoch = None  # epoch of the last position batch
        self.epochs = []  # every epoch seen, in order of first arrival
        self.live_positions = []  # seqs of positions that moved the vehicle (in the current epoch)
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
        e = doc.get("e", 0)
        if e not in self.epochs:
            self.epochs.append(e)
        self.epoch = e
        if kind == "pos" and e != self._pos_epoch:
            # Another queue (new board, wiped queue): its seqs start afresh, and
            # "only forward in seq" restarts with them.
            self._pos_epoch = e
            self.live_positions = []
        if doc.get("bl"):
            self.backlog_messages += 1
        for r in recs:
            key = (e, r["seq"])
            if key in self.records:
                self.duplicates += 1
            else:
                self.records[key] = (kind, r)
        if kind == "pos" and not doc.get("bl"):
            last = recs[-1]["seq"]
            if not self.live_positions or last > self.live_positions[-1]:
                self.live_positions.append(last)

    def seqs(self, e=None):
        """Sorted seqs received in epoch e (default: the current one)."""
        e = self.epoch if e is None else e
        return sorted(s for k, s in self.records if k == e)

    def gaps(self, first, last, e=None):
        """Sequence numbers in first..last never received in epoch e (default: current)."""
        e = self.epoch if e is None else e
        return [s for s in range(first, last + 1) if (e, s) not in self.records]
