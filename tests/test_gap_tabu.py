"""The compiled pieces of the exact front's cost steps: the two-row knapsack table and the
tabu search with oscillation (allocator.solvers.gap_tabu)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import allocator.solvers.knapsack_lagrange as kmod
from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import compile_snapshot
from allocator.solvers.gap_tabu import HAVE_NUMBA, tabu_search
from allocator.solvers.knapsack_lagrange import KnapsackLagrangian
from tests.gap_helpers import brute_optimum

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")


def lagrangian(kind: str, m: int, n: int, seed: int) -> KnapsackLagrangian:
    kl = KnapsackLagrangian.of(compile_snapshot(gap_to_snapshot(generate_gap(kind, m, n, seed))),
                               1.0)
    assert kl is not None
    return kl


@pytest.mark.parametrize("kind", ["c", "d", "e"])
@pytest.mark.parametrize("K", [None, 5, 3])
def test_compiled_table_equals_the_numpy_one(kind: str, K: int | None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Same table and same chosen tasks with and without the compiled kernel."""
    kl = lagrangian(kind, 4, 20, 7)
    rng = np.random.default_rng(1)
    lam = kl.lam + rng.normal(0.0, 5.0, kl.n)
    r = kl.C - lam[None, :]
    fast = [kl._agent(i, r[i], K, True) for i in range(kl.m)]
    monkeypatch.setattr(kmod, "HAVE_NUMBA", False)
    slow = [kl._agent(i, r[i], K, True) for i in range(kl.m)]
    for (tf, xf), (ts, xs) in zip(fast, slow, strict=True):
        np.testing.assert_allclose(tf, ts)
        assert sorted(xf) == sorted(xs)


@pytest.mark.parametrize("kind,seed", [("c", 0), ("d", 1), ("e", 2)])
@pytest.mark.parametrize("K", [None, 3])
def test_tabu_finds_the_optimum_of_small_steps(kind: str, seed: int, K: int | None) -> None:
    """3 agents x 8 tasks: feasible, never below the optimum, and here at it."""
    kl = lagrangian(kind, 3, 8, seed)
    opt = brute_optimum(kl, K)
    if not np.isfinite(opt):
        pytest.skip("no feasible assignment at this load cap")
    D = kl.D if kl.D is not None else np.zeros_like(kl.A)
    r = tabu_search(kl.C, kl.A, kl.cap, D, np.inf if K is None else K, None, seed=seed,
                    iterations=2000, deadline=np.inf, clock=time.perf_counter)
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == kl.cost(r.agent_of)
    assert r.cost == opt


def test_tabu_is_deterministic_and_improves_its_start() -> None:
    kl = lagrangian("e", 6, 40, 3)
    K = 7
    D = kl.D if kl.D is not None else np.zeros_like(kl.A)
    first = tabu_search(kl.C, kl.A, kl.cap, D, K, None, seed=0, iterations=200,
                        deadline=np.inf, clock=time.perf_counter)
    start = first.agent_of
    assert start is not None and kl.feasible(start, K)
    runs = [tabu_search(kl.C, kl.A, kl.cap, D, K, start, seed=5, iterations=3000,
                        deadline=np.inf, clock=time.perf_counter) for _ in range(2)]
    assert runs[0].agent_of is not None and runs[1].agent_of is not None
    np.testing.assert_array_equal(runs[0].agent_of, runs[1].agent_of)
    assert runs[0].cost <= kl.cost(start)
    assert kl.feasible(runs[0].agent_of, K)
    assert runs[0].iterations == 3000
    # A deadline already passed: no iteration, the feasible start is the answer.
    r = tabu_search(kl.C, kl.A, kl.cap, D, K, start, seed=5, iterations=3000, deadline=0.0,
                    clock=time.perf_counter)
    assert r.iterations == 0 and r.cost == kl.cost(start)
