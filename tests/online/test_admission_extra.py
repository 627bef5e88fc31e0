"""Adaptive throttling, clocks, and the coordinator beside the asyncio runtime."""

from __future__ import annotations

import asyncio

import pytest

from allocator.errors import InvalidInputError
from allocator.online import (
    AdmissionConfig,
    Code,
    Executor,
    MonotonicClock,
    Reject,
    TaskCompleted,
    VirtualClock,
)
from allocator.online.coordinator import Coordinator
from allocator.online.runtime import Runtime
from models import Agent, Priority

from .helpers import brief, submit


def test_throttle_sheds_low_classes_under_overload_and_recovers() -> None:
    ex = Executor("fifo", agents=[Agent(id="a")], admission=AdmissionConfig(
        throttle=True, target_wait=1.0, adapt_interval=1.0, window=3.0, max_defers=0))
    ex.handle(*[submit(f"t{i}") for i in range(4)])
    # t1 waited 2; two tasks (2 units of work) queued on one agent: delay 2 > 1
    ex.handle(TaskCompleted(task_id="t0", agent="a", attempt=1, time=2.0))
    assert ex.admission.shed_level == 1
    out = ex.handle(submit("low", priority=Priority.LOW, time=2.0),
                    submit("normal", priority=Priority.NORMAL, time=2.0))
    assert brief(out) == [("Reject", "low", Code.THROTTLED)]
    assert "shedding low" in ex.outcome("low")[2]  # type: ignore[index]
    ex.handle(TaskCompleted(task_id="t1", agent="a", attempt=1, time=3.0))
    assert ex.admission.shed_level == 2
    for k, tid in enumerate(("t2", "t3", "normal")):
        ex.handle(TaskCompleted(task_id=tid, agent="a", attempt=1, time=4.0 + k))
    # Idle from t=6: nothing is dispatched, yet the old waits leave the window
    # on the clock, so the throttle opens again (it used to latch at level 3).
    later = 6.0 + ex.admission.recovery_bound()
    out = ex.handle(*[submit(f"n{k}", priority=Priority.LOW, time=later) for k in range(5)])
    assert not [i for i in out if isinstance(i, Reject)]
    assert ex.admission.shed_level == 0


def test_clocks() -> None:
    c = VirtualClock(5.0)
    assert c.advance(1.5) == 6.5
    with pytest.raises(InvalidInputError):
        c.set(1.0)
    m = MonotonicClock()
    assert 0.0 <= m.now() < 5.0


def test_coordinator_runs_beside_the_runtime() -> None:
    async def job() -> int:
        await asyncio.sleep(0.02)
        return 1

    async def main() -> int:
        rt = Runtime([Agent(id=f"w{i}") for i in range(3)], "round-robin")
        coord = Coordinator(rt.core, every=0.05, solver="greedy", time_limit=0.5)
        loop_task = asyncio.create_task(coord.run(rt, check_every=0.02))
        futs = [rt.submit(job, home="w0") for _ in range(30)]
        total = sum(await asyncio.gather(*futs))
        await rt.shutdown()
        # The loop ends once the solve in flight returns: the first one imports the
        # solver, which takes seconds on a loaded machine (2 s failed at load 10).
        await asyncio.wait_for(loop_task, 30)
        assert coord.solves >= 1
        return total

    assert asyncio.run(asyncio.wait_for(main(), 60)) == 30
