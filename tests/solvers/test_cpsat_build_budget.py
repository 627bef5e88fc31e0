"""cpsat's model build is bounded by the budget (docs/solvers.md, "CP-SAT").

At 200 agents x 2000 tasks (400k pairs) building the model took 20-30 s of a 5 s
limit before CP-SAT even started. The build now looks at the budget as it goes,
and gives up (the greedy hint is the answer, and the message says why) when
too little would be left to solve; in deterministic mode it decides by size.
The time here is a fake clock that runs only while the build makes variables.
"""

from __future__ import annotations

import pytest
from ortools.sat.python import cp_model

from allocator.engine import solve
from allocator.solvers import cp_core
from allocator.validate import validate
from models import Agent, PlanStatus, Snapshot, Task, Weights


def _snapshot(m: int = 10, n: int = 100) -> Snapshot:
    return Snapshot(agents=[Agent(id=f"a{i}", capacity={"cpu": 12}, cost_rate=1 + i % 3)
                            for i in range(m)],
                    tasks=[Task(id=f"t{j}", work=1 + j % 5, demand={"cpu": 1 + j % 3})
                           for j in range(n)],
                    weights=Weights(cost=1, makespan=1))


def test_a_build_that_outlasts_the_budget_stops_and_keeps_the_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    made = [0]
    new_bool_var = cp_model.CpModel.new_bool_var

    def slow(self: cp_model.CpModel, name: str) -> cp_model.IntVar:
        made[0] += 1
        now[0] += 0.001  # 1,100 variables take 1.1 s of a 1 s budget
        return new_bool_var(self, name)

    monkeypatch.setattr(cp_model.CpModel, "new_bool_var", slow)
    monkeypatch.setattr(cp_core, "BUILD_CHECK_PAIRS", 50)  # a look every 0.05 s here
    snap = _snapshot()
    plan = solve(snap, solver="cpsat", time_limit=1.0, clock=lambda: now[0],
                 deterministic=False)
    assert validate(snap, plan) == []
    assert len(plan.assignments) + len(plan.unassigned) == len(snap.tasks)
    assert plan.status == PlanStatus.FEASIBLE
    assert made[0] < 1000 + 100  # it stopped building (pairs + one u per task)
    assert now[0] < 1.0  # it noticed within a check, with the reserve still left
    assert plan.message is not None and "not solved" in plan.message
    assert "building the model" in plan.message


def test_deterministic_mode_decides_by_size_and_repeats(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """Deterministic solves must not depend on the clock: too many pairs for the
    budget at the reference build rate means the hint, before any variable."""
    monkeypatch.setattr(cp_core, "BUILD_PAIRS_PER_S", 100.0)  # 1 s: 100 pairs; 1,000 here
    snap = _snapshot()
    plans = [solve(snap, solver="cpsat", time_limit=1.0, deterministic=True)
             for _ in range(2)]
    assert all(validate(snap, p) == [] for p in plans)
    assert plans[0].assignments == plans[1].assignments
    assert plans[0].message is not None and "not solved" in plans[0].message
    monkeypatch.setattr(cp_core, "BUILD_PAIRS_PER_S", 1e9)
    solved = solve(snap, solver="cpsat", time_limit=2.0, deterministic=True)
    assert solved.message is not None and "not solved" not in solved.message


def test_a_model_far_too_large_for_the_time_left_is_not_started(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Timed solves too: the static pairs (no [m, n] pass) against the build rate, before
    the exact pairs are even counted (300 x 20,000 on 3 s took 7.9 s to give up)."""
    made = [0]
    new_bool_var = cp_model.CpModel.new_bool_var

    def counted(self: cp_model.CpModel, name: str) -> cp_model.IntVar:
        made[0] += 1
        return new_bool_var(self, name)

    monkeypatch.setattr(cp_model.CpModel, "new_bool_var", counted)
    monkeypatch.setattr(cp_core, "BUILD_PAIRS_PER_S", 10.0)  # 1,000 pairs: 100 s
    snap = _snapshot()
    plan = solve(snap, solver="cpsat", time_limit=1.0, deterministic=False)
    assert made[0] == 0
    assert validate(snap, plan) == []
    assert len(plan.assignments) + len(plan.unassigned) == len(snap.tasks)
    assert plan.status == PlanStatus.FEASIBLE
    assert plan.message is not None and "would take about 100 s" in plan.message
