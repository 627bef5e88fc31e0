"""Queue disciplines: priority classes with weights and aging (starvation bound), WFQ, CFS."""

from __future__ import annotations

from collections import Counter

import pytest

from allocator.online import Executor, PriorityConfig, TaskCancelled, TaskCompleted, make_policy
from allocator.online.events import Complete, Dispatch
from models import Agent, Priority

from .helpers import submit


def _drive(ex: Executor, arrivals: list[tuple[float, str, dict]], until: float,
           service: float = 1.0) -> dict[str, tuple[float, float]]:
    """Single agent 'a', every task takes `service`; returns id -> (submitted, started)."""
    pending = sorted(arrivals)
    started: dict[str, float] = {}
    sub: dict[str, float] = {}
    running: tuple[str, float] | None = None
    now = 0.0
    i = 0
    while now <= until:
        evs = []
        while i < len(pending) and pending[i][0] <= now:
            t, tid, kw = pending[i]
            sub[tid] = t
            evs.append(submit(tid, time=now, **kw))
            i += 1
        if running is not None and running[1] <= now:
            evs.append(TaskCompleted(task_id=running[0], agent="a", attempt=1, time=now))
            running = None
        for ins in ex.handle(*evs) if evs else []:
            if isinstance(ins, Dispatch):
                started[ins.task_id] = now
                running = (ins.task_id, now + service)
        now = round(now + 0.5, 6)
    return {k: (sub[k], started[k]) for k in started}


def test_low_priority_wait_is_bounded_under_a_steady_high_stream() -> None:
    """A high task arrives every 0.5 (twice the service rate: the agent is always busy).

    With weights that give low a tiny share (1e-6), stride scheduling alone
    would starve it; aging serves any head older than 10 first, so a low task
    waits at most aging + one service time (+ older aged heads, none here).
    """
    cfg = PriorityConfig(weights={Priority.CRITICAL: 1.0, Priority.HIGH: 1.0,
                                  Priority.NORMAL: 1.0, Priority.LOW: 1e-6},
                         aging={Priority.CRITICAL: 1e9, Priority.HIGH: 1e9,
                                Priority.NORMAL: 1e9, Priority.LOW: 10.0})
    ex = Executor(make_policy("priority", priority=cfg), agents=[Agent(id="a")])
    arrivals = [(k * 0.5, f"h{k}", {"priority": Priority.HIGH}) for k in range(400)]
    arrivals += [(t, f"low{t}", {"priority": Priority.LOW}) for t in (5.0, 20.0, 60.0)]
    seen = _drive(ex, arrivals, until=200.0)
    for tid in ("low5.0", "low20.0", "low60.0"):
        sub, start = seen[tid]
        assert start - sub <= 10.0 + 1.0 + 1e-9, (tid, start - sub)


def test_without_aging_low_priority_starves_under_the_same_stream() -> None:
    cfg = PriorityConfig(weights={Priority.CRITICAL: 1.0, Priority.HIGH: 1.0,
                                  Priority.NORMAL: 1.0, Priority.LOW: 1e-6},
                         aging=dict.fromkeys(Priority, 1e9))
    ex = Executor(make_policy("priority", priority=cfg), agents=[Agent(id="a")])
    arrivals = [(k * 0.5, f"h{k}", {"priority": Priority.HIGH}) for k in range(400)]
    arrivals.append((5.0, "low", {"priority": Priority.LOW}))
    seen = _drive(ex, arrivals, until=150.0)
    assert "low" not in seen  # stride alone gives it one slot per 1e6: the bound is aging's


@pytest.mark.parametrize(
    ("weights", "share_high"),
    [pytest.param({Priority.HIGH: 3.0, Priority.LOW: 1.0}, 0.75, id="3:1 weights give 75%"),
     pytest.param({Priority.HIGH: 1.0, Priority.LOW: 1.0}, 0.5, id="equal weights split evenly")],
)
def test_class_weights_set_the_share_when_both_are_backlogged(
        weights: dict[Priority, float], share_high: float) -> None:
    cfg = PriorityConfig(weights=weights, aging=dict.fromkeys(Priority, 1e9))
    ex = Executor(make_policy("priority", priority=cfg), agents=[Agent(id="a")])
    arrivals = [(0.0, f"h{k}", {"priority": Priority.HIGH}) for k in range(100)]
    arrivals += [(0.0, f"l{k}", {"priority": Priority.LOW}) for k in range(100)]
    seen = _drive(ex, arrivals, until=40.0)
    served = Counter(tid[0] for tid in seen)
    assert served["h"] / (served["h"] + served["l"]) == pytest.approx(share_high, abs=0.05)


@pytest.mark.parametrize("policy", ["wfq", "cfs"])
def test_fair_queuing_shares_by_tenant_weight(policy: str) -> None:
    ex = Executor(make_policy(policy, flow_weights={"big": 3.0, "small": 1.0}),
                  agents=[Agent(id="a")])
    arrivals = [(0.0, f"b{k}", {"tenant": "big"}) for k in range(100)]
    arrivals += [(0.0, f"s{k}", {"tenant": "small"}) for k in range(100)]
    seen = _drive(ex, arrivals, until=40.0)
    served = Counter(tid[0] for tid in seen)
    assert served["b"] / (served["b"] + served["s"]) == pytest.approx(0.75, abs=0.06)


def test_cfs_new_tenant_does_not_bank_idle_time() -> None:
    ex = Executor("cfs", agents=[Agent(id="a")])
    arrivals = [(0.0, f"x{k}", {"tenant": "x"}) for k in range(60)]
    arrivals += [(20.0, f"y{k}", {"tenant": "y"}) for k in range(60)]
    seen = _drive(ex, arrivals, until=40.0)
    after = sorted((start, tid[0]) for tid, (_, start) in seen.items() if start >= 21.0)
    ys = sum(1 for _, f in after if f == "y")
    # once y arrives the two alternate; y does not get 20 time units of catch-up
    assert 0.35 <= ys / len(after) <= 0.65


def test_edf_order_in_a_single_queue() -> None:
    ex = Executor("edf", agents=[Agent(id="a")])
    out = ex.handle(submit("busy"))  # the agent is busy when the others arrive
    out += ex.handle(submit("late", time=0.5, deadline=50), submit("soon", time=0.5, deadline=5),
                     submit("none", time=0.5))
    out += ex.handle(TaskCompleted(task_id="busy", agent="a", attempt=1, time=1))
    out += ex.handle(TaskCompleted(task_id="soon", agent="a", attempt=1, time=2))
    assert [i.task_id for i in out if isinstance(i, Dispatch)] == ["busy", "soon", "late"]
    assert [i.task_id for i in out if isinstance(i, Complete)] == ["busy", "soon"]


def _shared_agent_shares(policy: str, weight_y: float) -> Counter[str]:
    """Tenant y runs alone on agent b (skill y); x is backlogged on agent a (skill x) and
    z, sharing a's skill, arrives at 100: how a's dispatches split in [100, 200)."""
    ex = Executor(make_policy(policy, flow_weights={"x": 1.0, "y": weight_y, "z": 1.0}),
                  agents=[Agent(id="a", skills=["x"]), Agent(id="b", skills=["y"])])
    started: dict[str, float] = {}
    running: dict[str, tuple[str, float]] = {}
    out = ex.handle(*[submit(f"x{k}", tenant="x", skills=("x",)) for k in range(200)],
                    *[submit(f"y{k}", tenant="y", skills=("y",)) for k in range(200)])
    for now in range(201):
        evs: list = [TaskCompleted(task_id=tid, agent=ag, attempt=1, time=now)
                     for ag, (tid, end) in list(running.items()) if end <= now]
        running = {ag: r for ag, r in running.items() if r[1] > now}
        if now == 100:
            evs += [submit(f"z{k}", time=now, tenant="z", skills=("x",)) for k in range(100)]
        out = out + ex.handle(*evs) if evs else out
        for ins in out:
            if isinstance(ins, Dispatch):
                started[ins.task_id] = now
                running[ins.agent] = (ins.task_id, now + 1)
        out = []
    return Counter(tid[0] for tid, s in started.items() if 100 <= s < 200 and tid[0] != "y")


@pytest.mark.parametrize("policy", ["wfq", "cfs", "wfq+stealing", "cfs+stealing"])
@pytest.mark.parametrize("weight_y", [0.1, 10.0])
def test_a_flow_on_other_agents_does_not_set_the_shares_of_one_agent(
        policy: str, weight_y: float) -> None:
    """z joins x on agent a at 100 with equal weights: they split a's service.

    A flow on disjoint agents (y, on b) moves at its own virtual pace: its tags or
    vruntime must not decide where z starts. Before, z started at y's pace: with
    y's weight 0.1 (tags 10x faster) z got none of a's 100 dispatches, with 10
    (cfs: vruntime 10x slower) z got 95 of them, x 5 (credit for time it was away).
    """
    served = _shared_agent_shares(policy, weight_y)
    assert 40 <= served["z"] <= 60, served
    assert served["x"] + served["z"] == 100, served


@pytest.mark.parametrize("policy", ["wfq", "priority-wfq", "wfq+stealing"])
def test_cancelled_queued_tasks_do_not_hold_their_flows_place(policy: str) -> None:
    """x queues 200 tasks beside y's 300 and cancels them unrun at 1; at 2 it
    submits 100 new ones: x and y then split the agent evenly.

    Before, the cancelled tasks' finish tags stayed on x's account: x's new tasks
    were tagged after 200 units of work that never ran and got none of the next
    100 dispatches.
    """
    ex = Executor(policy, agents=[Agent(id="a")])
    out = ex.handle(*[submit(f"y{k}", tenant="y") for k in range(300)],
                    *[submit(f"x{k}", tenant="x") for k in range(200)])
    started: dict[str, int] = {}
    running: str | None = None
    for now in range(103):
        evs: list = []
        if running is not None:
            evs.append(TaskCompleted(task_id=running, agent="a", attempt=1, time=now))
            running = None
        if now == 1:
            evs += [TaskCancelled(task_id=f"x{k}", time=now) for k in range(200)
                    if f"x{k}" not in started]
        if now == 2:
            evs += [submit(f"new{k}", time=now, tenant="x") for k in range(100)]
        for ins in out + (ex.handle(*evs) if evs else []):
            if isinstance(ins, Dispatch):
                running = ins.task_id
                started[ins.task_id] = now
        out = []
    served = Counter(tid[0] for tid, s in started.items() if 3 <= s < 103)
    assert 40 <= served["n"] <= 60, served
