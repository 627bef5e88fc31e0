"""Large-neighbourhood search for one cost step: the branch-and-bound on a few free tasks.

A cost step of the sweep (min cost under capacities and a makespan cap K) on
hard generated GAP (10x80 type D) is missed by a few cost units when its tree
is cut short, and a few units are most of a front's hypervolume. Local
search over shifts, swaps (allocator.solvers.gap_tabu) and ejection chains
(measured in docs/benchmarks/pareto-gap-cde.md, not kept) end 15-50 units above
these optima: the cheap plans fill every agent's capacity almost exactly, and
a better one differs in
many agents at once. The Lagrangian tree (allocator.solvers.gap_bb) is good
at exactly that, so the neighbourhood here is solved by it:

* keep a random share of the tasks on their incumbent agents (only that pair
  allowed), free the rest;
* search the restricted step for a plan below the incumbent (the tree that
  works down from it, warm-started with the full tree's multipliers), for at
  most `sub_s` seconds;
* take a cheaper plan; a sub-tree emptied in time (nothing cheaper there)
  frees more tasks next time, one cut short frees fewer (the share of kept
  tasks adapts between `lo` and `hi`).

The same seed and the same sub-tree outcomes give the same plans; the outcomes
depend on the clock (each sub-tree has a deadline), as the tree's do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from allocator.solvers.gap_bb import GapBranchBound

#: Share of the tasks kept on their incumbent agents at the start, and its range.
KEEP, KEEP_LO, KEEP_HI = 0.6, 0.1, 0.9
#: Change of that share after each sub-tree (emptied: down; cut short: up).
KEEP_STEP = 0.02
#: Most seconds of one sub-tree.
SUB_S = 0.1
#: Sub-trees in a row without a cheaper plan that end the search before its deadline (a
#: clock that does not move, as an injected test clock, would never reach it; at 0.1 s a
#: sub-tree a seeding step's search runs 10-25).
STALL_TREES = 200


@dataclass
class LnsResult:
    """Best plan (the start when nothing cheaper was found), its cost, sub-trees run,
    and how many of them found a cheaper plan."""

    agent_of: np.ndarray
    cost: float
    trees: int
    improved: int
    keep: float


def lns_search(bb: GapBranchBound, K: int | None, start: np.ndarray, *, step: float,
               seed: int, deadline: float, clock: Callable[[], float],
               keep: float = KEEP, sub_s: float = SUB_S, max_trees: int | None = None,
               guide: np.ndarray | None = None) -> LnsResult:
    """Cheaper plans than the feasible `start` under capacities and load cap K by
    sub-trees of `bb`'s data on random subsets of free tasks, until `deadline` on
    `clock` (or `max_trees`, or STALL_TREES in a row without a cheaper plan). `bb.lam`
    (the full tree's multipliers) warm-starts them. `guide` [n] (an agent per task, -1
    none): only tasks whose incumbent agent is their guide's may be kept."""
    C, A, cap, D = bb.C, bb.A, bb.cap, bb.D
    n = C.shape[1]
    a = np.asarray(start, dtype=np.int64).copy()
    if not bb.feasible(a, K):
        raise ValueError("lns_search needs a feasible start")
    cost = bb.cost(a)
    rng = np.random.default_rng(seed)
    ar = np.arange(n)
    trees = improved = stall = 0
    while (clock() < deadline and (max_trees is None or trees < max_trees)
           and stall < STALL_TREES):
        pick = rng.random(n) < keep
        if guide is not None:
            pick &= a == guide
        fix = np.flatnonzero(pick)
        Cs = C.copy()
        Cs[:, fix] = np.inf
        Cs[a[fix], fix] = C[a[fix], fix]
        sub = GapBranchBound(Cs, A, cap, D)
        sub.lam = bb.lam.copy()
        r = sub.solve(K, a, step=step, deadline=min(deadline, clock() + sub_s), clock=clock,
                      raise_target=False)
        trees += 1
        if r.agent_of is not None and r.cost < cost - 0.5 * step:
            a = r.agent_of.copy()
            cost = float(C[a, ar].sum())
            improved += 1
            stall = 0
        else:
            stall += 1
        keep = max(KEEP_LO, keep - KEEP_STEP) if r.emptied else min(KEEP_HI, keep + KEEP_STEP)
    return LnsResult(a, cost, trees, improved, keep)
