"""Every backend returns plans that pass the independent validator and explain themselves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from allocator import compile_snapshot, solve, validate
from allocator.errors import UnknownSolverError
from allocator.io import gap_to_snapshot, read_gap
from allocator.objectives import build_schedule, evaluate
from allocator.solvers.base import assignment_from_plan
from models import Agent, Plan, PlanStatus, Snapshot, SolveOptions, Task, Weights
from tests.conftest import DATA
from tests.strategies import snapshots

BACKENDS = ["greedy", "cpsat", "auto"]


def check_plan(snapshot: Snapshot, plan: Plan) -> None:
    """The invariants every plan from every backend must satisfy."""
    assert validate(snapshot, plan) == [], plan
    assert plan.status in (PlanStatus.OPTIMAL, PlanStatus.FEASIBLE)
    for u in plan.unassigned:
        assert u.reason
    # Reported objective equals an independent recomputation from the plan's rows.
    problem = compile_snapshot(snapshot)
    ws = assignment_from_plan(problem, plan)
    values = evaluate(problem, build_schedule(problem, ws.agent_of, ws.order_key))
    by_name = {t.name: t for t in plan.breakdown}
    for name in ("cost", "migrations", "unassigned"):
        assert by_name[name].value == pytest.approx(values[name], rel=1e-9, abs=1e-9)
    assert plan.objective == pytest.approx(sum(t.weighted for t in plan.breakdown))
    if plan.bound is not None:
        assert plan.bound <= plan.objective + 1e-6 * max(1.0, abs(plan.objective))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=snapshots())
def test_every_backend_plan_is_valid(backend: str, snap: Snapshot) -> None:
    check_plan(snap, solve(snap, solver=backend, time_limit=2.0))


def test_cpsat_never_worse_than_greedy_on_small(small_snapshot: Snapshot) -> None:
    g = solve(small_snapshot, solver="greedy")
    c = solve(small_snapshot, solver="cpsat", time_limit=5)
    check_plan(small_snapshot, g)
    check_plan(small_snapshot, c)
    assert c.objective is not None and g.objective is not None
    assert c.objective <= g.objective + 1e-9


REASONS = Snapshot(
    agents=[
        Agent(id="a", capacity={"cpu": 4}, skills=["py"]),
        Agent(id="b", capacity={"cpu": 2}, skills=["py"], speed=2.0),
        Agent(id="off", capacity={"cpu": 100}, skills=["py", "gpu"], status="down"),
    ],
    tasks=[
        Task(id="needs-gpu", skills=["gpu"], demand={"cpu": 1}),
        Task(id="too-big", demand={"cpu": 5}),
        Task(id="too-late", work=10, release=0, deadline=2, hard_deadline=True),
        Task(id="nowhere", allowed_agents=["off"]),
        Task(id="fill-1", demand={"cpu": 4}, priority="critical"),
        Task(id="fill-2", demand={"cpu": 2}, priority="critical"),
        Task(id="squeezed", demand={"cpu": 1}, priority="low"),
    ],
    weights=Weights(cost=1),
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unassigned_tasks_carry_the_right_reason(backend: str) -> None:
    plan = solve(REASONS, solver=backend, time_limit=5)
    check_plan(REASONS, plan)
    codes = {u.task: u.code for u in plan.unassigned}
    assert codes == {
        "needs-gpu": "missing_skill",
        "too-big": "demand_exceeds_capacity",
        "too-late": "deadline_unreachable",
        "nowhere": "not_allowed",
        "squeezed": "capacity_exhausted",
    }
    reasons = {u.task: u.reason for u in plan.unassigned}
    assert "gpu" in reasons["needs-gpu"]
    assert "cpu 5 > max capacity 4" in reasons["too-big"]


def test_unknown_solver_is_a_typed_error(small_snapshot: Snapshot) -> None:
    with pytest.raises(UnknownSolverError, match=r"known: .*greedy"):
        solve(small_snapshot, solver="simplex-magic")


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_plan(backend: str) -> None:
    snap = gap_to_snapshot(read_gap(DATA / "gap/orlib/gap4.txt")[0]).model_copy(
        update={"options": SolveOptions(workers=1, time_limit=1.0, seed=3)})
    a = solve(snap, solver=backend)
    b = solve(snap, solver=backend)
    assert a.agent_of() == b.agent_of()
    assert a.objective == b.objective


def test_time_limited_run_is_not_called_optimal() -> None:
    """d10200 is not proven within 2 s: the plan says feasible (with a gap), never optimal."""
    snap = gap_to_snapshot(read_gap(DATA / "gap/chu-yagiura/d10200")[0], time_limit=2.0)
    plan = solve(snap, solver="cpsat")
    assert validate(snap, plan) == []
    assert plan.status in (PlanStatus.FEASIBLE, PlanStatus.TIMEOUT)  # TIMEOUT on a loaded box
    if plan.status == PlanStatus.FEASIBLE:
        assert plan.bound is not None and plan.gap is not None and plan.gap > 0
    else:
        assert not plan.assignments and len(plan.unassigned) == len(snap.tasks)


def test_deadlines_use_the_scheduling_model() -> None:
    """Tardiness-weighted snapshot: CP-SAT orders by deadline and beats arbitrary order."""
    agents = [Agent(id="solo", capacity={"slots": 10})]
    tasks = [Task(id=f"t{k}", work=w, deadline=d, demand={"slots": 1})
             for k, (w, d) in enumerate([(5, 20), (1, 1), (2, 3), (3, 11)])]
    snap = Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=0, tardiness=1))
    plan = solve(snap, solver="cpsat", time_limit=5)
    check_plan(snap, plan)
    assert plan.status == PlanStatus.OPTIMAL
    assert plan.metrics is not None and plan.metrics.deadline_misses == 0
    order = [a.task for a in sorted(plan.assignments, key=lambda a: a.start)]
    assert order == ["t1", "t2", "t3", "t0"]


def test_migrations_are_listed_and_capped() -> None:
    agents = [Agent(id=f"a{k}", capacity={"slots": 10}) for k in range(3)]
    tasks = [Task(id=f"t{k}", work=1, current_agent="a0", demand={"slots": 1})
             for k in range(6)]
    snap = Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=0, makespan=1),
                    options=SolveOptions(max_migrations=2))
    plan = solve(snap, solver="cpsat", time_limit=5)
    check_plan(snap, plan)
    assert len(plan.migrations) == 2
    moved = {m.task for m in plan.migrations}
    placed = plan.agent_of()
    assert all(placed[t] != "a0" for t in moved)
    assert all(m.source == "a0" for m in plan.migrations)
    assert plan.metrics is not None and plan.metrics.makespan == pytest.approx(4.0)


def test_load_balancing_without_costs_is_balanced() -> None:
    agents = [Agent(id=f"a{k}", speed=s) for k, s in enumerate([1.0, 2.0, 1.0])]
    tasks = [Task(id=f"t{k}", work=w) for k, w in enumerate([4, 4, 4, 4, 2, 2, 2, 2])]
    snap = Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=0, makespan=1))
    for backend in BACKENDS:
        plan = solve(snap, solver=backend, time_limit=5)
        check_plan(snap, plan)
        assert plan.metrics is not None
        # Total work 24 over total speed 4: makespan 6 is optimal here.
        assert plan.metrics.makespan <= (6.0 if backend != "greedy" else 8.0) + 1e-9


def test_compiled_arrays_match_the_snapshot(small_snapshot: Snapshot) -> None:
    p = compile_snapshot(small_snapshot)
    assert p.m == 3 and p.n == 6 and p.resources == ["cpu", "mem"]
    assert p.duration[1, 0] == pytest.approx(2.0)  # work 4 at speed 2
    assert p.cost[1, 0] == pytest.approx(4.0)  # cost_rate 2 x duration 2
    # t1 needs py: agent c lacks it; t2 needs sql: agent a lacks it.
    assert not p.eligible[2, 0] and not p.eligible[0, 1]
    assert np.array_equal(p.current, np.array([-1, -1, -1, -1, -1, 0]))


@pytest.mark.parametrize("backend", ["cpsat", "auto", "milp"])
def test_a_migration_cap_beyond_int64_means_no_cap(backend: str) -> None:
    """options.max_migrations = 10**30 (valid: no upper bound) never binds; CP-SAT
    took the Python int as its constraint bound and raised a TypeError."""
    agents = [Agent(id=f"a{k}", capacity={"slots": 10}) for k in range(3)]
    tasks = [Task(id=f"t{k}", work=1, current_agent="a0", demand={"slots": 1})
             for k in range(6)]
    snap = Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=0, makespan=1),
                    options=SolveOptions(max_migrations=10**30))
    plan = solve(snap, solver=backend, time_limit=2)
    check_plan(snap, plan)
    assert len(plan.assignments) == 6
