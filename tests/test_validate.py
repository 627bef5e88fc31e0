"""The independent validator catches every kind of hard-constraint violation."""

from __future__ import annotations

import pytest

from allocator.validate import validate
from models import Agent, Assignment, Plan, PlanStatus, Snapshot, Task, Unassigned

SNAP = Snapshot(
    agents=[
        Agent(id="a", capacity={"cpu": 1.5}, skills=["py"], speed=1.0),
        Agent(id="b", capacity={"cpu": 4}, speed=2.0, concurrency=2),
        Agent(id="down", capacity={"cpu": 8}, status="down"),
    ],
    tasks=[
        Task(id="t1", work=2, demand={"cpu": 1}, skills=["py"]),
        Task(id="t2", work=4, demand={"cpu": 1}, release=1),
        Task(id="t3", work=2, demand={"cpu": 2}, deadline=5, hard_deadline=True,
             forbidden_agents=["a"]),
        Task(id="t4", work=2, demand={"cpu": 1}, allowed_agents=["b"]),
    ],
)


def good() -> Plan:
    return Plan(
        status=PlanStatus.FEASIBLE,
        solver="hand",
        assignments=[
            Assignment(task="t1", agent="a", start=0, end=2),
            Assignment(task="t2", agent="b", start=1, end=3),
            Assignment(task="t3", agent="b", start=0, end=1),
            Assignment(task="t4", agent="b", start=1, end=2),
        ],
    )


def with_changes(**kw: object) -> Plan:
    return good().model_copy(update=kw)


def asg(*rows: tuple[str, str, float, float]) -> list[Assignment]:
    return [Assignment(task=t, agent=a, start=s, end=e) for t, a, s, e in rows]


def test_good_plan_is_valid() -> None:
    assert validate(SNAP, good()) == []


BASE = [("t1", "a", 0.0, 2.0), ("t2", "b", 1.0, 3.0), ("t3", "b", 0.0, 1.0),
        ("t4", "b", 1.0, 2.0)]


def replace(task: str, row: tuple[str, str, float, float]) -> list[Assignment]:
    return asg(*[row if r[0] == task else r for r in BASE])


@pytest.mark.parametrize(
    ("plan", "kind"),
    [
        pytest.param(with_changes(assignments=asg(*BASE, ("t1", "a", 0, 2))), "assigned_twice",
                     id="assigned twice"),
        pytest.param(with_changes(assignments=asg(*BASE[1:])), "missing_task",
                     id="task missing"),
        pytest.param(with_changes(unassigned=[Unassigned(task="t1", code="solver_limit",
                                                         reason="x")]),
                     "assigned_and_unassigned", id="assigned and unassigned"),
        pytest.param(with_changes(assignments=asg(*BASE, ("ghost", "a", 0, 1))), "unknown_task",
                     id="unknown task"),
        pytest.param(with_changes(assignments=replace("t2", ("t2", "zz", 1, 3))),
                     "unknown_agent", id="unknown agent"),
        pytest.param(with_changes(assignments=replace("t2", ("t2", "down", 1, 5))),
                     "agent_not_up", id="agent down"),
        pytest.param(with_changes(assignments=replace("t1", ("t1", "b", 3, 4))), "skill",
                     id="missing skill"),
        pytest.param(with_changes(assignments=replace("t4", ("t4", "a", 2, 4))), "not_allowed",
                     id="not in allowed list"),
        pytest.param(with_changes(assignments=replace("t3", ("t3", "a", 2, 4))), "forbidden",
                     id="forbidden agent"),
        pytest.param(with_changes(assignments=asg(("t1", "a", 0, 2), ("t2", "a", 2, 6),
                                                  ("t3", "b", 0, 1), ("t4", "b", 1, 2))),
                     "capacity", id="capacity exceeded"),
        pytest.param(with_changes(assignments=replace("t2", ("t2", "b", 0, 2))), "starts_early",
                     id="starts before release"),
        pytest.param(with_changes(assignments=replace("t2", ("t2", "b", 1, 2))),
                     "wrong_duration", id="duration does not match speed"),
        pytest.param(with_changes(assignments=replace("t3", ("t3", "b", 4.5, 5.5))),
                     "hard_deadline", id="hard deadline missed"),
        pytest.param(with_changes(assignments=asg(("t1", "a", 0, 2), ("t2", "b", 1, 3),
                                                  ("t3", "b", 1.5, 2.5), ("t4", "b", 1, 2))),
                     "overlap", id="more tasks than concurrency"),
    ],
)
def test_each_violation_is_caught(plan: Plan, kind: str) -> None:
    kinds = {v.kind for v in validate(SNAP, plan)}
    assert kind in kinds, kinds


def test_back_to_back_is_not_overlap() -> None:
    plan = with_changes(assignments=asg(("t1", "a", 0, 2), ("t2", "b", 1, 3),
                                        ("t3", "b", 3, 4), ("t4", "b", 3, 4)))
    assert validate(SNAP, plan) == []
