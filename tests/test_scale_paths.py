"""The scale paths (columnar compile, rule groups, fast LPT, Hall bound, schedule and
plan builder) give exactly the numbers of the plain per-task code they replace.

Each test keeps the plain version here as the reference, so a change to the fast
path that alters a single number (or a tie) fails.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import allocator.solvers.balance as balance_mod
from allocator import compile_snapshot, validate
from allocator.objectives import Schedule, build_schedule, default_order_key
from allocator.problem import Problem
from allocator.solvers.balance import lpt_assign, lpt_assign_plain
from allocator.solvers.base import Budget, assignment_rows, make_plan
from allocator.solvers.lpt_kernel import HAVE_NUMBA
from models import Assignment, Plan, PlanStatus, Snapshot
from tests.strategies import snapshots

SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


# -- compile ---------------------------------------------------------------------


def _plain_static(snap: Snapshot, p: Problem) -> np.ndarray:
    """[m, n] static eligibility by the per-task loop the compile used to run."""
    mask = np.repeat(p.up[:, None], p.n, axis=1)
    agent_skills = [set(a.skills) for a in snap.agents]
    for j, t in enumerate(snap.tasks):
        if t.skills:
            need = set(t.skills)
            mask[:, j] &= np.array([need <= s for s in agent_skills], dtype=bool)
        if t.allowed_agents is not None:
            allowed = np.zeros(p.m, dtype=bool)
            allowed[[p.agent_index[a] for a in t.allowed_agents]] = True
            mask[:, j] &= allowed
        if t.forbidden_agents:
            mask[[p.agent_index[a] for a in t.forbidden_agents], j] = False
    return mask


@SLOW
@given(snap=snapshots(max_agents=5, max_tasks=14))
def test_compile_reads_every_task_field_as_the_plain_loop(snap: Snapshot) -> None:
    p = compile_snapshot(snap)
    tasks, w, now = snap.tasks, snap.weights, float(snap.time)
    r_index = {r: k for k, r in enumerate(p.resources)}
    demand = np.zeros((p.n, p.n_resources))
    for j, t in enumerate(tasks):
        for r, v in t.demand.items():
            demand[j, r_index[r]] = v
    np.testing.assert_array_equal(p.demand_base, demand)
    np.testing.assert_array_equal(p.work, [t.work for t in tasks])
    np.testing.assert_array_equal(p.release, [max(t.release, now) for t in tasks])
    np.testing.assert_array_equal(
        p.deadline, [np.inf if t.deadline is None else t.deadline for t in tasks])
    np.testing.assert_array_equal(p.hard_deadline, [t.hard_deadline for t in tasks])
    np.testing.assert_array_equal(p.priority_rank, [t.priority.rank for t in tasks])
    np.testing.assert_array_equal(p.unassigned_penalty, [w.unassigned[t.priority] for t in tasks])
    np.testing.assert_array_equal(p.tardiness_weight,
                                  [w.tardiness_by_priority[t.priority] for t in tasks])
    np.testing.assert_array_equal(
        p.current, [p.agent_index[t.current_agent] if t.current_agent else -1 for t in tasks])
    pol = snap.migration
    np.testing.assert_array_equal(p.migration_cost, [
        t.work * (pol.size_share + pol.progress_share * t.progress)
        if t.migration_cost is None else t.migration_cost for t in tasks])
    assert p.task_ids == [t.id for t in tasks]
    assert p.task_index == {t.id: j for j, t in enumerate(tasks)}
    # Overrides: the same pairs, the demand vector completed from the base row.
    for j, t in enumerate(tasks):
        for a_id, ov in t.overrides.items():
            i = p.agent_index[a_id]
            if ov.cost is not None:
                assert p.cost_override[(i, j)] == ov.cost
            if ov.demand is not None:
                vec = demand[j].copy()
                for r, v in ov.demand.items():
                    vec[r_index[r]] = v
                np.testing.assert_array_equal(p.demand_override[(i, j)], vec)


@SLOW
@given(snap=snapshots(max_agents=6, max_tasks=14))
def test_rule_groups_give_the_per_task_static_rules(snap: Snapshot) -> None:
    p = compile_snapshot(snap)
    plain = _plain_static(snap, p)
    group_of, group_agents = p.skill_groups
    np.testing.assert_array_equal(group_agents[group_of].T.reshape(p.m, p.n), plain)
    np.testing.assert_array_equal(p.static_eligible, plain)
    # The sparse rules read pair by pair agree too.
    ii, jj = np.meshgrid(np.arange(p.m), np.arange(p.n), indexing="ij")
    fresh = compile_snapshot(snap)
    np.testing.assert_array_equal(
        fresh.pair_static(ii.ravel(), jj.ravel()).reshape(p.m, p.n), plain)
    # Groups are numbered by first appearance of their (sorted) rules.
    keys: dict[tuple, int] = {}
    for t in snap.tasks:
        keys.setdefault((tuple(sorted(t.skills)), None if t.allowed_agents is None
                         else tuple(sorted(t.allowed_agents)),
                         tuple(sorted(t.forbidden_agents))), len(keys))
    assert group_agents.shape[0] == len(keys)


# -- LPT -------------------------------------------------------------------------


def _lpt_instance(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    m = int(rng.integers(1, 90))
    G = int(rng.integers(1, 6))
    n = int(rng.integers(0, 900))
    groups = rng.random((G, m)) < rng.uniform(0.05, 1.0)
    group_of = rng.integers(0, G, n)
    work = np.round(rng.exponential(1.0, n), int(rng.integers(0, 3)))  # many ties
    speed = np.round(rng.uniform(0.3, 3.0, m), int(rng.integers(0, 2))) + 0.1
    lanes = np.ones(m) if rng.random() < 0.8 else rng.integers(1, 3, m).astype(float)
    R = int(rng.integers(0, 3))
    demand = rng.uniform(0, 1, (n, R)) * (rng.random((n, R)) < 0.7)
    capacity = rng.uniform(0, max(n, 1) / m * rng.uniform(0.3, 1.5), (m, R))
    return work, speed, lanes, group_of, groups, demand, capacity


@pytest.mark.parametrize("compiled", [
    pytest.param(False, id="numpy"),
    pytest.param(True, id="compiled", marks=pytest.mark.skipif(
        not HAVE_NUMBA, reason="numba is not installed")),
])
@pytest.mark.parametrize("seed", range(6))
def test_fast_lpt_is_exactly_the_plain_lpt(seed: int, compiled: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng([13, seed])
    monkeypatch.setattr(balance_mod, "LPT_COMPILED_MIN_TASKS", 0 if compiled else 1 << 62)
    # Small chunks and few room tries: every branch of the fast loop runs.
    monkeypatch.setattr(balance_mod, "LPT_CHUNK", 37)
    monkeypatch.setattr(balance_mod, "ROOM_TRIES", int(rng.integers(1, 5)))
    for k in range(25):
        args = _lpt_instance(rng)
        np.testing.assert_array_equal(lpt_assign(*args), lpt_assign_plain(*args))
        if k % 2:  # from loads and demand already held (balance under a migration cap)
            speed, capacity = args[1], args[6]
            start = {"load0": rng.uniform(0, 5, speed.size),
                     "used0": capacity * rng.uniform(0, 0.8, capacity.shape)}
            np.testing.assert_array_equal(lpt_assign(*args, **start),
                                          lpt_assign_plain(*args, **start))


@pytest.mark.parametrize("seed", range(4))
def test_fast_lpt_on_a_full_cluster_of_small_groups_is_the_plain_lpt(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hundreds of allow-list groups (most of one or two tasks: their loads are
    # gathered per task) and integer demands on a cluster with room for a tenth
    # of them (the demands a group could not hold are skipped from then on).
    rng = np.random.default_rng([17, seed])
    monkeypatch.setattr(balance_mod, "LPT_COMPILED_MIN_TASKS", 1 << 62)
    monkeypatch.setattr(balance_mod, "LPT_GROUP_ARRAY_MIN", int(rng.choice([1, 4, 16])))
    for _ in range(6):
        m = int(rng.integers(2, 50))
        n = m * int(rng.integers(10, 20))
        G = int(rng.integers(n // 4, n))
        groups = rng.random((G, m)) < rng.uniform(0.1, 0.9)
        group_of = rng.integers(0, G, n)
        work = np.round(rng.exponential(3.0, n), 1)
        speed = rng.choice([0.5, 1.0, 2.0], m)
        R = int(rng.integers(1, 3))
        demand = rng.integers(0, 5, (n, R)).astype(float)
        capacity = rng.integers(2, 12, (m, R)).astype(float)
        args = (work, speed, np.ones(m), group_of, groups, demand, capacity)
        got = lpt_assign(*args)
        np.testing.assert_array_equal(got, lpt_assign_plain(*args))
        assert (got < 0).sum() > n // 4  # the cluster ran out of room


# -- makespan bound ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_hall_bound_equals_the_fluid_lp(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import allocator.bounds as bounds_mod  # after allocator.solvers (circular otherwise)
    from allocator.bounds import hall_makespan, makespan_bound

    rng = np.random.default_rng([31, seed])
    for _ in range(30):
        m, G, n = int(rng.integers(1, 30)), int(rng.integers(1, 7)), int(rng.integers(1, 80))
        groups = rng.random((G, m)) < rng.uniform(0.1, 0.9)
        if rng.random() < 0.4:
            groups[0] = True  # a group every agent may take (left out of the subsets)
        group_of = rng.integers(0, G, n)
        work = rng.exponential(1.0, n)
        speed = rng.uniform(0.3, 3.0, m)
        lanes = rng.integers(1, 3, m)
        W = np.bincount(group_of, weights=work, minlength=G)
        if not np.all(groups[W > 0].any(axis=1)):
            continue  # some group with work has no agent: both say inf
        hall = makespan_bound(work, speed, group_of, groups, lanes)
        monkeypatch.setattr(bounds_mod, "HALL_MAX_GROUPS", -1)
        lp = makespan_bound(work, speed, group_of, groups, lanes)
        monkeypatch.setattr(bounds_mod, "HALL_MAX_GROUPS", 20)
        assert hall == pytest.approx(lp, rel=1e-7)
        assert hall_makespan(W, speed * lanes, groups) is not None


def test_hall_bound_without_any_agent_for_some_work_is_infinite() -> None:
    from allocator.bounds import hall_makespan

    groups = np.array([[True, False], [False, False]])
    assert hall_makespan(np.array([1.0, 2.0]), np.ones(2), groups) == np.inf


# -- schedule and plan builder -------------------------------------------------------


def _plain_schedule(p: Problem, agent_of: np.ndarray, key: np.ndarray) -> Schedule:
    """The heap list-scheduler every task used to go through."""
    start, end = np.full(p.n, np.nan), np.full(p.n, np.nan)
    assigned = np.flatnonzero(agent_of >= 0)
    seq = assigned[np.lexsort((assigned, key[assigned], agent_of[assigned]))]
    current, lanes = -1, []
    for j in seq:
        i = int(agent_of[j])
        if i != current:
            current, lanes = i, [p.now] * int(p.concurrency[i])
        free = heapq.heappop(lanes)
        s = max(free, p.release[j])
        e = s + p.work[j] / p.speed[i]
        start[j], end[j] = s, e
        heapq.heappush(lanes, e)
    return Schedule(agent_of.copy(), start, end)


@SLOW
@given(snap=snapshots(max_agents=5, max_tasks=14), data=st.data())
def test_schedule_is_the_heap_list_schedule(snap: Snapshot, data: st.DataObject) -> None:
    p = compile_snapshot(snap)
    agent_of = np.array(data.draw(st.lists(st.integers(-1, p.m - 1), min_size=p.n,
                                           max_size=p.n)), dtype=np.int64)
    key = (default_order_key(p) if data.draw(st.booleans())
           else np.array(data.draw(st.lists(st.integers(0, 3), min_size=p.n, max_size=p.n)),
                         dtype=float))
    got, want = build_schedule(p, agent_of, key), _plain_schedule(p, agent_of, key)
    np.testing.assert_array_equal(got.start, want.start)
    np.testing.assert_array_equal(got.end, want.end)


@SLOW
@given(snap=snapshots(max_agents=5, max_tasks=14), data=st.data())
def test_plan_rows_equal_validated_assignments(snap: Snapshot, data: st.DataObject) -> None:
    p = compile_snapshot(snap)
    agent_of = np.array(data.draw(st.lists(st.integers(-1, p.m - 1), min_size=p.n,
                                           max_size=p.n)), dtype=np.int64)
    plan = make_plan(p, agent_of, solver="t", status=PlanStatus.FEASIBLE, budget=Budget(1.0))
    again = [Assignment(task=a.task, agent=a.agent, start=a.start, end=a.end)
             for a in plan.assignments]
    assert plan.assignments == again
    assert [a.model_dump_json() for a in plan.assignments] == [
        a.model_dump_json() for a in again]
    assert all(a.model_fields_set == {"task", "agent", "start", "end"}
               for a in plan.assignments)
    # The plan round-trips through JSON and passes the independent validator.
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert validate(snap, plan) == []


def test_trusted_rows_behave_like_validated_ones() -> None:
    snap = Snapshot.model_validate({
        "agents": [{"id": "a", "speed": 2.0}], "tasks": [{"id": "x", "work": 3.0}]})
    p = compile_snapshot(snap)
    sched = build_schedule(p, np.array([0]))
    (row,) = assignment_rows(p, np.array([0]), np.array([0]), sched)
    ref = Assignment(task="x", agent="a", start=0.0, end=1.5)
    assert row == ref and row.model_dump() == ref.model_dump()
    row.start = 0.5  # assignment on an instance still works (shared fields set)
    assert row.start == 0.5 and ref.start == 0.0
    assert Assignment.model_validate(row.model_dump()) == row
