"""Schema v2 on the consumer side: (device, epoch, seq) de-duplication,
v1 messages still accepted, the status's epoch and safe-mode reason."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import jsonschema  # noqa: E402
import pytest  # noqa: E402

import telemetry  # noqa: E402
from transit import records as R, schema  # noqa: E402

T0 = 1795766400


def _batch(rtype, seqs, epoch, backlog=False):
    recs = []
    for i, s in enumerate(seqs):
        if rtype == R.POS:
            p = R.pack_position(16821234 + i, 100262345, 0, 0, 0, 9, 10, 1, i)
        else:
            p = R.pack_event(R.EV_BOOT, 0, 1)
        recs.append((s, rtype, 0, T0 + i, p))
    w = schema.Writer(bytearray(4096))
    schema.encode_batch(w, "bus-0302", rtype, recs, backlog, epoch)
    return w.text()


def test_a_replacement_board_restarting_at_seq_1_loses_nothing():
    # Finding 4: the old board's records and the new board's share seqs 1..3;
    # de-duplicating by seq alone dropped the new board's records.
    st = telemetry.Stream()
    st.feed("phs/bus/bus-0302/pos", _batch(R.POS, [1, 2, 3], 111))
    st.feed("phs/bus/bus-0302/pos", _batch(R.POS, [1, 2, 3], 222))
    assert st.duplicates == 0
    assert len(st.records) == 6
    assert st.epochs == [111, 222] and st.epoch == 222
    assert st.seqs() == [1, 2, 3] and st.seqs(111) == [1, 2, 3]
    assert st.live_positions == [3]  # the new board's map position is not "behind" the old one's


def test_a_resent_batch_in_the_same_epoch_is_a_duplicate():
    st = telemetry.Stream()
    st.feed("phs/bus/bus-0302/event", _batch(R.EVENT, [5, 6], 9))
    st.feed("phs/bus/bus-0302/event", _batch(R.EVENT, [5, 6], 9))
    assert st.duplicates == 2 and st.seqs() == [5, 6] and st.gaps(5, 7) == [7]


def test_v1_messages_are_accepted_as_epoch_zero():
    doc = json.loads(_batch(R.POS, [10, 11], 5))
    doc["v"] = 1
    del doc["e"]
    st = telemetry.Stream()
    st.feed("phs/bus/bus-0302/pos", json.dumps(doc).encode())
    assert st.epoch == 0 and st.seqs(0) == [10, 11]
    assert st.records[(0, 10)][1]["e"] == 0


def test_a_v2_batch_without_its_epoch_is_invalid():
    doc = json.loads(_batch(R.POS, [10], 5))
    del doc["e"]
    with pytest.raises(jsonschema.ValidationError):
        telemetry.validate("phs/bus/bus-0302/pos", json.dumps(doc))


def test_status_v2_carries_the_epoch_and_the_safe_mode_reason():
    doc = {"v": 2, "d": "bus-0302", "e": 7, "on": True, "t": T0, "fw": "0.2", "up_s": 3, "rst": "power_on",
           "heap": 30000, "safe": {"why": "the application failed 3 times in a row; last error: OSError 28"}}
    telemetry.validate("phs/bus/bus-0302/status", json.dumps(doc))
    del doc["e"]
    with pytest.raises(jsonschema.ValidationError):
        telemetry.validate("phs/bus/bus-0302/status", json.dumps(doc))
    # v1 statuses (no epoch) still validate
    doc["v"] = 1
    del doc["safe"]
    telemetry.validate("phs/bus/bus-0302/status", json.dumps(doc))


def test_commands_v2_need_an_id_and_an_expiry():
    v = telemetry.validator("cmd")
    v.validate({"id": "c-1", "op": "ping", "exp": T0})
    v.validate({"id": "c-2", "op": "set", "key": "bus.route", "val": "R7", "exp": T0})
    for bad in ({"op": "ping", "exp": T0}, {"id": "c-3", "op": "ping"}, {"id": "", "op": "ping", "exp": T0},
                {"id": "x" * 33, "op": "ping", "exp": T0}, {"id": "c-4", "op": "set", "exp": T0, "key": "k"}):
        with pytest.raises(jsonschema.ValidationError):
            v.validate(bad)
