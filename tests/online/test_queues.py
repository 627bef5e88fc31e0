"""Queue disciplines as data structures: order, both ends, work totals, fair clocks.

Each discipline is driven directly with TaskStates (no executor), so a wrong
tie-break, a lost work total or a fair tag that is not carried across
queues shows up as a wrong order here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from allocator.online.events import TaskSpec
from allocator.online.queues import (
    CfsQueue,
    EdfQueue,
    FairClock,
    FifoQueue,
    PlanQueue,
    PriorityConfig,
    PriorityQueue,
    SortedQueue,
    WfqQueue,
    flow_of,
)
from allocator.online.state import TaskState
from models import Priority

_seq = iter(range(10**9))


def task(tid: str, work: float = 1.0, now: float = 0.0, **kw: Any) -> TaskState:
    return TaskState(TaskSpec(tid, work=work, **kw), next(_seq), now)


def ids(q: Any) -> list[str]:
    return [t.id for t in q]


def drain(q: Any, now: float = 0.0) -> list[str]:
    out = []
    while (t := q.peek(now)) is not None:
        q.take(t, now)
        out.append(t.id)
    return out


# -- sorted queues ---------------------------------------------------------------------


def test_fifo_both_ends_and_work() -> None:
    q = FifoQueue()
    assert len(q) == 0 and q.peek(0) is None and q.peek_key(0) is None and q.back(3) == []
    ts = [task(f"t{k}", work=k + 1) for k in range(4)]
    for t in ts:
        q.push(t, 0.0)
    assert len(q) == 4 and q.work == 10.0 and ids(q) == ["t0", "t1", "t2", "t3"]
    assert ts[0].queue is q and ts[0].qkey == 0.0
    assert q.peek_key(0) == (0.0, ts[0].seq)
    assert [t.id for t in q.back(2)] == ["t3", "t2"]
    assert [t.id for t in q.back(9)] == ["t3", "t2", "t1", "t0"]
    q.take(ts[0], 0.0)
    assert ts[0].queue is None and q.work == 9.0 and len(q) == 3
    assert [t.id for t in q.back(9)] == ["t3", "t2", "t1"]  # the taken head is gone
    q.take(ts[2], 0.0)  # not the head: removed from the middle
    assert ids(q) == ["t1", "t3"] and q.work == 6.0
    q.remove(ts[3])
    assert ids(q) == ["t1"] and q.work == 2.0
    q.take(ts[1], 0.0)
    assert len(q) == 0 and q.work == 0.0 and q.peek(0) is None
    assert q.charge(ts[1], 5.0) is None


def test_work_total_is_exactly_zero_when_empty() -> None:
    q = FifoQueue()
    ts = [task(f"f{k}", work=0.1) for k in range(3)]
    for t in ts:
        q.push(t, 0.0)
    for t in ts:
        q.take(t, 0.0)
    assert q.work == 0.0  # not 1e-17
    for t in ts:
        q.push(t, 0.0)
    for t in reversed(ts):
        q.remove(t)
    assert q.work == 0.0


def test_many_heads_taken_then_compacted_keep_the_order() -> None:
    q = FifoQueue()
    ts = [task(f"n{k}") for k in range(200)]
    for t in ts:
        q.push(t, 0.0)
    for t in ts[:150]:
        q.take(t, 0.0)
    assert len(q) == 50 and ids(q) == [t.id for t in ts[150:]]
    assert q.back(1)[0] is ts[-1]
    q.remove(ts[160])
    assert len(q) == 49 and q.peek(0) is ts[150]
    late = task("late")
    q.push(late, 0.0)
    assert ids(q)[-1] == "late"


def test_edf_orders_by_deadline_then_submission() -> None:
    q = EdfQueue()
    a, b, c, d = (task("a", deadline=5.0), task("b"), task("c", deadline=1.0),
                  task("d", deadline=5.0))
    for t in (a, b, c, d):
        q.push(t, 0.0)
    assert ids(q) == ["c", "a", "d", "b"]
    assert b.qkey == math.inf and q.peek_key(0) == (1.0, c.seq)
    assert [t.id for t in q.back(2)] == ["b", "d"]
    assert drain(q) == ["c", "a", "d", "b"]


def test_push_key_inserts_in_order_after_the_head() -> None:
    q = PlanQueue()
    x, y, z = task("x"), task("y"), task("z")
    q.push_key(x, 5.0)
    q.push_key(y, 9.0)
    q.push_key(z, 7.0)
    assert ids(q) == ["x", "z", "y"]
    q.take(x, 0.0)
    w = task("w")
    q.push_key(w, 1.0)  # smaller than everything left
    assert ids(q) == ["w", "z", "y"]
    assert isinstance(q, SortedQueue)


# -- weighted fair queuing -----------------------------------------------------------


def test_wfq_tags_per_flow_and_shared_virtual_time() -> None:
    clock = FairClock(weights={"gold": 2.0})
    q1, q2 = WfqQueue(clock), WfqQueue(clock)
    g1, g2 = task("g1", work=2.0, tenant="gold"), task("g2", work=2.0, tenant="gold")
    s1 = task("s1", work=2.0, tenant="silver")
    for t in (g1, g2, s1):
        q1.push(t, 0.0)
    assert (g1.vtag, g2.vtag, s1.vtag) == (1.0, 2.0, 2.0)  # work / weight, per flow
    assert ids(q1) == ["g1", "g2", "s1"]
    q1.take(g1, 0.0)
    assert clock.v == 1.0 and g1.vtag == -1.0
    # The same flow's tags continue in another queue of the executor.
    g3 = task("g3", work=1.0, tenant="gold")
    q2.push(g3, 0.0)
    assert g3.vtag == 2.5
    # A moved task keeps its tag.
    q1.remove(s1)
    q2.push(s1, 0.0)
    assert s1.qkey == 2.0 and ids(q2) == ["s1", "g3"]
    # V only grows.
    q2.take(s1, 0.0)
    q1.take(g2, 0.0)
    assert clock.v == 2.0
    # A new flow starts at V, not at 0.
    b1 = task("b1", work=0.0, tenant="bronze")
    q1.push(b1, 0.0)
    assert b1.vtag == pytest.approx(2.0 + 1e-9)
    assert q1.weights == {"gold": 2.0}


def test_flow_is_tenant_else_class() -> None:
    assert flow_of(task("a", tenant="acme")) == "acme"
    assert flow_of(task("b", priority=Priority.HIGH)) == "high"
    assert FairClock().weight("x") == 1.0
    assert FairClock(weights={"x": 3.0}).weight("x") == 3.0


# -- priority classes ----------------------------------------------------------------


def test_priority_stride_shares_follow_the_class_weights() -> None:
    cfg = PriorityConfig(weights={Priority.CRITICAL: 8, Priority.HIGH: 4, Priority.NORMAL: 2,
                                  Priority.LOW: 1},
                         aging={p: math.inf for p in Priority})
    q = PriorityQueue(cfg)
    for k in range(8):
        q.push(task(f"h{k}", priority=Priority.HIGH), 0.0)
        q.push(task(f"l{k}", priority=Priority.LOW), 0.0)
    assert len(q) == 16 and q.work == 16.0
    first = drain(q)[:10]
    assert sum(t.startswith("h") for t in first) == 8  # 4 : 1 until high runs out
    assert first[0] == "h0"
    assert len(q) == 0 and q.work == 0.0


def test_priority_serves_the_higher_class_first_when_passes_tie() -> None:
    q = PriorityQueue(PriorityConfig(aging={p: math.inf for p in Priority}))
    q.push(task("n", priority=Priority.NORMAL), 0.0)
    q.push(task("c", priority=Priority.CRITICAL), 0.0)
    q.push(task("l", priority=Priority.LOW), 0.0)
    assert drain(q) == ["c", "n", "l"]


def test_priority_aging_serves_the_oldest_aged_head_first() -> None:
    cfg = PriorityConfig(aging={Priority.CRITICAL: math.inf, Priority.HIGH: 10.0,
                                Priority.NORMAL: 5.0, Priority.LOW: 5.0})
    q = PriorityQueue(cfg)
    old_low = task("old-low", priority=Priority.LOW, now=0.0)
    old_norm = task("old-normal", priority=Priority.NORMAL, now=1.0)
    crit = task("crit", priority=Priority.CRITICAL, now=6.0)
    for t in (old_low, old_norm, crit):
        q.push(t, t.enqueued)
    assert q.peek(4.9) is crit  # nobody aged yet
    assert q.peek_key(4.9) == (1.0, q.clock.passes[0], crit.seq)
    assert q.peek(5.0) is old_low  # aged exactly at its limit, oldest first
    assert q.peek_key(5.0) == (0.0, 0.0, old_low.seq)
    q.take(old_low, 6.0)
    assert q.peek(6.0) is old_norm
    q.take(old_norm, 6.0)
    assert q.peek(6.0) is crit


def test_priority_idle_class_banks_no_credit_and_back_is_lowest_first() -> None:
    clock = FairClock(priority=PriorityConfig(aging={p: math.inf for p in Priority}))
    q = PriorityQueue(clock=clock)
    hs = [task(f"h{k}", priority=Priority.HIGH) for k in range(6)]
    for t in hs:
        q.push(t, 0.0)
    for t in hs[:4]:
        q.take(t, 0.0)  # high's pass grows; low was idle all along
    low = task("low", priority=Priority.LOW)
    q.push(low, 0.0)
    assert clock.passes[3] == pytest.approx(clock.vpass + clock.stride[3])
    assert q.peek(0.0) is hs[4]  # low starts behind, not with a banked lead
    n = task("n", priority=Priority.NORMAL)
    q.push(n, 0.0)
    assert [t.id for t in q.back(2)] == ["low", "n"]
    assert [t.id for t in q.back(9)] == ["low", "n", "h5", "h4"]
    assert sorted(ids(q)) == ["h4", "h5", "low", "n"]
    q.remove(n)
    assert len(q) == 3 and clock.cactive == [0, 2, 0, 1] and q.work == 3.0
    assert q.charge(n, 1.0) is None


def test_priority_memo_follows_time_and_changes() -> None:
    q = PriorityQueue(PriorityConfig(aging={Priority.CRITICAL: math.inf, Priority.HIGH: 1.0,
                                            Priority.NORMAL: 1.0, Priority.LOW: 1.0}))
    low = task("low", priority=Priority.LOW, now=0.0)
    q.push(low, 0.0)
    crit = task("crit", priority=Priority.CRITICAL, now=0.5)
    q.push(crit, 0.5)
    assert q.peek(0.5) is crit
    assert q.peek(1.0) is low  # same contents, later time: aged now
    h = task("h", priority=Priority.HIGH, now=0.0)
    q.push(h, 1.0)
    assert q.peek(1.0) is h  # the push changed the answer (no stale memo): equal age, higher class
    assert PriorityQueue().peek(0.0) is None and PriorityQueue().peek_key(0.0) is None


# -- completely fair ---------------------------------------------------------------------


def test_cfs_serves_least_weighted_runtime_and_charges_actuals() -> None:
    clock = FairClock(weights={"a": 2.0})
    q = CfsQueue(clock=clock)
    a1, a2 = task("a1", work=2.0, tenant="a"), task("a2", work=2.0, tenant="a")
    b1, b2 = task("b1", work=2.0, tenant="b"), task("b2", work=2.0, tenant="b")
    for t in (a1, b1, a2, b2):
        q.push(t, 0.0)
    assert len(q) == 4 and q.work == 8.0 and q.weights == {"a": 2.0}
    assert q.peek_key(0.0) == (0.0, a1.seq)
    q.take(a1, 0.0)
    assert clock.vr == {"a": 1.0, "b": 0.0} and clock.min_v == 0.0
    assert q.peek(0.0) is b1
    q.take(b1, 0.0)
    assert clock.vr["b"] == 2.0 and clock.min_v == 0.0
    q.charge(b1, 2.0)  # b1 really ran 2 longer
    assert clock.vr["b"] == 4.0
    q.charge(task("x", tenant="nobody"), 5.0)  # unknown flow: ignored
    assert "nobody" not in clock.vr
    assert [t.id for t in q.back(1)] == ["b2"]  # thief end: the flow furthest ahead
    assert drain(q) == ["a2", "b2"]
    assert len(q) == 0 and q.work == 0.0 and q.peek(0.0) is None and q.peek_key(0.0) is None


def test_cfs_new_flow_starts_at_min_vruntime_and_remove_keeps_counts() -> None:
    clock = FairClock()
    q = CfsQueue(clock=clock)
    a = [task(f"a{k}", work=1.0, tenant="a") for k in range(3)]
    for t in a:
        q.push(t, 0.0)
    q.take(a[0], 0.0)
    q.take(a[1], 0.0)
    assert clock.min_v == 1.0 and clock.vr["a"] == 2.0
    late = task("late", tenant="late")
    q.push(late, 0.0)
    assert clock.vr["late"] == 1.0  # min_v, not 0
    assert q.peek(0.0) is late
    q.remove(late)
    assert clock.active == {"a": 1, "late": 0} and len(q) == 1
    assert sorted(ids(q)) == ["a2"]
    q.push(late, 0.0)  # re-activated: keeps its own (larger) vruntime if ahead
    assert clock.vr["late"] == 1.0
    assert CfsQueue(weights={"z": 4.0}).weights == {"z": 4.0}


# -- details the order depends on ------------------------------------------------------


def test_removing_a_task_that_is_not_queued_is_an_invariant_error() -> None:
    q = FifoQueue()
    q.push(task("in"), 0.0)
    stray = task("stray")
    stray.qkey = 99.0
    with pytest.raises(RuntimeError, match="task stray is not in this queue"):
        q.remove(stray)


def test_fair_clock_starts_at_zero_and_fills_missing_classes() -> None:
    c = FairClock(priority=PriorityConfig(weights={Priority.HIGH: 4.0},
                                          aging={Priority.LOW: 3.0}))
    assert c.stride == [1.0, 0.25, 1.0, 1.0]  # a class without a weight weighs 1
    assert c.aging == [math.inf, math.inf, math.inf, 3.0]  # ... and never ages
    assert (c.passes, c.vpass, c.version, c.cactive) == ([0.0] * 4, 0.0, 0, [0] * 4)
    assert (c.v, c.last, c.vr, c.min_v, c.active) == (0.0, {}, {}, 0.0, {})


def test_wfq_small_tags_survive_a_move() -> None:
    clock = FairClock()
    q1, q2 = WfqQueue(clock), WfqQueue(clock)
    t = task("t", work=0.5)
    q1.push(t, 0.0)
    assert t.vtag == 0.5
    q1.remove(t)
    q2.push(t, 0.0)
    assert t.qkey == 0.5


def test_queues_point_the_task_at_themselves() -> None:
    p, c = PriorityQueue(), CfsQueue()
    a, b = task("a"), task("b")
    p.push(a, 0.0)
    c.push(b, 0.0)
    assert a.queue is p and b.queue is c


def test_priority_tie_goes_to_the_higher_class_and_aged_critical_wins() -> None:
    even = {p: 1.0 for p in Priority}
    q = PriorityQueue(PriorityConfig(weights=even, aging={p: math.inf for p in Priority}))
    for name, p in (("l", Priority.LOW), ("c", Priority.CRITICAL), ("n", Priority.NORMAL)):
        q.push(task(name, priority=p), 0.0)
    assert drain(q) == ["c", "n", "l"]
    q = PriorityQueue(PriorityConfig(weights=even, aging={Priority.CRITICAL: 1.0}))
    c1, c2 = task("c1", priority=Priority.CRITICAL), task("c2", priority=Priority.CRITICAL)
    low = task("low", priority=Priority.LOW)
    for t in (c1, c2, low):
        q.push(t, 0.0)
    q.take(c1, 0.0)  # critical's pass is now ahead of low's
    assert q.peek(0.5) is low
    assert q.peek(5.0) is c2  # but its head has aged: served first


def test_priority_peek_key_ages_by_waiting_time() -> None:
    q = PriorityQueue(PriorityConfig(aging={p: 3.0 for p in Priority}))
    t = task("t", now=1.5)
    q.push(t, 1.5)
    assert q.peek_key(2.0)[0] == 1.0  # type: ignore[index]
    assert q.peek_key(4.5)[0] == 0.0  # type: ignore[index]


def test_priority_memo_is_not_fooled_by_a_push_then_remove() -> None:
    q = PriorityQueue(PriorityConfig(aging={p: math.inf for p in Priority}))
    a, b = task("a", priority=Priority.CRITICAL), task("b", priority=Priority.LOW)
    q.push(a, 0.0)
    assert q.peek(0.0) is a
    q.push(b, 0.0)
    q.remove(a)
    assert q.peek(0.0) is b


def test_thief_end_takes_at_most_the_limit_across_classes_and_flows() -> None:
    q = PriorityQueue()
    q.push(task("l0", priority=Priority.LOW), 0.0)
    for k in range(3):
        q.push(task(f"n{k}", priority=Priority.NORMAL), 0.0)
    assert [t.id for t in q.back(2)] == ["l0", "n2"]
    assert [t.id for t in q.back(1)] == ["l0"]
    c = CfsQueue()
    ahead = [task(f"a{k}", tenant="a") for k in range(2)]
    for t in (*ahead, task("a-last", tenant="a"), *(task(f"b{k}", tenant="b") for k in range(3))):
        c.push(t, 0.0)
    c.take(ahead[0], 0.0)  # flow a is ahead in vruntime: stolen from first
    assert [t.id for t in c.back(3)] == ["a-last", "a1", "b2"]
    assert [t.id for t in c.back(2)] == ["a-last", "a1"]


def test_priority_work_is_exactly_zero_when_empty() -> None:
    q = PriorityQueue()
    ts = [task(f"w{k}", work=0.1) for k in range(3)]
    for t in ts:
        q.push(t, 0.0)
    for t in ts:
        q.take(t, 0.0)
    assert q.work == 0.0


def test_cfs_reactivated_flow_keeps_a_lead_and_charges_by_weight() -> None:
    clock = FairClock(weights={"w": 2.0})
    q = CfsQueue(clock=clock)
    x = task("x", work=4.0, tenant="x")
    q.push(x, 0.0)
    q.take(x, 0.0)  # vr[x] = 4, min_v = 0
    y = task("y", work=1.0, tenant="y")
    q.push(y, 0.0)
    q.take(y, 0.0)  # min_v = 0, vr[y] = 1
    x2 = task("x2", tenant="x")
    q.push(x2, 0.0)
    assert clock.vr["x"] == 4.0  # its own vruntime is ahead of min_v: kept
    w = task("w", work=2.0, tenant="w")
    q.push(w, 0.0)
    q.take(w, 0.0)
    assert clock.vr["w"] == pytest.approx(1.0)  # 2 / weight 2
    q.charge(w, 2.0)
    assert clock.vr["w"] == pytest.approx(2.0)


def _reference_choice(q: PriorityQueue, now: float) -> TaskState | None:
    """The class rule computed from scratch: the oldest aged head, else the smallest pass."""
    aging, passes = q.clock.aging, q.clock.passes
    heads = [(c, sub.peek(now)) for c, sub in enumerate(q._qs)]
    heads = [(c, h) for c, h in heads if h is not None]
    if not heads:
        return None
    aged = [(h.enqueued, c, h) for c, h in heads if now - h.enqueued >= aging[c]]
    if aged:
        return min(aged, key=lambda x: (x[0], x[1]))[2]
    return min(heads, key=lambda x: (passes[x[0]], x[0]))[1]


@pytest.mark.parametrize("seed", range(6))
def test_priority_aging_bound_never_skips_an_aged_head(seed: int) -> None:
    # Heads whose enqueue time is older than the task in front of them (a task
    # deferred before it was queued sits ahead of older ones; a retry goes back
    # to its place by seq): the shortcut that skips the aging checks must still
    # pick what the full rule picks, at every step.
    import random

    rng = random.Random(seed)
    cfg = PriorityConfig(aging={Priority.CRITICAL: math.inf, Priority.HIGH: 3.0,
                                Priority.NORMAL: 1.5, Priority.LOW: 1.0})
    q = PriorityQueue(cfg)
    now = 0.0
    queued: list[TaskState] = []
    for _ in range(400):
        now += rng.random() * 0.3
        r = rng.random()
        if r < 0.45:
            t = task(f"t{len(queued)}-{now}", priority=list(Priority)[rng.randrange(4)], now=now)
            # enqueued anywhere in the past (deferred or re-queued tasks keep old times)
            t.enqueued = now - rng.random() * 4.0 if rng.random() < 0.3 else now
            t.seq *= 1_000  # (room between seqs: an int seq ahead of any queued task)
            if queued and rng.random() < 0.2:
                t.seq = rng.choice(queued).seq - rng.randrange(1, 1_000)  # ahead of it
            q.push(t, now)
            queued.append(t)
        elif r < 0.85 and queued:
            want = _reference_choice(q, now)
            assert q.peek(now) is want
            assert want is not None
            q.take(want, now)
            queued.remove(want)
        elif queued:
            t = rng.choice(queued)
            q.remove(t)
            queued.remove(t)
        assert q.peek(now) is _reference_choice(q, now)
