"""Warm re-solves honour their stability preference when tasks carry current_agent."""

from __future__ import annotations

import pytest

from allocator.engine import solve
from allocator.validate import validate
from models import Agent, Snapshot, Task, Weights


def _snapshot(pinned: bool) -> Snapshot:
    # Two identical agents, cost 10 per time unit (so cost does not care where
    # a task runs); moving the 0.5 task from a to b gains 1.5 of makespan +
    # imbalance, far more than its own migration cost (0.005) but less than a
    # change costs under the stability preference (~0.1 x 195 / 5).
    place = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "b2": "b"}
    work = {"a1": 5.0, "a2": 5.0, "a3": 0.5, "b1": 5.0, "b2": 4.0}
    tasks = [Task(id=k, work=w, current_agent=place[k],
                  allowed_agents=[place[k]] if pinned else None) for k, w in work.items()]
    return Snapshot(agents=[Agent(id="a", cost_rate=10.0), Agent(id="b", cost_rate=10.0)],
                    tasks=tasks, weights=Weights(cost=1.0, makespan=1.0, imbalance=1.0,
                                                 migrations=0.1))


@pytest.mark.parametrize("solver", ["greedy", "cpsat", "auto", "milp"])
def test_stability_keeps_moves_that_gain_little_out(solver: str) -> None:
    previous = solve(_snapshot(pinned=True), solver=solver, time_limit=5.0, seed=0)
    assert not previous.migrations
    snap = _snapshot(pinned=False)
    loose = solve(snap, solver=solver, time_limit=5.0, seed=0, previous=previous,
                  stability=False)
    stable = solve(snap, solver=solver, time_limit=5.0, seed=0, previous=previous,
                   stability=True)
    assert validate(snap, loose) == []
    # The stable plan is checked against the snapshot it was solved for (the
    # preference raises migration costs, nothing else changes).
    assert loose.migrations  # a move (a3 to b, or a swap) gains 1.5
    assert {t.name: t.value for t in loose.breakdown}["makespan"] == pytest.approx(10.0)
    assert stable.migrations == []
    assert stable.agent_of() == previous.agent_of()


def test_stability_still_moves_what_must_move() -> None:
    # Agent b is draining: its tasks must leave whatever the preference says.
    snap = _snapshot(pinned=False)
    previous = solve(_snapshot(pinned=True), solver="greedy", time_limit=2.0)
    agents = [snap.agents[0], snap.agents[1].model_copy(update={"status": "draining"})]
    drained = snap.model_copy(update={"agents": agents})
    plan = solve(drained, solver="greedy", time_limit=2.0, previous=previous, stability=True)
    assert validate(drained, plan) == []
    assert {m.task for m in plan.migrations} == {"b1", "b2"}
