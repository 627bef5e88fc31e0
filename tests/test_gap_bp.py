"""Branch-and-price for the exact front's cost steps: optimal, proven, valid, honest on time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import compile_snapshot
from allocator.solvers.base import Budget
from allocator.solvers.exact_front import exact_front
from allocator.solvers.gap_bp import GapBranchPrice
from allocator.solvers.knapsack_lagrange import KnapsackLagrangian
from allocator.validate import validate
from tests.gap_helpers import brute_optimum


@pytest.mark.parametrize("kind,seed", [("c", 0), ("d", 1), ("d", 2), ("e", 3)])
@pytest.mark.parametrize("K", [None, 3, 2])
def test_proven_optimum_equals_brute_force(kind: str, seed: int, K: int | None) -> None:
    """Without an incumbent, with load caps, and on infeasible caps (3 agents x 2 < 7 tasks)."""
    p = compile_snapshot(gap_to_snapshot(generate_gap(kind, 3, 7, seed)))
    kl = KnapsackLagrangian.of(p, 1.0)
    assert kl is not None
    bp = GapBranchPrice(kl)
    opt = brute_optimum(kl, K)
    r = bp.solve(K, None, step=1.0, deadline=time.perf_counter() + 30, clock=time.perf_counter)
    assert r.proven or r.infeasible
    if not np.isfinite(opt):
        assert r.infeasible and r.agent_of is None
        return
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(opt)
    assert r.root_bound <= opt + 1e-6


def test_steps_share_columns_and_stay_optimal() -> None:
    """One pool across decreasing caps (as the sweep runs them); each step from the last plan."""
    p = compile_snapshot(gap_to_snapshot(generate_gap("d", 3, 8, 7)))
    kl = KnapsackLagrangian.of(p, 1.0)
    assert kl is not None
    bp = GapBranchPrice(kl)
    inc = None
    for K in (None, 4, 3):
        r = bp.solve(K, inc, step=1.0, deadline=time.perf_counter() + 30,
                     clock=time.perf_counter)
        opt = brute_optimum(kl, K)
        assert r.proven and r.cost == pytest.approx(opt)
        inc = r.agent_of


def test_a_spent_deadline_is_not_a_proof() -> None:
    p = compile_snapshot(gap_to_snapshot(generate_gap("d", 8, 60, 0)))
    kl = KnapsackLagrangian.of(p, 1.0)
    assert kl is not None
    r = GapBranchPrice(kl).solve(8, None, step=1.0, deadline=time.perf_counter() + 0.3,
                                 clock=time.perf_counter)
    assert not r.proven and not r.infeasible
    if r.agent_of is not None:
        assert kl.feasible(r.agent_of, 8)


def test_weak_bound_front_uses_branch_and_price_and_is_valid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Type D: the bound rules out too few pairs, so the steps go to branch-and-price
    (the first HiGHS solve is cut short so it cannot settle them first); the front is
    proven and every plan is valid."""
    import allocator.solvers.exact_front as ef

    monkeypatch.setattr(ef, "FIRST_MAX_S", 0.005)
    monkeypatch.setattr(ef, "USE_BB", False)
    snap = gap_to_snapshot(generate_gap("d", 4, 16, 3))
    p = compile_snapshot(snap)
    front = exact_front(p, ["cost", "makespan"], budget=Budget(60), seed=0)
    assert "branch-and-price" in (front.message or "")
    assert front.points and front.proven
    for q in front.points:
        assert validate(snap, q.plan) == []
