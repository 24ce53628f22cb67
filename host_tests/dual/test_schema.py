"""Telemetry schema v2: topics and exact bytes of batch messages.

Runs under CPython and under the MicroPython unix port; the JSON Schema
checks run under CPython only (jsonschema is a host package)."""

import json
import sys

from transit import records as R
from transit import schema

ON_MICROPYTHON = sys.implementation.name == "micropython"
T0 = 1700000000


def _pos(seq, i, ts=None, flags=0, sats=9):
    p = R.pack_position(16821234 + 300 * i, 100262345 - 200 * i, 833 + (i % 2), 900 + i, 450, sats, 12, 1, 40 * i)
    return (seq, R.POS, flags, T0 + 5 * i if ts is None else ts, p)


def _encode(rtype, recs, backlog=False, size=4096):
    w = schema.Writer(bytearray(size))
    schema.encode_batch(w, "bus-001", rtype, recs, backlog, 7)
    return w.text()


def test_topics_follow_root_role_device_kind():
    assert schema.topic("phs", "bus", "bus-001", "pos") == "phs/bus/bus-001/pos"
    assert schema.topic("phs", "depot", "depot-a", "status") == "phs/depot/depot-a/status"
    assert schema.parse_topic("phs/bus/bus-001/cmd") == ("phs", "bus", "bus-001", "cmd")
    for bad in ("phs/bus/bus-001", "phs/train/x/pos", "phs/bus//pos"):
        try:
            schema.parse_topic(bad)
        except ValueError:
            continue
        assert False, bad


def test_writer_int_writes_exact_digits_at_the_boundaries():
    w = schema.Writer(bytearray(80))
    for v in (0, 9, 10, -1, 127, 128, 2147483647, -2147483648, 4294967295):
        w.int(v)
        w.byte(44)
    assert w.text() == b"0,9,10,-1,127,128,2147483647,-2147483648,4294967295,"


def test_writer_refuses_to_write_past_its_end():
    w = schema.Writer(bytearray(8), end=6)
    w.raw(b"12345")
    for fn, arg in ((w.int, 10), (w.raw, b"xy")):
        try:
            fn(arg)
        except IndexError:
            continue
        assert False, "wrote past the end"
    w.byte(54)
    assert w.text() == b"123456"


def test_position_batch_exact_bytes_contiguous_and_evenly_spaced():
    got = _encode(R.POS, [_pos(10, 0), _pos(11, 1), _pos(12, 2)])
    assert got == (b'{"v":2,"d":"bus-001","e":7,"s":10,"t":1700000000,"n":3,"dt":5,'
                   b'"la":[16821234,300,300],"lo":[100262345,-200,-200],"sp":[833,834,833],'
                   b'"co":[900,1,1],"al":450,"sa":9,"hd":12,"rs":1,"od":[0,40,40]}')


def test_position_batch_with_gaps_irregular_times_flags_and_backlog():
    recs = [_pos(20, 0, flags=1, ts=7), _pos(23, 1, ts=T0), _pos(24, 2, ts=T0 + 7)]
    got = _encode(R.POS, recs, backlog=True)
    assert got == (b'{"v":2,"d":"bus-001","e":7,"s":20,"t":7,"bl":1,"n":3,"q":[0,3,1],'
                   b'"dt":[0,1699999993,7],"la":[16821234,300,300],"lo":[100262345,-200,-200],'
                   b'"sp":[833,834,833],"co":[900,1,1],"al":450,"sa":9,"hd":12,"rs":1,"od":[0,40,40],'
                   b'"f":[1,0,0]}')


def test_single_position_batch():
    got = _encode(R.POS, [_pos(5, 0)])
    assert got == (b'{"v":2,"d":"bus-001","e":7,"s":5,"t":1700000000,"n":1,"dt":0,"la":16821234,'
                   b'"lo":100262345,"sp":833,"co":900,"al":450,"sa":9,"hd":12,"rs":1,"od":0}')


def test_stop_event_count_and_roster_rows_exact_bytes():
    stop = R.pack_stop(7, T0 - 30, T0, 16821234, 100262345, 5000, 30, 12, 2, 0, [(3, 1), (0, 2)])
    assert _encode(R.STOP, [(50, R.STOP, 0, T0, stop)]) == (
        b'{"v":2,"d":"bus-001","e":7,"s":50,"t":1700000000,"r":[{"q":50,"t":1700000000,"id":7,'
        b'"to":1699999970,"tc":1700000000,"la":16821234,"lo":100262345,"od":5000,"dw":30,"ld":12,'
        b'"oc":2,"qf":0,"dr":[[3,1],[0,2]]}]}')
    ev = R.pack_event(R.EV_BOOT, 0, -3, 0, 0)
    assert _encode(R.EVENT, [(51, R.EVENT, 1, 33, ev)]) == (
        b'{"v":2,"d":"bus-001","e":7,"s":51,"t":33,"r":[{"q":51,"t":33,"f":1,"k":1,"i":0,"va":-3,"la":0,"lo":0}]}')
    cnt = R.pack_count(T0, 300, 0, [(4, 5)])
    assert _encode(R.COUNT, [(52, R.COUNT, 0, T0, cnt)]) == (
        b'{"v":2,"d":"bus-001","e":7,"s":52,"t":1700000000,"r":[{"q":52,"t":1700000000,"ps":1700000000,'
        b'"pl":300,"cf":0,"g":[[4,5]]}]}')
    ros = R.pack_roster(1, -70, 1, "bus-017")
    assert _encode(R.ROSTER, [(53, R.ROSTER, 0, T0, ros)]) == (
        b'{"v":2,"d":"bus-001","e":7,"s":53,"t":1700000000,"r":[{"q":53,"t":1700000000,"k":1,"rs":-70,'
        b'"src":1,"bus":"bus-017"}]}')


def test_the_epoch_goes_in_every_batch_as_given_digits_or_as_an_integer():
    # The uplink renders a large epoch once (a big int on the ESP32) and passes the digits.
    w = schema.Writer(bytearray(512))
    schema.encode_batch(w, "bus-001", R.POS, [_pos(1, 0)], False, b"4294967295")
    doc = json.loads(w.text())
    assert doc["v"] == 2 and doc["e"] == 4294967295
    out = schema.decode_batch(R.POS, doc)
    assert out[0]["e"] == 4294967295 and out[0]["seq"] == 1
    ev = json.loads(_encode(R.EVENT, [(51, R.EVENT, 1, 33, R.pack_event(R.EV_BOOT))]))
    assert schema.decode_batch(R.EVENT, ev)[0]["e"] == 7


def test_a_v1_batch_decodes_with_epoch_zero():
    doc = json.loads(_encode(R.POS, [_pos(10, 0)]))
    doc["v"] = 1
    del doc["e"]
    assert schema.decode_batch(R.POS, doc)[0]["e"] == 0


def test_header_with_a_digit_epoch_allocates_nothing():
    if not ON_MICROPYTHON:
        return
    import micropython
    w = schema.Writer(bytearray(128))
    rec = _pos(1, 0)
    e = b"4294967295"
    micropython.heap_lock()
    try:
        schema._header(w, b'"bus-001"', e, rec, True)
    finally:
        micropython.heap_unlock()
    assert w.text() == b'{"v":2,"d":"bus-001","e":4294967295,"s":1,"t":1700000000,"bl":1'


def test_decode_restores_every_position_field():
    recs = [_pos(100 + i + (i > 10), i, sats=9 + i % 3) for i in range(20)]
    doc = json.loads(_encode(R.POS, recs))
    out = schema.decode_batch(R.POS, doc)
    assert [r["seq"] for r in out] == [r[0] for r in recs]
    assert [r["ts"] for r in out] == [r[3] for r in recs]
    assert [tuple(r[f] for f in schema.POS_FIELDS) for r in out] == [R.unpack_position(r[4]) for r in recs]


def test_forty_positions_cost_under_forty_bytes_each_on_the_wire():
    recs = [_pos(i, i) for i in range(40)]
    body = _encode(R.POS, recs)
    topic = schema.topic("phs", "bus", "bus-001", "pos")
    wire = 1 + 2 + 2 + len(topic) + 2 + len(body)  # PUBLISH header, topic, packet id, payload
    assert wire // 40 < 40, wire


def test_a_full_buffer_raises_index_error_instead_of_a_truncated_message():
    recs = [_pos(i, i) for i in range(40)]
    try:
        _encode(R.POS, recs, size=300)
    except IndexError:
        return
    assert False, "a 40-position batch cannot fit 300 bytes"


def test_empty_batch_is_refused():
    try:
        _encode(R.POS, [])
    except ValueError:
        return
    assert False


def test_writer_int_allocates_nothing():
    if not ON_MICROPYTHON:
        return
    import micropython
    w = schema.Writer(bytearray(64))
    micropython.heap_lock()
    try:
        w.int(-123456789)
        w.int(0)
        w.byte(44)
    finally:
        micropython.heap_unlock()
    assert w.pos == 12


def test_offline_and_ack_documents():
    assert json.loads(schema.offline_doc("bus-001")) == {"v": 2, "d": "bus-001", "on": False}
    assert json.loads(schema.ack_doc("bus-001", "x", "get", False, error="bad")) == {
        "v": 2, "d": "bus-001", "id": "x", "op": "get", "ok": False, "err": "bad"}


def test_every_kind_validates_against_its_json_schema():
    if ON_MICROPYTHON:
        return
    import telemetry
    stop = R.pack_stop(7, T0 - 30, T0, 16821234, 100262345, 5000, 30, 12, 2, 0, [(3, 1)])
    msgs = [
        ("pos", _encode(R.POS, [_pos(i, i) for i in range(5)])),
        ("pos", _encode(R.POS, [_pos(20, 0, flags=1, ts=7), _pos(23, 1)], backlog=True)),
        ("stop", _encode(R.STOP, [(50, R.STOP, 0, T0, stop)])),
        ("event", _encode(R.EVENT, [(51, R.EVENT, 1, 33, R.pack_event(R.EV_BOOT))])),
        ("count", _encode(R.COUNT, [(52, R.COUNT, 0, T0, R.pack_count(T0, 300, 0, [(1, 2)]))])),
        ("roster", _encode(R.ROSTER, [(53, R.ROSTER, 0, T0, R.pack_roster(2, -80, 2, "bus-9"))])),
        ("status", schema.offline_doc("bus-001").encode()),
        ("ack", schema.ack_doc("bus-001", 1, "ping", True, result="pong").encode()),
    ]
    for kind, payload in msgs:
        assert telemetry.validate("phs/bus/bus-001/" + kind, payload)[0] == kind
    try:
        telemetry.validate("phs/bus/bus-002/pos", msgs[0][1])
    except ValueError as e:
        assert "does not match the topic" in str(e)
    else:
        assert False, "a batch under another device's topic must not validate"


def test_byte_key_tables_match_the_keys():
    """The literal byte tables (kept in flash when frozen) say what POS_COLUMNS and ROW_KEYS say."""
    assert schema._POS_KEYS_B == tuple((',"' + k + '":').encode() for k, _ in schema.POS_COLUMNS)
    for t, keys in schema.ROW_KEYS.items():
        assert schema._ROW_KEYS_B[t] == tuple(k.encode() for k in keys), t
    assert [t for t in range(len(schema._ROW_KEYS_B)) if schema._ROW_KEYS_B[t]] == sorted(schema.ROW_KEYS)
