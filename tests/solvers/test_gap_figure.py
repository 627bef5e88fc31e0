"""A plan's bound and gap as users read them: 0 <= bound <= objective, gap in [0, 1].

Every objective term is non-negative, so a bound below 0 says nothing; CP-SAT's
scaled objective rounded one to -1e-7 on a plan worth 0, and the gap read 100
(10,000 %).
"""

from __future__ import annotations

import pytest

from allocator import solve
from models import Agent, AgentStatus, Snapshot, Task, Weights


def _tiny_cost_snapshot() -> Snapshot:
    """Generated (seed 26): one critical task, agents costing 0 or 1e-7 per time unit."""
    return Snapshot(
        agents=[Agent(id="a0", capacity={"cpu": 4}, speed=0.5, cost_rate=1e-7, skills=["x", "y"]),
                Agent(id="a1", capacity={"cpu": 4}, cost_rate=0.0),
                Agent(id="a2", capacity={"cpu": 4}, speed=3, concurrency=3, skills=["x", "y"]),
                Agent(id="a3", capacity={"cpu": 8}, speed=0.5, cost_rate=1e-7,
                      status=AgentStatus.DRAINING),
                Agent(id="a4", capacity={"cpu": 16}, cost_rate=1e-7)],
        tasks=[Task(id="t0", work=7, demand={"cpu": 1}, priority="critical", deadline=0)],
        weights=Weights(cost=1),
    )


@pytest.mark.parametrize("solver", ["cpsat", "milp", "auto"])
def test_bound_is_never_below_zero_and_gap_at_most_one(solver: str) -> None:
    plan = solve(_tiny_cost_snapshot(), solver=solver, time_limit=2, seed=0)
    assert plan.objective is not None and plan.bound is not None and plan.gap is not None
    assert 0.0 <= plan.bound <= plan.objective
    assert 0.0 <= plan.gap <= 1.0, (plan.objective, plan.bound, plan.gap)
