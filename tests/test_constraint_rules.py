"""The shared rule helpers in isolation: assignment feasibility, per-agent list schedules
and the repair's placement score, on small compiled problems with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from allocator import compile_snapshot
from allocator.constraints import _placement_score, agent_schedule, assignment_feasible
from allocator.objectives import build_schedule
from models import Agent, AgentOverride, Snapshot, SolveOptions, Task, Weights


def problem(**kw: object) -> object:
    base: dict[str, object] = {
        "agents": [Agent(id="a", capacity={"cpu": 2.0}, skills=["py"]),
                   Agent(id="b", capacity={"cpu": 2.0}, speed=2.0, concurrency=2)],
        "tasks": [Task(id="x", work=2, demand={"cpu": 1.0}, skills=["py"]),
                  Task(id="y", work=2, demand={"cpu": 1.5})],
    }
    base.update(kw)
    return compile_snapshot(Snapshot(**base))  # type: ignore[arg-type]


def test_assignment_feasible_checks_each_rule() -> None:
    p = problem()
    assert assignment_feasible(p, np.array([0, 1]))
    assert assignment_feasible(p, [0, -1])  # a list works too
    assert assignment_feasible(p, np.array([0.0, 1.0]))  # float indices are cast
    assert not assignment_feasible(p, np.array([1, 1]))  # x needs py: eligibility alone
    assert not assignment_feasible(p, np.array([0, 0]))  # 2.5 cpu on a: capacity alone
    capped = problem(tasks=[Task(id="x", work=2, current_agent="a"),
                            Task(id="y", work=2, current_agent="a")],
                     options=SolveOptions(max_migrations=1))
    assert assignment_feasible(capped, np.array([1, 0]))
    assert not assignment_feasible(capped, np.array([1, 1]))  # migrations alone


def test_assignment_feasible_schedules_hard_deadlines_in_the_given_order() -> None:
    p = problem(agents=[Agent(id="a")],
                tasks=[Task(id="late-ok", work=2, deadline=10, hard_deadline=True),
                       Task(id="urgent", work=2, deadline=2, hard_deadline=True)])
    both = np.array([0, 0])
    assert assignment_feasible(p, both)  # default order: earliest deadline first
    assert not assignment_feasible(p, both, order_key=np.array([0.0, 1.0]))
    assert assignment_feasible(p, both, order_key=np.array([1.0, 0.0]))


def test_agent_schedule_is_the_list_schedule_of_one_agent() -> None:
    p = problem(agents=[Agent(id="two", concurrency=2, speed=2.0)],
                tasks=[Task(id=f"t{k}", work=w, release=r)
                       for k, (w, r) in enumerate([(4, 0), (2, 0), (2, 5), (6, 0)])])
    key = np.array([3.0, 2.0, 1.0, 0.0])
    start, end = agent_schedule(p, 0, np.array([0, 1, 2, 3]), key)
    ref = build_schedule(p, np.zeros(4, dtype=np.int64), key)
    assert start.tolist() == pytest.approx(ref.start.tolist())
    assert end.tolist() == pytest.approx(ref.end.tolist())
    assert (end - start).tolist() == pytest.approx([2.0, 1.0, 1.0, 3.0])
    sub_start, sub_end = agent_schedule(p, 0, [3, 0], key)  # a subset, in js's order
    assert sub_start.tolist() == pytest.approx([0.0, 0.0])
    assert sub_end.tolist() == pytest.approx([3.0, 2.0])


def test_placement_score_weighs_cost_migration_and_busy_time() -> None:
    agents = [Agent(id="a", cost_rate=1.0), Agent(id="b", speed=2.0, concurrency=2,
                                                  cost_rate=3.0)]
    tasks = [Task(id="x", work=4, current_agent="a", migration_cost=10.0,
                  overrides={"a": AgentOverride(cost=0.5)})]
    w = Weights(cost=2.0, migrations=3.0, makespan=5.0, imbalance=7.0)
    p = compile_snapshot(Snapshot(agents=agents, tasks=tasks, weights=w))
    got = _placement_score(p, np.array([0, 1]), 0)
    # a: cost 0.5 (override), no move, busy 4 / 1 lane; b: cost 3 x 2, move 10, busy 2 / 2 lanes.
    assert got.tolist() == pytest.approx([2 * 0.5 + 12 * 4.0, 2 * 6.0 + 3 * 10.0 + 12 * 1.0])


def test_is_feasible_needs_every_rule() -> None:
    from allocator.constraints import HARD_CONSTRAINTS, is_feasible, violations

    p = problem()
    good = build_schedule(p, np.array([0, 1]))  # type: ignore[arg-type]
    assert is_feasible(p, good) and violations(p, good) == {}  # type: ignore[arg-type]
    for agent_of, rule in (([1, 1], "eligibility"), ([0, 0], "capacity")):
        bad = build_schedule(p, np.array(agent_of))  # type: ignore[arg-type]
        assert not is_feasible(p, bad)  # type: ignore[arg-type]
        assert rule in violations(p, bad)  # type: ignore[arg-type]
    assert [c.name for c in HARD_CONSTRAINTS] == [
        "eligibility", "capacity", "release", "hard_deadline", "concurrency", "max_migrations",
        "anti_affinity", "spread", "dependency", "transient"]
