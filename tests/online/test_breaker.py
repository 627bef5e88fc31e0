"""Circuit breaker transitions on a fake clock, alone and inside the core."""

from __future__ import annotations

from typing import Any

import pytest

from allocator.errors import InvalidInputError
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


# -- the state machine in detail (fast; the breaker's mutation tests) ------------------


def test_window_slides_and_counts_failures_exactly() -> None:
    b = CircuitBreaker("w", BreakerConfig(window=3, min_calls=3, failure_rate=0.6),
                       clock=VirtualClock())
    assert b.failure_share == 0.0
    b.record_failure()
    b.record_success()
    assert b.failure_share == pytest.approx(0.5)
    b.record_success()  # F S S
    assert b.failure_share == pytest.approx(1 / 3)
    b.record_failure()  # S S F: the oldest failure left the window
    assert b.failure_share == pytest.approx(1 / 3) and b.state is BreakerState.CLOSED
    b.record_success()  # S F S
    b.record_failure()  # F S F: 2/3 >= 0.6 opens
    assert b.state is BreakerState.OPEN
    assert b.transitions[-1].reason == "2/3 recent calls failed (last: failure)"


def test_min_calls_and_rate_threshold_are_inclusive() -> None:
    cfg = BreakerConfig(window=10, min_calls=4, failure_rate=0.5)
    b = CircuitBreaker("m", cfg, clock=VirtualClock())
    for outcome in "FFS":
        b.record_failure() if outcome == "F" else b.record_success()
    assert b.state is BreakerState.CLOSED  # 2/3 but fewer than min_calls
    b.record_success()  # 2/4 = 0.5 >= 0.5, but only failures are checked
    assert b.state is BreakerState.CLOSED
    b.record_failure("boom")  # 3/5
    assert b.state is BreakerState.OPEN
    assert b.transitions[-1].reason == "3/5 recent calls failed (last: boom)"


def test_open_refuses_with_retry_time_then_half_opens_exactly_at_timeout() -> None:
    clock = VirtualClock(100.0)
    b = CircuitBreaker("agent-x", BreakerConfig(open_timeout=5.0), clock=clock)
    b.trip("agent failed")
    assert b.open_until == pytest.approx(105.0)
    assert not b.allow()
    with pytest.raises(CircuitOpenError) as e:
        b.acquire()
    assert e.value.name == "agent-x" and e.value.retry_at == pytest.approx(105.0)
    assert "circuit breaker for 'agent-x' is open; retry after t=105" in str(e.value)
    assert "retry after" not in str(CircuitOpenError("n", None))
    b.trip("again")  # already open: no new transition, same timeout
    assert [t.target for t in b.transitions] == [BreakerState.OPEN]
    clock.advance(4.999)
    assert b.state is BreakerState.OPEN
    clock.advance(0.001)
    assert b.state is BreakerState.HALF_OPEN
    assert b.transitions[-1].reason == "open timeout elapsed"
    assert b.transitions[-1].time == pytest.approx(105.0)


def test_half_open_probe_slots_and_successes() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("p", BreakerConfig(open_timeout=1.0, probes=2, probe_successes=2),
                       clock=clock)
    b.trip("x")
    clock.advance(1.0)
    assert b.acquire() is True and b.acquire() is True  # two probes in flight
    assert not b.allow()
    with pytest.raises(CircuitOpenError):
        b.acquire()
    b.record_success(probe=True)  # one slot back, one success of two
    assert b.state is BreakerState.HALF_OPEN and b.allow()
    b.record_success(probe=False)  # a non-probe success still counts, takes no slot back
    assert b.state is BreakerState.CLOSED
    assert b.transitions[-1].reason == "2 probe(s) succeeded"
    assert b.open_until is None and b.failure_share == 0.0
    assert b.acquire() is False  # closed: not a probe


def test_closing_forgets_the_window_and_the_doubled_timeout() -> None:
    clock = VirtualClock()
    cfg = BreakerConfig(window=4, min_calls=2, failure_rate=0.5, open_timeout=2.0,
                        max_open_timeout=5.0)
    b = CircuitBreaker("c", cfg, clock=clock)
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.OPEN and b.open_until == pytest.approx(2.0)
    clock.advance(2.0)
    b.record_failure("still bad", probe=True)  # 4 s
    assert b.open_until == pytest.approx(6.0)
    assert b.transitions[-1].reason == "probe failed: still bad"
    clock.advance(4.0)
    b.record_failure(probe=True)  # 8 s, capped at 5
    assert b.open_until == pytest.approx(11.0)
    clock.advance(5.0)
    b.record_failure(probe=False)  # a failure in half-open re-opens even without a probe
    assert b.state is BreakerState.OPEN and b.open_until == pytest.approx(16.0)
    clock.advance(5.0)
    b.record_success(probe=True)
    assert b.state is BreakerState.CLOSED
    b.record_failure()  # the old window is gone: one failure is not min_calls
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN and b.open_until == pytest.approx(clock.now() + 2.0)


def test_probe_slot_count_never_goes_negative() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("n", BreakerConfig(open_timeout=1.0, probes=1, probe_successes=3),
                       clock=clock)
    b.trip("x")
    clock.advance(1.0)
    b.record_success(probe=True)  # a probe result nobody acquired
    assert b.allow()
    assert b.acquire() is True
    assert not b.allow()


def test_outcomes_while_open_change_nothing() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("o", BreakerConfig(open_timeout=10.0), clock=clock)
    b.trip("x")
    b.record_failure()
    b.record_success()
    assert b.state is BreakerState.OPEN and b.open_until == pytest.approx(10.0)
    assert len(b.transitions) == 1


def test_new_transitions_are_reported_once() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("t", BreakerConfig(open_timeout=1.0), clock=clock)
    assert b.new_transitions() == []
    b.trip("down")
    first = b.new_transitions()
    assert [(t.source, t.target, t.reason) for t in first] == [
        (BreakerState.CLOSED, BreakerState.OPEN, "down")]
    assert b.new_transitions() == []
    clock.advance(1.0)
    b.record_success(probe=False)
    assert [t.target for t in b.new_transitions()] == [BreakerState.HALF_OPEN,
                                                       BreakerState.CLOSED]


def test_call_records_failures_of_probes() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("f", BreakerConfig(open_timeout=1.0, max_open_timeout=100.0), clock=clock)
    b.trip("x")
    clock.advance(1.0)

    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError):
        b.call(boom)
    assert b.state is BreakerState.OPEN
    assert b.transitions[-1].reason == "probe failed: ValueError('bad')"
    assert b.open_until == pytest.approx(3.0)  # timeout doubled from 1 to 2
    clock.advance(2.0)
    assert b.call(lambda x: x * 2, 21) == 42
    assert b.state is BreakerState.CLOSED


def test_default_config() -> None:
    c = BreakerConfig()
    assert (c.window, c.min_calls, c.failure_rate, c.open_timeout, c.max_open_timeout,
            c.probes, c.probe_successes) == (20, 5, 0.5, 30.0, 600.0, 1, 1)
    b = CircuitBreaker("d", clock=VirtualClock())
    assert b.config == c and b.state is BreakerState.CLOSED and b.open_until is None


def test_open_error_message_without_a_retry_time() -> None:
    assert str(CircuitOpenError("n", None)) == "circuit breaker for 'n' is open"


def test_first_transitions_are_reported_without_an_earlier_poll() -> None:
    b = CircuitBreaker("r", clock=VirtualClock())
    b.trip("down")
    assert [t.reason for t in b.new_transitions()] == ["down"]


def test_probe_slots_come_back_one_per_probe_result() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("s", BreakerConfig(open_timeout=1.0, probes=2, probe_successes=5),
                       clock=clock)
    b.trip("x")
    clock.advance(1.0)
    b.acquire()
    b.acquire()
    b.record_success(probe=True)  # one slot back, not two
    b.acquire()
    assert not b.allow()
    b.record_success()  # not a probe by default: no slot back
    assert not b.allow()


def test_success_after_closing_starts_a_clean_window() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("w", BreakerConfig(open_timeout=1.0), clock=clock)
    b.trip("x")
    clock.advance(1.0)
    b.record_success(probe=True)
    assert b.state is BreakerState.CLOSED
    b.record_success()
    assert b.failure_share == 0.0


def test_call_takes_and_returns_a_probe_slot() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("c", BreakerConfig(open_timeout=1.0, probes=1, probe_successes=2),
                       clock=clock)
    b.trip("x")
    clock.advance(1.0)
    seen = []
    assert b.call(lambda: seen.append(b.allow()) or 1) == 1
    assert seen == [False]  # the call held the only probe slot
    assert b.state is BreakerState.HALF_OPEN and b.allow()  # ... and gave it back
    assert b.call(lambda: 2) == 2
    assert b.state is BreakerState.CLOSED


@pytest.mark.parametrize(("kw", "field"), [
    ({"window": 0}, "window"), ({"min_calls": -1}, "min_calls"),
    ({"failure_rate": 0.0}, "failure_rate"), ({"failure_rate": 1.5}, "failure_rate"),
    ({"open_timeout": -1.0}, "open_timeout"), ({"open_timeout": float("nan")}, "open_timeout"),
    ({"open_timeout": 10.0, "max_open_timeout": 5.0}, "max_open_timeout"),
    ({"probes": 0}, "probes"), ({"probe_successes": 0}, "probe_successes"),
])
def test_a_bad_breaker_config_is_an_input_error_naming_the_field(kw: dict[str, Any],
                                                                 field: str) -> None:
    # BreakerConfig took any numbers: window=0 raised IndexError from the core on the
    # first completion, failure_rate=0 opened a breaker after successes only.
    with pytest.raises(InvalidInputError) as err:
        BreakerConfig(**kw)
    assert err.value.field == field
