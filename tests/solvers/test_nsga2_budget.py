"""nsga2 keeps to its budget on snapshots too large for it (docs/pareto.md).

Its encoding and repair tables are tasks x agents arrays: 1,000 x 20,000 was
still setting up and seeding after 120 s of a 10 s limit. A timed run whose
set-up alone would take over half the budget returns the greedy plan (and any
warm start) as its front and says so; generation-limited runs (deterministic)
always evolve.
"""

from __future__ import annotations

import pytest

import allocator.solvers.nsga2 as nsga2_mod
from allocator.engine import solve
from allocator.problem import compile_snapshot
from allocator.solvers.base import Budget
from allocator.solvers.nsga2 import Nsga2Config, nsga2_front
from allocator.validate import validate
from models import Agent, Snapshot, Task, Weights


def _snapshot() -> Snapshot:
    return Snapshot(agents=[Agent(id=f"a{i}", capacity={"cpu": 6}, cost_rate=1 + i % 3,
                                  speed=1 + i % 2) for i in range(6)],
                    tasks=[Task(id=f"t{j}", work=1 + j % 4, demand={"cpu": 1 + j % 2})
                           for j in range(40)],
                    weights=Weights(cost=1, makespan=1))


def test_a_snapshot_too_large_to_set_up_in_time_gets_the_greedy_plan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nsga2_mod, "_SETUP_S_PER_CELL", 1.0)  # 240 s for 6 x 40
    snap = _snapshot()
    plan = solve(snap, solver="nsga2", time_limit=5.0)
    assert validate(snap, plan) == []
    assert len(plan.assignments) + len(plan.unassigned) == len(snap.tasks)
    assert plan.message is not None and "not run: 6 agents x 40 tasks" in plan.message
    front = nsga2_front(compile_snapshot(snap), ["cost", "makespan"], budget=Budget(5.0))
    assert front.generations in (None, 0) and len(front.points) == 1
    assert front.message is not None and front.message.startswith("not run")


def test_generation_limited_runs_evolve_whatever_the_size(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(nsga2_mod, "_SETUP_S_PER_CELL", 1.0)
    front = nsga2_front(compile_snapshot(_snapshot()), ["cost", "makespan"],
                        budget=Budget(30.0), config=Nsga2Config(generations=3, pop_size=12))
    assert front.generations == 3
