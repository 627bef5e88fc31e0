"""Circuit breaker transitions on a fake clock, alone and inside the core."""

from __future__ import annotations

import pytest

from allocator.online import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Executor,
    TaskCompleted,
    TaskFailed,
    Tick,
    VirtualClock,
)
from allocator.online.events import BreakerClosed, BreakerHalfOpen, BreakerOpened, Dispatch
from models import Agent

from .helpers import submit

CFG = BreakerConfig(window=4, min_calls=4, failure_rate=0.5, open_timeout=10.0,
                    max_open_timeout=40.0)


def _breaker() -> tuple[CircuitBreaker, VirtualClock]:
    clock = VirtualClock()
    return CircuitBreaker("a", CFG, clock=clock), clock


@pytest.mark.parametrize(
    ("outcomes", "state"),
    [
        pytest.param("ssss", BreakerState.CLOSED, id="successes keep it closed"),
        pytest.param("fff", BreakerState.CLOSED, id="too few calls to judge"),
        pytest.param("sfsf", BreakerState.OPEN, id="half of the window failed: open"),
        pytest.param("ffssss", BreakerState.CLOSED, id="old failures slide out of the window"),
        pytest.param("sssf", BreakerState.CLOSED, id="one in four is below the rate"),
    ],
)
def test_closed_to_open_on_failure_rate(outcomes: str, state: BreakerState) -> None:
    br, _ = _breaker()
    for o in outcomes:
        if br.allow():
            br.record_success() if o == "s" else br.record_failure()
    assert br.state is state


def test_open_half_open_closed_cycle_on_the_fake_clock() -> None:
    br, clock = _breaker()
    for _ in range(4):
        br.record_failure("boom")
    assert br.state is BreakerState.OPEN and br.open_until == 10.0
    with pytest.raises(CircuitOpenError, match="open"):
        br.acquire()
    clock.set(9.99)
    assert br.state is BreakerState.OPEN
    clock.set(10.0)
    assert br.state is BreakerState.HALF_OPEN
    assert br.acquire() is True  # a probe
    assert not br.allow()  # one probe at a time
    br.record_success(probe=True)
    assert br.state is BreakerState.CLOSED
    assert [(t.source, t.target) for t in br.transitions] == [
        (BreakerState.CLOSED, BreakerState.OPEN), (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED)]


def test_failed_probe_reopens_with_doubled_timeout() -> None:
    br, clock = _breaker()
    for _ in range(4):
        br.record_failure()
    clock.set(10.0)
    probe = br.acquire()
    br.record_failure("still broken", probe=probe)
    assert br.state is BreakerState.OPEN and br.open_until == 30.0
    clock.set(30.0)
    br.record_failure(probe=br.acquire())
    assert br.open_until == 30.0 + 40.0  # 10 -> 20 -> 40 (capped at max)


def test_call_wraps_a_function() -> None:
    br, _ = _breaker()
    assert br.call(lambda: 3) == 3
    with pytest.raises(ZeroDivisionError):
        br.call(lambda: 1 / 0)


def test_core_opens_breaker_moves_work_and_probes_after_timeout() -> None:
    ex = Executor("round-robin", agents=[Agent(id="a"), Agent(id="b", concurrency=8)],
                  breaker=BreakerConfig(window=2, min_calls=2, failure_rate=1.0,
                                        open_timeout=5.0), max_retries=5)
    ex.handle(*[submit(f"t{i}") for i in range(6)])
    out = ex.handle(TaskFailed(task_id="t0", agent="a", attempt=1, time=1))
    out += ex.handle(*[TaskFailed(task_id=t.id, agent="a", attempt=t.attempt, time=2)
                       for t in list(ex.agents["a"].running.values())])
    opened = [i for i in out if isinstance(i, BreakerOpened)]
    assert len(opened) == 1 and opened[0].agent == "a" and opened[0].until == 7.0
    # nothing queued at a any more, nothing dispatched to a while open
    assert len(ex.agents["a"].queue) == 0
    assert all(i.agent == "b" for i in out if isinstance(i, Dispatch) and i.time >= 2)
    ex.handle(*[submit(f"u{i}", time=3) for i in range(3)])
    out = ex.handle(Tick(time=7.0))
    assert [type(i) for i in out if isinstance(i, (BreakerHalfOpen, Dispatch))][:1] == [
        BreakerHalfOpen]
    probe = [i for i in out if isinstance(i, Dispatch) and i.agent == "a"]
    assert len(probe) <= 1
    if probe:
        out = ex.handle(TaskCompleted(task_id=probe[0].task_id, agent="a",
                                      attempt=probe[0].attempt, time=8))
        assert any(isinstance(i, BreakerClosed) for i in out)
