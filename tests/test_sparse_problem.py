"""The sparse accessors of Problem give the dense path's numbers and plans, in little memory.

`DENSE_CELLS = -1` makes every accessor take its sparse branch (rules, CSR
lists, per-task override maps); the default takes the dense slices on these
small instances. Both must agree exactly: arrays, greedy plans, explanations.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import allocator.problem as problem_mod
from allocator import compile_snapshot, validate
from allocator.explain import explain_many, explain_unassigned
from allocator.problem import Problem
from allocator.solvers.base import Budget, make_plan
from allocator.solvers.greedy import greedy_schedule, task_order
from models import Agent, AgentOverride, PlanStatus, Snapshot, Task
from tests.strategies import snapshots

#: Dense [m, n] / [m, n, R] arrays the sparse path must never build.
DENSE = ("eligible", "static_eligible", "fits_alone", "deadline_reachable", "cost",
         "duration", "demand", "migration_matrix")


def _sparse(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> Problem:
    monkeypatch.setattr(problem_mod, "DENSE_CELLS", -1)
    return compile_snapshot(snap)


def _dense_built(p: Problem) -> list[str]:
    return [k for k in DENSE if k in p.__dict__]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(snap=snapshots(max_agents=5, max_tasks=12))
def test_sparse_accessors_equal_the_dense_arrays(snap: Snapshot,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    dense = compile_snapshot(snap)
    with monkeypatch.context() as mp:
        sp = _sparse(snap, mp)
        m, n = sp.m, sp.n
        js = np.arange(n)
        ii, jj = np.meshgrid(np.arange(m), js, indexing="ij")
        got = {
            "block_eligible": sp.block_eligible(js), "block_cost": sp.block_cost(js),
            "block_duration": sp.block_duration(js),
            "pair_static": sp.pair_static(ii.ravel(), jj.ravel()).reshape(m, n),
            "pair_demand": sp.pair_demand(ii.ravel(), jj.ravel()).reshape(m, n, sp.n_resources),
            "pair_cost": np.asarray(sp.pair_cost(ii.ravel(), jj.ravel())).reshape(m, n),
            "pairs": sp.eligible_pairs,
        }
        cols = [(sp.col_eligible(j), sp.col_static(j), sp.col_fits(j), sp.col_deadline_ok(j),
                 sp.col_cost(j), sp.col_duration(j), np.array(sp.col_demand(j)),
                 sp.col_migration(j)) for j in range(n)]
        order = task_order(sp)
        sched = greedy_schedule(sp)
        assert _dense_built(sp) == []
    assert np.array_equal(got["block_eligible"], dense.eligible)
    assert np.array_equal(got["block_cost"], dense.cost)
    assert np.array_equal(got["block_duration"], dense.duration)
    assert np.array_equal(got["pair_static"], dense.static_eligible)
    assert np.array_equal(got["pair_demand"], dense.demand)
    assert np.array_equal(got["pair_cost"], dense.cost)
    assert got["pairs"] == int(dense.eligible.sum())
    for j, (el, st, fi, dl, co, du, de, mi) in enumerate(cols):
        assert np.array_equal(el, dense.eligible[:, j])
        assert np.array_equal(st, dense.static_eligible[:, j])
        assert np.array_equal(fi, dense.fits_alone[:, j])
        assert np.array_equal(dl, dense.deadline_reachable[:, j])
        assert np.array_equal(co, dense.cost[:, j])
        assert np.array_equal(du, dense.duration[:, j])
        assert np.array_equal(de, dense.demand[:, j])
        assert np.array_equal(mi, dense.migration_matrix[:, j])
    assert np.array_equal(order, task_order(dense))
    d_sched = greedy_schedule(dense)
    assert np.array_equal(sched[0], d_sched[0]) and np.array_equal(sched[1], d_sched[1])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(snap=snapshots(max_agents=5, max_tasks=12))
def test_greedy_plans_and_explanations_identical_sparse_and_dense(
        snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    dense = compile_snapshot(snap)
    a, key = greedy_schedule(dense)
    plan_d = make_plan(dense, a, solver="greedy", status=PlanStatus.FEASIBLE, budget=Budget(5.0),
                       order_key=key)
    with monkeypatch.context() as mp:
        sp = _sparse(snap, mp)
        a2, key2 = greedy_schedule(sp)
        plan_s = make_plan(sp, a2, solver="greedy", status=PlanStatus.FEASIBLE, budget=Budget(5.0),
                           order_key=key2)
        # Every task explained as if unplaced (reaches every branch of the explainer).
        none = np.full(sp.n, -1, dtype=np.int64)
        why_s = [explain_unassigned(sp, j, none) for j in range(sp.n)]
        assert _dense_built(sp) == []
    why_d = [explain_unassigned(dense, j, none) for j in range(dense.n)]
    assert why_s == why_d
    strip = {"wall_time_s", "solutions"}
    assert plan_s.model_dump(exclude=strip) == plan_d.model_dump(exclude=strip)
    assert validate(snap, plan_s) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=snapshots(max_agents=5, max_tasks=14))
def test_explaining_many_tasks_at_once_gives_each_its_own_reason(snap: Snapshot) -> None:
    problem = compile_snapshot(snap)
    a, _ = greedy_schedule(problem)
    rng = np.random.default_rng(problem.n)
    for agent_of in (a, np.where(rng.random(problem.n) < 0.5, -1, a),
                     np.full(problem.n, -1, dtype=np.int64)):
        left = np.flatnonzero(agent_of < 0)
        one_by_one = [explain_unassigned(problem, int(j), agent_of) for j in left]
        assert explain_many(problem, left, agent_of) == one_by_one


def test_tasks_left_out_of_a_full_cluster_share_the_wording_not_the_id() -> None:
    agents = [Agent(id=f"a{i}", capacity={"cpu": 4.0}) for i in range(3)]
    tasks = [Task(id=f"t{j}", work=1.0 + j % 3, demand={"cpu": 2.0}) for j in range(12)]
    tasks.append(Task(id="big", work=1.0, demand={"cpu": 9.0}))
    problem = compile_snapshot(Snapshot(agents=agents, tasks=tasks))
    agent_of = np.array([0, 0, 1, 1, 2, 2] + [-1] * 7, dtype=np.int64)
    why = explain_many(problem, np.flatnonzero(agent_of < 0), agent_of)
    assert [u.task for u in why] == [f"t{j}" for j in range(6, 12)] + ["big"]
    assert {u.code.value for u in why[:-1]} == {"capacity_exhausted"}
    assert why[-1].code.value == "demand_exceeds_capacity"


def test_tasks_held_by_the_migration_cap_are_told_their_own_agent() -> None:
    # a3 has room for one of them, but getting there would be a migration.
    agents = [Agent(id=f"a{i}", capacity={"cpu": 2.0}) for i in range(4)]
    tasks = [Task(id=f"t{j}", work=1.0, demand={"cpu": 2.0}, current_agent=f"a{j % 3}")
             for j in range(6)]
    problem = compile_snapshot(Snapshot(agents=agents, tasks=tasks,
                                        options={"max_migrations": 0}))
    agent_of = np.array([1, 2, 0, -1, -1, -1], dtype=np.int64)  # three moved, three out
    why = explain_many(problem, np.array([3, 4, 5]), agent_of)
    assert why == [explain_unassigned(problem, j, agent_of) for j in (3, 4, 5)]
    assert [u.code.value for u in why] == ["migration_limit"] * 3
    assert [f"stay on 'a{j % 3}'" in u.reason
            for j, u in zip((3, 4, 5), why, strict=True)] == [True] * 3


def _sparse_instance(m: int, n: int, r: int, seed: int = 0) -> Snapshot:
    """Every task allowed on 3 agents and needing one of r resources; a few overrides."""
    rng = np.random.default_rng(seed)
    res = [f"r{k}" for k in range(r)]
    agents = [Agent(id=f"a{i}", capacity={x: 50.0 for x in res}, speed=1.0 + (i % 3),
                    cost_rate=float(1 + i % 5)) for i in range(m)]
    tasks = []
    for j in range(n):
        allowed = [f"a{i}" for i in rng.choice(m, 3, replace=False).tolist()]
        ov = ({allowed[0]: AgentOverride(cost=2.0, demand={res[j % r]: 2.0})}
              if j % 100 == 0 else {})
        tasks.append(Task(id=f"t{j}", work=float(1 + j % 7), demand={res[j % r]: 1.0},
                          allowed_agents=allowed, overrides=ov))
    return Snapshot(agents=agents, tasks=tasks)


def test_large_sparse_instance_compiles_and_plans_far_below_dense_memory() -> None:
    """1000 agents x 5000 tasks x 50 resources: [m, n, R] floats would be 2 GB."""
    m, n, r = 1000, 5000, 50
    snap = _sparse_instance(m, n, r)
    dense_bytes = m * n * r * 8
    tracemalloc.start()
    try:
        p = compile_snapshot(snap)
        rules = p.static_rules
        pairs = p.eligible_pairs
        agent_of, key = greedy_schedule(p)
        plan = make_plan(p, agent_of, solver="greedy", status=PlanStatus.FEASIBLE,
                         budget=Budget(60.0), order_key=key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _dense_built(p) == []
    assert pairs <= 3 * n and rules.nbytes < 2 << 20
    # Far below [m, n, R] x 8 bytes, and below even one [m, n] float array (40 MB).
    assert peak < dense_bytes / 50, (peak, dense_bytes)
    assert peak < m * n * 8, peak
    assert validate(snap, plan) == []
    assert len(plan.assignments) + len(plan.unassigned) == n
