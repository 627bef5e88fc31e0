"""Tasks submitted at one instant are seen together before any is dispatched.

A burst (one `handle` call, one `submit_many_at`, the simulator's arrivals at
equal times, a runtime's `submit_many`) used to let its first task take an
idle agent before the others were seen: EDF missed deadlines of sets feasible
only in deadline order, a low task ran before the critical one behind it and
fair shares started with whichever tenant came first. Arrivals at distinct
times keep their decisions (tests/online/test_sim_pinned.py).
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

import pytest

from allocator.clock import VirtualClock
from allocator.errors import InvalidInputError
from allocator.online import AdmissionConfig, Executor, TaskSpec
from allocator.online.breaker import BreakerConfig
from allocator.online.events import (
    Complete,
    Defer,
    Dispatch,
    Instruction,
    Steal,
    TaskCompleted,
    TaskFailed,
    Tick,
)
from allocator.online.policies import make_policy
from allocator.online.runtime import Runtime
from allocator.online.simulator import Simulator
from allocator.online.workload import from_specs
from models import Agent, Priority

from .helpers import brief, deadline_order_set, submit


def _drain(ex: Executor, out: list[Instruction]) -> tuple[list[str], dict[str, float]]:
    """Play the agents (each attempt takes its work / the agent's speed): the dispatch
    order and each task's completion time."""
    heap: list[tuple[float, int, Dispatch]] = []
    order: list[str] = []
    ends: dict[str, float] = {}
    k = 0
    while True:
        for ins in out:
            if isinstance(ins, Dispatch):
                order.append(ins.task_id)
                k += 1
                speed = ex.agents[ins.agent].spec.speed
                heapq.heappush(heap, (ins.time + ins.work / speed, k, ins))
            elif isinstance(ins, Complete):
                ends[ins.task_id] = ins.time
        if not heap:
            return order, ends
        t, _, d = heapq.heappop(heap)
        out = ex.handle(TaskCompleted(task_id=d.task_id, agent=d.agent, attempt=d.attempt,
                                      time=t))


@pytest.mark.parametrize("policy", ["edf", "edf+stealing"])
@pytest.mark.parametrize("seed", range(4))
def test_edf_meets_every_deadline_of_a_set_released_together(policy: str, seed: int) -> None:
    speed, specs = deadline_order_set(seed)
    ex = Executor(policy, agents=[Agent(id="a", speed=speed)])
    order, ends = _drain(ex, ex.handle(*[submit(s.id, time=2.0, work=s.work,
                                               deadline=s.deadline + 2.0) for s in specs]))
    assert order == [s.id for s in sorted(specs, key=lambda s: s.deadline or 0.0)]
    assert all(ends[s.id] <= s.deadline + 2.0 + 1e-9 for s in specs)


@pytest.mark.parametrize("policy", ["edf", "edf+stealing"])
def test_the_simulator_delivers_equal_arrival_times_as_one_batch(policy: str) -> None:
    for seed in range(4):
        speed, specs = deadline_order_set(seed, k=20)
        wl = from_specs([(1.5, s.__class__(s.id, work=s.work, deadline=s.deadline + 1.5))
                         for s in specs], [Agent(id="a", speed=speed)])
        row = Simulator(wl, policy, seed=0).run().row
        assert row["completed"] == 20 and row["lost"] == 0 and row["duplicated"] == 0
        assert row["miss_rate"] == 0.0, (seed, row["miss_rate"])


def test_a_priority_burst_runs_the_critical_task_first() -> None:
    for policy in ("priority", "priority+stealing"):
        ex = Executor(policy, agents=[Agent(id="a")])
        burst = [submit(f"low{i}", priority=Priority.LOW, home="a") for i in range(3)]
        burst.insert(2, submit("crit", priority=Priority.CRITICAL, home="a"))
        order, _ = _drain(ex, ex.handle(*burst))
        assert order[0] == "crit", (policy, order)


@pytest.mark.parametrize("first", ["A", "B"])
def test_wfq_shares_under_a_burst_follow_the_weights_from_the_first_dispatch(first: str
                                                                            ) -> None:
    """Tenant B weighs 4, A 1; A's tasks are 3x longer. Whoever is listed first, B's
    tasks start first and the order is the one of their finish tags."""
    pol = make_policy("wfq", flow_weights={"A": 1.0, "B": 4.0})
    ex = Executor(pol, agents=[Agent(id="x")])
    a = [submit(f"A{i}", tenant="A", work=3.0) for i in range(10)]
    b = [submit(f"B{i}", tenant="B", work=1.0) for i in range(10)]
    order, _ = _drain(ex, ex.handle(*(a + b if first == "A" else b + a)))
    # Finish tags: B k/4 (k = 1..), A 3k: B0..B9 end at 2.5, A0's tag is 3.
    assert [t[0] for t in order[:11]] == ["B"] * 10 + ["A"]


def test_every_idle_agent_serving_a_pool_takes_from_a_burst() -> None:
    for policy in ("fifo", "edf", "priority", "wfq", "cfs"):
        ex = Executor(policy, agents=[Agent(id=f"a{i}") for i in range(3)])
        out = ex.handle(*[submit(f"t{i}", deadline=10.0 - i) for i in range(5)])
        took = sorted(i.agent for i in out if isinstance(i, Dispatch))
        assert took == ["a0", "a1", "a2"], (policy, brief(out))


def test_a_burst_behind_a_busy_home_wakes_an_idle_thief() -> None:
    ex = Executor("stealing", agents=[Agent(id="a"), Agent(id="b")])
    ex.handle(submit("first", home="a", time=0.0))
    # b is idle, a runs `first`; at 1 a burst for a arrives: b steals at once. (Woken
    # by the burst's first task alone, b found too little to steal and backed off.)
    out = ex.handle(*[submit(f"t{i}", home="a", time=1.0) for i in range(4)])
    assert any(isinstance(i, Steal) for i in out)
    assert any(isinstance(i, Dispatch) and i.agent == "b" for i in out)


def test_class_caps_count_what_is_still_queued_after_the_burst_starts() -> None:
    """Cap 2 on low, two idle agents, five low tasks at once: two run, two wait, one is
    deferred (as arriving one at a time): the ones the agents take do not count."""
    ex = Executor("fifo", agents=[Agent(id="a"), Agent(id="b")],
                  admission=AdmissionConfig(class_caps={Priority.LOW: 2}, max_defers=0))
    out = ex.handle(*[submit(f"t{i}", priority=Priority.LOW) for i in range(5)])
    assert [(i.task_id, i.agent) for i in out if isinstance(i, Dispatch)] == [
        ("t0", "a"), ("t1", "b")]
    assert [i.task_id for i in out if type(i).__name__ == "Reject"] == ["t4"]
    assert ex.phase("t2") == ex.phase("t3") == "queued"


def test_a_burst_over_a_class_cap_is_deferred_in_submission_order() -> None:
    """Busy agents, cap 2 on low, five low tasks at once: the last three are deferred,
    oldest first (their re-admissions come back in that order)."""
    ex = Executor("fifo", agents=[Agent(id="a")],
                  admission=AdmissionConfig(class_caps={Priority.LOW: 2}, defer_delay=1.0))
    ex.handle(submit("busy", work=5.0))
    out = ex.handle(*[submit(f"l{i}", time=0.1, priority=Priority.LOW) for i in range(5)])
    assert [(i.task_id, i.reason) for i in out if isinstance(i, Defer)] == [
        (f"l{i}", "2 low tasks queued (cap 2)") for i in (2, 3, 4)]


def test_deferrals_due_together_reach_every_idle_agent() -> None:
    """Three low tasks deferred by a cap come back at one instant with two agents
    idle: both start one (a push to the pool woke the same idle agent twice, so one
    task waited beside an idle agent until some later event)."""
    ex = Executor("fifo", agents=[Agent(id=x) for x in "abcd"],
                  admission=AdmissionConfig(class_caps={Priority.LOW: 2}, defer_delay=1.0))
    ex.handle(*[submit(f"blk{x}", work=0.5) for x in "abcd"])
    ex.handle(*[submit(f"l{i}", time=0.1, priority=Priority.LOW) for i in range(5)])
    for x in "abcd":  # a and b start l0 and l1; c and d go idle
        ex.handle(TaskCompleted(task_id=f"blk{x}", agent=x, attempt=1, time=0.5))
    out = ex.handle(Tick(time=1.1))  # l2, l3, l4 come back; l4 is over the cap again
    assert [(i.task_id, i.agent) for i in out if isinstance(i, Dispatch)] == [
        ("l2", "c"), ("l3", "d")]
    assert ex.phase("l4") == "deferred"


def test_a_retry_is_not_held_by_an_agent_whose_breaker_just_opened() -> None:
    """x fails on a (two slots, idle otherwise) and opens a's breaker: the retry goes
    to the pool and b, idle, starts it at once (the wake went to a, which could take
    nothing)."""
    ex = Executor("fifo", agents=[Agent(id="a", concurrency=2), Agent(id="b")],
                  breaker=BreakerConfig(window=2, min_calls=1))
    assert [i.agent for i in ex.handle(submit("x")) if isinstance(i, Dispatch)] == ["a"]
    out = ex.handle(TaskFailed(task_id="x", agent="a", attempt=1, time=1.0))
    assert [(i.task_id, i.agent, i.attempt) for i in out if isinstance(i, Dispatch)] == [
        ("x", "b", 2)]


@pytest.mark.parametrize("log", [0, None])
def test_the_entry_points_agree_on_a_burst(log: int | None) -> None:
    """submit_many_at, handle and feed: the same ids, decisions and event count."""
    speed, specs = deadline_order_set(1, k=8)
    runs = []
    for how in ("handle", "many", "feed"):
        ex = Executor("edf+stealing", agents=[Agent(id="a", speed=speed), Agent(id="b")],
                      log=log)
        ex.handle(submit("early", time=0.5, home="a", work=50.0))
        specs_h = [TaskSpec(s.id, work=s.work, deadline=s.deadline, home="a") for s in specs]
        if how == "handle":
            out = ex.handle(*[submit(s.id, time=1.0, work=s.work, deadline=s.deadline,
                                     home="a") for s in specs_h])
        elif how == "many":
            out = ex.submit_many_at(specs_h, 1.0)
        else:
            out = ex.feed([(1.0, s) for s in specs_h])
        runs.append(([(type(i).__name__, i.id, i.cause, *brief([i])) for i in out],
                     ex.metrics.events, ex._next_id))
    assert runs[0] == runs[1] == runs[2]
    assert any(r[0] == "Dispatch" for r in runs[0][0])


def test_a_burst_with_a_known_or_repeated_id_is_refused_whole() -> None:
    ex = Executor("edf", agents=[Agent(id="a")])
    ex.handle(submit("x"))
    for bad in ([TaskSpec("y"), TaskSpec("x")], [TaskSpec("y"), TaskSpec("y")]):
        with pytest.raises(InvalidInputError, match="duplicate task id"):
            ex.submit_many_at(bad, 1.0)
        with pytest.raises(InvalidInputError, match="duplicate task id"):
            ex.handle(*[submit(s.id, time=1.0) for s in bad])
    assert set(ex.tasks) == {"x"}  # nothing of the refused bursts was applied


@pytest.mark.parametrize("log", [0, 10_000])
def test_the_runtime_submits_many_at_one_instant(log: int) -> None:
    """EDF on one agent of one slot: the calls run in deadline order, whether the
    burst is one `submit_many` or submissions in one loop turn on a clock that does
    not move (one instant); with the log off the runtime feeds the core `feed`'s
    tuples, with it on events through `handle`."""
    speed, specs = deadline_order_set(2, k=10)
    want = [s.id for s in sorted(specs, key=lambda s: s.deadline or 0.0)]

    async def main(many: bool) -> list[str]:
        ran: list[str] = []

        async def job(tid: str) -> str:
            ran.append(tid)
            return tid

        kw: dict[str, Any] = {"log": log} if many else {"clock": VirtualClock(0.0), "log": log}
        async with Runtime([Agent(id="a", speed=speed)], "edf", **kw) as rt:
            fields = [{"id": s.id, "work": s.work, "deadline": s.deadline} for s in specs]
            if many:
                futs = rt.submit_many([(job, (f["id"],), f) for f in fields])
            else:
                futs = [rt.submit(job, f["id"], **f) for f in fields]
            assert await asyncio.gather(*futs) == [s.id for s in specs]
        return ran

    assert asyncio.run(main(False)) == want
    assert asyncio.run(main(True)) == want


def test_runtime_submit_many_refuses_a_bad_batch_whole() -> None:
    async def main() -> None:
        async def job() -> None:
            return None

        async with Runtime([Agent(id="a")], "edf") as rt:
            for bad in ([(job, (), {"id": "p"}), (job, (), {"id": "p"})],
                        [(job, (), {"id": "q"}), (job, (), {"id": "r", "work": -1.0})],
                        [(job, [], {})]):
                with pytest.raises(InvalidInputError):
                    rt.submit_many(bad)
            assert rt._jobs == {} and rt._pending == []
            assert await asyncio.gather(*rt.submit_many([(job, ()), (job, ())])) == [None] * 2

    asyncio.run(main())


def test_distinct_times_keep_first_come_first_served_on_an_idle_agent() -> None:
    """Not a burst: the first task starts at its own time, before the others exist."""
    ex = Executor("edf", agents=[Agent(id="a")])
    out = ex.handle(submit("late", deadline=50.0), submit("soon", time=0.1, deadline=5.0))
    assert [i.task_id for i in out if isinstance(i, Dispatch)] == ["late"]
    assert not any(isinstance(i, Defer) for i in out)
