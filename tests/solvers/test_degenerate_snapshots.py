"""Backends on degenerate but valid snapshots (found by the API's schemathesis run)."""

from __future__ import annotations

import pytest

from allocator.engine import solve
from allocator.validate import validate
from models import Agent, AgentStatus, Snapshot, Task


@pytest.mark.parametrize("solver", ["greedy", "cpsat", "auto"])
@pytest.mark.parametrize(
    "snapshot",
    [
        pytest.param(Snapshot(agents=[Agent(id="a"), Agent(id="b")],
                              tasks=[Task(id="t1"), Task(id="t2", work=3)]),
                     id="no resources at all"),
        pytest.param(Snapshot(agents=[], tasks=[Task(id="t1")]), id="no agents"),
        pytest.param(Snapshot(agents=[Agent(id="a", status=AgentStatus.DOWN)],
                              tasks=[Task(id="t1")]), id="every agent down"),
    ],
)
def test_degenerate_snapshot_gives_a_valid_plan(solver: str, snapshot: Snapshot) -> None:
    plan = solve(snapshot, solver=solver, time_limit=1, seed=0)
    assert validate(snapshot, plan) == []
    assert len(plan.assignments) + len(plan.unassigned) == len(snapshot.tasks)
