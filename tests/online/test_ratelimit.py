"""Token buckets and rate-limited agents; reported usage updates estimates and metrics."""

from __future__ import annotations

import pytest

from allocator.online import Executor, RateLimit, TaskCompleted, TaskSpec, Tick
from allocator.online.events import Dispatch
from allocator.online.ratelimit import TokenBucket
from models import Agent

from .helpers import brief, submit


def test_token_bucket_refills_and_goes_into_debt() -> None:
    b = TokenBucket(rate=1.0, capacity=10.0)
    assert b.ready_at(10, 0.0) == 0.0
    b.take(10, 0.0)
    assert b.ready_at(4, 0.0) == pytest.approx(4.0)
    b.adjust(5, 1.0)  # actual usage was 5 more than charged
    assert b.level(1.0) == pytest.approx(-4.0)
    assert b.ready_at(1, 1.0) == pytest.approx(6.0)
    assert b.ready_at(100, 1.0) == pytest.approx(15.0)  # above capacity: wait for a full bucket


def test_requests_per_minute_gate_dispatch_and_set_a_timer() -> None:
    ex = Executor("fifo", agents=[(Agent(id="a", concurrency=10),
                                   RateLimit(requests_per_min=2))])
    out = ex.handle(submit("t1"), submit("t2"), submit("t3"))
    assert brief(out, timers=True) == [("Dispatch", "t1", "a", 1), ("Dispatch", "t2", "a", 1),
                                       ("SetTimer", 30.0)]
    assert brief(ex.handle(Tick(time=30.0))) == [("Dispatch", "t3", "a", 1)]


def test_reported_tokens_update_estimates_and_usage() -> None:
    ex = Executor("fifo", agents=[(Agent(id="a"), RateLimit(tokens_per_min=6000))])
    ex.handle(submit("t1", tokens=1000, kind="chat"))
    ex.handle(TaskCompleted(task_id="t1", agent="a", attempt=1, time=1,
                            usage={"tokens": 3000}))
    assert ex.agents["a"].tokens_used == 3000
    assert ex.metrics.token_estimate(_spec(1000, "chat")) == pytest.approx(1400.0)
    out = ex.handle(submit("t2", tokens=1000, kind="chat", time=1))
    d = [i for i in out if isinstance(i, Dispatch)]
    assert d and ex.agents["a"].running["t2"].tokens_est == pytest.approx(1400.0)


def _spec(tokens: float, kind: str) -> TaskSpec:
    return TaskSpec("x", tokens=tokens, kind=kind)
