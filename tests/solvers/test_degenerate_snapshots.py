"""Backends on degenerate but valid snapshots (found by the API's schemathesis run)."""

from __future__ import annotations

import pytest

from allocator.engine import solve
from allocator.errors import InvalidInputError
from allocator.validate import validate
from models import Agent, AgentStatus, Snapshot, Task


@pytest.mark.parametrize("solver", ["greedy", "cpsat", "milp", "balance", "nsga2", "auto"])
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


@pytest.mark.parametrize(
    ("solver", "snapshot"),
    [
        *(pytest.param(s, Snapshot(agents=[Agent(id="a")], tasks=[]), id=f"no tasks-{s}")
          for s in ("greedy", "cpsat", "milp", "auto", "balance", "nsga2")),
        *(pytest.param(s, Snapshot(agents=[Agent(id="a", skills=["x"])],
                                   tasks=[Task(id="t1", skills=["y"])]),
                       id=f"no eligible pair-{s}") for s in ("cpsat", "milp", "auto")),
    ],
)
def test_nothing_to_place_is_optimal(solver: str, snapshot: Snapshot) -> None:
    """An empty choice is a solved one: not a timeout (milp said so), not an error."""
    plan = solve(snapshot, solver=solver, time_limit=1, seed=0)
    assert validate(snapshot, plan) == []
    assert plan.status.value == "optimal", (plan.status, plan.message)
    assert plan.assignments == []


@pytest.mark.parametrize(
    ("snapshot", "field"),
    [
        pytest.param(Snapshot(agents=[Agent(id="a", capacity={"cpu": 1e300})],
                              tasks=[Task(id="t")]),
                     "agents[0].capacity['cpu']", id="capacity"),
        pytest.param(Snapshot(agents=[Agent(id="a"), Agent(id="b", speed=1e-6)],
                              tasks=[Task(id="t0"), Task(id="t1", work=1e12)]),
                     "tasks[1].work", id="work / speed overflows"),
        pytest.param(Snapshot(agents=[Agent(id="a", cost_rate=1e9)],
                              tasks=[Task(id="t", work=1e9)]),
                     "agents[0].cost_rate", id="cost_rate x duration overflows"),
        pytest.param(Snapshot(agents=[Agent(id="a", capacity={"cpu": 1})],
                              tasks=[Task(id="t", demand={"cpu": 2e15})]),
                     "tasks[0].demand['cpu']", id="demand"),
    ],
)
@pytest.mark.parametrize("solver", ["greedy", "cpsat", "milp:cbc"])
def test_numbers_no_solver_can_hold_are_refused_with_the_field(
        snapshot: Snapshot, field: str, solver: str) -> None:
    """Found by fuzzing: 1e300 overflowed to inf and crashed CP-SAT's and PuLP's model building."""
    with pytest.raises(InvalidInputError) as err:
        solve(snapshot, solver=solver, time_limit=1)
    assert err.value.field == field
    assert "rescale the units" in err.value.message
