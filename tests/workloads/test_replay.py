"""Replaying hand-made traces through the executor core: known waits and orderings."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from allocator.online.events import TaskSpec
from allocator.workloads.replay import replay, utilisation_series
from models import Priority


def spec(i: str, work: float, deadline: float | None = None, tenant: str | None = None,
         priority: Priority = Priority.NORMAL) -> TaskSpec:
    return TaskSpec(id=i, work=work, deadline=deadline, tenant=tenant, priority=priority)


# One long task and three short ones at t=0 on two agents.
BURST = [(0.0, spec("A", 10)), (0.0, spec("B", 1)), (0.0, spec("C", 1)), (0.0, spec("D", 1))]


@pytest.mark.parametrize(("policy", "waits"), [
    pytest.param("fifo", {"A": 0, "B": 0, "C": 1, "D": 2}, id="global queue: shorts share a1"),
    pytest.param("round-robin", {"A": 0, "B": 0, "C": 10, "D": 1},
                 id="round-robin: C stuck behind A"),
    pytest.param("jsq", {"A": 0, "B": 0, "C": 10, "D": 1},
                 id="jsq counts tasks, not work: C ties to a0"),
])
def test_waits_on_a_burst(policy: str, waits: dict[str, float]) -> None:
    r = replay(BURST, policy, agents=2, home="none")
    got = dict(zip(r.records["id"], r.records["wait"], strict=True))
    assert got == pytest.approx(waits)
    row = r.row()
    assert row["lost"] == 0 and row["duplicated"] == 0 and row["completed"] == 4


def test_fifo_beats_round_robin_on_mean_wait() -> None:
    fifo = replay(BURST, "fifo", agents=2).row()
    rr = replay(BURST, "round-robin", agents=2).row()
    assert fifo["mean_wait"] == pytest.approx(0.75)
    assert rr["mean_wait"] == pytest.approx(2.75)


# One agent busy until 1; then a long loose task and a short urgent one queue up.
URGENT = [(0.0, spec("W", 1)), (0.1, spec("X", 5, deadline=100)),
          (0.2, spec("Y", 1, deadline=3))]


def test_edf_meets_the_deadline_fifo_misses() -> None:
    fifo = replay(URGENT, "fifo", agents=1)
    edf = replay(URGENT, "edf", agents=1)
    assert fifo.row()["miss_rate"] == pytest.approx(0.5)  # Y ends at 7 > 3
    assert edf.row()["miss_rate"] == 0.0  # Y runs 1..2, X 2..7
    ends = dict(zip(edf.records["id"], edf.records["end"], strict=True))
    assert ends == pytest.approx({"W": 1, "Y": 2, "X": 7})
    assert fifo.miss_by_class() == {"normal": 0.5}


def test_priority_serves_critical_first() -> None:
    trace = [(0.0, spec("W", 1)), (0.1, spec("L", 1, priority=Priority.LOW)),
             (0.2, spec("C", 1, priority=Priority.CRITICAL))]
    r = replay(trace, "priority", agents=1)
    ends = dict(zip(r.records["id"], r.records["end"], strict=True))
    assert ends == pytest.approx({"W": 1, "C": 2, "L": 3})


def test_speeds_bounded_slowdown_and_tenant_fairness() -> None:
    trace = [(0.0, spec("a", 20, tenant="t1")), (0.0, spec("b", 20, tenant="t2"))]
    r = replay(trace, "fifo", agents=2, speeds=[1.0, 2.0])
    ends = dict(zip(r.records["id"], r.records["end"], strict=True))
    assert sorted(ends.values()) == pytest.approx([10.0, 20.0])
    row = r.row()
    # response/work: 20/20 = 1 and 10/20 -> max(1, .5) = 1: every tenant slowed alike
    assert row["mean_bounded_slowdown"] == pytest.approx(1.0)
    assert row["jain_tenants"] == pytest.approx(1.0)


def test_utilisation_series_integrates_busy_time() -> None:
    rec = pl.DataFrame({"start": [0.0, 0.0, 5.0], "end": [10.0, 5.0, 10.0]})
    edges, u = utilisation_series(rec, agents=4, bins=2)
    assert edges.tolist() == [0.0, 5.0]
    assert u == pytest.approx(np.array([0.5, 0.5]))


def test_same_seed_same_result() -> None:
    trace = [(float(i), spec(f"t{i}", 1 + (i * 7) % 5)) for i in range(60)]
    a = replay(trace, "p2c", agents=3, seed=4).records
    b = replay(trace, "p2c", agents=3, seed=4).records
    assert a.equals(b)


def test_row_has_the_simulate_json_keys_plus_replay_ones() -> None:
    from allocator.cli.simulate import JSON_KEYS

    row = replay(BURST, "fifo", agents=2).row()
    assert set(JSON_KEYS) <= set(row)
    assert {"mean_bounded_slowdown", "jain_tenants", "p95_wait", "mean_wait"} <= set(row)
