"""Admission's hard-deadline check counts the work that really runs first.

Under EDF the work ahead of a new task is the queued work with an earlier (or
equal) deadline plus what is running; under priority queues the work of equal
or higher class. A task is also refused when admitting it would make a queued
hard task miss (the classic EDF admission test). FIFO and the fair
disciplines count all queued work, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from allocator.clock import VirtualClock
from allocator.online import Executor, TaskSpec
from allocator.online.events import Code, Dispatch, Fail, Reject, TaskCompleted
from allocator.online.policies import StealConfig, make_policy
from allocator.online.runtime import Runtime
from allocator.online.simulator import Simulator
from allocator.online.workload import from_specs
from models import Agent, Priority

from .helpers import deadline_order_set, submit
from .test_same_instant import _drain


@pytest.mark.parametrize("policy", ["edf", "edf+stealing"])
@pytest.mark.parametrize("seed", range(3))
def test_an_edf_burst_feasible_in_deadline_order_is_admitted_and_meets_every_deadline(
        policy: str, seed: int) -> None:
    speed, specs = deadline_order_set(seed, hard=True)
    ex = Executor(policy, agents=[Agent(id="a", speed=speed)])
    out = ex.handle(*[submit(s.id, time=2.0, work=s.work, deadline=s.deadline + 2.0,
                             hard_deadline=True) for s in specs])
    assert [i.reason for i in out if isinstance(i, Reject)] == []
    order, ends = _drain(ex, out)
    assert order == [s.id for s in sorted(specs, key=lambda s: s.deadline or 0.0)]
    assert all(ends[s.id] <= s.deadline + 2.0 + 1e-9 for s in specs)
    assert ex.metrics.completed == len(specs)


def _latest_first(home: str | None) -> list[Any]:
    return [submit("x", time=0.0, work=1.0, home=home),
            submit("h1", time=0.1, work=2.0, deadline=10.0, hard_deadline=True, home=home),
            submit("h2", time=0.2, work=2.0, deadline=5.0, hard_deadline=True, home=home),
            submit("h3", time=0.3, work=1.0, deadline=3.5, hard_deadline=True, home=home)]


def test_hard_tasks_arriving_latest_deadline_first_are_admitted_under_edf() -> None:
    """Distinct arrival times: each later task has an earlier deadline and runs first."""
    for policy in ("edf", "edf+stealing"):
        ex = Executor(policy, agents=[Agent(id="a")])
        out = ex.handle(*_latest_first(None))
        assert [i.task_id for i in out if isinstance(i, Reject)] == [], policy
        order, ends = _drain(ex, out)
        assert order == ["x", "h3", "h2", "h1"]
        assert (ends["h3"], ends["h2"], ends["h1"]) == (2.0, 4.0, 6.0)


def test_a_home_deque_does_not_jump_a_hard_task_waiting_in_the_pool() -> None:
    """edf+stealing (a deque of one): h2 overflows to the pool, which the agent serves
    after its deque; h3, queued at home once the deque is free, would run first and
    make h2 miss (main admitted it: h2 then expired), so it is refused, naming h2."""
    ex = Executor(make_policy("edf+stealing", steal=StealConfig(deque_cap=1)),
                  agents=[Agent(id="a")])
    out = ex.handle(submit("x", time=0.0, work=1.0, home="a"))  # runs 0-1
    out += ex.handle(submit("h1", time=0.1, work=2.0, deadline=10.0, hard_deadline=True,
                            home="a"))  # the deque: runs 1-3
    out += ex.handle(submit("h2", time=0.2, work=2.0, deadline=5.0, hard_deadline=True,
                            home="a"))  # the pool: runs 3-5
    assert ex.tasks["h2"].where is None
    out += ex.handle(TaskCompleted(task_id="x", agent="a", attempt=1, time=1.0))
    out += ex.handle(submit("h3", time=1.1, work=1.0, deadline=4.5, hard_deadline=True,
                            home="a"))
    rej = [i for i in out if isinstance(i, Reject)]
    assert [i.task_id for i in rej] == ["h3"] and "'h2'" in rej[0].reason
    _, ends = _drain(ex, [i for i in out if not isinstance(i, Dispatch) or i.task_id != "x"])
    assert (ends["h1"], ends["h2"]) == (3.0, 5.0)


def test_the_simulator_admits_a_feasible_hard_edf_burst() -> None:
    for seed in range(3):
        speed, specs = deadline_order_set(seed, k=20, hard=True)
        wl = from_specs([(1.5, TaskSpec(s.id, work=s.work, deadline=(s.deadline or 0.0) + 1.5,
                                        hard_deadline=True)) for s in specs],
                        [Agent(id="a", speed=speed)])
        row = Simulator(wl, "edf", seed=0).run().row
        assert (row["completed"], row["rejected"], row["lost"]) == (20, 0, 0), seed
        assert row["miss_rate"] == 0.0


def test_several_agents_and_lanes_admit_a_burst_the_capacity_can_serve() -> None:
    """Two agents of two slots: 7 hard tasks of work 1 due at 2 (the four slots run
    8 by then), listed after a later-due one (main counted it ahead of them and
    spread the work over the capacity before adding each one's own run time:
    it refused the fifth to seventh). The queue is scheduled slot by slot."""
    ex = Executor("edf", agents=[Agent(id="a", concurrency=2), Agent(id="b", concurrency=2)])
    burst = [submit("late", work=1.0, deadline=5.0, hard_deadline=True)]
    burst += [submit(f"h{i}", work=1.0, deadline=2.0, hard_deadline=True) for i in range(7)]
    out = ex.handle(*burst)
    assert [i.task_id for i in out if isinstance(i, Reject)] == []
    _, ends = _drain(ex, out)
    assert max(ends[f"h{i}"] for i in range(7)) <= 2.0 and ends["late"] <= 5.0
    # An eighth due at 2 would push `late` (due at 2 now) past it: refused, naming it.
    ex = Executor("edf", agents=[Agent(id="a", concurrency=2), Agent(id="b", concurrency=2)])
    burst[0] = submit("late", work=1.0, deadline=2.0, hard_deadline=True)
    out = ex.handle(*burst, submit("h7", work=1.0, deadline=1.5, hard_deadline=True))
    rej = [i for i in out if isinstance(i, Reject)]
    assert [i.task_id for i in rej] == ["h7"] and "'h" in rej[0].reason


def test_the_runtime_admits_a_feasible_hard_edf_burst() -> None:
    speed, specs = deadline_order_set(1, k=10, hard=True)

    async def main() -> list[str]:
        ran: list[str] = []

        async def job(tid: str) -> str:
            ran.append(tid)
            return tid

        async with Runtime([Agent(id="a", speed=speed)], "edf", clock=VirtualClock(0.0)) as rt:
            calls: list[tuple[Any, ...]] = [
                (job, (s.id,), {"id": s.id, "work": s.work, "deadline": s.deadline,
                                "hard_deadline": True}) for s in specs]
            assert await asyncio.gather(*rt.submit_many(calls)) == [s.id for s in specs]
        return ran

    assert asyncio.run(main()) == [s.id for s in sorted(specs, key=lambda s: s.deadline or 0.0)]


def test_a_task_that_would_make_an_admitted_hard_task_miss_is_rejected() -> None:
    for policy in ("edf", "edf+stealing"):
        ex = Executor(policy, agents=[Agent(id="a")])
        out = ex.handle(submit("x", work=1.0, home="a"))  # runs from 0 to 1
        out += ex.handle(submit("h", work=2.0, deadline=3.0, hard_deadline=True, home="a"))
        # n alone would finish at 2 (its deadline), but h would then finish at 4 (> 3).
        out += ex.handle(submit("n", time=0.0, work=1.0, deadline=2.0, hard_deadline=True,
                                home="a"))
        rej = [i for i in out if isinstance(i, Reject)]
        assert [(i.task_id, i.code) for i in rej] == [("n", Code.DEADLINE_INFEASIBLE)], policy
        assert "'h'" in rej[0].reason and "miss its deadline t=3" in rej[0].reason
        # Given room (h due at 4), the same task is admitted and both meet their deadlines.
        ex = Executor(policy, agents=[Agent(id="a")])
        out = ex.handle(submit("x", work=1.0, home="a"))
        out += ex.handle(submit("h", work=2.0, deadline=4.0, hard_deadline=True, home="a"),
                         submit("n", time=0.0, work=1.0, deadline=2.0, hard_deadline=True,
                                home="a"))
        assert not [i for i in out if isinstance(i, Reject)]
        _, ends = _drain(ex, out)
        assert (ends["n"], ends["h"]) == (2.0, 4.0)


def test_a_soft_task_is_not_refused_for_the_hard_task_it_delays() -> None:
    """Only hard tasks are held to the harm test (a soft deadline is a preference)."""
    ex = Executor("edf", agents=[Agent(id="a")])
    out = ex.handle(submit("x", work=1.0))
    out += ex.handle(submit("h", work=2.0, deadline=3.0, hard_deadline=True),
                     submit("s", time=0.0, work=1.0, deadline=2.0))
    assert not [i for i in out if isinstance(i, Reject)]


@pytest.mark.parametrize("policy", ["priority", "priority+stealing", "priority-wfq"])
def test_priority_counts_the_work_of_equal_or_higher_class(policy: str) -> None:
    crit, low = Priority.CRITICAL, Priority.LOW
    ex = Executor(policy, agents=[Agent(id="a")])
    out = ex.handle(submit("run", work=1.0, home="a"))  # runs from 0 to 1
    out += ex.handle(*[submit(f"low{i}", work=2.0, priority=low, home="a") for i in range(5)])
    # A critical hard task behind 10 units of queued low work: it runs next.
    out += ex.handle(submit("c", time=0.5, work=1.0, deadline=2.5, hard_deadline=True,
                            priority=crit, home="a"))
    assert not [i for i in out if isinstance(i, Reject)]
    # A low hard task behind the critical work (and the other lows) counts them all.
    out += ex.handle(submit("lh", time=0.5, work=1.0, deadline=12.0, hard_deadline=True,
                            priority=low, home="a"))
    rej = [i for i in out if isinstance(i, Reject)]
    assert [(i.task_id, i.code) for i in rej] == [("lh", Code.DEADLINE_INFEASIBLE)]
    out = [i for i in out if not isinstance(i, Reject)]
    out += ex.handle(submit("lh2", time=0.5, work=1.0, deadline=13.0, hard_deadline=True,
                            priority=low, home="a"))
    # A critical hard task that would push that queued low hard task past 13 is refused.
    out += ex.handle(submit("c2", time=0.5, work=0.5, deadline=3.0, hard_deadline=True,
                            priority=crit, home="a"))
    rej = [i for i in out if isinstance(i, Reject)]
    assert [i.task_id for i in rej] == ["c2"] and "'lh2'" in rej[0].reason
    order, ends = _drain(ex, out)
    assert order[:2] == ["run", "c"] and ends["c"] == 2.0 and ends["lh2"] <= 13.0


def test_fifo_still_counts_all_queued_work() -> None:
    ex = Executor("fifo", agents=[Agent(id="a")])
    out = ex.handle(submit("x", work=1.0))
    out += ex.handle(submit("h", work=2.0, deadline=10.0, hard_deadline=True),
                    submit("n", work=1.0, deadline=2.0, hard_deadline=True))
    assert [i.task_id for i in out if isinstance(i, Reject)] == ["n"]


def test_idle_agents_of_several_speeds_are_counted_at_the_slowest() -> None:
    """Which idle agent takes a task is not known at admission: a hard task only the
    fast one finishes in time is refused up front (main admitted it, the slow one
    took it and it failed at dispatch); one the slow agent also finishes is admitted."""
    ex = Executor("edf", agents=[Agent(id="slow", speed=0.5), Agent(id="fast", speed=1.0)])
    out = ex.handle(submit("t", work=1.0, deadline=1.5, hard_deadline=True))
    assert [(type(i).__name__, i.code) for i in out if isinstance(i, Reject | Fail)] == [
        ("Reject", Code.DEADLINE_INFEASIBLE)]
    out = ex.handle(submit("u", work=1.0, deadline=2.0, hard_deadline=True))
    assert not [i for i in out if isinstance(i, Reject | Fail)]
