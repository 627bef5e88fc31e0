"""The online summary's figures on edge-case runs, recomputed from the run itself."""

from __future__ import annotations

import math

from allocator.online.events import TaskSpec
from allocator.online.simulator import Simulator
from allocator.online.workload import from_specs
from models import Agent


def test_rates_over_a_zero_length_run_are_zero_not_huge() -> None:
    """Two zero-work tasks end at their arrival: no time passed, so no rate to report
    (throughput was completed / 1e-12 = 2e12 tasks per time unit)."""
    wl = from_specs([(5.0, TaskSpec(id="t0", work=0.0)), (5.0, TaskSpec(id="t1", work=0.0))],
                    [Agent(id="a")])
    row = Simulator(wl, "edf+stealing").run().row
    assert row["completed"] == 2
    for k in ("throughput", "steal_rate", "migration_rate"):
        assert row[k] == 0.0, (k, row[k])


def test_throughput_is_completions_per_time_unit_of_the_run() -> None:
    wl = from_specs([(2.0, TaskSpec(id="t0", work=1.0)), (3.0, TaskSpec(id="t1", work=4.0))],
                    [Agent(id="a")])
    row = Simulator(wl, "fifo").run().row
    # first submission at 2, last end at 3 + 4 = 7: 2 completions over 5 time units
    assert math.isclose(row["throughput"], 2 / 5)
