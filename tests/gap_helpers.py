"""Shared by the exact-front tests: the true optimum of a tiny cost step, by enumeration."""

from __future__ import annotations

import itertools

import numpy as np

from allocator.solvers.knapsack_lagrange import KnapsackLagrangian


def brute_optimum(kl: KnapsackLagrangian, K: int | None) -> float:
    """Least cost over every assignment that keeps capacities and the makespan cap K."""
    best = np.inf
    for combo in itertools.product(range(kl.m), repeat=kl.n):
        a = np.array(combo)
        if kl.feasible(a, K):
            best = min(best, kl.cost(a))
    return best
