"""Depot gate counters (firmware/transit/gates.py): the door FSM counting
all the time, summed into wall-clock aligned periods."""

import time

import machine
from fakeclock import CLOCK
from transit import gates
from transit.gates import Gates

P = machine.Pin
T0_UNIX = 1795768200  # 2026-11-27 08:30:00 UTC, a multiple of 300


def setup(n=2, unix_s=T0_UNIX, config=None):
    CLOCK.set_virtual(0)
    pins = [(P(40 + 2 * i, P.IN, P.PULL_UP), P(41 + 2 * i, P.IN, P.PULL_UP), None, True) for i in range(n)]
    return Gates(pins, config, unix_s)


def walk(t_ms, gate=0, inward=True):
    a, b = 40 + 2 * gate, 41 + 2 * gate
    f, s = (a, b) if inward else (b, a)
    machine.inject_timeline([((t_ms + dt) * 1000, pid, v) for dt, pid, v in
                             ((0, f, 0), (150, s, 0), (350, f, 1), (500, s, 1))])


def run(g, until_ms, unix0=T0_UNIX, known=True):
    while CLOCK.now < until_ms * 1000:
        time.sleep_ms(50)
        g.step(unix0 + CLOCK.now // 1000000, known)


def test_periods_hold_in_and_out_per_gate_as_deltas():
    g = setup()
    walk(1000)
    walk(3000, inward=False)
    walk(5000, gate=1)
    run(g, 299000)
    assert g.pop() is None
    walk(299500)
    walk(302000, gate=1, inward=False)
    run(g, 610000)
    r1, r2 = g.pop(), g.pop()
    assert g.pop() is None
    assert (r1.period_start_unix, r1.period_end_unix, r1.gates, r1.flags) == (T0_UNIX, T0_UNIX + 300,
                                                                              [(1, 1), (1, 0)], 0)
    assert (r2.period_start_unix, r2.gates) == (T0_UNIX + 300, [(1, 0), (0, 1)])
    assert g.totals() == [(2, 1), (1, 1)]


def test_first_period_after_boot_is_partial_and_aligned_to_the_clock():
    g = setup(1, unix_s=T0_UNIX + 100)
    walk(1000)
    run(g, 201000, unix0=T0_UNIX + 100)
    r = g.pop()
    assert (r.period_start_unix, r.period_s, r.gates, r.flags) == (T0_UNIX, 300, [(1, 0)], gates.G_PARTIAL)


def test_flags_show_an_unset_clock_a_faulty_beam_and_lost_edges():
    g = setup(1, config={"fault_ms": 60000, "period_s": 120})
    machine.inject_timeline([(1000000, 40, 0)])  # beam A blocked for good
    run(g, 120000, known=False)
    r = g.pop()
    assert r.flags == gates.G_FAULT | gates.G_NO_TIME
    assert g.health()["faults"] == [1]
    g.bank.fsms[0].lost_edges += 1
    run(g, 241000)
    assert g.pop().flags == gates.G_FAULT | gates.G_LOST
    assert not g.busy()
