"""Admission decisions in detail: feasibility, per-class caps, throttling, deferral backoff.

The controller is driven directly (every input of `decide` given), and once
through the core for the per-class queued count a retried task must not
inflate.
"""

from __future__ import annotations

import math

import pytest

from allocator.errors import InvalidInputError
from allocator.online import AdmissionConfig, Code, Executor, TaskFailed
from allocator.online.admission import ACCEPT, Action, AdmissionController, Decision
from models import Agent, Priority

from .helpers import brief, submit

LOW, NORMAL, HIGH, CRIT = Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL


def decide(ctl: AdmissionController, priority: Priority = NORMAL, deadline: float | None = None,
           hard: bool = False, ef: float = 0.0, queued: int = 0, defers: int = 0,
           now: float = 0.0) -> Decision:
    return ctl.decide(priority=priority, deadline=deadline, hard=hard, earliest_finish=ef,
                      queued_in_class=queued, defers=defers, now=now)


def test_feasibility_rejects_hard_and_defers_soft_only_when_asked() -> None:
    ctl = AdmissionController()
    d = decide(ctl, deadline=5.0, hard=True, ef=6.0)
    assert (d.action, d.code) == (Action.REJECT, Code.DEADLINE_INFEASIBLE)
    assert d.reason == "earliest estimated finish t=6 is after the deadline t=5"
    assert decide(ctl, deadline=5.0, hard=True, ef=5.0 + 1e-10) is ACCEPT  # within 1e-9
    assert decide(ctl, deadline=5.0, hard=True, ef=5.0 + 1e-8).action is Action.REJECT
    assert decide(ctl, deadline=5.0, hard=False, ef=60.0) is ACCEPT
    assert decide(ctl, deadline=None, hard=True, ef=60.0) is ACCEPT
    soft = AdmissionController(AdmissionConfig(defer_soft_infeasible=True, defer_delay=2.0))
    d = decide(soft, deadline=5.0, ef=6.0, now=10.0)
    assert (d.action, d.code, d.until) == (Action.DEFER, Code.DEADLINE_INFEASIBLE, 12.0)
    off = AdmissionController(AdmissionConfig(feasibility=False))
    assert decide(off, deadline=5.0, hard=True, ef=60.0) is ACCEPT


def test_class_cap_defers_with_doubling_delay_then_rejects() -> None:
    ctl = AdmissionController(AdmissionConfig(class_caps={LOW: 2}, max_defers=3,
                                              defer_delay=1.5))
    assert decide(ctl, LOW, queued=1) is ACCEPT
    assert decide(ctl, NORMAL, queued=50) is ACCEPT  # no cap for normal
    got = [decide(ctl, LOW, queued=2, defers=k, now=10.0) for k in range(4)]
    assert [d.action for d in got] == [Action.DEFER] * 3 + [Action.REJECT]
    assert [d.until for d in got[:3]] == [11.5, 13.0, 16.0]
    assert {d.code for d in got} == {Code.QUEUE_CAP}
    assert got[0].reason == "2 low tasks queued (cap 2)"
    assert got[3].reason == "2 low tasks queued (cap 2); deferred 3 times"
    assert got[3].until == 0.0
    zero = AdmissionController(AdmissionConfig(class_caps={LOW: 0}, max_defers=0))
    assert decide(zero, LOW, queued=0).action is Action.REJECT


def test_trivial_only_without_caps_throttle_or_soft_deferral() -> None:
    assert AdmissionController().trivial
    assert not AdmissionController(AdmissionConfig(class_caps={LOW: 1})).trivial
    assert not AdmissionController(AdmissionConfig(throttle=True)).trivial
    assert not AdmissionController(AdmissionConfig(defer_soft_infeasible=True)).trivial
    ctl = AdmissionController()
    ctl.shed_level = 1
    assert not ctl.trivial


@pytest.mark.parametrize("name", ["target_wait", "adapt_interval", "defer_delay"])
@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan, "1"])
def test_config_rejects_bad_numbers_naming_the_field(name: str, bad: object) -> None:
    with pytest.raises(InvalidInputError) as e:
        AdmissionConfig(**{name: bad})  # type: ignore[arg-type]
    assert e.value.field == name


def test_config_window_defaults_to_ten_target_waits_and_must_be_positive() -> None:
    assert AdmissionConfig(target_wait=2.0).window == 20.0
    assert AdmissionConfig(target_wait=0.0, window=3.0).window == 3.0
    assert AdmissionConfig(adapt_interval=0, defer_delay=0).defer_delay == 0
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(InvalidInputError) as e:
            AdmissionConfig(window=bad)
        assert e.value.field == "window"
    c = AdmissionController(AdmissionConfig(window=4.0, adapt_interval=0.5))
    assert c.recovery_bound() == 4.5


def test_throttle_levels_follow_the_signal() -> None:
    backlog = [0.0]
    ctl = AdmissionController(AdmissionConfig(throttle=True, target_wait=2.0, adapt_interval=1.0,
                                              window=10.0, max_defers=0),
                              backlog=lambda: backlog[0])
    ctl.observe_wait(3.0, 0.0)  # mean 3 > 2
    assert ctl.shed_level == 1 and ctl.signal == 3.0 and ctl.wait_mean == 3.0
    ctl.observe_wait(3.0, 0.5)  # within adapt_interval: no change
    assert ctl.shed_level == 1
    ctl.observe_wait(3.0, 1.0)
    ctl.observe_wait(3.0, 2.0)
    ctl.observe_wait(3.0, 3.0)
    assert ctl.shed_level == 3  # never more than 3: critical is never shed
    ctl.observe_wait(3.0, 4.0)
    assert ctl.shed_level == 3
    d = decide(ctl, HIGH, now=4.0)
    assert (d.action, d.code) == (Action.REJECT, Code.THROTTLED)
    assert d.reason.startswith("overloaded: queueing delay 3 > target 2, shedding high")
    assert decide(ctl, CRIT, now=4.0) is ACCEPT
    ctl.observe_wait(1.5, 5.0)
    assert ctl.shed_level == 3 and ctl.wait_mean == pytest.approx(19.5 / 7)
    # Old samples leave the window with time alone; a backlog keeps the signal up.
    backlog[0] = 1.5
    decide(ctl, CRIT, now=16.0)  # samples up to t=5 are older than 16 - 10
    assert ctl.signal == 1.5 and ctl.shed_level == 3
    backlog[0] = 0.9
    decide(ctl, CRIT, now=17.0)
    assert ctl.signal == pytest.approx(0.9) and ctl.shed_level == 0
    assert ctl.wait_mean == 0.0


def test_shed_level_sheds_the_lowest_classes_first() -> None:
    ctl = AdmissionController(AdmissionConfig(max_defers=1, defer_delay=1.0))
    expected = {0: set(), 1: {LOW}, 2: {LOW, NORMAL}, 3: {LOW, NORMAL, HIGH}}
    for level, shed in expected.items():
        ctl.shed_level = level
        for p in Priority:
            d = decide(ctl, p, now=3.0)
            assert (d.action is Action.DEFER) == (p in shed), (level, p)
            if p in shed:
                assert d.until == 4.0 and d.code is Code.THROTTLED


def test_throttle_off_never_adapts() -> None:
    ctl = AdmissionController(AdmissionConfig(target_wait=0.1))
    for k in range(5):
        ctl.observe_wait(100.0, float(k))
    assert ctl.shed_level == 0 and ctl.signal == 0.0
    assert ctl.wait_mean == 100.0


def test_a_retried_task_is_queued_once_for_the_class_cap() -> None:
    """Low cap 1: a low task that fails and is retried (and runs again at once) leaves
    nothing queued, so the next low task is admitted, and only the one after is deferred."""
    ex = Executor("fifo", max_retries=3, agents=[Agent(id="a")],
                  admission=AdmissionConfig(class_caps={LOW: 1}, max_defers=2))
    assert brief(ex.handle(submit("l1", priority=LOW))) == [("Dispatch", "l1", "a", 1)]
    out = ex.handle(TaskFailed(task_id="l1", agent="a", attempt=1, time=1.0, retryable=True))
    assert [r[:2] for r in brief(out)] == [("Retry", "l1"), ("Dispatch", "l1")]
    assert ex._queued_by_class == [0, 0, 0, 0]
    assert brief(ex.handle(submit("l2", priority=LOW, time=1.0))) == []  # queued, not deferred
    assert ex._queued_by_class == [0, 0, 0, 1]
    out = ex.handle(submit("l3", priority=LOW, time=1.0))
    assert [r[:3] for r in brief(out)] == [("Defer", "l3", Code.QUEUE_CAP)]
    assert ex.metrics.retries == 1


def test_config_errors_say_what_is_wrong() -> None:
    with pytest.raises(InvalidInputError, match=r"must be a finite number >= 0, got -1"):
        AdmissionConfig(target_wait=-1.0)
    with pytest.raises(InvalidInputError, match=r"must be a finite number > 0, got 0"):
        AdmissionConfig(window=0.0)
    assert AdmissionConfig(window=0.5).window == 0.5


def _throttle(target: float = 10.0, window: float = 5.0) -> AdmissionController:
    return AdmissionController(AdmissionConfig(throttle=True, target_wait=target,
                                               adapt_interval=0.0, window=window))


def test_window_drops_exactly_the_samples_older_than_it() -> None:
    ctl = _throttle()
    for t, wait in ((0.0, 1.0), (1.0, 3.0), (2.0, 8.0)):
        ctl.observe_wait(wait, t)
    decide(ctl, CRIT, now=5.5)  # horizon 0.5: the t=0 sample leaves
    assert ctl.signal == pytest.approx(5.5) and ctl.wait_mean == pytest.approx(5.5)
    decide(ctl, CRIT, now=6.0)  # horizon 1.0: the t=1 sample is exactly on it and stays
    assert ctl.signal == pytest.approx(5.5)
    decide(ctl, CRIT, now=6.5)
    assert ctl.signal == pytest.approx(8.0)
    decide(ctl, CRIT, now=100.0)  # all gone: a fresh start
    assert ctl.signal == 0.0
    ctl.observe_wait(2.0, 100.0)
    assert ctl.wait_mean == pytest.approx(2.0)


def test_throttle_thresholds_are_strict() -> None:
    ctl = _throttle(target=4.0)
    ctl.observe_wait(4.0, 0.0)  # exactly the target: not above it
    assert ctl.shed_level == 0
    ctl.observe_wait(6.0, 1.0)  # mean 5 > 4
    assert ctl.shed_level == 1
    ctl.observe_wait(-1.0, 2.0)  # mean 3: between target/2 and target, level holds
    assert ctl.shed_level == 1
    ctl.observe_wait(-1.0, 3.0)  # mean 2 = target / 2 exactly: holds
    assert ctl.signal == pytest.approx(2.0) and ctl.shed_level == 1
    ctl.observe_wait(-1.5, 4.0)  # mean 1.5 < 2: back to 0
    assert ctl.shed_level == 0


def test_deadline_check_boundary_and_soft_deferral_reason() -> None:
    ctl = AdmissionController(AdmissionConfig(defer_soft_infeasible=True))
    assert decide(ctl, deadline=5.0, hard=True, ef=5.0 + 1e-9) is ACCEPT
    d = decide(ctl, deadline=5.0, ef=7.0)
    assert d.reason == "earliest estimated finish t=7 is after the deadline t=5"
