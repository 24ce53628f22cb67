"""Shared by the benches that drive the simulated bus (bench_sim.py,
bench_broker_faults.py): run one tools/sim.py Run to its end against its
own broker and hand back what the figures are made of. Not a bench itself."""

import time


def finish(run, broker, device):
    """Run `run` (a sim.Run) to its end, then stop `broker`. Returns (firmware
    exit code, wall seconds, the firmware's end report ({} when it gave none),
    the broker's view of `device` (None when nothing arrived))."""
    t0 = time.monotonic()
    try:
        rc = run.run()
    finally:
        broker.stop()
    wall = time.monotonic() - t0
    return rc, wall, run.truth or {}, run.fleet.vehicles.get(device)
