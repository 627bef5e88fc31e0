"""The exact bi-objective Pareto front of an untimed snapshot (epsilon-constraint).

One HiGHS model is built once and re-solved: the assignment columns
``x[k]`` (eligible pairs) and ``u[j]`` (left out), capacity rows, and one
free column ``z[o]`` per objective tied to it by rows:

* cost / migrations: ``sum_k c[k] x[k] - z = 0``;
* makespan: ``load_i - z <= 0`` for every agent (busy time, concurrency 1);
* imbalance: ``load_i - H <= 0``, ``load_i - L >= 0`` on up agents, ``H - L - z = 0``.

Minimising an objective is a cost on its ``z``; bounding one (the epsilon
constraint) is an upper bound on its ``z``, so a step changes column bounds
and costs only, and HiGHS keeps its model (and the previous incumbent, given
back as a start after a quick repair).

The sweep:

1. least unassigned penalty (skipped when everything can be placed, the
   common case: the first anchor is tried with every ``u`` at 0);
2. the two anchors, lexicographic minima (f1 then f2, f2 then f1);
3. the objective with fewer grid steps between the anchors becomes the
   bounded one, g; the other, h, is minimised subject to g <= eps, with eps
   one grid step (the objective's integer granularity after exact power of
   ten scaling) below the previous point's g. When the grid is fine the
   point is completed by minimising g subject to h <= its value; when it is
   coarse (few steps, as makespan with unit work) that second solve is
   skipped and points found equal in h are dropped as dominated.

Every MILP is solved with an absolute gap below the minimised objective's
grid step, so "optimal" means exactly optimal; a point is *proven* when the
solves behind it were, and the front is proven when every point is and the
sweep ran to the anchor. Models that need CP-SAT (objectives a linear model
cannot hold) use :mod:`allocator.solvers.cp_core` instead.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from allocator.constraints import capacity_limit
from allocator.errors import InvalidInputError
from allocator.problem import Problem
from allocator.solvers.base import Budget
from allocator.solvers.gap_bb import GapBranchBound, StepResult, StepTree, bb_ready
from allocator.solvers.gap_bp import GapBranchPrice
from allocator.solvers.gap_cover import cover_search, packed
from allocator.solvers.gap_lns import LevelSearch, lns_search
from allocator.solvers.gap_tabu import HAVE_NUMBA, tabu_search
from allocator.solvers.knapsack_lagrange import KnapsackLagrangian
from allocator.solvers.linear import new_highs
from models import ParetoFront

#: Objectives the exact sweep models exactly on the assignment variables.
EXACT_OBJECTIVES = ("cost", "makespan", "imbalance", "migrations")

#: Largest power of ten tried to make an objective's coefficients integral.
MAX_POW10 = 6

#: Below this many grid steps of the bounded objective the sweep steps one
#: grid unit at a time with a single solve per point (see the module docstring).
COARSE_STEPS = 64


#: HiGHS's mip_heuristic_effort for the sweep's solves (see _Sweep).
HEURISTIC_EFFORT = 0.3

#: Lagrangian cost steps (knapsack_lagrange): share of a step's time for a
#: first HiGHS solve on the full model, then the share of what is left for
#: the subgradient bound before the reduced MILP gets the rest.
FIRST_SHARE = 0.15
LAGRANGE_SHARE = 0.3
#: Tabu search for the incumbent of a Lagrangian step: most iterations, share of the time.
TABU_ITERATIONS = 3000
#: Iterations of the compiled tabu kernel (allocator.solvers.gap_tabu) instead: 5,000 took
#: 0.2 s on 8x60 type E and ended 7034 / 7048 from the same start where the numpy search
#: (3,000, 0.8-1 s) ended 7046 / 7087 (optima 7015 / 7026).
TABU_KERNEL_ITERATIONS = 5000
TABU_SHARE = 0.15
#: Most seconds for that first HiGHS solve (it proves easy steps, e.g. 8x60
#: type C, in about that time).
FIRST_MAX_S = 3.0
#: Below this share of pairs ruled out the bound is too weak to pay for itself and
#: the sweep's later steps go to HiGHS alone: on generated 8x60 GAP it ruled out
#: 65-80 % of the pairs on types C and E but 0-19 % on type D, where its 2-3 s a
#: step (capacities near 300 make large tables) only took time from HiGHS.
LAGRANGE_MIN_OUT = 0.4

#: Share of a weak-bound step's time for branch-and-price; HiGHS gets the rest
#: from its best plan when the tree is not emptied by then. At 60 s on four
#: 8x60/10x80 type-D fronts neither alone was better everywhere (the tree found
#: (4960, 8) on d1080-s0 where HiGHS had 5004, HiGHS 3820 where the tree had 3841).
BP_SHARE = 0.6

#: A sweep that ends at the bounded objective's bound with its last solve unproven
#: gives that solve the time left (at most this many times, with at least RETRY_MIN_S
#: seconds): d0860-s1's first plan (3712, makespan 8, unproven) ended its 60 s sweep
#: after 30 s, where (3708, 9) exists.
MAX_RETRIES = 2
RETRY_MIN_S = 1.0

#: A seeding sweep's first solve (the least cost, no cap) gets 1 / this of its time.
SEED_FIRST_EXPECT = 3.0

#: Cost steps of the time-boxed seeding sweep by the Lagrangian too (see _lagrange_applies).
SEED_LAGRANGE = False

#: Cost steps by the compiled branch-and-bound (allocator.solvers.gap_bb) when numba is
#: there, in the exact and the seeding sweep alike (else the Lagrangian / branch-and-price
#: / HiGHS path below).
USE_BB = True
#: Steps with less time than this go to the other methods. With the clamped tables the
#: root takes 0.1-0.3 s of CPU on 8x60 type D; the seeding sweep of d0860-s3 (load 6.6)
#: gave its 1.4 s steps to HiGHS at 1.5 (3860, 3887, 3877, 3863 at makespan 11-8) and to
#: the tree at 0.5 (3875, 3838, 3854, 3863).
BB_MIN_S = 0.5
#: Seeding: a level short of BB_MIN_S goes to the tree's path too (tabu start, tree and
#: search; not HiGHS), and no seeding level ends dearer than its start. Held-out 10x80
#: type-D bottom levels (seeds 520-529) with 0.43 s from no repairable start: HiGHS
#: 5861-6143, the tree's path 5024-5190, better on 10 of 10
#: (docs/benchmarks/pareto-gap-cde.md, 2026-12-03 14:15 UTC).
SHORT_BB = True
#: Tabu search for a bound-and-branch step's incumbent: most seconds, share of the step.
BB_TABU_S, BB_TABU_SHARE = 0.5, 0.1
BB_TABU_ITERATIONS = 20000
#: Share of a seeding step (one tree, no portfolio) left to the large-neighbourhood search
#: (allocator.solvers.gap_lns) from the tree's best plan when the tree is not proven by
#: then. 10x80 type-D steps of d1080-s0/1/2/12 at 1.5 CPU s, mean cost above the level's
#: optimum: capped levels 3.7 at 0.4 (3.4 at 0.7, 5.3 at 0.3) against 7.7 for the tree
#: alone; the uncapped level 2.1 against 2.4 (at 2 s the tree alone is better, 0.4
#: against 1.4: a larger share took the time in which it would have ended).
LNS_SHARE = 0.4
#: A one-tree seeding step runs its tree and that search in turn (gap_lns.LevelSearch: the
#: search's better plans become the tree's incumbent) instead of the search after the tree.
#: Off: it lost to the tail on 12 held-out 10x80 type-D files at 2/3 of a core, one run
#: each (mean hv_ratio: the search backed off after slices that found nothing 0.805 against
#: 0.890; a fixed 40 % share 0.735 against 0.850, with its sub-trees' plans kept 0.781
#: against 0.882), though it won on the tuning files (0.875-0.939 against 0.832):
#: docs/benchmarks/pareto-gap-cde.md.
INTERLEAVE = False
#: A seeding sweep on two idle cores runs two different trees per step (_Sweep._portfolio)
#: instead of one tree on two threads.
SEED_PORTFOLIO = True
#: The portfolio's second thread runs the large-neighbourhood search (gap_lns) from the
#: step's incumbent instead of a tree working down from it (when there is an incumbent).
#: Near a packed level's optimum that tree meets a cheaper plan late; the search's
#: sub-trees on 40 % of the tasks move several at once. 10x80 type D, replayed levels at
#: the idle front's slices (0.7 CPU s a thread at the bottom level, 1.4 above it), units
#: above the optima: bottom levels 66 -> 43 and 68 -> 70 on held-out d1080 s160-s169 and
#: s300-s311, the others 20 -> 12 and 51 -> 51; idle 10 s fronts on 12 held-out files,
#: three passes: mean hv_ratio 0.890 -> 0.913, 14 better, 5 worse
#: (docs/benchmarks/pareto-gap-cde.md, 2026-12-03).
PORTFOLIO_LNS = True
#: A seeding sweep's capped step starts its target-raising rounds GUESS_MARGIN steps above
#: the looser step's best cost (proven or not) instead of at its own root bound or at the
#: looser optimum: the rounds below that only prove bounds the seeding sweep does not use,
#: 0.3-0.9 s of a 1.9 s step on 10x80 type D (d1080-s82 at makespan <= 10 re-proved
#: 5025-5029 after the cap-free tree had, its optimum 5034).
GUESS_TARGETS = True
#: Steps above that best cost for the first target: a round at the optimum itself must
#: prove nothing cheaper exists before it ends and met its plans late (d1080-s82 at
#: makespan <= 10: nothing in a 1.9 s round at 5034, the optimum); a little above it they
#: came early (d1080-s87 at makespan <= 9: 5083 in a round at 5081 + 2).
GUESS_MARGIN = 2.0
#: A one-tree seeding step's rounds after an emptied one target at least this share of the
#: way to the incumbent (GapBranchBound.solve's `split`; 0: off). Its plan at a level's
#: optimum came sooner: single 10x80 type-D levels (tabu start, guess = the looser optimum
#: + 2) at 2 CPU s, mean cost above the optimum 1.47 against 2.29 on 38 levels of d1080
#: s150-s161 (0.3: 1.53, 0.7: 1.82) and 1.88 against 2.80 on 25 held-out levels, most of
#: it on the bottom levels. Off: the 10 s fronts were no better (2/3 of a core, 24 files:
#: mean hv_ratio 0.854 against 0.870, better on 6, worse on 10; one core, 8 held-out
#: files: 0.848 against 0.871): docs/benchmarks/pareto-gap-cde.md, 15:43-16:50 UTC.
SEED_SPLIT = 0.0
#: A seeding step returns, of the plans its trees met at its cost or less, the one of least
#: makespan (GapBranchBound.least_makespan). Off: not measured apart from SEED_SPLIT.
LEAST_MAKESPAN = False
#: A seeding sweep over three levels or more gives its bottom (least makespan) level this
#: share of a middle level's time: hv_ratio's reference point is the exact nadir plus
#: 10 % of each range, so the bottom point is worth at most 0.1 x the cost range (a level
#: a unit too dear loses a unit's strip at any other level).
BOTTOM_WEIGHT = 0.5
#: How a seeding sweep spends its levels' time: "share" (each level a share of what is
#: left, the seeding search: guess targets, the LNS tail, the portfolio), "exact" (the
#: exact sweep cut at the deadline: each level in exact mode, one tree on the idle cores,
#: until it is proven or the time is out), "hybrid" (exact-mode levels while every level
#: so far was proven and levels follow, each leaving HYBRID_RESERVE of the sweep's time
#: per level still to come and taking at most HYBRID_CAP shares; then shares) or "auto"
#: (hybrid on two idle cores, share on one). On two idle cores one tree on both proved a
#: level's optimum sooner than the portfolio's two (d1080-s152's cap-free level: 2.75 s
#: against unproven at 3.06 s), and a proven level makes the next one's `lower`; on one
#: core (2/3 of a core: the exact sweep cut at the deadline lost 0.79 against 0.90) the
#: unproven levels' plans need the LNS tail and the last levels their shares:
#: docs/benchmarks/pareto-gap-cde.md (2026-12-02 15:45 UTC).
SEED_MODE = "auto"
HYBRID_RESERVE = 0.15
HYBRID_CAP = 2.0
#: Levels expected after the cap-free one before the sweep knows (hybrid mode).
HYBRID_AFTER = 2.0
#: A level's plan is polished at no extra cost towards a lower makespan (_flatten_plan): a
#: plan at its level's cost but a makespan unit too high made the sweep search that
#: level again (d1080-s114: (4990, 10) where (4990, 9) exists).
FLATTEN = True
#: Seeding: a capped level whose start (the cheapest plan met so far within its cap, the
#: trees' kept plans included) already costs no more than the looser level's best is not
#: searched (that best, proven or not, is where its optimum likely is): its time goes to
#: the tighter levels.
SKIP_EQUAL = True
#: Seeding, hybrid: the last level too runs in exact mode (one tree on both cores, all the
#: time left) when every level before it was proven, as the exact sweep runs it. The
#: two-tree portfolio there (one core each, a guess target) ended d1080-s140's bottom
#: level at 4926-4938 in 3.8-4.5 s, three runs of three (hv_ratio 0.524: a two-point
#: front), where one tree on both cores found and proved 4923 in 3.5 s (1.0). Held out
#: (d1080 s220-s239, two idle cores emulated) it fired on 8 of 20 files: 1.0 on all 8
#: against main's mean 0.980, never worse (on one core it cannot fire: share mode):
#: docs/benchmarks/pareto-gap-cde.md (2026-12-02 18:22 UTC).
LAST_EXACT = True
#: A packed level of the seeding sweep (every agent must end exactly at its load cap: the
#: bottom level of a 10x80 unit-load front at makespan 8) first gets up to this share of
#: its time for the exact cover of enumerated agent sets (allocator.solvers.gap_cover)
#: from its root's multipliers; a cover that proves its plan ends the level, else its
#: plan is the level's start. Single bottom levels of held-out 10x80 type-D files (d1080 s815-s829,
#: tabu start, one thread) reached their optima within 1 CPU s on 10 of 15 (the tree on
#: 3); their 10 s fronts, three interleaved passes at load 4-7: bottom levels at their
#: optimum 28 of 45 against 12, mean hv_ratio 0.784 against 0.700 (27 below 0.9 against
#: 34); idle (two cores, where it runs on one while the other waits) mixed: see the log.
#: The exact sweep does not use it: with a long budget its proofs came no sooner (7
#: fronts, one thread: 211 CPU s against 193): docs/benchmarks/pareto-gap-cde.md
#: (2026-12-03 19:53 UTC).
COVER_SHARE = 0.6
#: ... and at most this many seconds: a cover that has not proven its plan by then rarely
#: does (the exact sweep's bottom level would otherwise give it 60 % of a long budget).
COVER_MAX_S = 3.0
#: A packed level with less time than this skips the cover: its root's multipliers (fewer
#: subgradient iterations in a short step) and its tables take most of a short slice, where
#: the tabu start, the tree and its search tail do better (d1080-s819 at load 6.5: a
#: bottom level of a few tenths of a second ended 5081 with the cover, 5022 without).
COVER_MIN_S = 1.0
#: A seeding level on two idle cores (portfolio or exact mode) runs, in the thread beside
#: its tree, the exact cover of enumerated agent sets (gap_cover, any level: sets of every
#: load up to the cap) from its own root's multipliers, then the large-neighbourhood search
#: from the cover's best plan for the time left; a cover that proves its plan ends the
#: level. The sequential cover above then does not run (the second core did nothing while
#: it ran, and its time came off the levels after it). Idle machine, held-out d1080
#: s915-s929, two interleaved passes: mean hv_ratio 0.950 -> 0.967, below 0.9 6 -> 2 of
#: 30, per file better 6 / worse 2 (by 0.02 at most); COVER_CAPPED without it 0.955
#: (better 4 / worse 6): docs/benchmarks/pareto-gap-cde.md (2026-12-03 22:41 UTC).
COVER_BESIDE = True
#: The cover before the tree runs on every capped level, not only a packed one: single
#: K = 9 levels of d1080 s900-s914 (tabu start, one thread, CPU s) reached their optimum
#: within 1 / 2 / 4 s on 9 / 13 / 15 with the cover, 4 / 5 / 8 with the tree (held out,
#: s915-s929: 11 / 12 / 14 of 14 against 2 / 4 / 8); the uncapped level not (tuning: 10 /
#: 11 / 13 against the tree's 9 / 12 / 14, and the tree proves it sooner). Held-out 10 s
#: fronts at load 2-7 (45 pairs): mean hv_ratio 0.805 -> 0.886, below 0.9 30 -> 16:
#: docs/benchmarks/pareto-gap-cde.md (2026-12-03 22:41 UTC).
COVER_CAPPED = True
#: Most threads of one tree in exact mode (gap_bb._Team; the machine this was measured on
#: has 2 cores).
BB_WORKERS = 2


#: (wall s, busy CPU s of the whole machine, this process's CPU s) at the last look.
_CPU_LOOK: list[tuple[float, float, float]] = []


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine spent busy since boot (/proc/stat), None elsewhere."""
    try:
        with open("/proc/stat") as f:
            v = [float(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def idle_cores(own: int = 1) -> int:
    """Cores this process can have: the CPU count less what the other processes used since
    the last look (/proc/stat's busy time less this process's CPU time), or, at the first
    look or without /proc/stat, less the 1-minute load average of the others (`own`: the
    threads this process ran lately, part of that average). Under load a second thread of
    a tree got no more CPU (one process's threads share its scheduling group's slice) and
    cost about 15 % more CPU a node (d1080-s10 at makespan <= 9, load 5: 9.4 -> 11.3 CPU
    s)."""
    cores = os.cpu_count() or 1
    now, busy, mine = time.perf_counter(), _machine_busy_s(), time.process_time()
    last = _CPU_LOOK[-1] if _CPU_LOOK else None
    if busy is not None:
        _CPU_LOOK[:] = [(now, busy, mine)]
    if busy is not None and last is not None and now - last[0] >= 0.5:
        others = max(0.0, (busy - last[1]) - (mine - last[2])) / (now - last[0])
        return max(1, int(cores - others + 0.5))
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1
    return max(1, int(cores - load + own + 0.5))


def exact_supported(problem: Problem, objectives: Sequence[str]) -> str | None:
    """Why the exact sweep cannot handle this instance, or None when it can."""
    if len(objectives) != 2:
        return "the exact front is bi-objective: give exactly 2 objectives"
    bad = [o for o in objectives if o not in EXACT_OBJECTIVES]
    if bad:
        return f"the exact sweep does not model {bad[0]} (supported: {', '.join(EXACT_OBJECTIVES)})"
    if problem.has_time_constraints:
        return "the exact sweep needs an untimed instance (no releases after now, no deadlines)"
    if ({"makespan", "imbalance"} & set(objectives)) and np.any(problem.concurrency != 1):
        return "the exact sweep models makespan and imbalance only for agents with concurrency 1"
    return None


def grid_step(values: np.ndarray) -> tuple[float, bool]:
    """(1 / smallest power of ten making all values integral, exact); (1e-6, False) if none."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    for p in range(MAX_POW10 + 1):
        f = 10.0**p
        s = v * f
        if np.all(np.abs(s - np.round(s)) <= 1e-9 * np.maximum(1.0, s)):
            return 1.0 / f, True
    return 10.0**-MAX_POW10, False


@dataclass
class _Model:
    """The HiGHS model of the sweep and where its columns are."""

    problem: Problem
    highs: object
    I: np.ndarray  # noqa: E741  [P] agent of pair k
    J: np.ndarray  # [P] task of pair k
    placeable: np.ndarray  # [n] task has an eligible pair
    z: dict[str, int]  # objective -> column of its value
    n_cols: int
    step: dict[str, float] = field(default_factory=dict)
    exact: dict[str, bool] = field(default_factory=dict)
    pen_row: int | None = None

    @property
    def P(self) -> int:
        return int(self.I.size)


def _coefs(problem: Problem, name: str, I: np.ndarray, J: np.ndarray) -> np.ndarray:  # noqa: E741
    if name == "cost":
        return problem.cost[I, J]
    if name == "migrations":
        return problem.migration_matrix[I, J]
    return problem.duration[I, J] / problem.concurrency[I]  # load contribution


def _build(problem: Problem, objectives: Sequence[str]) -> _Model:
    import highspy
    from scipy import sparse

    m, n, R = problem.m, problem.n, problem.n_resources
    J, I = np.nonzero(problem.eligible.T)  # noqa: E741
    I, J = I.astype(np.int64), J.astype(np.int64)  # noqa: E741
    P = I.size
    placeable = np.zeros(n, dtype=bool)
    placeable[J] = True
    rows: list[np.ndarray] = [J, np.arange(n)]
    cols: list[np.ndarray] = [np.arange(P), P + np.arange(n)]
    vals: list[np.ndarray] = [np.ones(P), np.ones(n)]
    lo: list[float] = [1.0] * n
    hi: list[float] = [1.0] * n
    nr = n
    a = problem.demand[I, J] if problem.demand_override else problem.demand_base[J]
    limit = capacity_limit(problem.capacity)
    for r in range(R):
        tot = np.bincount(I, weights=a[:, r], minlength=m)
        for i in np.flatnonzero(tot > limit[:, r]).tolist():
            ks = np.flatnonzero((i == I) & (a[:, r] > 0))
            rows.append(np.full(ks.size, nr))
            cols.append(ks)
            vals.append(a[ks, r])
            lo.append(-np.inf)
            hi.append(float(limit[i, r]))
            nr += 1
    n_cols = P + n
    col_lo = [0.0] * n_cols
    col_hi = [1.0] * P + [1.0] * n
    z: dict[str, int] = {}
    model = _Model(problem, None, I, J, placeable, z, 0)
    for name in objectives:
        c = _coefs(problem, name, I, J)
        model.step[name], model.exact[name] = grid_step(c)
        zc = n_cols
        z[name] = zc
        n_cols += 1
        col_lo.append(-np.inf if name != "imbalance" else 0.0)
        col_hi.append(np.inf)
        if name in ("cost", "migrations"):
            ks = np.flatnonzero(c != 0)
            rows += [np.full(ks.size + 1, nr)]
            cols += [np.append(ks, zc)]
            vals += [np.append(c[ks], -1.0)]
            lo.append(0.0)
            hi.append(0.0)
            nr += 1
            continue
        agents = range(m) if name == "makespan" else np.flatnonzero(problem.up).tolist()
        if name == "imbalance":
            hc, lc = n_cols, n_cols + 1
            n_cols += 2
            col_lo += [0.0, 0.0]
            col_hi += [np.inf, np.inf]
            rows += [np.full(3, nr)]
            cols += [np.array([hc, lc, zc])]
            vals += [np.array([1.0, -1.0, -1.0])]
            lo.append(0.0)
            hi.append(0.0)
            nr += 1
        for i in agents:
            ks = np.flatnonzero(i == I)
            if name == "makespan":
                rows += [np.full(ks.size + 1, nr)]
                cols += [np.append(ks, zc)]
                vals += [np.append(c[ks], -1.0)]
                lo.append(-np.inf)
                hi.append(0.0)
                nr += 1
            else:
                for col, rlo, rhi in ((hc, -np.inf, 0.0), (lc, 0.0, np.inf)):
                    rows += [np.full(ks.size + 1, nr)]
                    cols += [np.append(ks, col)]
                    vals += [np.append(c[ks], -1.0)]
                    lo.append(rlo)
                    hi.append(rhi)
                    nr += 1
    # Unassigned penalty row (bounded once the least penalty is known).
    pen = problem.unassigned_penalty
    rows += [np.full(n, nr)]
    cols += [P + np.arange(n)]
    vals += [pen.astype(float)]
    lo.append(-np.inf)
    hi.append(np.inf)
    model.pen_row = nr
    nr += 1
    mat = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                    np.concatenate(cols))), shape=(nr, n_cols))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_cols, nr
    lp.col_cost_ = np.zeros(n_cols)
    lp.col_lower_ = np.array(col_lo)
    lp.col_upper_ = np.array(col_hi)
    lp.row_lower_ = np.array(lo)
    lp.row_upper_ = np.array(hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = mat.indptr
    lp.a_matrix_.index_ = mat.indices
    lp.a_matrix_.value_ = mat.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n_cols, nr
    lp.integrality_ = ([highspy.HighsVarType.kInteger] * (P + n)
                       + [highspy.HighsVarType.kContinuous] * (n_cols - P - n))
    h = new_highs()
    h.passModel(lp)  # type: ignore[attr-defined]
    model.highs, model.n_cols = h, n_cols
    return model


@dataclass
class _Result:
    agent_of: np.ndarray | None
    values: dict[str, float]
    optimal: bool
    infeasible: bool = False


class _Sweep:
    """Solves of one front: objective, bounds, start, time, and the values read back."""

    def __init__(self, model: _Model, objectives: Sequence[str], budget: Budget, seed: int,
                 share: bool = False):
        self.mm, self.objectives, self.budget, self.seed = model, list(objectives), budget, seed
        #: `share`: a time-boxed sweep for seeding (see `slice` and `expect`).
        self.share = share
        # Before the first solve the number of levels is unknown: seeding keeps
        # two thirds for the rest, exact mode half (proofs need the time).
        self.expect = SEED_FIRST_EXPECT if share else 2.0
        #: Seeding: the current level runs in exact mode (see SEED_MODE) and keeps
        #: `reserve` seconds of the sweep for the levels after it.
        self.exactish = False
        self.reserve = 0.0
        self.solves = 0
        self.proven_placed = True
        #: Every task must be placed (the unassigned columns are fixed at 0).
        self.placed_all = False
        self._lagrangian: KnapsackLagrangian | None = None
        self._lagrangian_built = False
        #: Set once a step's bound rules out too few pairs to help (see LAGRANGE_MIN_OUT).
        self._lagrange_off = False
        #: Branch-and-price state (column pool) shared by the sweep's steps.
        self._bp: GapBranchPrice | None = None
        #: Branch-and-bound state (multipliers carried between steps).
        self._bb: GapBranchBound | None = None
        #: The seeding portfolio's second tree (see _portfolio).
        self._bb2: GapBranchBound | None = None
        #: The last one-tree seeding step's search (its tree can resume with more time).
        self.level: LevelSearch | None = None
        self.bb_nodes = 0
        self.bb_steps = 0
        #: Threads of the last tree (they count in the load average, see idle_cores).
        self._threads = 1
        #: Steps whose start reached the previous optimum (proven without a solve).
        self.bound_proofs = 0
        #: Seeding levels not searched (SKIP_EQUAL).
        self.skipped = 0
        self.bp_nodes = 0
        self.bp_steps = 0
        #: Steps settled by the Lagrangian bound alone, and pairs it ruled out in all.
        self.lagrange_steps = 0
        self.lagrange_proofs = 0
        self.lagrange_excluded = 0
        self._probe: tuple[tuple[str, tuple[tuple[str, float], ...]], _Result] | None = None
        #: Seeding: every plan a solve returned, with its values (a later level starts from
        #: the cheapest that fits its bounds; all go to NSGA-II).
        self.found: list[tuple[np.ndarray, dict[str, float]]] = []
        h = model.highs
        h.setOptionValue("random_seed", int(seed))  # type: ignore[attr-defined]
        # No "threads" option: once a process's HiGHS scheduler runs with the
        # default count, an instance asking for another fails to run at all.
        h.setOptionValue("mip_rel_gap", 0.0)  # type: ignore[attr-defined]
        # More primal heuristics than HiGHS's default 0.05: on generated GAP
        # (8x60 type C, cap 8) the optimum came within a 4.5 s slice at 0.3
        # and not at 0.05, and the proof took 5.6 s instead of 7.1 s.
        h.setOptionValue("mip_heuristic_effort", HEURISTIC_EFFORT)  # type: ignore[attr-defined]

    def fix_placed(self) -> bool:
        """Fix the least unassigned penalty: 0 when everything placeable fits (tried first).

        Returns False when not even that could be solved in time.
        """
        import highspy

        mm, h, n = self.mm, self.mm.highs, self.mm.problem.n
        self.proven_placed = True
        for j in range(n):
            h.changeColBounds(mm.P + j, 0.0, 0.0 if mm.placeable[j] else 1.0)  # type: ignore[attr-defined]
        # Cheapest check first: is the relaxation with everything placed feasible?
        h.setOptionValue("solve_relaxation", True)  # type: ignore[attr-defined]
        h.changeColsCost(mm.n_cols, np.arange(mm.n_cols), np.zeros(mm.n_cols))  # type: ignore[attr-defined]
        h.setOptionValue("time_limit", max(self.budget.remaining(), 0.01))  # type: ignore[attr-defined]
        h.run()  # type: ignore[attr-defined]
        h.setOptionValue("solve_relaxation", False)  # type: ignore[attr-defined]
        if h.getModelStatus() != highspy.HighsModelStatus.kInfeasible:  # type: ignore[attr-defined]
            # Integer feasibility is left to the first real solve; if that
            # proves infeasible, fall back below.
            self.placed_all = bool(mm.placeable.all())
            probe = self.solve(self.objectives[0], {}, None, probe=True)
            if probe.agent_of is not None or not probe.infeasible:
                return True
            self.placed_all = False
        for j in range(n):
            h.changeColBounds(mm.P + j, 0.0, 1.0)  # type: ignore[attr-defined]
        cost = np.zeros(mm.n_cols)
        cost[mm.P:mm.P + n] = mm.problem.unassigned_penalty
        h.changeColsCost(mm.n_cols, np.arange(mm.n_cols), cost)  # type: ignore[attr-defined]
        h.setOptionValue("mip_abs_gap", 1e-6)  # type: ignore[attr-defined]
        h.setOptionValue("time_limit", max(self.budget.remaining(), 0.01))  # type: ignore[attr-defined]
        h.run()  # type: ignore[attr-defined]
        self.solves += 1
        if h.getInfo().primal_solution_status != 2:  # type: ignore[attr-defined]
            return False
        self.proven_placed = bool(
            h.getModelStatus() == highspy.HighsModelStatus.kOptimal)  # type: ignore[attr-defined]
        best = float(h.getInfo().objective_function_value)  # type: ignore[attr-defined]
        h.changeRowBounds(mm.pen_row, -np.inf, best + 1e-9 * max(1.0, best))  # type: ignore[attr-defined]
        return True

    def lp_bound(self, target: str) -> float:
        """The LP relaxation's least value of `target` (a lower bound; -inf if unsolved)."""
        import highspy

        h = self.mm.highs
        self._set_objective(target, {})
        h.setOptionValue("solve_relaxation", True)  # type: ignore[attr-defined]
        h.setOptionValue("time_limit", max(self.budget.remaining(), 0.01))  # type: ignore[attr-defined]
        h.run()  # type: ignore[attr-defined]
        h.setOptionValue("solve_relaxation", False)  # type: ignore[attr-defined]
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # type: ignore[attr-defined]
            return -np.inf
        return float(h.getInfo().objective_function_value)  # type: ignore[attr-defined]

    def _set_objective(self, target: str, bounds: dict[str, float]) -> None:
        mm, h = self.mm, self.mm.highs
        cost = np.zeros(mm.n_cols)
        cost[mm.z[target]] = 1.0
        h.changeColsCost(mm.n_cols, np.arange(mm.n_cols), cost)  # type: ignore[attr-defined]
        for o in self.objectives:
            ub = bounds.get(o, np.inf)
            h.changeColBounds(mm.z[o], -np.inf if o != "imbalance" else 0.0,  # type: ignore[attr-defined]
                              ub + 1e-9 * max(1.0, abs(ub)) if np.isfinite(ub) else ub)

    def slice(self) -> float:
        """Seconds for the next solve.

        The remaining time over the solves still expected (`expect`, set by
        the sweep as it learns how many levels are left), so that a solve
        that cannot be proven in time still leaves the other levels their
        turn: the front is then complete, only unproven.
        """
        share = self.budget.remaining() / max(1.0, self.expect)
        if self.share and self.exactish:
            cap = HYBRID_CAP * share if self.reserve > 0 else np.inf
            return max(min(self.budget.remaining() - self.reserve, cap), share)
        return share

    def plan_level(self, proven: bool, after: float) -> None:
        """Seeding: the next level's mode and reserve (SEED_MODE) given whether every level
        so far was proven and the levels (in shares) that follow it."""
        mode = SEED_MODE
        if mode == "auto":
            mode = "hybrid" if self._workers() > 1 else "share"
        if not self.share or mode == "share":
            self.exactish, self.reserve = False, 0.0
            return
        # A proof pays for the levels after it (their `lower`); the last level after a
        # proven chain is one tree on both cores too (LAST_EXACT), else searched for plans.
        self.exactish = mode == "exact" or (mode == "hybrid" and proven
                                            and (after > 0 or LAST_EXACT))
        self.reserve = (HYBRID_RESERVE * after * self.budget.time_limit
                        if mode == "hybrid" else 0.0)

    def flatten(self, r: _Result, h: str, g: str) -> _Result:
        """`r` with its makespan lowered at no extra cost where moves of one task or chains
        of two allow it (_flatten_plan); its proof stands (no cheaper plan exists within
        the looser cap, so none within this one)."""
        if (not FLATTEN or r.agent_of is None or h != "cost" or g != "makespan"
                or not self.placed_all or not self._lagrangian_built):
            return r
        lag = self._lagrangian
        if lag is None or lag.D is None:
            return r
        a = _flatten_plan(lag.C, lag.A, lag.cap, lag.D, r.agent_of)
        if a is None:
            return r
        vals = self.values(a)
        tol = 1e-9 * max(1.0, abs(r.values[h]))
        if (vals[g] < r.values[g] - 0.5 * self.mm.step[g] and vals[h] <= r.values[h] + tol
                and self._feasible(a, {})):
            if self.share:
                self.found.append((a, vals))
            return _Result(a, vals, r.optimal and vals[h] >= r.values[h] - tol)
        return r

    def values(self, agent_of: np.ndarray) -> dict[str, float]:
        """Objective values of an assignment, as the model reads them."""
        p = self.mm.problem
        on = np.flatnonzero(agent_of >= 0)
        out = {}
        for name in self.objectives:
            if name == "cost":
                out[name] = float(p.cost[agent_of[on], on].sum())
            elif name == "migrations":
                out[name] = float(p.migration_matrix[agent_of[on], on].sum())
            else:
                load = np.bincount(agent_of[on], weights=p.duration[agent_of[on], on]
                                   / p.concurrency[agent_of[on]], minlength=p.m)
                if name == "makespan":
                    out[name] = float(load.max(initial=0.0))
                else:
                    lu = load[p.up]
                    out[name] = float(lu.max() - lu.min()) if lu.size else 0.0
        return out

    def solve(self, target: str, bounds: dict[str, float], start: np.ndarray | None,
              probe: bool = False, lower: float = -np.inf, guess: float = -np.inf) -> _Result:
        """Minimise `target` with `z[o] <= bounds[o]`; optimal means within its grid step.

        With `probe` the result is also kept for the next identical call (the
        placement check's solve is the sweep's first). `lower`: a proven lower bound
        on the optimum (the optimum under looser bounds): a start that reaches it is
        optimal without a solve, and the branch-and-bound stops at a plan that does.
        `guess`: where the optimum likely is, unproven (see GapBranchBound.solve).
        """
        key = (target, tuple(sorted(bounds.items())))
        if not probe and self._probe is not None and self._probe[0] == key:
            res = self._probe[1]
            self._probe = None
            return res
        if (start is not None and np.isfinite(lower) and self.placed_all
                and self._feasible(start, bounds)):
            vals = self.values(start)
            if vals[target] <= lower + 1e-9 * max(1.0, abs(lower)):
                self.bound_proofs += 1
                return _Result(start, vals, True)
        # A seeding level short of BB_MIN_S still goes to the tree's path (its tabu start,
        # then tree and search) rather than to HiGHS, whose first plan in a fraction of a
        # second can be far dearer than any start (d1080-s311 at makespan 8: 6397 in 0.43
        # s, optimum 5043).
        if ((self.slice() >= BB_MIN_S or (self.share and SHORT_BB))
                and self._bb_applies(target, bounds)):
            self.bb_steps += 1
            res = self._solve_bb(target, bounds, start, lower, guess)
        elif self._lagrange_applies(target, bounds):
            self.lagrange_steps += 1
            res = (self._solve_bp(target, bounds, start) if self._lagrange_off
                   else self._solve_lagrange(target, bounds, start))
        else:
            res = self._highs(target, bounds, start, self.slice())
        if (res.agent_of is not None and not res.optimal and np.isfinite(lower)
                and res.values[target] <= lower + 1e-9 * max(1.0, abs(lower))):
            # A plan at the proven lower bound is optimal whoever found it: a tree's
            # LNS tail (which ends unproven) must not break a chain of proofs.
            self.bound_proofs += 1
            res = _Result(res.agent_of, res.values, True)
        if (self.share and SHORT_BB and start is not None and not res.infeasible
                and self.placed_all and self._feasible(start, bounds)):
            # A seeding level never ends dearer than the start it was given.
            sv = self.values(start)
            if res.agent_of is None or sv[target] < res.values[target]:
                res = _Result(start, sv, False)
        if probe:
            self._probe = (key, res)
        if self.share and res.agent_of is not None:
            self.found.append((res.agent_of, res.values))
        return res

    def cheapest(self, target: str, bounds: dict[str, float], start: np.ndarray | None
                 ) -> np.ndarray | None:
        """Seeding: the cheapest in `target` of `start` and the plans found so far within
        `bounds` (a cut-short solve's plan can beat the next level's repaired start)."""
        best, val = start, self.values(start)[target] if start is not None else np.inf
        found = list(self.found)
        K = (self._lagrangian.load_units(bounds.get("makespan", np.inf))
             if self._lagrangian is not None and set(bounds) <= {"makespan"} else None)
        if self._bb is not None and (K is not None or not bounds):
            met = self._bb.kept(K)
            if met is not None:
                found.append((met, self.values(met)))
        for a, v in found:
            if v[target] < val and all(v[o] <= b + 1e-9 * max(1.0, abs(b))
                                       for o, b in bounds.items()):
                best, val = a, v[target]
        return best

    def _highs(self, target: str, bounds: dict[str, float], start: np.ndarray | None,
               seconds: float) -> _Result:
        """One HiGHS solve of the full model (less any columns fixed by the caller)."""
        import highspy

        mm, h = self.mm, self.mm.highs
        self._set_objective(target, bounds)
        h.setOptionValue("mip_abs_gap", 0.99 * mm.step[target])  # type: ignore[attr-defined]
        h.setOptionValue("time_limit", max(seconds, 0.01))  # type: ignore[attr-defined]
        if start is not None:
            sol = highspy.HighsSolution()
            x = np.zeros(mm.n_cols)
            x[: mm.P] = (start[mm.J] == mm.I).astype(float)
            x[mm.P: mm.P + mm.problem.n] = (start < 0).astype(float)
            vals = self.values(start)
            for o in self.objectives:
                x[mm.z[o]] = vals[o]
            sol.col_value = x
            sol.value_valid = True
            h.setSolution(sol)  # type: ignore[attr-defined]
        h.run()  # type: ignore[attr-defined]
        self.solves += 1
        status = h.getModelStatus()  # type: ignore[attr-defined]
        if status == highspy.HighsModelStatus.kInfeasible:
            return _Result(None, {}, True, infeasible=True)
        info = h.getInfo()  # type: ignore[attr-defined]
        if info.primal_solution_status != 2:  # no feasible incumbent
            return _Result(None, {}, False)
        # The objective row makes z at least the true value; read the true one.
        col = np.asarray(h.getSolution().col_value)  # type: ignore[attr-defined]
        agent_of = np.full(mm.problem.n, -1, dtype=np.int64)
        sel = np.flatnonzero(col[: mm.P] > 0.5)
        agent_of[mm.J[sel]] = mm.I[sel]
        return _Result(agent_of, self.values(agent_of),
                       status == highspy.HighsModelStatus.kOptimal)

    def _lagrange_applies(self, target: str, bounds: dict[str, float]) -> bool:
        """Cost steps of an all-placed model with one binding resource (knapsack_lagrange)."""
        mm = self.mm
        # Not in a time-boxed seeding sweep: with ~2 s a step the subgradient and the
        # tabu search's incumbents were worse than HiGHS alone (8x60 type E: 6226
        # against 6173 at makespan 8), and HiGHS on the Lagrangian core (3 agents a
        # task) was no better over six instances (mean hv_ratio 0.75 against 0.70,
        # within the run-to-run noise of a loaded machine).
        if ((self.share and (not SEED_LAGRANGE or self._lagrange_off))
                or target != "cost" or not self.placed_all
                or not mm.exact["cost"]
                or not set(bounds) <= {"makespan"}
                or not set(self.objectives) <= {"cost", "makespan"}):
            return False
        if not self._lagrangian_built:
            self._lagrangian_built = True
            step = mm.step["makespan"] if "makespan" in self.objectives and mm.exact.get(
                "makespan", False) else None
            self._lagrangian = KnapsackLagrangian.of(mm.problem, step)
        lag = self._lagrangian
        if lag is None or ("makespan" in bounds and lag.D is None):
            return False
        return lag.fits(lag.load_units(bounds.get("makespan", np.inf)))

    def _bb_applies(self, target: str, bounds: dict[str, float]) -> bool:
        """Cost steps the compiled branch-and-bound takes (the Lagrangian's steps, in both
        sweeps, when numba is there)."""
        if not (USE_BB and HAVE_NUMBA) or not bb_ready():
            return False
        share = self.share
        self.share = False  # the Lagrangian's own rule keeps seeding sweeps out
        try:
            return self._lagrange_applies(target, bounds)
        finally:
            self.share = share

    def _step(self, bounds: dict[str, float]
              ) -> tuple[KnapsackLagrangian, int | None, Callable[[], float]]:
        """What a Lagrangian-data cost step starts from: the data, the makespan cap in its
        load units (None: no cap) and the seconds left of the step's slice (a function:
        the slice is fixed when the step starts)."""
        lag, budget = self._lagrangian, self.budget
        assert lag is not None
        t_end = budget.elapsed() + self.slice()

        def left() -> float:
            return max(t_end - budget.elapsed(), 0.0)

        return lag, lag.load_units(bounds.get("makespan", np.inf)), left

    def _solve_bb(self, target: str, bounds: dict[str, float], start: np.ndarray | None,
                  lower: float = -np.inf, guess: float = -np.inf) -> _Result:
        """A cost step by branch-and-bound (allocator.solvers.gap_bb) from the best of the
        sweep's start, a short tabu search and, when neither gives a plan, a short HiGHS
        solve (which also proves a cap infeasible). `lower`: see :meth:`solve`."""
        clock = self.budget.clock
        lag, K, left = self._step(bounds)
        if self._bb is None:
            self._bb = GapBranchBound(lag.C, lag.A, lag.cap, lag.loads)
        bb = self._bb
        inc = start if start is not None and bb.feasible(start, K) else None
        # The cheapest plan the earlier steps' trees met within this cap.
        met = bb.kept(K)
        if met is not None and (inc is None or bb.cost(met) < bb.cost(inc)):
            inc = met
        seed_plan = inc if inc is not None else start
        if seed_plan is None:
            seed_plan = lag.heuristic(bb.lam, K)
        r = tabu_search(lag.C, lag.A, lag.cap, lag.loads, np.inf if K is None else K, seed_plan,
                        seed=self.seed, iterations=BB_TABU_ITERATIONS,
                        deadline=clock() + min(BB_TABU_S, BB_TABU_SHARE * left()), clock=clock)
        if r.agent_of is not None and bb.feasible(r.agent_of, K) and (
                inc is None or r.cost < bb.cost(inc)):
            inc = r.agent_of
        if inc is None:
            # No plan yet: HiGHS gets half the step (it found one on every generated
            # instance; without one the first tree searches blind).
            first = self._highs(target, bounds, None, 0.5 * left())
            if first.optimal or first.infeasible:
                return first
            if first.agent_of is not None and bb.feasible(first.agent_of, K):
                inc = first.agent_of
        workers = self._workers()
        beside = (self.share and COVER_BESIDE and HAVE_NUMBA and inc is not None
                  and workers > 1)
        if self.share and not beside and inc is not None and COVER_SHARE > 0 and (
                left() >= COVER_MIN_S and HAVE_NUMBA and K is not None) and (COVER_CAPPED or packed(
                bb.D, K, np.isfinite(bb.C) & (bb.cap[:, None] >= bb.A) & (bb.D <= K))):
            got = self._cover(bb, K, inc, self.mm.step[target],
                              clock() + min(COVER_SHARE * left(), COVER_MAX_S), lower)
            if got.proven and got.agent_of is not None:
                return _Result(got.agent_of, self.values(got.agent_of), True)
            if got.agent_of is not None:
                inc = got.agent_of
        seeding = self.share and not self.exactish
        # An exact-mode level of a hybrid sweep keeps an LNS tail of a reserve's share.
        tail = (LNS_SHARE * min(left(), HYBRID_RESERVE * self.budget.time_limit)
                if self.share and self.exactish and self.reserve > 0 else 0.0)
        if seeding and workers > 1 and SEED_PORTFOLIO:
            res = self._portfolio(bb, K, inc, self.mm.step[target], clock() + left(), lower,
                                  guess, cover=beside)
        elif beside and inc is not None:
            # Exact mode on two cores: one tree beside the cover (then the search).
            res = self._portfolio(bb, K, inc, self.mm.step[target],
                                  clock() + left() - tail, lower, cover=True, exact=True)
            if tail > 0 and not res.proven and res.agent_of is not None and left() > 0:
                res = self._lns(bb, K, res, self.mm.step[target], clock() + left())
        else:
            # A seeding step is cut short more often than not: its last round keeps
            # seeking any plan below the incumbent (the front's time-boxed trees were
            # measured that way).
            lns = seeding and LNS_SHARE > 0 and inc is not None
            if lns and INTERLEAVE and workers == 1:
                level = LevelSearch(bb, K, inc, step=self.mm.step[target], seed=self.seed,
                                    deadline=clock() + left(), clock=clock, lower=lower,
                                    guess=guess, tail_step=False, guide=self._guide(bb, K))
                level.run(clock() + left())
                self.level = level
                res = level.result()
            else:
                lns = lns or (tail > 0 and inc is not None)
                res = bb.solve(K, inc, step=self.mm.step[target],
                               deadline=clock() + (left() - tail if tail > 0 else
                                                   (1.0 - LNS_SHARE if lns else 1.0) * left()),
                               clock=clock, lower=lower, workers=workers,
                               tail_step=False if seeding else None,
                               guess=guess if seeding else -np.inf,
                               split=SEED_SPLIT if seeding else 0.0,
                               regret=bool(self.share))
                if lns and not res.proven and res.agent_of is not None and left() > 0:
                    res = self._lns(bb, K, res, self.mm.step[target], clock() + left())
        self.bb_nodes += res.nodes
        if res.infeasible:
            return _Result(None, {}, True, infeasible=True)
        if res.agent_of is None:
            return _Result(None, {}, False)
        plan = bb.least_makespan(res.agent_of, K) if seeding and LEAST_MAKESPAN else res.agent_of
        return _Result(plan, self.values(plan), res.proven)

    def _cover(self, bb: GapBranchBound, K: int, inc: np.ndarray, step: float,
               deadline: float, lower: float) -> StepResult:
        """A packed level's exact cover (COVER_SHARE) from its tree's root multipliers at
        this cap (the root runs first, one node); the cover's plan when cheaper than
        `inc`, proven when the cover proved it."""
        clock = self.budget.clock
        root = StepTree(bb, K, inc, step=step, deadline=deadline, clock=clock, lower=lower)
        root.run(deadline, nodes=1)
        r = root.result()
        if r.proven or root.ended:
            return r
        plan = root.best if root.cost < bb.cost(inc) else inc
        got = cover_search(bb.C, bb.A, bb.cap, bb.D, K, bb.lam, plan, step=step,
                           deadline=deadline, clock=clock)
        best = got.agent_of if got.agent_of is not None else (
            root.best.copy() if root.cost < bb.cost(inc) else None)
        cost = got.cost if best is not None else bb.cost(inc)
        return StepResult(best, cost, got.proven, False, r.root_bound, r.nodes, got.proven,
                          r.evaluations)

    def _guide(self, bb: GapBranchBound, K: int | None) -> Callable[[], np.ndarray]:
        """The search's guide at the tree's current multipliers, read when called: a task's
        agent where the Lagrangian relaxation picks exactly one, else -1."""
        lag = self._lagrangian
        assert lag is not None

        def guide() -> np.ndarray:
            _, X, _ = lag.value(bb.lam, K)
            return np.where(X.sum(axis=0) == 1, X.argmax(axis=0), -1)

        return guide

    def _lns(self, bb: GapBranchBound, K: int | None, res: StepResult, step: float,
             deadline: float) -> StepResult:
        """A seeding step's tree, cut short, handed to the large-neighbourhood search from its
        plan; the tasks on the agent the Lagrangian relaxation at the tree's multipliers
        also picks (and no other) are the ones it may keep fixed."""
        assert res.agent_of is not None
        q = lns_search(bb, K, res.agent_of, step=step, seed=self.seed,
                       deadline=deadline, clock=self.budget.clock, guide=self._guide(bb, K)())
        if q.cost >= res.cost:
            return res
        return StepResult(q.agent_of, q.cost, False, False, res.root_bound, res.nodes,
                          False, res.evaluations)

    def _portfolio(self, bb: GapBranchBound, K: int | None, inc: np.ndarray | None,
                   step: float, deadline: float, lower: float,
                   guess: float = -np.inf, cover: bool = False,
                   exact: bool = False) -> StepResult:
        """A seeding step on two idle cores: the target-raising tree and, in a thread of
        its own, the large-neighbourhood search from the incumbent (PORTFOLIO_LNS; else,
        or with no incumbent, a tree that only works down from it; with `cover` the exact
        cover first, see COVER_BESIDE); the first to end (the tree or the cover proven)
        stops the other at its next clock look, and the cheaper plan is kept. `exact`:
        the tree is an exact-mode level's (no guess, its own tail step).
        The time to a level's optimum is heavy-tailed and the two trees' tails differ:
        on 8x60 type D at 3 CPU s the raising tree missed d0860-s2's three optima that
        the other found in 1.1-1.6 s, and took 0.4-0.7 s where the other took 1.4-2.4 s
        on s0 (docs/benchmarks/pareto-gap-cde.md, 17:03-18:10 UTC)."""
        clock = self.budget.clock
        stop = threading.Event()

        def look() -> float:
            return math.inf if stop.is_set() else clock()

        if self._bb2 is None:
            self._bb2 = GapBranchBound(bb.C, bb.A, bb.cap, bb.D)
        other = self._bb2
        other.lam = bb.lam.copy()
        got: list[StepResult] = []
        err: list[BaseException] = []
        search = (PORTFOLIO_LNS or cover) and inc is not None
        # Read before the threads start: the guide at the multipliers the step starts from.
        guide = self._guide(bb, K)() if search and self._lagrangian is not None else None

        def run_other() -> None:
            try:
                if cover and inc is not None:
                    r = self._cover_then_search(other, K, inc, step, deadline, lower, look,
                                                guide)
                    got.append(r)
                    if r.proven:
                        stop.set()
                elif search and inc is not None:
                    # The search proves nothing: its end (a stall) leaves the tree running.
                    q = lns_search(other, K, inc, step=step, seed=self.seed,
                                   deadline=deadline, clock=look, guide=guide)
                    got.append(StepResult(q.agent_of, q.cost, False, False, -np.inf, 0))
                else:
                    got.append(other.solve(K, inc, step=step, deadline=deadline, clock=look,
                                           lower=lower, raise_target=False, regret=True))
                    stop.set()
            except BaseException as exc:  # re-raised below, in the caller's thread
                err.append(exc)
                stop.set()

        t = threading.Thread(target=run_other, name="seed-portfolio", daemon=True)
        t.start()
        try:
            mine = bb.solve(K, inc, step=step, deadline=deadline, clock=look, lower=lower,
                            tail_step=None if exact else False,
                            guess=-np.inf if exact else guess, regret=True)
        finally:
            stop.set()
            t.join()
        if err:
            raise err[0]
        rs = [mine, *got]
        found = [r for r in rs if r.agent_of is not None]
        best = min(found, key=lambda r: r.cost) if found else mine
        # An emptied tree proves its incumbent optimal: the other cannot be cheaper.
        proven = any(r.proven for r in found) and best.cost <= min(
            r.cost for r in found if r.proven) + 1e-9 * max(1.0, abs(best.cost))
        return StepResult(best.agent_of, best.cost, proven,
                          any(r.infeasible for r in rs), max(r.root_bound for r in rs),
                          sum(r.nodes for r in rs), any(r.emptied for r in rs),
                          sum(r.evaluations for r in rs))

    def _cover_then_search(self, bb: GapBranchBound, K: int | None, inc: np.ndarray,
                           step: float, deadline: float, lower: float,
                           clock: Callable[[], float],
                           guide: np.ndarray | None) -> StepResult:
        """The portfolio's cover thread (COVER_BESIDE): the root of a tree of its own (its
        multipliers), the exact cover from them, then the search from the best plan until
        `deadline`. Proven when the root or the cover proved its plan."""
        root = StepTree(bb, K, inc, step=step, deadline=deadline, clock=clock, lower=lower)
        root.run(deadline, nodes=1)
        r = root.result()
        if root.ended:
            return r
        plan = root.best if root.cost < bb.cost(inc) else inc
        got = cover_search(bb.C, bb.A, bb.cap, bb.D, K, bb.lam, plan, step=step,
                           deadline=deadline, clock=clock)
        best = got.agent_of if got.agent_of is not None else plan
        if not got.proven and clock() < deadline:
            q = lns_search(bb, K, best, step=step, seed=self.seed, deadline=deadline,
                           clock=clock, guide=guide)
            if q.cost < bb.cost(best):
                best = q.agent_of
        return StepResult(best, bb.cost(best), got.proven, False, r.root_bound, r.nodes,
                          got.proven, r.evaluations)

    def _workers(self) -> int:
        """Threads of a tree: the budget's workers, as many as there are idle cores (a
        deterministic budget keeps one: the same seed gives the same plans). A seeding
        sweep takes them too: its trees are CPU-bound (8x60 type D needs 0.4-2.4 CPU s a
        level to find the optimum) and a 10 s front on a quiet machine left a core idle."""
        b = self.budget
        if b.is_deterministic:
            return 1
        self._threads = max(1, min(int(b.workers), BB_WORKERS, idle_cores(self._threads)))
        return self._threads

    def _first_highs(self, target: str, bounds: dict[str, float], start: np.ndarray | None,
                     K: int | None, left: float) -> tuple[_Result | None, np.ndarray | None]:
        """The short HiGHS solve that opens a Lagrangian or branch-and-price step: its
        result when it settles the step (optimal or infeasible), else None and the better
        of `start` (when it fits the cap) and HiGHS's plan as the incumbent."""
        lag = self._lagrangian
        assert lag is not None
        inc = start if start is not None and lag.feasible(start, K) else None
        first = self._highs(target, bounds, inc, min(FIRST_SHARE * left, FIRST_MAX_S))
        if first.optimal or first.infeasible:
            return first, inc
        if first.agent_of is not None and (inc is None or lag.cost(first.agent_of) < lag.cost(inc)):
            inc = first.agent_of
        return None, inc

    def _solve_bp(self, target: str, bounds: dict[str, float],
                  start: np.ndarray | None) -> _Result:
        """A cost step by branch-and-price (allocator.solvers.gap_bp) after a short HiGHS solve."""
        _, K, left = self._step(bounds)
        first, inc = self._first_highs(target, bounds, start, K, left())
        if first is not None:
            return first
        return self._branch_price(target, bounds, K, inc, left())

    def _branch_price(self, target: str, bounds: dict[str, float], K: int | None,
                      inc: np.ndarray | None, seconds: float) -> _Result:
        """Branch-and-price (allocator.solvers.gap_bp) from incumbent `inc` for `seconds`."""
        lag, clock = self._lagrangian, self.budget.clock
        assert lag is not None
        if self._bp is None:
            self._bp = GapBranchPrice(lag)
        end = clock() + seconds
        r = self._bp.solve(K, inc, step=self.mm.step[target],
                           deadline=clock() + BP_SHARE * seconds, clock=clock)
        self.bp_steps += 1
        self.bp_nodes += r.nodes
        if r.infeasible:
            return _Result(None, {}, True, infeasible=True)
        if r.proven and r.agent_of is not None:
            return _Result(r.agent_of, self.values(r.agent_of), True)
        # Not proven in its share: HiGHS searches on from the best plan found
        # (its incumbents were better than the tree's on some type-D steps).
        best = r.agent_of if r.agent_of is not None else inc
        h = self._highs(target, bounds, best, max(end - clock(), 0.01))
        if h.infeasible:
            return _Result(None, {}, True, infeasible=True)
        cands = [x for x in (best, h.agent_of) if x is not None and lag.feasible(x, K)]
        if not cands:
            return _Result(None, {}, False)
        a = min(cands, key=lag.cost)
        # HiGHS optimal: its plan is the optimum, and `a` costs no more.
        return _Result(a, self.values(a), h.optimal)

    def _search(self, start: np.ndarray, K: int | None, *, deadline: float) -> np.ndarray:
        """The incumbent of a Lagrangian step improved by tabu search: the compiled kernel
        (allocator.solvers.gap_tabu) when numba is there, else the numpy one."""
        lag, clock = self._lagrangian, self.budget.clock
        assert lag is not None
        if not HAVE_NUMBA:
            return lag.tabu(start, K, iterations=TABU_ITERATIONS, seed=self.seed, clock=clock,
                            deadline=deadline)
        r = tabu_search(lag.C, lag.A, lag.cap, lag.loads, np.inf if K is None else K, start,
                        seed=self.seed, iterations=TABU_KERNEL_ITERATIONS, deadline=deadline,
                        clock=clock)
        if r.agent_of is not None and r.cost < lag.cost(start) and lag.feasible(r.agent_of, K):
            return r.agent_of
        return start

    def _feasible(self, agent_of: np.ndarray, bounds: dict[str, float]) -> bool:
        """Every task placed on an eligible agent within capacity and the bounds."""
        p = self.mm.problem
        if np.any(agent_of < 0) or not np.all(p.eligible[agent_of, np.arange(p.n)]):
            return False
        used = np.zeros_like(p.capacity)
        np.add.at(used, agent_of, p.demand[agent_of, np.arange(p.n)])
        if np.any(used > capacity_limit(p.capacity)):
            return False
        vals = self.values(agent_of)
        return all(vals[o] <= b + 1e-9 * max(1.0, abs(b)) for o, b in bounds.items())

    def _solve_lagrange(self, target: str, bounds: dict[str, float],
                        start: np.ndarray | None) -> _Result:
        """A cost step by the knapsack Lagrangian (allocator.solvers.knapsack_lagrange).

        HiGHS first gets a short solve on the full model, which settles the
        easy steps by itself (type C) and gives an incumbent. The subgradient
        bound, aimed at that incumbent, gives multipliers; their relaxed
        choice, repaired, and the incumbent seed a short tabu search. The
        bound may then prove the incumbent at once; otherwise the pairs it
        rules out against the incumbent are fixed at 0 and HiGHS finishes the
        proof on what is left (the fixing is redone if HiGHS stops early with
        a better incumbent and time is left).
        """
        mm, h, clock = self.mm, self.mm.highs, self.budget.clock
        lag, K, left = self._step(bounds)
        step = mm.step[target]

        def tol(v: float) -> float:
            return 1e-6 * max(1.0, abs(v))

        first, inc = self._first_highs(target, bounds, start, K, left())
        if first is not None:
            return first
        ub = lag.cost(inc) if inc is not None else np.inf
        lb = lag.bound(K, ub, step, clock=clock, deadline=clock() + LAGRANGE_SHARE * left())
        if inc is None or lb.bound <= ub - step + tol(ub):
            cands = [x for x in (inc, lag.heuristic(lb.lam, K)) if x is not None]
            if cands:
                inc = self._search(min(cands, key=lag.cost), K,
                                   deadline=clock() + TABU_SHARE * left())
        if inc is None:
            return self._highs(target, bounds, None, left())
        ub = lag.cost(inc)
        if lb.bound > ub - step + tol(ub):
            self.lagrange_proofs += 1
            return _Result(inc, self.values(inc), True)
        while True:
            _, ex = lag.excluded(lag.lam, K, ub - step + tol(ub))
            cols = np.flatnonzero(ex[mm.I, mm.J]).astype(np.int32)
            self.lagrange_excluded = max(self.lagrange_excluded, int(cols.size))
            if cols.size < LAGRANGE_MIN_OUT * mm.P:
                # A weak bound (type D): fixing leaves HiGHS nearly the whole model, so
                # this step and the next ones branch on the bound instead.
                self._lagrange_off = True
                if self.share:  # seeding wants plans, not proofs: HiGHS from the incumbent
                    return self._highs(target, bounds, inc, left())
                return self._branch_price(target, bounds, K, inc, left())
            if left() <= 0.01:
                return _Result(inc, self.values(inc), False)
            if cols.size:
                h.changeColsBounds(cols.size, cols, np.zeros(cols.size),  # type: ignore[attr-defined]
                                   np.zeros(cols.size))
            try:
                r = self._highs(target, bounds, inc, left())
            finally:
                if cols.size:
                    h.changeColsBounds(cols.size, cols,  # type: ignore[attr-defined]
                                       np.zeros(cols.size), np.ones(cols.size))
            if r.infeasible:  # nothing cheaper than the incumbent exists
                return _Result(inc, self.values(inc), True)
            if r.agent_of is not None and r.values[target] < ub - 0.5 * step:
                if r.optimal or left() <= 0.01:
                    return r
                inc, ub = r.agent_of, r.values[target]
                continue  # a better incumbent rules out more pairs
            # The reduced optimum is no better than the incumbent (which may use a
            # ruled-out pair: its bound can equal its cost): the incumbent is optimal.
            return _Result(inc, self.values(inc), r.optimal)

def _flatten_plan(C: np.ndarray, A: np.ndarray, cap: np.ndarray, D: np.ndarray,
                  agent_of: np.ndarray, max_ops: int = 200) -> np.ndarray | None:
    """A plan costing no more than `agent_of` (costs C, integral demands A within cap, load
    units D) with a lower makespan, or None when no move of one task off a most-loaded
    agent, nor a chain of two (j from it to k, some l from k to a third agent), gets one.

    Each step takes, for one most-loaded agent, the cheapest such move or chain that
    leaves every agent it loads below the makespan (ties: the lower load)."""
    m, n = C.shape
    a = np.asarray(agent_of, dtype=np.int64).copy()
    ar = np.arange(n)
    if np.any(a < 0) or not np.all(np.isfinite(C[a, ar])):
        return None
    load = np.bincount(a, weights=D[a, ar], minlength=m).astype(np.int64)
    used = np.bincount(a, weights=A[a, ar], minlength=m).astype(np.int64)
    M0 = int(load.max(initial=0))
    # Every step lowers a most-loaded agent and loads no other to the makespan: the
    # number of agents at the makespan, or the makespan, falls each time; cost never rises.
    for _ in range(max_ops):
        M = int(load.max(initial=0))
        i = int(np.argmax(load))
        J = np.flatnonzero(a == i)
        op: tuple[float, int, list[tuple[int, int]]] | None = None
        for j in J.tolist():
            # One move: j from i to k.
            d1 = C[:, j] - C[i, j]
            ok = (np.isfinite(d1) & (load + D[:, j] < M) & (used + A[:, j] <= cap))
            ok[i] = False
            for k in np.flatnonzero(ok & (d1 <= 1e-9)).tolist():
                cand = (float(d1[k]), int(load[k] + D[k, j]), [(j, k)])
                if op is None or cand[:2] < op[:2]:
                    op = cand
            # Chains: j from i to k, l from k to q.
            for k in range(m):
                if k == i or not np.isfinite(d1[k]):
                    continue
                L = np.flatnonzero(a == k)
                if L.size == 0:
                    continue
                d2 = C[:, L] - C[k, L][None, :]  # [q, l]
                tot = d1[k] + d2
                lk = load[k] + D[k, j] - D[k, L]  # [l]
                uk = used[k] + A[k, j] - A[k, L]
                okq = (np.isfinite(tot) & (tot <= 1e-9) & (lk[None, :] < M)
                       & (uk[None, :] <= cap[k])
                       & ((load[:, None] + D[:, L]) < M)
                       & ((used[:, None] + A[:, L]) <= cap[:, None]))
                okq[i] = False
                okq[k] = False
                if not okq.any():
                    continue
                qs, ls = np.nonzero(okq)
                s = int(np.argmin(tot[qs, ls]))
                q, l_ = int(qs[s]), int(L[ls[s]])
                cand = (float(tot[qs[s], ls[s]]), int(max(lk[ls[s]], load[q] + D[q, l_])),
                        [(j, k), (l_, q)])
                if op is None or cand[:2] < op[:2]:
                    op = cand
        if op is None:
            break
        for j, k in op[2]:
            f = int(a[j])
            load[f] -= D[f, j]
            used[f] -= A[f, j]
            load[k] += D[k, j]
            used[k] += A[k, j]
            a[j] = k
    return a if int(load.max(initial=0)) < M0 else None


def _repair_start(problem: Problem, agent_of: np.ndarray, name: str, eps: float
                  ) -> np.ndarray | None:
    """The previous point moved under `name <= eps` when that is a simple load cap; else None."""
    if name != "makespan":
        return None
    a = agent_of.copy()
    load_of = problem.duration / problem.concurrency[:, None]
    on = np.flatnonzero(a >= 0)
    load = np.bincount(a[on], weights=load_of[a[on], on], minlength=problem.m)
    used = np.zeros_like(problem.capacity)
    np.add.at(used, a[on], problem.demand[a[on], on])
    limit = capacity_limit(problem.capacity)
    for i in np.flatnonzero(load > eps + 1e-9).tolist():
        for j in np.flatnonzero(a == i)[np.argsort(-load_of[i, a == i])].tolist():
            if load[i] <= eps + 1e-9:
                break
            ok = (problem.eligible[:, j] & (load + load_of[:, j] <= eps + 1e-9)
                  & np.all(used + problem.demand[:, j, :] <= limit, axis=1))
            ok[i] = False
            if not ok.any():
                return None
            cand = np.flatnonzero(ok)
            k = int(cand[np.argmin(problem.cost[cand, j])])
            a[j] = k
            load[i] -= load_of[i, j]
            load[k] += load_of[k, j]
            used[i] -= problem.demand[i, j]
            used[k] += problem.demand[k, j]
    return a


def exact_front(problem: Problem, objectives: Sequence[str], *, budget: Budget,
                seed: int = 0) -> ParetoFront:
    """The exact bi-objective front by an epsilon-constraint sweep with HiGHS (module docstring).

    Raises InvalidInputError when :func:`exact_supported` says the instance
    is out of reach.
    """
    from allocator.pareto import build_front

    objectives = list(objectives)
    why = exact_supported(problem, objectives)
    if why:
        raise InvalidInputError(why, field="exact")
    mm = _build(problem, objectives)
    sw = _Sweep(mm, objectives, budget, seed)
    sweep = _run(sw)
    if sweep is None:
        return ParetoFront(objectives=objectives, method="exact", proven=False, seed=seed,
                           wall_time_s=budget.elapsed(),
                           message="no solution within the time limit")
    exact_scaling = all(mm.exact.values())
    flags = [ok and exact_scaling and sw.proven_placed for _, ok in sweep.points]
    proven = sweep.complete and all(flags)
    msg = (f"epsilon-constraint sweep: {sw.solves} HiGHS solves, "
           f"{sum(flags)}/{len(flags)} points proven")
    if sw.lagrange_steps:
        msg += (f"; knapsack Lagrangian on {sw.lagrange_steps} steps ({sw.lagrange_proofs} "
                f"proven by its bound alone, up to {sw.lagrange_excluded} pairs ruled out)")
    if sw.bb_steps:
        msg += f"; branch-and-bound on {sw.bb_steps} steps ({sw.bb_nodes} nodes)"
    if sw.bound_proofs:
        msg += f"; {sw.bound_proofs} steps proven by the previous optimum"
    if sw.bp_steps:
        msg += f"; branch-and-price on {sw.bp_steps} steps ({sw.bp_nodes} nodes)"
    if not proven:
        msg += (" (not proven: " + ("the sweep stopped early" if not sweep.complete else
                                   "a solve hit the time limit or the scaling was inexact") + ")")
    return build_front(problem, objectives, [p for p, _ in sweep.points], method="exact",
                       budget=budget, proven=proven, seed=seed, message=msg,
                       point_proven=flags)


def epsilon_assignments(problem: Problem, objectives: Sequence[str], *, budget: Budget,
                        seed: int = 0) -> list[np.ndarray]:
    """A time-boxed sweep's plans (each level its share of `budget`; on two idle cores
    exact-mode levels first, see SEED_MODE): seeds for NSGA-II.

    Empty when the sweep does not apply (see :func:`exact_supported`) or found nothing.
    """
    objectives = list(objectives)
    if exact_supported(problem, objectives) is not None or problem.n == 0:
        return []
    sw = _Sweep(_build(problem, objectives), objectives, budget, seed, share=True)
    sweep = _run(sw)
    if sweep is None:
        return []
    # The front's points and every other plan found that none of them dominates (a level
    # cut short can have found a plan the next level's solve then missed).
    plans = [p for p, _ in sweep.points]
    vals = [sw.values(p) for p in plans]
    for a, v in sw.found:
        if not any(all(w[o] <= v[o] for o in objectives) for w in vals):
            plans.append(a)
            vals.append(v)
    return plans


def _run(sw: _Sweep) -> _Outcome | None:
    """The sweep (module docstring); None when not even the first solve found a plan."""
    mm = sw.mm
    f1, f2 = sw.objectives
    sw.plan_level(True, HYBRID_AFTER)
    # 1. Everything placeable placed? Try the first solve that way.
    if not sw.fix_placed():
        return None
    a = sw.solve(f1, {}, None)
    if a.agent_of is None and not a.infeasible and sw.budget.remaining() > RETRY_MIN_S:
        # Its slice found no plan (a loaded machine): once more with half of what is left.
        sw.expect = 2.0
        a = sw.solve(f1, {}, None)
    if a.agent_of is None:
        return None
    # 2. The bounded objective g: one with few grid steps between the least f1
    #    plan and its LP bound is swept downwards one step at a time.
    lb = {f2: sw.lp_bound(f2)}
    sweep: _Outcome
    if _steps(mm, f2, a.values[f2], lb[f2]) <= COARSE_STEPS:
        sweep = _coarse(sw, top=a, g=f2, h=f1, lb=lb[f2])
    else:
        b = sw.solve(f2, {}, a.agent_of)
        if b.agent_of is None:
            sweep = _Outcome([(a.agent_of, False)], complete=False)
        else:
            lb[f1] = sw.lp_bound(f1)
            if _steps(mm, f1, b.values[f1], lb[f1]) <= COARSE_STEPS:
                sweep = _coarse(sw, top=b, g=f1, h=f2, lb=lb[f1])
            else:
                sweep = _fine(sw, a, b, f1, f2)
    return sweep


@dataclass
class _Outcome:
    points: list[tuple[np.ndarray, bool]]  # assignment, proven Pareto-optimal
    complete: bool  # the sweep reached the end of the front


def _on_grid(mm: _Model, name: str, value: float) -> float:
    """The least grid value >= `value` (objective values are multiples of the step)."""
    step = mm.step[name]
    if not mm.exact[name] or not np.isfinite(value):
        return value
    return math.ceil(value / step - 1e-6) * step


def _steps(mm: _Model, name: str, top: float, lb: float) -> float:
    return (top - _on_grid(mm, name, lb)) / mm.step[name]


def _coarse(sw: _Sweep, *, top: _Result, g: str, h: str, lb: float) -> _Outcome:
    """min h s.t. g <= eps, eps one grid step below the last point, down to g's LP bound.

    A point is kept once the next solve shows a strictly worse h (else it was
    dominated by the next one: same h, less g); it is proven when both its
    solve and that next one were.
    """
    mm, budget = sw.mm, sw.budget
    floor = _on_grid(mm, g, lb) - 0.5 * mm.step[g]
    pending = sw.flatten(top, h, g)
    pending_bounds: dict[str, float] = {}  # the bounds of the solve that gave `pending`
    out: list[tuple[np.ndarray, bool]] = []
    complete = True
    eps = pending.values[g] - mm.step[g]
    capped = (eps - floor) / mm.step[g] + 0.5  # the levels below the first point
    retries = 0
    #: Kept points whose own solve was unproven while the next one was proven.
    again: list[tuple[int, _Result, dict[str, float]]] = []
    while True:
        assert pending.agent_of is not None
        if eps < floor:  # below g's bound: nothing further can exist
            if (not pending.optimal and retries < MAX_RETRIES
                    and budget.remaining() > RETRY_MIN_S):
                # The last solve was cut short and the sweep ends early (its plan sits
                # at g's bound): the time left goes to that solve again, from its plan.
                # A better plan may sit above the bound, and the sweep goes on from it.
                retries += 1
                sw.expect = 1.0
                r = sw.flatten(sw.solve(h, pending_bounds, pending.agent_of), h, g)
                if r.agent_of is not None and (
                        r.values[h] < pending.values[h] - 0.5 * mm.step[h] or r.optimal):
                    pending = r
                    eps = r.values[g] - mm.step[g]
                    continue
            assert pending.agent_of is not None
            out.append((pending.agent_of, pending.optimal))
            break
        assert pending.agent_of is not None
        if budget.remaining() <= 0:
            out.append((pending.agent_of, False))
            complete = False
            break
        start = _repair_start(mm.problem, pending.agent_of, g, eps)
        if sw.share:
            start = sw.cheapest(h, {g: eps}, start)
            if (SKIP_EQUAL and start is not None and sw._feasible(start, {g: eps})
                    and sw.values(start)[h] <= pending.values[h] + 1e-9 * max(
                        1.0, abs(pending.values[h]))):
                r = sw.flatten(_Result(start, sw.values(start), pending.optimal), h, g)
                sw.skipped += 1
                pending, pending_bounds = r, {g: eps}
                eps = r.values[g] - mm.step[g]
                continue
        left = (eps - floor) / mm.step[g] + 0.5
        # Seeding, three levels or more: the bottom one's point is worth at most REF_MARGIN
        # of the cost range (see BOTTOM_WEIGHT); the levels before it share more.
        bottom = BOTTOM_WEIGHT if sw.share and capped >= 2 and left >= 2 else 1.0
        sw.expect = max(1.0, left - 1.0 + bottom)
        sw.plan_level(pending.optimal, sw.expect - 1.0)
        # A tighter cap cannot do better than the last optimum: reaching it proves a step.
        # Seeding: the last point (proven or not) says where this step's optimum likely is
        # (GUESS_TARGETS).
        r = sw.solve(h, {g: eps}, start,
                     lower=pending.values[h] if pending.optimal else -np.inf,
                     guess=pending.values[h] + GUESS_MARGIN * mm.step[h]
                     if sw.share and GUESS_TARGETS else -np.inf)
        r = sw.flatten(r, h, g)
        assert pending.agent_of is not None
        if r.agent_of is None:
            if r.infeasible and not pending.optimal:
                again.append((len(out), pending, pending_bounds))
            out.append((pending.agent_of, pending.optimal and r.infeasible))
            complete = r.infeasible
            break
        if r.values[h] > pending.values[h] + 0.5 * mm.step[h]:
            if r.optimal and not pending.optimal:
                again.append((len(out), pending, pending_bounds))
            out.append((pending.agent_of, pending.optimal and r.optimal))
        pending, pending_bounds = r, {g: eps}
        eps = r.values[g] - mm.step[g]
    if complete:
        _solve_again(sw, out, again, g, h)
    return _Outcome(out, complete)


def _solve_again(sw: _Sweep, out: list[tuple[np.ndarray, bool]],
                 again: list[tuple[int, _Result, dict[str, float]]], g: str, h: str) -> None:
    """Time left after a complete sweep goes to the points whose own solve was cut short
    (the next solve, proven, already shows nothing better lies below them), each from its
    plan; a proof there proves the point. A cheaper plan replaces the point when its g is
    no larger (else it joins the front unproven: the levels between were not swept)."""
    mm, budget = sw.mm, sw.budget
    for k, (idx, res, bnds) in enumerate(again):
        if budget.remaining() <= RETRY_MIN_S:
            break
        assert res.agent_of is not None
        sw.expect = float(len(again) - k)
        r = sw.solve(h, bnds, res.agent_of)
        if r.agent_of is None:
            continue
        if r.values[h] < res.values[h] - 0.5 * mm.step[h]:
            if r.values[g] <= res.values[g] + 0.5 * mm.step[g]:
                out[idx] = (r.agent_of, r.optimal)
            else:
                out.append((r.agent_of, False))
                out[idx] = (res.agent_of, False)
        elif r.optimal:  # the point's cost is the optimum of its step
            out[idx] = (res.agent_of, True)


def _fine(sw: _Sweep, a: _Result, b: _Result, f1: str, f2: str) -> _Outcome:
    """Lexicographic anchors and steps (min f1 s.t. f2 < last, then min f2 s.t. that f1)."""
    mm, budget = sw.mm, sw.budget
    assert a.agent_of is not None and b.agent_of is not None
    sw.expect = 4.0  # the number of steps is unknown: keep time for a few
    a2 = sw.solve(f2, {f1: a.values[f1]}, a.agent_of)
    top = a2 if a2.agent_of is not None else a
    b2 = sw.solve(f1, {f2: b.values[f2]}, b.agent_of)
    end = b2 if b2.agent_of is not None else b
    out: list[tuple[np.ndarray, bool]] = [
        (top.agent_of, a.optimal and a2.optimal)]  # type: ignore[list-item]
    complete = True
    eps = top.values[f2] - mm.step[f2]
    prev = top
    while eps >= end.values[f2] - 0.5 * mm.step[f2]:
        if budget.remaining() <= 0:
            complete = False
            break
        assert prev.agent_of is not None
        r = sw.solve(f1, {f2: eps}, None)
        if r.agent_of is None:
            complete = r.infeasible
            break
        if r.values[f1] >= end.values[f1] - 0.5 * mm.step[f1]:
            break  # the end anchor is at least as good: the sweep is done
        r2 = sw.solve(f2, {f1: r.values[f1]}, r.agent_of)
        if r2.agent_of is not None:
            r = _Result(r2.agent_of, r2.values, r.optimal and r2.optimal)
        assert r.agent_of is not None
        out.append((r.agent_of, r.optimal))
        prev = r
        eps = r.values[f2] - mm.step[f2]
    out.append((end.agent_of, b.optimal and b2.optimal))  # type: ignore[arg-type]
    return _Outcome(out, complete)
