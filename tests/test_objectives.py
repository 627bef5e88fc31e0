"""Each objective term against an independent computation, where it applies and where it does not.

The reference below reads the pydantic snapshot with plain Python (no
compiled arrays), so a term that drops a factor (the per-priority tardiness
weight, a pair's migration factor, a cost override ...) disagrees with it.
Schedules are checked on hand-worked cases, then the terms on random
assignments of the shared hypothesis snapshots.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator import compile_snapshot
from allocator.objectives import (
    TERMS,
    build_schedule,
    busy_time,
    default_order_key,
    evaluate,
    term_weights,
    weighted_total,
)
from models import (
    Agent,
    AgentOverride,
    AgentStatus,
    MigrationPolicy,
    PairFactor,
    Snapshot,
    Task,
    Weights,
)
from tests.strategies import snapshots


def reference(snap: Snapshot, agent_of: dict[str, str], end: dict[str, float]
              ) -> dict[str, float]:
    """Every term from the snapshot's own fields; `end` gives each placed task's end time."""
    agents = {a.id: a for a in snap.agents}
    w = snap.weights
    pol = snap.migration
    out = dict.fromkeys(TERMS, 0.0)
    busy = {a.id: 0.0 for a in snap.agents}
    for t in snap.tasks:
        a_id = agent_of.get(t.id)
        if a_id is None:
            out["unassigned"] += w.unassigned[t.priority]
            continue
        a = agents[a_id]
        dur = t.work / a.speed
        ov = t.overrides.get(a_id)
        out["cost"] += ov.cost if ov is not None and ov.cost is not None else a.cost_rate * dur
        busy[a_id] += dur / a.concurrency
        if t.deadline is not None:
            out["tardiness"] += w.tardiness_by_priority[t.priority] * max(0.0,
                                                                          end[t.id] - t.deadline)
        if t.current_agent is not None and t.current_agent != a_id:
            base = (t.migration_cost if t.migration_cost is not None
                    else t.work * (pol.size_share + pol.progress_share * t.progress))
            factor = 1.0
            for pf in pol.pair_factors:
                if (pf.source, pf.target) == (t.current_agent, a_id):
                    factor = pf.factor
            out["migrations"] += base * factor
    if agent_of:
        out["makespan"] = max(end[t] for t in agent_of) - snap.time
    up = [busy[a.id] for a in snap.agents if a.status == AgentStatus.UP]
    out["imbalance"] = max(up) - min(up) if up else 0.0
    return out


def terms_of(snap: Snapshot, placement: dict[str, str]) -> tuple[dict[str, float],
                                                                  dict[str, float]]:
    """(evaluate's terms, the reference's) for a placement, on evaluate's own schedule."""
    p = compile_snapshot(snap)
    idx = {a: i for i, a in enumerate(p.agent_ids)}
    agent_of = np.array([idx[placement[t]] if t in placement else -1 for t in p.task_ids],
                        dtype=np.int64)
    sched = build_schedule(p, agent_of)
    end = {t: float(sched.end[j]) for j, t in enumerate(p.task_ids) if t in placement}
    return evaluate(p, sched), reference(snap, placement, end)


# -- hand-worked cases ------------------------------------------------------------------

TWO = [Agent(id="a", cost_rate=2.0), Agent(id="b", speed=2.0, cost_rate=3.0, concurrency=2)]


def test_cost_is_rate_times_duration_unless_overridden() -> None:
    snap = Snapshot(agents=TWO, tasks=[
        Task(id="x", work=4), Task(id="y", work=4, overrides={"b": AgentOverride(cost=1.5)}),
        Task(id="z", work=10)])
    got, ref = terms_of(snap, {"x": "b", "y": "b"})
    assert got["cost"] == pytest.approx(3.0 * 2 + 1.5) == ref["cost"]
    got, _ = terms_of(snap, {"x": "a", "y": "a"})
    assert got["cost"] == pytest.approx(2.0 * 4 + 2.0 * 4)  # override is b's only
    assert terms_of(snap, {})[0]["cost"] == 0.0  # unplaced tasks cost nothing


def test_makespan_counts_from_now_and_is_zero_when_nothing_runs() -> None:
    snap = Snapshot(time=10.0, agents=TWO, tasks=[Task(id="x", work=4, release=12),
                                                  Task(id="y", work=2)])
    got, ref = terms_of(snap, {"x": "a", "y": "a"})
    # y (no deadline, released at 10) first: 10..12, x 12..16 -> 6 after now.
    assert got["makespan"] == pytest.approx(6.0) == ref["makespan"]
    assert terms_of(snap, {})[0]["makespan"] == 0.0


def test_imbalance_is_busiest_minus_idlest_up_agent_per_lane() -> None:
    agents = [*TWO, Agent(id="down", status="down"), Agent(id="idle")]
    snap = Snapshot(agents=agents, tasks=[Task(id="x", work=8), Task(id="y", work=2)])
    got, ref = terms_of(snap, {"x": "b", "y": "a"})
    # a: 2, b: 8 / 2 / 2 lanes = 2, idle: 0 -> 2; the down agent does not count.
    assert got["imbalance"] == pytest.approx(2.0) == ref["imbalance"]
    p = compile_snapshot(snap)
    assert busy_time(p, np.array([1, 0])).tolist() == pytest.approx([2.0, 2.0, 0.0, 0.0])
    none_up = Snapshot(agents=[Agent(id="d", status="down")], tasks=[Task(id="x")])
    assert terms_of(none_up, {})[0]["imbalance"] == 0.0


def test_tardiness_weighs_each_priority_class() -> None:
    w = Weights(tardiness=1.0, tardiness_by_priority={"critical": 8, "high": 4, "normal": 2,
                                                      "low": 1})
    tasks = [Task(id=f"{p}", work=3, deadline=1.0, priority=p)
             for p in ("critical", "high", "normal", "low")]
    tasks.append(Task(id="on-time", work=1, deadline=50.0, priority="critical"))
    tasks.append(Task(id="no-deadline", work=1, priority="critical"))
    snap = Snapshot(agents=[Agent(id=f"a{k}") for k in range(6)], tasks=tasks, weights=w)
    placement = {t.id: f"a{k}" for k, t in enumerate(tasks)}
    got, ref = terms_of(snap, placement)
    # Each late task ends at 3, 2 past its deadline: 2 x (8 + 4 + 2 + 1).
    assert got["tardiness"] == pytest.approx(30.0) == ref["tardiness"]
    unplaced = {k: v for k, v in placement.items() if k not in ("critical", "high")}
    assert terms_of(snap, unplaced)[0]["tardiness"] == pytest.approx(6.0)


def test_migrations_cost_base_times_pair_factor_only_for_moved_placed_tasks() -> None:
    pol = MigrationPolicy(size_share=0.5, progress_share=2.0,
                          pair_factors=[PairFactor(source="a", target="b", factor=3.0)])
    tasks = [Task(id="moved", work=4, progress=0.25, current_agent="a"),  # 4 x (0.5 + 0.5) = 4
             Task(id="priced", work=4, migration_cost=7.0, current_agent="b"),
             Task(id="stays", work=4, current_agent="a"),
             Task(id="left-out", work=4, current_agent="a"),
             Task(id="new", work=4)]
    snap = Snapshot(agents=TWO, tasks=tasks, migration=pol)
    got, ref = terms_of(snap, {"moved": "b", "priced": "a", "stays": "a", "new": "b"})
    assert got["migrations"] == pytest.approx(4.0 * 3.0 + 7.0) == ref["migrations"]
    got, _ = terms_of(snap, {"stays": "a", "new": "a"})
    assert got["migrations"] == 0.0


def test_unassigned_penalty_per_class() -> None:
    w = Weights(unassigned={"critical": 100, "high": 10, "normal": 3, "low": 1})
    tasks = [Task(id=p, priority=p) for p in ("critical", "high", "normal", "low")]
    snap = Snapshot(agents=TWO, tasks=tasks, weights=w)
    assert terms_of(snap, {})[0]["unassigned"] == pytest.approx(114.0)
    assert terms_of(snap, {"critical": "a", "low": "b"})[0]["unassigned"] == pytest.approx(13.0)
    everything = {t.id: "a" for t in tasks}
    assert terms_of(snap, everything)[0]["unassigned"] == 0.0


def test_weights_and_total() -> None:
    w = Weights(cost=2, makespan=3, imbalance=5, tardiness=7, migrations=11)
    snap = Snapshot(agents=TWO, tasks=[Task(id="x")], weights=w)
    p = compile_snapshot(snap)
    assert term_weights(p) == {"cost": 2, "makespan": 3, "imbalance": 5, "tardiness": 7,
                               "migrations": 11, "unassigned": 1.0}
    values = {k: float(10 ** i) for i, k in enumerate(TERMS)}
    assert weighted_total(p, values) == pytest.approx(2 + 30 + 500 + 7000 + 110000 + 100000)


# -- schedules --------------------------------------------------------------------------


def test_default_order_is_deadline_then_class_then_release_then_index() -> None:
    tasks = [Task(id="none-late", release=0), Task(id="d5-low", deadline=5, priority="low"),
             Task(id="d5-crit", deadline=5, priority="critical"),
             Task(id="d2", deadline=2, release=1), Task(id="d5-crit-r0", deadline=5,
                                                        priority="critical", release=0),
             Task(id="none-early", release=0)]
    snap = Snapshot(agents=TWO, tasks=tasks)
    p = compile_snapshot(snap)
    order = [p.task_ids[j] for j in np.argsort(default_order_key(p))]
    assert order == ["d2", "d5-crit", "d5-crit-r0", "d5-low", "none-late", "none-early"]


def test_build_schedule_fills_lanes_in_key_order_from_now_and_release() -> None:
    agents = [Agent(id="two", concurrency=2, speed=2.0), Agent(id="one")]
    tasks = [Task(id="p", work=4), Task(id="q", work=2), Task(id="r", work=2, release=5),
             Task(id="s", work=6), Task(id="u", work=1)]
    snap = Snapshot(time=1.0, agents=agents, tasks=tasks)
    p = compile_snapshot(snap)
    sched = build_schedule(p, np.array([0, 0, 0, 0, -1]), np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    # On "two" (2 lanes, speed 2): p 1..3, q 1..2, r waits for its release 5..6, s 3..6.
    assert sched.start[:4].tolist() == pytest.approx([1.0, 1.0, 5.0, 3.0])
    assert sched.end[:4].tolist() == pytest.approx([3.0, 2.0, 6.0, 6.0])
    assert math.isnan(sched.start[4]) and math.isnan(sched.end[4])
    # Reversed key: s 1..4, r holds a lane from its release 5..6, q 4..5, p 5..7.
    rev = build_schedule(p, np.array([0, 0, 0, 0, 1]), np.array([4.0, 3.0, 2.0, 1.0, 0.0]))
    assert rev.start.tolist() == pytest.approx([5.0, 4.0, 5.0, 1.0, 1.0])
    assert rev.end[4] == pytest.approx(2.0)
    empty = build_schedule(p, np.full(5, -1))
    assert np.isnan(empty.start).all() and (empty.agent_of == -1).all()


# -- random assignments -----------------------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(snap=snapshots(), data=st.data())
def test_every_term_matches_the_reference_on_random_assignments(snap: Snapshot,
                                                               data: st.DataObject) -> None:
    ids = [a.id for a in snap.agents]
    placement = {}
    for t in snap.tasks:
        a = data.draw(st.one_of(st.none(), st.sampled_from(ids)))
        if a is not None:
            placement[t.id] = a
    got, ref = terms_of(snap, placement)
    for k in TERMS:
        assert got[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-9), k
