"""Bus doors (firmware/transit/doors.py): counting window, busy() contract,
stalls and the PCNT cross-check, on the fake ESP32 pins.

Sensors are active-low as on the board: beam blocked = pin low, door open
= switch low. Times in ms from the start of virtual time."""

import time

import machine
from fakeclock import CLOCK
from transit.doors import Doors, pcnt_encoders, ring_for, DEFAULTS

PINS = ((25, 26, 27), (32, 33, 14))
P = machine.Pin
MP_HEAP = "96K"  # the timelines of the stall tests


def setup(n=1, config=None, pcnt=False):
    CLOCK.set_virtual(0)
    pins = [(P(a, P.IN, P.PULL_UP), P(b, P.IN, P.PULL_UP), P(s, P.IN, P.PULL_UP), True) for a, b, s in PINS[:n]]
    return Doors(pins, config, encoders=pcnt_encoders(machine, pins) if pcnt else None)


def crossing(t_ms, door=0, inward=True, bounce=False):
    """Timeline events of one person crossing: A, AB, B, none (reverse when alighting)."""
    a, b, _ = PINS[door]
    first, second = (a, b) if inward else (b, a)
    ev = [(t_ms, first, 0), (t_ms + 120, second, 0), (t_ms + 330, first, 1), (t_ms + 460, second, 1)]
    if bounce:
        ev += [(t_ms + 2, first, 1), (t_ms + 4, first, 0), (t_ms + 462, second, 0), (t_ms + 465, second, 1)]
    return ev


def door(t_open_ms, t_close_ms, d=0):
    s = PINS[d][2]
    return [(t_open_ms, s, 0), (t_close_ms, s, 1)]


def inject(events):
    machine.inject_timeline([(t * 1000, pid, v) for t, pid, v in events])


def run(doors, until_ms, step_ms=20):
    while CLOCK.now < until_ms * 1000:
        time.sleep_ms(step_ms)
        doors.step()


def test_crossings_count_while_open_and_in_grace_only():
    doors = setup()
    grace = DEFAULTS["grace_ms"]
    inject(door(1000, 5000) + crossing(100) + crossing(2000) + crossing(5000 + grace - 1000, inward=False)
           + crossing(5000 + grace + 2000))
    run(doors, 12000)
    assert doors.counts(0) == (1, 1)
    assert doors.doors[0].outside == 2
    assert doors.doors[0].openings == 1


def test_busy_while_open_in_grace_or_edges_queued_and_free_otherwise():
    doors = setup()
    assert not doors.busy()
    inject(door(1000, 3000))
    run(doors, 1200)
    assert doors.busy() and doors.is_open(0) and doors.active(0)
    run(doors, 3200)
    assert doors.busy() and not doors.is_open(0) and doors.active(0)  # grace
    run(doors, 3100 + DEFAULTS["grace_ms"] + 100)
    assert not doors.busy() and not doors.active(0)
    inject(crossing(6500))
    run(doors, 6500)
    doors.bank.ring.push(0, 1, time.ticks_us())  # an edge not yet drained
    assert doors.busy()
    doors.step()
    assert not doors.busy()


def test_switch_blip_shorter_than_its_debounce_does_not_open_the_door():
    doors = setup()
    inject([(1000, 27, 0), (1030, 27, 1)])
    run(doors, 2000, step_ms=10)
    assert doors.doors[0].openings == 0 and not doors.busy()


def test_two_doors_count_independently():
    doors = setup(2)
    inject(door(500, 8000, 0) + door(500, 8000, 1) + crossing(1000, 0) + crossing(1100, 1, inward=False)
           + crossing(2000, 1, inward=False) + crossing(3000, 0, bounce=True))
    run(doors, 9000)
    assert doors.counts(0) == (2, 0)
    assert doors.counts(1) == (0, 2)


def test_health_reports_lingering_faults_and_overflows_per_door():
    doors = setup(1, {"fault_ms": 10000})
    inject(door(0, 60000) + [(1000, 25, 0), (4000, 25, 1), (20000, 26, 0)])
    run(doors, 40000, step_ms=50)
    size = doors.bank.ring.size  # ring_for(the longest blocking call) unless configured
    n = size + 10
    for _ in range(n):
        doors.bank.ring.push(0, 1, 0)
    h = doors.health()
    assert h["lingering"] == [2]
    assert h["faults"] == [1] and h["faulty"] == [1] and doors.any_fault()
    assert h["irq_overflows"] == n - (size - 1)


def test_the_edge_ring_holds_the_longest_blocking_call():
    # 10 callbacks a second inside a blocking call, 8 pending, a quarter spare.
    assert ring_for(10000) == 144 and ring_for(24000) == 320
    assert setup(1).bank.ring.size == ring_for(24000)


def test_a_loop_that_defers_blocking_calls_while_busy_loses_nothing():
    doors = setup(2)
    inject(door(3000, 9000, 0) + door(3000, 9000, 1))
    for i in range(4):
        inject(crossing(3600 + 1300 * i, 0, bounce=True) + crossing(3700 + 1300 * i, 1, inward=False, bounce=True))
    deferred = 0
    while CLOCK.now < 16000000:
        if doors.busy():
            deferred += 1  # a publish is due every loop: it waits
        else:
            machine.stall(300, 0)  # a flash commit or reconnect while the doors are quiet
        time.sleep_ms(20)
        doors.step()
    assert doors.counts(0) == (4, 0) and doors.counts(1) == (0, 4)
    assert machine.scheduler().dropped == 0
    assert deferred > 300


def _two_crossings_each_way_through_a_blocking_call(pcnt=False):
    """Both doors open; two boardings at door 0 and two alightings at door 1
    happen inside a 2.5 s call that services no callbacks (a TLS handshake)."""
    doors = setup(2, pcnt=pcnt)
    ev = door(500, 9000, 0) + door(500, 9000, 1)
    for i in range(2):
        ev += crossing(1100 + 800 * i, 0, bounce=True) + crossing(1150 + 800 * i, 1, inward=False, bounce=True)
    inject(ev)
    run(doors, 1000)
    machine.stall(2500, 0)
    run(doors, 12000)
    return doors


def test_a_blocking_call_with_doors_open_loses_crossings_as_errors_not_passengers():
    doors = _two_crossings_each_way_through_a_blocking_call()
    assert machine.scheduler().dropped > 0
    b0, a0 = doors.counts(0)
    b1, a1 = doors.counts(1)
    assert b0 <= 2 and a0 == 0 and b1 == 0 and a1 <= 2
    assert b0 + a1 < 4
    assert doors.lost(0) + doors.lost(1) > 0


def test_pcnt_cross_check_recovers_crossings_lost_in_a_blocking_call():
    doors = _two_crossings_each_way_through_a_blocking_call(pcnt=True)
    assert machine.scheduler().dropped > 0
    assert doors.counts(0) == (2, 0) and doors.counts(1) == (0, 2)
    assert sum(doors.health()["recovered"]) > 0


def test_fake_pcnt_encoder_counts_quadrature_steps_and_cancels_bounce_and_step_backs():
    CLOCK.set_virtual(0)
    pa, pb = P(25, P.IN, P.PULL_UP), P(26, P.IN, P.PULL_UP)
    enc = machine.Encoder(0, pa, pb, phases=4)
    inject(crossing(100, bounce=True) + crossing(1000, inward=False) + [(2000, 25, 0), (2300, 25, 1)])
    time.sleep_ms(600)
    assert enc.value() == 4
    time.sleep_ms(2000)
    assert (enc.value(), enc.errors) == (0, 0)


# --- issue 18: counting through blocking calls ------------------------------


def test_a_door_opening_inside_a_socket_wait_counts_its_crossings():
    """Door open 10-20 s, a boarding 11.0-11.46 s, the loop blocked in a
    socket wait from 9.5 to 12.5 s: the crossing is judged by the door state
    at its own time, not at the time the loop drains it."""
    doors = setup()
    inject(door(10000, 20000) + crossing(11000))
    run(doors, 9500)
    machine.stall(3000, 100)
    run(doors, 26000)
    assert doors.counts(0) == (1, 0)
    assert doors.doors[0].outside == 0 and doors.doors[0].openings == 1


def test_twenty_boardings_inside_a_ten_second_socket_wait_all_count_without_overflow():
    doors = setup()
    ev = door(500, 13000)
    for i in range(20):
        ev += crossing(1000 + 500 * i)
    inject(ev)
    run(doors, 600)
    machine.stall(10000, 100)
    run(doors, 20000)
    assert machine.scheduler().dropped == 0
    assert doors.bank.ring.overflows == 0
    assert doors.counts(0) == (20, 0)


def _inject_us(events):
    machine.inject_timeline(events)


def test_on_time_bounce_and_coincident_doors_are_neither_late_nor_lost():
    """Bounce a few hundred microseconds apart, and two doors whose edges come
    within 300 us of each other, delivered on time: no 'late' edges, no
    'full bunch', nothing lost (so no Q_LOST on the visit)."""
    doors = setup(2)
    ev = [(t * 1000, p, v) for t, p, v in door(500, 9000, 0) + door(500, 9000, 1)]
    for k in range(3):
        for d in range(2):
            for t, p, v in crossing(1000 + 1500 * k, d):
                t_us = t * 1000 + 300 * d  # the other door 300 us later
                ev.append((t_us, p, v))
                ev += [(t_us + 200, p, 1 - v), (t_us + 450, p, v)]  # bounce
    _inject_us(ev)
    run(doors, 12000)
    assert doors.counts(0) == (3, 0) and doors.counts(1) == (3, 0)
    assert [f.late for f in doors.bank.fsms] == [0, 0]
    assert doors.bank.full_bunches == 0
    assert doors.lost(0) == 0 and doors.lost(1) == 0


def test_a_door_switch_edge_dropped_by_the_full_queue_is_seen_in_the_beams_snapshots():
    """Bounce fills the 8-deep callback queue inside a blocking call just as
    the door opens: the switch's own callback is dropped, but every beam
    callback reads the switch too, so the door opens and the boarding counts."""
    doors = setup()
    a = PINS[0][0]
    ev = [(1000, a, 0)] + [(1000 + k, a, k & 1) for k in range(1, 9)]  # beam A flickers
    ev += [(1020, 27, 0), (9000, 27, 1)] + crossing(3000)
    inject(ev)
    run(doors, 900)
    machine.stall(4000, 100)
    run(doors, 14000)
    assert machine.scheduler().dropped > 0
    assert doors.doors[0].switch_edges == 1  # only the closing edge came through
    assert doors.doors[0].openings == 1
    assert doors.counts(0) == (1, 0) and doors.doors[0].outside == 0


def test_health_shows_chatter_and_a_door_switch_that_never_changes():
    doors = setup(2)
    ev = []
    for k in range(10):
        t = 1000 + 6000 * k
        ev += door(t, t + 4000, 0) + crossing(t + 1000, 0, bounce=True)
    inject(ev)
    run(doors, 65000)
    h = doors.health()
    assert h["openings"] == [10, 0]
    assert h["switch_stuck"] == [0, 1]
    assert h["chatter_pm"][0] > 100 and h["chatter_pm"][1] == 0
    assert h["late"] == [0, 0] and h["ring_peak"] >= 1


def test_inside_a_blocking_call_every_serviced_callback_samples_every_door():
    """Door 1's beam A chatters through a 9.4 s socket wait and keeps the
    8-deep callback queue full, so door 0's own edges are dropped; the board
    still runs one callback per 100 ms, and each reads every door's pins:
    door 0's two boardings and one alighting are seen in door 1's callbacks."""
    doors = setup(2, {"ring_size": 128})  # 9.4 s at 10 callbacks a second
    a1 = PINS[1][0]
    ev = door(500, 13000, 0) + door(500, 13000, 1)
    ev += [(1000 + 50 * k, a1, k & 1) for k in range(96)]  # 4.8 s of chatter, ends clear
    ev += crossing(2000) + crossing(3500) + crossing(5000, inward=False)
    inject(ev)
    run(doors, 600)
    machine.stall(9400, 100)
    run(doors, 20000)
    assert machine.scheduler().dropped > 50
    assert doors.counts(0) == (2, 1)
    assert doors.counts(1) == (0, 0)
    assert doors.bank.samples > 10


class _NoEncoderMachine:
    """A firmware without machine.Encoder (before 1.27, or built without it)."""


class _FailingEncoderMachine:
    """machine.Encoder exists but unit 1 cannot start (e.g. its PCNT unit is taken)."""

    @staticmethod
    def Encoder(unit, a, b, phases=4):
        if unit == 1:
            raise OSError(16)
        return machine.Encoder(unit, a, b, phases=phases)


class _SilentEncoder:
    """An encoder that starts but never counts (wired to the wrong pins)."""

    def value(self):
        return 0


def _pins(n):
    CLOCK.set_virtual(0)
    return [(P(a, P.IN, P.PULL_UP), P(b, P.IN, P.PULL_UP), P(s, P.IN, P.PULL_UP), True) for a, b, s in PINS[:n]]


def test_a_bus_without_a_working_pcnt_says_so_per_door_in_its_health():
    """PCNT is the supported configuration: a door without one is flagged
    (1: none, the firmware lacks machine.Encoder or it failed to start, the
    failure counted), and a door with one reports nothing."""
    pins = _pins(2)
    doors = Doors(pins, encoders=pcnt_encoders(_NoEncoderMachine, pins))
    assert doors.health()["no_pcnt"] == [1, 1]
    pins = _pins(2)
    doors = Doors(pins, encoders=pcnt_encoders(_FailingEncoderMachine, pins))
    h = doors.health()
    assert h["no_pcnt"] == [0, 1] and h["pcnt_errors"] == 1
    pins = _pins(2)
    doors = Doors(pins, encoders=pcnt_encoders(machine, pins))
    ev = door(500, 4000, 0) + crossing(1000, 0)
    inject(ev)
    run(doors, 6000)
    h = doors.health()
    assert doors.counts(0) == (1, 0)
    assert h["no_pcnt"] == [0, 0] and h["pcnt_errors"] == 0


def test_a_pcnt_encoder_that_never_counts_while_its_door_does_is_flagged():
    pins = _pins(1)
    doors = Doors(pins, encoders=[_SilentEncoder()])
    ev = door(500, 12000)
    for i in range(10):
        ev += crossing(1000 + 1000 * i)
    inject(ev)
    run(doors, 14000)
    assert doors.counts(0) == (10, 0)
    assert doors.health()["no_pcnt"] == [2]
