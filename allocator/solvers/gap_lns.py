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

:class:`LevelSearch` runs a level's own tree (:class:`allocator.solvers.gap_bb.StepTree`,
which pauses and resumes) and this search in turn, each going on from the other's
cheaper plans, so that the search need not take the end of the level from a tree that
would have proven it (d1080-s95's front fell from 1.0 to 0.365 that way) and its plans
shrink the tree (the seeding step with exact_front.INTERLEAVE; a tree cut short can
resume there with more time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from allocator.solvers.gap_bb import GapBranchBound, StepResult, StepTree

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
#: The plans the sub-trees meet are kept in the step's GapBranchBound (see GapBranchBound.kept)
#: for the tighter steps. Off: on 10 s fronts at 2/3 of a core it was no better (12 held-out
#: 10x80 type-D files: mean hv_ratio 0.897 against 0.882; 8 more: worse on 4, the same on 4;
#: docs/benchmarks/pareto-gap-cde.md, 13:45-14:20 UTC).
KEEP_MET = False
#: A level's tree and this search in turn (LevelSearch), on the caller's clock: the tree
#: runs first for TREE_FIRST_S; then the search gets slices of LNS_SLICE_S and the tree
#: slices of TREE_SLICE_S in between, doubled after a slice of the search that found no
#: cheaper plan (back to TREE_SLICE_S after one that did), so a search that finds nothing
#: takes less and less of the tree's time.
TREE_FIRST_S, TREE_SLICE_S, LNS_SLICE_S = 0.3, 0.3, 0.2
TREE_BACKOFF = 2.0
#: The tree's first slice is at least this share of the level's time (to `deadline`). On
#: 10 s fronts neither a fixed 40 % share (TREE_BACKOFF 1) nor the tail's 60 % first
#: (this at 0.6, then slices of 0.1 / 0.3 s) beat the plain tail (exact_front.INTERLEAVE).
TREE_FIRST_SHARE = 0.0


@dataclass
class LnsResult:
    """Best plan (the start when nothing cheaper was found), its cost, sub-trees run,
    and how many of them found a cheaper plan."""

    agent_of: np.ndarray
    cost: float
    trees: int
    improved: int
    keep: float


class Lns:
    """The search below, resumable: its plan, random stream and kept share stay here
    between :meth:`run` calls (a level's tree runs in between, :class:`LevelSearch`)."""

    def __init__(self, bb: GapBranchBound, K: int | None, start: np.ndarray, *, step: float,
                 seed: int, clock: Callable[[], float], keep: float = KEEP,
                 sub_s: float = SUB_S, guide: np.ndarray | None = None):
        a = np.asarray(start, dtype=np.int64).copy()
        if not bb.feasible(a, K):
            raise ValueError("lns_search needs a feasible start")
        self.bb, self.K, self.step, self.clock = bb, K, float(step), clock
        self.keep, self.sub_s = keep, sub_s
        #: [n] an agent per task (-1: none): only tasks on their guide's agent may be kept.
        self.guide = guide
        self.agent_of = a
        self.cost = bb.cost(a)
        self.rng = np.random.default_rng(seed)
        self.trees = self.improved = self.stall = 0

    @property
    def stalled(self) -> bool:
        """STALL_TREES sub-trees in a row found nothing cheaper."""
        return self.stall >= STALL_TREES

    def restart(self, plan: np.ndarray) -> None:
        """Go on from a cheaper feasible plan found elsewhere (its stall count restarts)."""
        cost = self.bb.cost(plan)
        if cost < self.cost and self.bb.feasible(plan, self.K):
            self.agent_of = np.asarray(plan, dtype=np.int64).copy()
            self.cost = cost
            self.stall = 0

    def run(self, until: float, max_trees: int | None = None) -> int:
        """Sub-trees until `until` on the clock (each cut at it), `max_trees` of them in
        all, or a stall; returns how many of them found a cheaper plan."""
        bb, K, clock = self.bb, self.K, self.clock
        C, A, cap, D = bb.C, bb.A, bb.cap, bb.D
        n = C.shape[1]
        ar = np.arange(n)
        got = 0
        while (clock() < until and (max_trees is None or self.trees < max_trees)
               and self.stall < STALL_TREES):
            a = self.agent_of
            pick = self.rng.random(n) < self.keep
            if self.guide is not None:
                pick &= a == self.guide
            fix = np.flatnonzero(pick)
            Cs = C.copy()
            Cs[:, fix] = np.inf
            Cs[a[fix], fix] = C[a[fix], fix]
            sub = GapBranchBound(Cs, A, cap, D)
            sub.lam = bb.lam.copy()
            if KEEP_MET:
                # Every plan a sub-tree meets is a plan of the full step (the true costs and
                # loads): kept in bb by its makespan for the tighter steps, as the tree's are.
                sub.kept_cost, sub.kept_plan = bb.kept_cost, bb.kept_plan
            r = sub.solve(K, a, step=self.step, deadline=min(until, clock() + self.sub_s),
                          clock=clock, raise_target=False, regret=True)
            self.trees += 1
            if r.agent_of is not None and r.cost < self.cost - 0.5 * self.step:
                self.agent_of = r.agent_of.copy()
                self.cost = float(C[self.agent_of, ar].sum())
                self.improved += 1
                got += 1
                self.stall = 0
            else:
                self.stall += 1
            self.keep = (max(KEEP_LO, self.keep - KEEP_STEP) if r.emptied
                         else min(KEEP_HI, self.keep + KEEP_STEP))
        return got


def lns_search(bb: GapBranchBound, K: int | None, start: np.ndarray, *, step: float,
               seed: int, deadline: float, clock: Callable[[], float],
               keep: float = KEEP, sub_s: float = SUB_S, max_trees: int | None = None,
               guide: np.ndarray | None = None) -> LnsResult:
    """Cheaper plans than the feasible `start` under capacities and load cap K by
    sub-trees of `bb`'s data on random subsets of free tasks, until `deadline` on
    `clock` (or `max_trees`, or STALL_TREES in a row without a cheaper plan). `bb.lam`
    (the full tree's multipliers) warm-starts them. `guide` [n] (an agent per task, -1
    none): only tasks whose incumbent agent is their guide's may be kept."""
    s = Lns(bb, K, start, step=step, seed=seed, clock=clock, keep=keep, sub_s=sub_s,
            guide=guide)
    s.run(deadline, max_trees)
    return LnsResult(s.agent_of, s.cost, s.trees, s.improved, s.keep)


class LevelSearch:
    """One level (cost step) of the seeding sweep: its tree (:class:`StepTree`) and the
    search above in turn, each handing the other its cheaper plans.

    The tree runs first; when it has run its slice, the search goes on from the cheaper
    of its own plan and the tree's for a slice, and a cheaper plan it finds becomes the
    tree's incumbent (the tree then prunes against it: a smaller tree, so a level the
    tree alone would prove is proven sooner, not replaced by the search). A slice that
    finds nothing doubles the tree's next slice. `run(until)` can be called again with
    more time: the tree resumes where it paused. `guide`: called before each slice of the
    search, its guide (see :func:`lns_search`) at the tree's current multipliers."""

    def __init__(self, bb: GapBranchBound, K: int | None, incumbent: np.ndarray | None, *,
                 step: float, seed: int, deadline: float, clock: Callable[[], float],
                 lower: float = -np.inf, guess: float = -np.inf,
                 tail_step: bool | None = None,
                 guide: Callable[[], np.ndarray | None] | None = None, lns: bool = True):
        self.bb, self.K, self.step, self.seed, self.clock = bb, K, float(step), seed, clock
        self.tree = StepTree(bb, K, incumbent, step=step, deadline=deadline, clock=clock,
                             lower=lower, guess=guess, tail_step=tail_step, regret=True)
        self._guide = guide
        self.use_lns = lns
        self.lns: Lns | None = None
        self._tree_slice = TREE_SLICE_S
        now = clock()
        self._lns_at = now + max(TREE_FIRST_S, TREE_FIRST_SHARE * (deadline - now))
        #: Clock time spent in the search's slices, and the plans it handed to the tree.
        self.lns_s = 0.0
        self.handed = 0

    @property
    def proven(self) -> bool:
        """The tree is settled with its incumbent optimal."""
        return self.tree.ended and self.tree.result().proven

    @property
    def best(self) -> np.ndarray | None:
        """The cheapest plan found (None: none yet)."""
        return self.tree.result().agent_of

    @property
    def cost(self) -> float:
        return self.tree.cost

    def result(self) -> StepResult:
        """The tree's outcome, its incumbent the cheapest plan either found."""
        return self.tree.result()

    def run(self, until: float) -> bool:
        """Search until `until` on the clock; True when the tree is over (proven,
        infeasible, or emptied at a target)."""
        tree, clock = self.tree, self.clock
        while not tree.ended and clock() < until:
            if self._lns_open() and clock() >= self._lns_at:
                if np.isfinite(tree.cost):
                    self._slice(min(until, clock() + LNS_SLICE_S))
                    continue
                self._lns_at = clock() + self._tree_slice  # no plan yet: the tree goes on
            tree.run(min(until, self._lns_at) if self._lns_open() else until)
        return tree.ended

    def _lns_open(self) -> bool:
        """The search is on and not stalled."""
        return self.use_lns and (self.lns is None or not self.lns.stalled)

    def _slice(self, until: float) -> None:
        tree, clock = self.tree, self.clock
        plan = tree.best
        guide = self._guide() if self._guide is not None else None
        if self.lns is None:
            self.lns = Lns(self.bb, self.K, plan, step=self.step, seed=self.seed, clock=clock,
                           guide=guide)
        else:
            self.lns.guide = guide
            if tree.cost < self.lns.cost:
                self.lns.restart(plan)
        t0 = clock()
        got = self.lns.run(until)
        self.lns_s += clock() - t0
        if got and tree.offer(self.lns.agent_of):
            self.handed += 1
            self._tree_slice = TREE_SLICE_S
        else:
            self._tree_slice *= TREE_BACKOFF
        self._lns_at = clock() + self._tree_slice
