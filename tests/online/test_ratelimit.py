"""Token buckets and rate-limited agents; reported usage updates estimates and metrics."""

from __future__ import annotations

import math

import pytest

from allocator.online import Executor, RateLimit, TaskCompleted, TaskSpec, Tick, VirtualClock
from allocator.online.events import Dispatch
from allocator.online.ratelimit import AgentLimiter, TokenBucket
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


# -- both units against the executor's virtual clock ---------------------------------
# A RateLimit is per minute; the executor's clock (and every bucket's) is in seconds.


def test_tokens_per_minute_refill_per_second() -> None:
    """Two 6,000-token tasks under 6,000 tokens/min: the second waits 60 s, not 1 s."""
    ex = Executor("fifo", agents=[(Agent(id="a", concurrency=10),
                                   RateLimit(tokens_per_min=6000))])
    out = ex.handle(submit("t1", tokens=6000), submit("t2", tokens=6000))
    assert brief(out, timers=True) == [("Dispatch", "t1", "a", 1), ("SetTimer", 60.0)]
    assert brief(ex.handle(Tick(time=59.0))) == []
    assert brief(ex.handle(Tick(time=60.0))) == [("Dispatch", "t2", "a", 1)]


def test_requests_per_minute_refill_per_second() -> None:
    """60 requests/min is one a second once the minute's burst is spent."""
    ex = Executor("fifo", agents=[(Agent(id="a", concurrency=100),
                                   RateLimit(requests_per_min=60))])
    out = ex.handle(*[submit(f"t{k}") for k in range(62)])
    assert sum(isinstance(i, Dispatch) for i in out) == 60
    assert brief(ex.handle(Tick(time=0.5))) == []
    assert brief(ex.handle(Tick(time=1.0))) == [("Dispatch", "t60", "a", 1)]
    assert brief(ex.handle(Tick(time=2.0))) == [("Dispatch", "t61", "a", 1)]


def test_both_limits_wait_for_the_later_bucket() -> None:
    ex = Executor("fifo", agents=[(Agent(id="a", concurrency=10),
                                   RateLimit(tokens_per_min=600, requests_per_min=120))])
    out = ex.handle(submit("t1", tokens=600), submit("t2", tokens=300))
    # requests: 119 left; tokens: empty, 300 more at 10/s -> 30 s.
    assert brief(out, timers=True) == [("Dispatch", "t1", "a", 1), ("SetTimer", 30.0)]
    lim = ex.agents["a"].limiter
    assert lim is not None and lim.requests_used == 1
    assert lim.ready_at(300, 0.0) == pytest.approx(30.0)
    assert lim.ready_at(0, 0.0) == pytest.approx(0.0)


@pytest.mark.parametrize("per_min", [60.0, 600.0, 6000.0])
def test_agent_limiter_buckets_are_per_second(per_min: float) -> None:
    lim = AgentLimiter(RateLimit(tokens_per_min=per_min, requests_per_min=per_min / 10), now=5.0)
    assert lim.tokens is not None and lim.requests is not None
    assert lim.tokens.rate == pytest.approx(per_min / 60.0)
    assert lim.tokens.capacity == pytest.approx(per_min)
    assert lim.requests.rate == pytest.approx(per_min / 600.0)
    assert lim.requests.capacity == pytest.approx(per_min / 10)
    assert lim.tokens.level(5.0) == pytest.approx(per_min)  # starts full, at `now`
    lim.take(per_min, 5.0)
    assert lim.tokens.level(5.0) == pytest.approx(0.0)
    assert lim.requests.level(5.0) == pytest.approx(per_min / 10 - 1)
    assert lim.requests_used == 1
    # Half a minute later half the bucket is back.
    assert lim.ready_at(per_min / 2, 5.0) == pytest.approx(35.0)
    assert lim.tokens.level(35.0) == pytest.approx(per_min / 2)


def test_agent_limiter_without_limits_never_waits() -> None:
    lim = AgentLimiter(RateLimit())
    assert lim.tokens is None and lim.requests is None
    assert lim.ready_at(1e9, 3.0) == 3.0
    lim.take(1e9, 3.0)
    lim.settle(10.0, 25.0, 4.0)
    assert lim.requests_used == 1 and lim.tokens_used == 25.0


def test_requests_only_limiter_ignores_tokens() -> None:
    lim = AgentLimiter(RateLimit(requests_per_min=6))
    assert lim.tokens is None
    lim.take(1e9, 0.0)
    assert lim.ready_at(1e9, 0.0) == 0.0  # 5 requests left, tokens unlimited
    for _ in range(5):
        lim.take(0.0, 0.0)
    assert lim.ready_at(0.0, 0.0) == pytest.approx(10.0)  # 6/min = one per 10 s
    assert lim.requests_used == 6


def test_settle_charges_or_refunds_the_difference() -> None:
    lim = AgentLimiter(RateLimit(tokens_per_min=120))  # 2 tokens/s
    lim.take(100.0, 0.0)
    assert lim.tokens is not None and lim.tokens.level(0.0) == pytest.approx(20.0)
    lim.settle(100.0, 130.0, 0.0)  # used 30 more than charged
    assert lim.tokens.level(0.0) == pytest.approx(-10.0)
    assert lim.tokens_used == 130.0
    assert lim.ready_at(10.0, 0.0) == pytest.approx(10.0)  # 20 tokens at 2/s
    lim.settle(100.0, 40.0, 0.0)  # 60 less: refunded
    assert lim.tokens.level(0.0) == pytest.approx(50.0)
    assert lim.tokens_used == 170.0
    lim.settle(100.0, 0.0, 0.0)  # a refund never overfills the bucket
    assert lim.tokens.level(0.0) == pytest.approx(120.0)


def test_token_bucket_against_a_fake_clock() -> None:
    clock = VirtualClock(100.0)
    b = TokenBucket(rate=0.5, capacity=4.0, now=clock.now())
    assert b.level(clock.now()) == 4.0
    b.take(3.0, clock.now())
    assert b.level(clock.now()) == pytest.approx(1.0)
    assert b.level(99.0) == pytest.approx(1.0)  # the past does not refill
    assert b.ready_at(1.0, clock.now()) == clock.now()  # exactly enough: now
    assert b.ready_at(2.0, clock.now()) == pytest.approx(102.0)
    clock.advance(1.0)
    assert b.level(clock.now()) == pytest.approx(1.5)
    clock.advance(100.0)
    assert b.level(clock.now()) == pytest.approx(4.0)  # capped at capacity
    b.adjust(-10.0, clock.now())
    assert b.level(clock.now()) == pytest.approx(4.0)
    b.adjust(6.0, clock.now())
    assert b.level(clock.now()) == pytest.approx(-2.0)
    assert b.ready_at(50.0, clock.now()) == pytest.approx(clock.now() + 12.0)  # full bucket
    dead = TokenBucket(rate=0.0, capacity=1.0)
    dead.take(1.0, 0.0)
    assert dead.ready_at(1.0, 10.0) == math.inf
    assert dead.ready_at(0.0, 10.0) == 10.0


def test_limiter_made_without_a_time_starts_at_zero() -> None:
    lim = AgentLimiter(RateLimit(tokens_per_min=60))
    lim.take(60.0, 0.0)
    assert lim.ready_at(1.0, 1.0) == pytest.approx(1.0)  # one token back after one second


def test_a_bucket_is_ready_when_ready_at_says() -> None:
    """Woken at `ready_at`, the bucket lets the call through (no wake-ups an ulp apart)."""
    import random

    rng = random.Random(7)
    for _ in range(2000):
        b = TokenBucket(rate=2000 / 60, capacity=2000)
        now = rng.uniform(0, 50)
        b.take(rng.uniform(0, 4000), now)
        amount = rng.uniform(1, 3000)
        at = b.ready_at(amount, now)
        assert b.ready_at(amount, at) == at


def test_jsq_with_token_limits_finishes() -> None:
    """A run that once spun on timers an ulp apart (50M ticks) ends with every task done."""
    from allocator.online.simulator import Simulator
    from allocator.online.workload import WorkloadConfig, generate

    wl = generate(WorkloadConfig(tasks=1000, agents=16, seed=1, load=0.8, tokens_per_min=2000.0))
    row = Simulator(wl, "jsq", seed=3, max_events=100_000).run().row
    assert row["completed"] == 1000 and row["events"] < 10_000


@pytest.mark.parametrize("bad", [{"requests_per_min": -5.0}, {"tokens_per_min": 0.0},
                                 {"tokens_per_min": float("nan")},
                                 {"requests_per_min": float("inf")}])
def test_a_limit_that_never_refills_is_refused(bad: dict[str, float]) -> None:
    """`ray run --requests-per-min -5` hung: the bucket refilled downwards."""
    from allocator.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as err:
        RateLimit(**bad)
    assert err.value.field == next(iter(bad))
