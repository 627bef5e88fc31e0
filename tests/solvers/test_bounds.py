"""LP bound: never above any plan's objective; the makespan bound is tight where it should be."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings

from allocator import solve, validate
from allocator.bounds import lp_bound, makespan_bound
from allocator.io import gap_to_snapshot, read_gap
from allocator.problem import compile_snapshot
from tests.conftest import DATA
from tests.strategies import snapshots


def test_lp_bound_below_optimum_on_gap1() -> None:
    for inst in read_gap(DATA / "gap/orlib/gap1.txt"):
        snap = gap_to_snapshot(inst, time_limit=10, solver="milp")
        plan = solve(snap)
        lb = lp_bound(compile_snapshot(snap))
        assert lb is not None and plan.objective is not None
        assert lb <= plan.objective + 1e-6
        assert lb >= 0.9 * plan.objective  # and it is not vacuous


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_lp_bound_never_exceeds_a_plan(snap) -> None:  # type: ignore[no-untyped-def]
    problem = compile_snapshot(snap)
    lb = lp_bound(problem)
    plan = solve(snap, solver="greedy", time_limit=1)
    assert validate(snap, plan) == []
    if lb is not None:
        assert lb <= plan.objective + 1e-6 * max(1.0, abs(plan.objective))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(timed=False))
def test_reported_bounds_are_below_objectives(snap) -> None:  # type: ignore[no-untyped-def]
    for name in ("auto", "milp", "cpsat"):
        plan = solve(snap, solver=name, time_limit=0.5)
        assert validate(snap, plan) == []
        if plan.bound is not None and plan.objective is not None:
            assert plan.bound <= plan.objective + 1e-6 * max(1.0, abs(plan.objective))


def test_makespan_bound_by_hand() -> None:
    # Two agents (speed 1 and 3), one group that may use both: 8 work units -> 8 / 4 = 2.
    group_agents = np.array([[True, True]])
    lb = makespan_bound(np.array([4.0, 4.0]), np.array([1.0, 3.0]), np.array([0, 0]),
                        group_agents)
    assert abs(lb - 2.0) < 1e-6
    # One task of 9 only on the slow agent: 9.
    lb = makespan_bound(np.array([9.0, 1.0]), np.array([1.0, 3.0]), np.array([0, 1]),
                        np.array([[True, False], [True, True]]))
    assert abs(lb - 9.0) < 1e-6
