"""Lower bounds on the weighted objective, and the LP duals behind them.

* :func:`lp_bound` — the LP relaxation of the assignment model
  (:mod:`allocator.solvers.linear`): every 0/1 becomes a fraction in [0, 1].
  It is a valid bound for *every* snapshot, including those that need the
  scheduling model, because that model only adds constraints (no overlap,
  releases, hard deadlines) and a non-negative tardiness term; makespan is at
  least the busiest agent's busy time divided by its concurrency.
* :func:`makespan_bound` — a structure-aware bound for pure load balancing at
  scale, where one column per (task, agent) pair would not fit in memory:
  tasks are aggregated by eligibility group (same skills / allow lists), work
  flows fractionally to eligible agents at their speeds (an LP with groups x
  agents columns), and no task can finish before its own duration on the
  fastest eligible agent.

Bounds are reported by `milp`, `cpsat` and `auto` plans (`Plan.bound`,
`Plan.gap`) and their duals feed :mod:`allocator.bottlenecks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allocator.problem import Problem
from allocator.solvers.linear import (
    MAX_LINEAR_PAIRS,
    LinearModel,
    build_highs,
    build_linear,
    new_highs,
)

#: Above this many eligible pairs the LP is not attempted (seconds of HiGHS time).
LP_MAX_PAIRS = 2_000_000


@dataclass
class LpResult:
    """LP relaxation: bound, fractional solution and the duals of its rows."""

    bound: float
    x: np.ndarray  # [P] fractional pair values
    u: np.ndarray  # [n] fractional unassigned values
    cap_dual: np.ndarray  # [m, R] d objective / d capacity (<= 0: more capacity helps)
    load_dual: float  # d objective / d (allowed makespan), aggregated, when present
    optimal: bool
    #: [n] duals of the assignment rows (``sum x + u = 1``): a start for Lagrangian
    #: bounds that relax those rows (allocator.solvers.knapsack_lagrange.assignment_bound)
    task_dual: np.ndarray | None = None


def lp_relaxation(problem: Problem, lm: LinearModel | None = None, *,
                  time_limit: float = 30.0) -> LpResult | None:
    """Solve the LP relaxation; None when too large, empty, or not solved to optimality."""
    import highspy

    if problem.n == 0 or problem.m == 0:
        return None
    if lm is None:
        if int(problem.m) * int(problem.n) > MAX_LINEAR_PAIRS:
            return None
        lm = build_linear(problem)
    if lm.P > LP_MAX_PAIRS:
        return None
    hm = build_highs(lm, integer=False, all_cap_rows=True)
    h = hm.highs
    h.setOptionValue("time_limit", float(max(time_limit, 0.01)))  # type: ignore[attr-defined]
    h.run()  # type: ignore[attr-defined]
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # type: ignore[attr-defined]
        return None
    sol = h.getSolution()  # type: ignore[attr-defined]
    col = np.asarray(sol.col_value)
    row_dual = np.asarray(sol.row_dual)
    cap_dual = np.zeros_like(lm.cap)
    base = hm.n_assign_rows
    for k, (i, r) in enumerate(hm.cap_rows):
        cap_dual[i, r] = row_dual[base + k]
    load_dual = float(row_dual[base + len(hm.cap_rows):].sum()) if lm.has_load_terms else 0.0
    bound = float(h.getInfo().objective_function_value)  # type: ignore[attr-defined]
    P = hm.pairs.size
    return LpResult(bound=bound, x=col[:P], u=col[P:P + lm.n], cap_dual=cap_dual,
                    load_dual=load_dual, optimal=True,
                    task_dual=row_dual[:base].copy() if base == lm.n else None)


def lp_bound(problem: Problem, lm: LinearModel | None = None, *,
             time_limit: float = 30.0) -> float | None:
    """LP-relaxation lower bound on the weighted objective (None if not computed)."""
    res = lp_relaxation(problem, lm, time_limit=time_limit)
    if res is None:
        return None
    return guarded(res.bound)


#: Seconds HiGHS spends per LP nonzero where it does not read its time limit (its
#: presolve: 2 s for 2.8M nonzeros on the 2-core machine). A bound's LP whose
#: estimate is most of its time limit is not run; otherwise the estimate comes out
#: of the limit HiGHS gets.
HIGHS_LP_S_PER_NNZ = 1e-6


def guarded(bound: float) -> float:
    """A relaxation's value made safe as a bound of the weighted objective.

    Lowered by 1e-7 (relative, absolute below 1) against the relaxation's own
    tolerances, since a bound must never exceed an optimum; but never below 0,
    as every objective term is non-negative: at -1e-7 on a plan worth 0 the
    plan's gap read 100, i.e. 10,000 %.
    """
    return max(0.0, bound - 1e-7 * max(1.0, abs(bound)))


def best_bound(*bounds: float | None) -> float | None:
    """The strongest (largest) of several lower bounds, ignoring unknown ones."""
    known = [b for b in bounds if b is not None and np.isfinite(b)]
    return max(known) if known else None


#: Up to this many groups with work the fluid bound is computed by Hall's
#: condition over all 2^G subsets (exact, no LP solver): 2^20 subsets take
#: ~0.1 s; beyond that the LP runs.
HALL_MAX_GROUPS = 20


def hall_makespan(W: np.ndarray, rate: np.ndarray, group_agents: np.ndarray) -> float | None:
    """The fluid makespan bound ``max_S W(S) / rate(N(S))`` over sets S of groups.

    The fluid LP ships each group's work W_g to its eligible agents, agent i
    taking at most T x rate_i; by the supply-demand (Gale / Hall) theorem it
    is feasible exactly when every set S of groups fits in the agents
    eligible for some group of S, so its optimum T is this maximum. Agents
    are summed by their group signature and the subset sums come from a
    zeta transform over the bits. None when more than ``HALL_MAX_GROUPS``
    groups have work (the caller solves the LP); inf when some group with
    work has no eligible agent.
    """
    active = np.flatnonzero(W > 0)
    if active.size == 0:
        return 0.0
    # A group eligible on every agent that any group with work reaches adds
    # the whole reach to any S holding it: those S are dominated by S = all
    # groups (ratio total work / total reach), so they leave the enumeration.
    rows = np.asarray(group_agents[active], dtype=bool)
    anyone = np.asarray(rows.any(axis=0))
    universal = (rows == anyone[None, :]).all(axis=1)
    reach_all = float(rate[anyone].sum())
    whole = float(W[active].sum()) / reach_all if reach_all > 0 else np.inf
    active = active[~universal]
    k = active.size
    if k == 0:
        return whole
    if k > HALL_MAX_GROUPS:
        return None
    bits = np.left_shift(np.int64(1), np.arange(k, dtype=np.int64))
    sig = (group_agents[active].T.astype(np.int64) * bits[None, :]).sum(axis=1)
    full = (1 << k) - 1
    # within[U]: rate of the agents whose groups all lie in U (subset-sum zeta).
    within = np.bincount(sig, weights=rate, minlength=full + 1)
    count = np.bincount(sig, minlength=full + 1)  # agents, exactly (empty reaches)
    work_of = np.zeros(full + 1)
    work_of[bits] = W[active]
    for b in range(k):
        step = 1 << b
        for arr in (within, count, work_of):
            view = arr.reshape(-1, 2, step)
            view[:, 1, :] += view[:, 0, :]
    subsets = np.arange(1, full + 1)
    total = float(rate.sum())
    # rate(N(S)) = total - rate of agents outside N(S). The difference can
    # lose a few ulps of `total`; a slack of 1e-11 x total keeps the ratio a
    # lower bound (float sums of 10^4-10^6 rates err by less than that).
    reach = total - within[full ^ subsets] + 1e-11 * total
    need = work_of[subsets]
    some = count[full ^ subsets] < rate.size  # N(S) holds at least one agent
    some &= reach > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(some, need / np.where(some, reach, 1.0), np.inf)
    return max(float(ratio.max()), whole)


def makespan_bound(
    work: np.ndarray,
    speed: np.ndarray,
    group_of: np.ndarray,
    group_agents: np.ndarray,
    concurrency: np.ndarray | None = None,
    *,
    time_limit: float | None = None,
) -> float:
    """Lower bound on makespan with eligibility groups (see module docstring).

    `time_limit` (seconds) bounds the fluid LP (more than 20 groups); an LP cut
    short gives the single-task bound, which is always valid.

    Parameters
    ----------
    work : [n] work of each task.
    speed : [m] agent speeds (work units per time unit).
    group_of : [n] eligibility group of each task.
    group_agents : [G, m] bool, agents a group's tasks may run on.
    concurrency : [m] lanes per agent (default 1): capacity of an agent is
        speed x lanes per time unit, and one task still needs work / speed.
    """
    m = speed.size
    lanes = np.ones(m) if concurrency is None else concurrency.astype(float)
    G = group_agents.shape[0]
    W = np.bincount(group_of, weights=work, minlength=G)
    # Single-task bound: each task needs its own duration on its fastest agent;
    # a task no agent may take (even of work 0: 0 / 0 was NaN, and the plan's
    # bound with it) never finishes: inf. `initial` keeps a snapshot with no
    # agents (a [G, 0] array has no maximum) on that path.
    fastest = np.where(group_agents, speed[None, :], 0.0).max(axis=1, initial=0.0)[group_of]
    own = np.divide(work, fastest, out=np.full(work.shape, np.inf), where=fastest > 0)
    single = float(np.max(own, initial=0.0))
    gs, ag = np.nonzero(group_agents & (W[:, None] > 0))
    if gs.size == 0:
        return single
    hall = hall_makespan(W, speed * lanes, group_agents)
    if hall is not None:
        return max(single, hall * (1 - 1e-9))
    k = gs.size
    blind = (2 * k + m) * HIGHS_LP_S_PER_NNZ
    if time_limit is not None and blind > 0.7 * time_limit:
        return single  # HiGHS would outlast the limit in presolve, before its first check
    import highspy
    from scipy import sparse

    # Columns: y[g, i] >= 0 work of group g on agent i, then T. Minimise T.
    rate = speed[ag] * lanes[ag]
    rows = np.concatenate([gs, G + ag, G + np.arange(m)])
    cols = np.concatenate([np.arange(k), np.arange(k), np.full(m, k)])
    vals = np.concatenate([np.ones(k), 1.0 / rate, -np.ones(m)])
    mat = sparse.csc_matrix((vals, (rows, cols)), shape=(G + m, k + 1))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = k + 1, G + m
    lp.col_cost_ = np.concatenate([np.zeros(k), [1.0]])
    lp.col_lower_ = np.zeros(k + 1)
    lp.col_upper_ = np.full(k + 1, np.inf)
    lp.row_lower_ = np.concatenate([W, np.full(m, -np.inf)])
    lp.row_upper_ = np.concatenate([W, np.zeros(m)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = mat.indptr
    lp.a_matrix_.index_ = mat.indices
    lp.a_matrix_.value_ = mat.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = k + 1, G + m
    h = new_highs()
    if time_limit is not None:
        h.setOptionValue("time_limit",  # type: ignore[attr-defined]
                         max(float(time_limit) - blind, 1e-9))
    h.passModel(lp)  # type: ignore[attr-defined]
    h.run()  # type: ignore[attr-defined]
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # type: ignore[attr-defined]
        return single  # cut by the time limit: a primal value is no lower bound
    fluid = float(h.getInfo().objective_function_value)  # type: ignore[attr-defined]
    return max(single, fluid * (1 - 1e-9))
