"""Local search never worsens and keeps feasibility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from allocator.io import gap_to_snapshot, read_gap
from allocator.problem import compile_snapshot
from allocator.solvers.base import plan_objective
from allocator.solvers.greedy import greedy_assign
from allocator.solvers.linear import build_linear, is_linear
from allocator.solvers.localsearch import local_search
from tests.conftest import DATA
from tests.strategies import snapshots


@pytest.mark.parametrize("name", ["c10100", "d10200"])
def test_improves_greedy_on_gap_and_stays_feasible(name: str) -> None:
    problem = compile_snapshot(gap_to_snapshot(read_gap(DATA / "gap/chu-yagiura" / name)[0]))
    lm = build_linear(problem)
    start = greedy_assign(problem)
    assert lm.feasible(start)
    out = local_search(lm, start, seed=1)
    assert lm.feasible(out)
    assert lm.objective(out) <= lm.objective(start)
    # The model's objective is the engine's objective.
    assert abs(lm.objective(out) - plan_objective(problem, out)) <= 1e-6 * lm.objective(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(timed=False))
def test_never_worsens_never_breaks(snap) -> None:  # type: ignore[no-untyped-def]
    problem = compile_snapshot(snap)
    if not is_linear(problem):
        return
    lm = build_linear(problem)
    for start in (greedy_assign(problem), np.full(problem.n, -1, dtype=np.int64)):
        if not lm.feasible(start):
            continue
        out = local_search(lm, start, seed=0)
        assert lm.feasible(out)
        before, after = lm.objective(start), lm.objective(out)
        assert after <= before + 1e-9 * max(1.0, abs(before))
        assert abs(after - plan_objective(problem, out)) <= 1e-6 * max(1.0, abs(after))
