"""Replaying hand-made traces through the executor core: known waits and orderings."""

from __future__ import annotations

from pathlib import Path

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


# -- the replay is the simulator's run ------------------------------------------------------

TRACE = [(float(i // 3), spec(f"j{i}", 1 + (i * 7) % 5, deadline=i + 6.0,
                              tenant=("u1", "u2", None)[i % 3])) for i in range(90)]


@pytest.mark.parametrize("policy", ["fifo", "jsq", "p2c", "edf+stealing", "wfq"])
def test_replay_is_a_simulator_run_of_the_converted_trace(policy: str) -> None:
    """One loop: the simulator on `to_online_workload(trace)` gives the replay's row."""
    from allocator.online.simulator import Simulator
    from allocator.workloads.replay import to_online_workload

    r = replay(TRACE, policy, agents=3, seed=5)
    wl = to_online_workload(TRACE, agents=3)
    assert wl.ids == [s.id for _, s in sorted(TRACE, key=lambda x: x[0])]
    assert wl.tenant_names == ["u1", "u2"]
    row = Simulator(wl, policy, seed=5).run().row
    skip = {"wall_s", "events_per_s", "rejected_after_burst"}
    assert {k: v for k, v in row.items() if k not in skip} == {
        k: v for k, v in r.core.items() if k not in skip}
    assert r.row()["completed"] == r.records.filter(pl.col("outcome") == "complete").height
    # trace tenants keep their names (flow_weight.<name> applies); no tenant stays none
    assert set(r.records["tenant"].to_list()) == {"u1", "u2", None}


def test_completion_before_arrival_at_the_same_instant() -> None:
    """An agent freed at t takes the task arriving at t (jsq sees it idle)."""
    trace = [(0.0, spec("long", 10)), (0.0, spec("short", 1)), (1.0, spec("next", 1))]
    r = replay(trace, "jsq", agents=2, home="none")
    got = dict(zip(r.records["id"], r.records["agent"], strict=True))
    waits = dict(zip(r.records["id"], r.records["wait"], strict=True))
    assert got["next"] == got["short"] and waits["next"] == 0.0


def test_flaky_tenants_and_skill_groups_on_a_trace() -> None:
    """The `allocator simulate` fault and fairness options apply to a replay too."""
    trace = [(0.2 * i, spec(f"j{i}", 1.0, tenant="one")) for i in range(400)]
    r = replay(trace, "wfq", agents=4, flaky=(1, 1.0, 20.0), tenants=2, skill_groups=3,
               seed=2)
    row = r.row()
    assert row["lost"] == 0 and row["duplicated"] == 0 and row["retries"] > 0
    assert {t["tenant"] for t in row["per_tenant"]} == {"tenant0", "tenant1"}
    assert r.records["tenant"].to_list()[:4] == ["tenant0", "tenant1", "tenant0", "tenant1"]
    a0 = next(a for a in row["per_agent"] if a["agent"] == "a0")
    assert a0["completed_last_quarter"] > 0  # healthy again after t=20: it gets work
    with pytest.raises(Exception, match="flaky agents"):
        replay(trace, "fifo", agents=2, flaky=(3, 0.5, 1.0))


def test_specs_the_arrays_cannot_carry_are_refused() -> None:
    from allocator.errors import InvalidInputError

    bad = [(0.0, TaskSpec(id="x", work=1, allowed=("a0",)))]
    with pytest.raises(InvalidInputError, match="allowed"):
        replay(bad, "fifo", agents=1)


def test_an_empty_trace_replays_to_an_empty_row() -> None:
    r = replay([], "fifo", agents=2)
    assert r.records.height == 0 and r.row()["tasks"] == 0


def test_a_trace_with_a_repeated_task_id_names_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from allocator.cli import app

    p = tmp_path / "t.csv"
    p.write_text("id,arrival,work\na,0,5\nb,1,5\na,2,5\n")
    r = CliRunner().invoke(app, ["replay", str(p), "--agents", "2", "-p", "fifo"])
    assert r.exit_code == 2
    assert "duplicate task id 'a'" in r.output and "1 rows repeat" in r.output


@pytest.mark.parametrize("speeds", ["0", "-1,1", "nan", "inf"])
def test_replay_and_tune_refuse_speeds_they_cannot_run(tmp_path: Path, speeds: str) -> None:
    """`--speeds 0` (or -1,1: mean 0) was a ZeroDivisionError; nan an unrelated message."""
    from typer.testing import CliRunner

    from allocator.cli import app

    p = tmp_path / "t.csv"
    p.write_text("id,arrival,work\na,0,5\nb,1,5\n")
    for args in (["replay", str(p), "-p", "fifo"],
                 ["tune", "--trace", str(p), "-p", "fifo", "--param", "aging=1"]):
        r = CliRunner().invoke(app, [*args, "--speeds", speeds])
        assert r.exit_code == 2, r.output
        assert "speeds must be finite and > 0" in r.output
