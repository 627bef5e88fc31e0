"""Branch-and-bound for the exact front's cost steps: optimal against brute force, proven
only when the tree is emptied, every plan valid."""

from __future__ import annotations

import time

import numpy as np
import pytest

from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import compile_snapshot
from allocator.solvers.base import Budget
from allocator.solvers.exact_front import exact_front
from allocator.solvers.gap_bb import GapBranchBound, warm_up
from allocator.solvers.knapsack_lagrange import KnapsackLagrangian
from allocator.validate import validate
from tests.gap_helpers import brute_optimum


@pytest.fixture(autouse=True, scope="module")
def _compiled() -> None:
    """Compile (or load) the kernel before any deadline starts."""
    warm_up()


def _bb(kind: str, m: int, n: int, seed: int) -> tuple[KnapsackLagrangian, GapBranchBound]:
    p = compile_snapshot(gap_to_snapshot(generate_gap(kind, m, n, seed)))
    kl = KnapsackLagrangian.of(p, 1.0)
    assert kl is not None and kl.D is not None
    return kl, GapBranchBound(kl.C, kl.A, kl.cap, kl.D)


@pytest.mark.parametrize("kind,seed", [("c", 0), ("c", 4), ("d", 1), ("d", 2), ("d", 5),
                                       ("e", 3), ("e", 6)])
@pytest.mark.parametrize("K", [None, 3, 2])
@pytest.mark.parametrize("raise_target", [True, False])
def test_proven_optimum_equals_brute_force(kind: str, seed: int, K: int | None,
                                           raise_target: bool) -> None:
    """No incumbent; load caps loose, tight and infeasible (3 agents x 2 < 7 tasks); with
    and without target raising."""
    kl, bb = _bb(kind, 3, 7, seed)
    opt = brute_optimum(kl, K)
    r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600, clock=time.perf_counter,
                 raise_target=raise_target)
    assert r.emptied
    if not np.isfinite(opt):
        assert r.infeasible and r.agent_of is None and not r.proven
        return
    assert r.proven and not r.infeasible
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(opt) == pytest.approx(kl.cost(r.agent_of))
    assert r.root_bound <= opt + 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_from_an_incumbent_and_from_a_target(seed: int) -> None:
    """A feasible incumbent (optimal or not) and a target below or at the optimum."""
    kl, bb = _bb("d", 3, 8, seed)
    K = 3
    opt = brute_optimum(kl, K)
    assert np.isfinite(opt)
    ref = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                   clock=time.perf_counter)
    assert ref.proven and ref.cost == pytest.approx(opt) and ref.agent_of is not None
    # from the optimum itself: proven, same cost
    r = bb.solve(K, ref.agent_of, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter)
    assert r.proven and r.cost == pytest.approx(opt)
    # an infeasible incumbent is ignored
    bad = np.zeros(kl.n, dtype=np.int64)
    assert not kl.feasible(bad, K)
    r = bb.solve(K, bad, step=1.0, deadline=time.perf_counter() + 600, clock=time.perf_counter)
    assert r.proven and r.cost == pytest.approx(opt)
    # a target one below the optimum: emptied (nothing that cheap), not a proof of
    # infeasibility; a plan found on the way costs at least the optimum
    r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter, target=opt - 1)
    assert r.emptied and not r.infeasible and not r.proven
    if r.agent_of is not None:
        assert kl.feasible(r.agent_of, K) and r.cost >= opt - 1e-6
    # a target at the optimum: found and proven
    r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter, target=opt)
    assert r.proven and r.cost == pytest.approx(opt)


def test_a_spent_deadline_is_not_a_proof() -> None:
    kl, bb = _bb("d", 8, 60, 0)
    r = bb.solve(8, None, step=1.0, deadline=time.perf_counter() + 0.2,
                 clock=time.perf_counter, max_nodes=3)
    assert not r.proven and not r.infeasible and not r.emptied
    if r.agent_of is not None:
        assert kl.feasible(r.agent_of, 8)


@pytest.mark.parametrize("kind,seed", [("d", 3), ("e", 1), ("c", 2)])
def test_front_by_branch_and_bound_is_proven_and_valid(kind: str, seed: int) -> None:
    snap = gap_to_snapshot(generate_gap(kind, 4, 16, seed))
    p = compile_snapshot(snap)
    front = exact_front(p, ["cost", "makespan"], budget=Budget(60), seed=0)
    assert "branch-and-bound" in (front.message or "")
    assert front.points and front.proven
    for q in front.points:
        assert validate(snap, q.plan) == []


@pytest.mark.parametrize("kind,seed", [("d", 4), ("e", 2)])
def test_front_equals_the_highs_sweeps(kind: str, seed: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The same proven front as the sweep without the branch-and-bound (HiGHS, Lagrangian
    fixing, branch-and-price)."""
    import allocator.solvers.exact_front as ef

    p = compile_snapshot(gap_to_snapshot(generate_gap(kind, 4, 14, seed)))
    ours = exact_front(p, ["cost", "makespan"], budget=Budget(60), seed=0)
    monkeypatch.setattr(ef, "USE_BB", False)
    theirs = exact_front(p, ["cost", "makespan"], budget=Budget(60), seed=0)
    assert "branch-and-bound" not in (theirs.message or "")
    assert ours.proven and theirs.proven
    assert sorted(ours.vectors()) == sorted(theirs.vectors())


@pytest.mark.parametrize("K", [None, 3])
def test_a_feasible_incumbent_is_kept_without_a_cap_too(K: int | None) -> None:
    """With no time at all the step returns the incumbent it was given (the cap-free step
    once checked the incumbent against a zero load cap and searched without it)."""
    kl, bb = _bb("e", 3, 8, 4)
    inc = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                   clock=time.perf_counter).agent_of
    assert inc is not None and kl.feasible(inc, K)
    r = bb.solve(K, inc, step=1.0, deadline=time.perf_counter() - 1.0, clock=time.perf_counter)
    assert r.agent_of is not None and r.cost == pytest.approx(kl.cost(inc))
    assert not r.proven
