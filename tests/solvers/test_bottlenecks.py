"""Bottleneck report on a hand-checkable instance."""

from __future__ import annotations

from allocator import solve, validate
from allocator.bottlenecks import bottleneck_report
from allocator.problem import compile_snapshot
from models import Agent, Snapshot, Task, Weights


def _snapshot() -> Snapshot:
    # A: cheap (cost 1 per task) but 2 slots; B: cost 3 per task, 10 slots.
    # Three unit tasks: 2 on A, 1 on B, cost 5. One more slot on A saves 3 - 1 = 2.
    # "big" needs 11 slots: no agent can ever hold it.
    return Snapshot(
        agents=[Agent(id="A", capacity={"slots": 2, "mem": 100}, cost_rate=1),
                Agent(id="B", capacity={"slots": 10, "mem": 100}, cost_rate=3)],
        tasks=[Task(id=f"t{k}", demand={"slots": 1, "mem": 1}) for k in range(3)]
        + [Task(id="big", demand={"slots": 11})],
        weights=Weights(cost=1),
    )


def test_duals_binding_and_blocked() -> None:
    snap = _snapshot()
    plan = solve(snap, solver="milp", time_limit=5)
    assert validate(snap, plan) == []
    rep = bottleneck_report(compile_snapshot(snap), plan)
    values = {(v.agent, v.resource): v.value for v in rep.capacity_values}
    assert values == {("A", "slots"): 2.0} or abs(values[("A", "slots")] - 2.0) < 1e-6
    assert set(values) == {("A", "slots")}  # mem never binds, B has room
    slots = next(r for r in rep.resources if r.resource == "slots")
    assert slots.binding_agents == ["A"] and abs(slots.utilisation - 3 / 12) < 1e-9
    assert [b.task for b in rep.blocked] == ["big"]
    assert rep.blocked[0].code == "demand_exceeds_capacity"
    assert "slots" in rep.blocked[0].constraint


def test_no_value_when_nothing_binds() -> None:
    snap = _snapshot().model_copy(update={"tasks": _snapshot().tasks[:2]})
    plan = solve(snap, solver="milp", time_limit=5)
    rep = bottleneck_report(compile_snapshot(snap), plan)
    assert rep.capacity_values == [] and rep.note
