"""`balance` under ``options.max_migrations`` (docs/solvers.md, "balance").

Before, balance ignored both the current placement and the cap: its LPT moved
about half the placed tasks, the shared repair then sent the excess home or
left it out, and the tasks those moves had crowded out stayed out with room
free (20 x 200, cap 1: 32-68 tasks left out as `solver_limit`).
"""

from __future__ import annotations

import numpy as np
import pytest

from allocator.engine import solve
from allocator.validate import validate
from models import Agent, Plan, Snapshot, SolveOptions, Task, Weights


def _snapshot(seed: int, cap: int | None, m: int = 20, n: int = 200) -> Snapshot:
    """Mixed agents (speeds, skills, two resources, a few down or draining), 60 % of the
    tasks already placed at random (some homes full, down or not allowed)."""
    rng = np.random.default_rng(seed)
    agents = []
    for i in range(m):
        agents.append(Agent(
            id=f"a{i}", capacity={"cpu": float(rng.integers(8, 30)),
                                  "mem": float(rng.integers(8, 30))},
            speed=float(rng.choice([0.5, 1.0, 2.0, 3.0])),
            skills=["x"] if rng.random() < 0.3 else [],
            status="down" if rng.random() < 0.05 else "up"))
    tasks = []
    for j in range(n):
        work = [1.0, float(rng.integers(1, 20)), rng.random() * 10][int(rng.integers(3))]
        tasks.append(Task(
            id=f"t{j}", work=work,
            demand={"cpu": float(rng.integers(0, 5)), "mem": float(rng.integers(0, 5))},
            skills=["x"] if rng.random() < 0.15 else [],
            allowed_agents=([f"a{i}" for i in range(m) if rng.random() < 0.4]
                            if rng.random() < 0.1 else None),
            current_agent=f"a{int(rng.integers(0, m))}" if rng.random() < 0.6 else None))
    return Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=0, makespan=1),
                    options=SolveOptions(max_migrations=cap, seed=seed))


def _fits_but_left_out(snap: Snapshot, plan: Plan) -> list[str]:
    """Tasks left out that some up agent could take given the plan (own reading)."""
    tasks = {t.id: t for t in snap.tasks}
    used: dict[str, dict[str, float]] = {a.id: {} for a in snap.agents}
    for asg in plan.assignments:
        for r, v in tasks[asg.task].demand.items():
            used[asg.agent][r] = used[asg.agent].get(r, 0.0) + v
    cap = snap.options.max_migrations
    spent = cap is not None and len(plan.migrations) >= cap
    out = []
    for u in plan.unassigned:
        t = tasks[u.task]
        for a in snap.agents:
            if (a.status != "up" or not set(t.skills) <= set(a.skills)
                    or (t.allowed_agents is not None and a.id not in t.allowed_agents)):
                continue
            if spent and t.current_agent is not None and a.id != t.current_agent:
                continue
            if all(used[a.id].get(r, 0.0) + v <= a.capacity.get(r, 0.0) + 1e-9
                   for r, v in t.demand.items() if v > 0):
                out.append(f"{t.id} -> {a.id}")
                break
    return out


@pytest.mark.parametrize("cap", [0, 1, 5, None])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balance_keeps_the_cap_and_places_what_fits(seed: int, cap: int | None) -> None:
    snap = _snapshot(seed, cap)
    plan = solve(snap, solver="balance", time_limit=5, seed=0)
    assert validate(snap, plan) == []
    assert len(plan.assignments) + len(plan.unassigned) == len(snap.tasks)
    if cap is not None:
        assert len(plan.migrations) <= cap
    assert _fits_but_left_out(snap, plan) == []


def test_balance_keeps_placed_tasks_home_and_spends_the_cap_on_balance() -> None:
    """Four tasks sit on a0, a1 is empty: one move (the cap) goes to a1, the rest stay,
    and the new task is placed; with no cap the load is split evenly."""
    snap = Snapshot(agents=[Agent(id="a0", capacity={"cpu": 4}),
                            Agent(id="a1", capacity={"cpu": 4})],
                    tasks=[*(Task(id=f"p{k}", work=4, demand={"cpu": 1}, current_agent="a0")
                             for k in range(4)),
                           Task(id="new", work=1, demand={"cpu": 1})],
                    weights=Weights(cost=0, makespan=1),
                    options=SolveOptions(max_migrations=1))
    plan = solve(snap, solver="balance", time_limit=5)
    assert validate(snap, plan) == []
    assert plan.unassigned == []
    assert [m.task for m in plan.migrations] != [] and len(plan.migrations) == 1
    on = {a.task: a.agent for a in plan.assignments}
    assert sum(on[f"p{k}"] == "a0" for k in range(4)) == 3
    # a0: 3 x 4, a1: 4 + 1
    assert plan.metrics is not None and plan.metrics.makespan == pytest.approx(12.0)
    free = solve(snap.model_copy(update={"options": SolveOptions()}), solver="balance",
                 time_limit=5)
    assert free.metrics is not None and free.metrics.makespan == pytest.approx(9.0)
