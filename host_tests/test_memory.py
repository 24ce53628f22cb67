"""Memory: the whole bus role runs four simulated hours of a busy route on
the unix port, delivers everything, and its live data stays bounded.

The firmware's live data (heap in use after a collection, minus what the
code, the fakes and the simulator's plan take) must stay under 64 KiB and
must not grow from hour to hour. Objects on this 64-bit port are about twice
their ESP32 size, so a board needs roughly half. The heap itself is set
generously (code + 256 KiB): the simulator shares it and fragments it in
ways a board would not, and the code itself belongs in flash on a board
(frozen modules; see docs/memory.md).
"""

import sys

from harness import paths

sys.path.insert(0, paths.TOOLS)
import sim  # noqa: E402

DATA_BUDGET = 64 * 1024
HEAP = 256 * 1024


def test_bus_role_runs_four_hours_in_its_heap_budget(broker_factory):
    args = sim.parse(["--accel", "0", "--no-table", "--device", "bus-mem", "--laps", "12", "--hours", "4",
                      "--busy", "2", "--heap", "+%d" % HEAP, "--outage-after", "12", "--outage-stops", "4",
                      "--gps-loss-at", "3000", "--seed", "11"])
    r = sim.Run(args, broker_factory(persistence=True), out=None)
    rc = r.run()
    assert rc == 0, "\n".join(l for l in r.lines if not l.startswith("SIM t "))[-3000:]
    assert r.truth["seconds"] >= 4 * 3600
    assert r.check() == []
    data_peak = r.truth["peak_heap"] - r.run_baseline
    print("bus role, 4 h: heap %s, code+sim %d, data peak %d bytes" % (r.heap, r.run_baseline, data_peak))
    hourly = [h - r.run_baseline for h in r.hourly]
    print("live data at each hour:", hourly)
    assert data_peak < DATA_BUDGET
    assert len(hourly) >= 3
    assert max(hourly[1:]) - hourly[0] < 8 * 1024, hourly  # no leak over the hours
    assert len(r.truth["stops"]) >= 60  # a busy route: many stop visits in four hours
