"""The executor's per-task and per-agent state: static eligibility and load estimates."""

from __future__ import annotations

import pytest

from allocator.clock import VirtualClock
from allocator.online.breaker import CircuitBreaker
from allocator.online.events import TaskSpec
from allocator.online.queues import FifoQueue
from allocator.online.state import (
    PHASE_NAMES,
    QUEUED,
    SUBMITTED,
    AgentState,
    Pool,
    TaskState,
    eligible,
)
from allocator.problem import capacity_limit
from models import Agent, AgentStatus


def agent(**kw: object) -> AgentState:
    spec = Agent(id=str(kw.pop("id", "a")), **kw)  # type: ignore[arg-type]
    return AgentState(spec, 0, FifoQueue(), CircuitBreaker(spec.id, clock=VirtualClock()),
                      None, now=3.0)


def test_task_state_starts_submitted_with_its_estimates() -> None:
    spec = TaskSpec("t", work=4.0, tokens=100.0, skills=("py",), allowed=("a",),
                    forbidden=("b",), demand=(("cpu", 1.0),))
    t = TaskState(spec, 7, 2.5)
    assert (t.id, t.seq, t.phase, t.attempt) == ("t", 7, SUBMITTED, 0)
    assert (t.est, t.tokens_est, t.submitted, t.enqueued) == (4.0, 100.0, 2.5, 2.5)
    assert t.agent is None and t.where is None and t.queue is None
    assert (t.first_start, t.steal_pred, t.vtag, t.defers, t.steals) == (-1.0, -1.0, -1.0, 0, 0)
    assert t.sig == (("py",), ("a",), ("b",), (("cpu", 1.0),))
    assert (t.qkey, t.started, t.stolen_by, t.probe, t.served_by, t.timer_token) == (
        0.0, 0.0, None, False, None, 0)
    assert PHASE_NAMES[QUEUED] == "queued"


def test_agent_state_mirrors_its_spec() -> None:
    a = agent(capacity={"cpu": 4.0}, skills=["py"], speed=2.0, concurrency=3)
    assert (a.id, a.index, a.speed, a.concurrency) == ("a", 0, 2.0, 3)
    assert a.capacity == {"cpu": 4.0} and a.used == {"cpu": 0.0}
    assert a.skills == frozenset({"py"}) and a.status is AgentStatus.DOWN
    assert a.up_since == 3.0 and a.count() == 0
    # Counters the metrics and stealing read start at zero.
    assert (a.run_est, a.busy, a.uptime, a.tokens_used, a.completed, a.steal_fails,
            a.backoff_until, a.steal_interval, a.margin) == (0.0,) * 9
    assert a.pools == [] and a.running == {} and a.limiter is None
    assert a.spec.id == "a"
    from allocator.online.events import RateLimit
    from allocator.online.ratelimit import AgentLimiter

    lim = AgentLimiter(RateLimit(tokens_per_min=60))
    b = AgentState(Agent(id="b"), 4, FifoQueue(), CircuitBreaker("b", clock=VirtualClock()),
                   lim, now=0.0)
    assert b.limiter is lim and b.index == 4
    new = Agent(id="a", capacity={"gpu": 1.0}, speed=0.5)
    a.update(new)
    assert a.capacity == {"gpu": 1.0} and a.used == {"gpu": 0.0} and a.speed == 0.5
    assert a.spec is new


def test_load_counts_running_remainders_and_queued_work_per_lane() -> None:
    a = agent(speed=2.0, concurrency=2)
    run1 = TaskState(TaskSpec("r1", work=8.0), 0, 0.0)
    run1.started = 0.0  # 4 s at speed 2: 1 s left at t=3
    run2 = TaskState(TaskSpec("r2", work=2.0), 1, 0.0)
    run2.started = 0.0  # ended at t=1: nothing left (not negative)
    run3 = TaskState(TaskSpec("r3", work=6.0), 4, 0.0)
    run3.started = 2.0  # 3 s from t=2: 2 s left at t=3
    a.running = {"r1": run1, "r2": run2, "r3": run3}
    a.run_est = 16.0
    a.queue.push(TaskState(TaskSpec("q", work=6.0), 2, 0.0), 0.0)
    a.planned.push(TaskState(TaskSpec("p", work=2.0), 3, 0.0), 0.0)
    # (1 + 2 + (6 + 2) / 2) / 2 lanes
    assert a.load(3.0) == pytest.approx(3.5)
    assert a.load_bound() == pytest.approx((16.0 + 6.0 + 2.0) / 2.0 / 2)
    assert a.load_bound() >= a.load(3.0)
    assert a.count() == 5
    pool = Pool(run1.sig, run1.spec, FifoQueue())
    assert pool.members == [] and pool.sig == run1.sig


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        (TaskSpec("any"), True),
        (TaskSpec("skill", skills=("py",)), True),
        (TaskSpec("skills", skills=("py", "go")), False),
        (TaskSpec("allowed", allowed=("a", "z")), True),
        (TaskSpec("not-allowed", allowed=("z",)), False),
        (TaskSpec("empty-allowed", allowed=()), False),
        (TaskSpec("forbidden", forbidden=("a",)), False),
        (TaskSpec("other-forbidden", forbidden=("z",)), True),
        (TaskSpec("fits", demand=(("cpu", 4.0),)), True),
        (TaskSpec("fits-float", demand=(("cpu", 4.0 * (1 + 1e-12)),)), True),
        (TaskSpec("at-the-limit", demand=(("cpu", capacity_limit(4.0)),)), True),
        (TaskSpec("too-big", demand=(("cpu", 4.001),)), False),
        (TaskSpec("unknown-resource", demand=(("gpu", 0.5),)), False),
        (TaskSpec("zero-unknown", demand=(("gpu", 0.0),)), True),
        (TaskSpec("both", demand=(("cpu", 1.0), ("mem", 3.0)),), False),
    ],
    ids=lambda v: v.id if isinstance(v, TaskSpec) else str(v),
)
def test_static_eligibility(spec: TaskSpec, ok: bool) -> None:
    a = agent(capacity={"cpu": 4.0, "mem": 2.0}, skills=["py"])
    assert eligible(a, spec) is ok
