"""The answer a solve worker sends when the early greedy plan beats the asked backend's."""

from __future__ import annotations

from typing import Any

import pytest

from api import worker
from models import Plan, PlanStatus, Snapshot


def test_the_greedy_answer_keeps_the_backends_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP /v1/solve with balance (generated snapshot, seed 20) answered the greedy plan
    (better) with bound and gap None, where the CLI reported balance's bound 48.87: a
    lower bound holds for every plan of the snapshot, so the answer keeps it."""
    import allocator.engine

    plans = {"greedy": Plan(status=PlanStatus.FEASIBLE, solver="greedy", objective=10.0),
             "balance": Plan(status=PlanStatus.FEASIBLE, solver="balance", objective=20.0,
                             bound=8.0, gap=0.6)}
    monkeypatch.setattr(allocator.engine, "solve", lambda snap, *, solver, **_: plans[solver])
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(worker, "_send", sent.append)
    worker._run_work(worker._Current("w"), "w", "solve", Snapshot(agents=[], tasks=[]),
                     "balance", 2.0, 0, False, None)
    kind, _, plan_json, _, objective, bound, *_ = sent[-1]
    plan = Plan.model_validate_json(plan_json)
    assert kind == "done" and plan.solver == "greedy" and objective == 10.0
    assert bound == plan.bound == 8.0
    assert plan.gap == pytest.approx(0.2)
