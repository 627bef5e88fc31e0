"""Compiled depth-first branch-and-bound for one cost step of the exact front.

A cost step (min cost with every agent's resource use within capacity and its
busy time within the makespan cap ``K``) is a generalised assignment problem
with two knapsack rows per agent. Its knapsack Lagrangian (the assignment
rows relaxed, :mod:`allocator.solvers.knapsack_lagrange`) is the
Dantzig-Wolfe bound; on type-D GAP that bound is 0.2-0.35 % below the
optimum, and branch-and-price (:mod:`allocator.solvers.gap_bp`) closes it at
about 20 nodes a second because every node re-solves an LP in HiGHS. This
search (after Posta, Ferland & Michelon 2012) keeps the bound and drops the
LP, so a node costs a few knapsack tables:

* a node's bound: a few subgradient iterations of the Lagrangian on the
  tasks not yet placed, from its parent's multipliers (the root gets many);
  when the load caps' total equals the tasks' load (a cap of n / m with unit
  loads) every agent must end at its cap, and its knapsack takes exactly
  that load (:func:`_knap`'s `slack`);
* at every iteration, Fisher's reduced-cost fixing against the incumbent
  (a pair whose forced-in bound is not below ``incumbent - step`` is
  forbidden in the subtree); a task left with one agent is placed there, a
  task left with none closes the node;
* an agent's table is rebuilt only when its items or their values changed
  (:func:`_table`'s memo), and propagation runs only after the trail grew;
  the loops over all pairs have no branch but the rare forbidding one (with
  branches on mixed pairs they cost as much as the tables);
* a relaxed choice that places every free task exactly once is a plan (its
  cost is the bound): a new incumbent, and the node is done;
* before branching, a node within EXCLUDE_GAP steps of the target bounds
  the children of the EXCLUDE_TASKS free tasks with a pair nearest it: the
  forced-in bound plus the rise of the other agents' knapsacks that held the
  task, rebuilt without it (:func:`_child_bounds`); a pair above the target
  is forbidden in the subtree, a task with no child left closes the node;
* branching: the free task with the fewest agents left (ties: the highest
  least forced-in bound, so every child's bound rises; with no incumbent yet
  the largest gap between the best two), one child per agent, best forced-in
  bound first (depth first, so incumbents come early).

Every plan the tree meets (a node's repaired choice, a covering choice, a leaf) is
kept as the cheapest seen at its makespan, whatever the step's cap: the sweep's tighter
steps start from the best kept plan within their cap (:meth:`GapBranchBound.kept`), so a
plan the looser step's tree passed by need not be found again.

The tree lives in arrays (a stack of (trail mark, task, agent) and a trail
of undoable changes), so the kernel runs a bounded number of nodes a call
and the caller watches its clock between calls; the same inputs give the
same tree. An emptied tree proves the incumbent optimal (or the step
infeasible when there is none).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from allocator.jit import HAVE_NUMBA as HAVE_NUMBA
from allocator.jit import WarmUp
from allocator.jit import njit as _njit

log = logging.getLogger(__name__)

#: Subgradient iterations at the root and at every other node.
ROOT_ITERS = 400
NODE_ITERS = 12
#: Step factor (Held-Karp) at the root and at a child; halved after STALL
#: iterations without a better bound.
MU_ROOT, MU_NODE, STALL_ROOT, STALL = 2.0, 1.2, 15, 3
#: Candidate tasks of strong branching (exact child bounds at the node's multipliers).
LOOK = 1
#: Before branching, a node whose bound is within EXCLUDE_GAP steps of the pruning target
#: bounds the children of EXCLUDE_TASKS free tasks, those with a pair nearest the target
#: (:func:`_child_bounds`: the other agents' tables without the task), and forbids the
#: pairs above the target (negative gap: never). Every free task's (a table a chooser,
#: about n / m evaluations) cut 12-15 % of the nodes of 10x80 type-D proof trees, but
#: cost that much on the memoised kernel; 15 tasks cut about 10 % for about a third.
EXCLUDE_GAP = 3.0
EXCLUDE_TASKS = 15
#: A later round's root (target raising): iterations and step factor, from the last
#: root's multipliers.
RESTART_ITERS, MU_RESTART = 60, 0.5
#: When doubling would take the target to the incumbent (the last round), one round
#: first seeks a plan at the proven lower bound (the emptied round's target + step): it
#: prunes far more than a round seeking any plan below the incumbent. A level's last
#: round used to find the optimum at the incumbent less a step: d1080-s1 at makespan
#: <= 8, 34,844 nodes after the round at 5062 emptied (optimum 5063, incumbent 5066);
#: a round at 5063: 7,595. Once only: when the incumbent is the optimum, every round
#: below it is spent (d0860-s10 with no cap: rounds one step apart up to its 3812 added
#: 5,107 nodes to the 5,952 of the last one).
TAIL_STEP = True
#: Raise the target when the incumbent is more than this many steps above the root bound.
RAISE_GAP = 2.0
#: Root iterations a second of the step's time at most (one took 3-25 ms on 8x60 and
#: 10x80 type D under load with full tables; the clamped ones take 0.3 ms on 8x60 and
#: 0.55 ms on 10x80 at root multipliers on a quiet core: 150 a second keeps a niced
#: root at load 10 within a third of the step).
ROOT_ITERS_PER_S = 150.0
#: Most nodes a kernel call processes before the caller looks at its clock (fewer
#: when calls take longer than CALL_S seconds).
CHUNK = 256
CALL_S = 0.05

#: Most cells (makespans x tasks) of the plans met in the trees kept (see _keep): the
#: makespans 0 .. KEPT_CELLS / n - 1 in load units (8 MB of int64).
KEPT_CELLS = 1_000_000
#: `slack` when the tasks' loads differ by agent (no agent's least load is known).
NO_SLACK = 1 << 40

# state vector slots
_SP, _TP, _NODES, _BEST, _ROOT, _DONE, _LOW, _EVALS = 0, 1, 2, 3, 4, 5, 6, 7


@dataclass
class StepResult:
    """One cost step's outcome (this search's and branch-and-price's): best plan found
    (None if none), its cost, proven optimal, proven infeasible, root bound, nodes."""

    agent_of: np.ndarray | None
    cost: float
    proven: bool
    infeasible: bool
    root_bound: float
    nodes: int
    #: The tree was emptied: nothing cheaper than the incumbent (and <= target) exists.
    emptied: bool = False
    #: Lagrangian evaluations (every agent's table once) in all.
    evaluations: int = 0


@_njit(cache=True, nogil=True)
def _knap(i: int, lam: np.ndarray, C: np.ndarray, A: np.ndarray, D: np.ndarray,
          allowed: np.ndarray, agent_of: np.ndarray, c0: int, k0: int, T: np.ndarray,
          took: np.ndarray, items: np.ndarray, x: np.ndarray, lim: np.ndarray,
          pre: np.ndarray, slack: int, sh: np.ndarray) -> float:
    """Agent i's two-row knapsack over the free allowed tasks with negative reduced cost:
    the least reduced cost within load k and capacity c is T[i, min(k, lim[i, 0]),
    min(c, lim[i, 1])] for k <= k0, c <= c0 (read it with :func:`_tv`); sets x[i, j]
    for the chosen tasks of [k0, c0] and returns that least value.

    The table is clamped: after the items so far (demand ascending, so the prefix
    stays small for long) every cell beyond their total demand P and load Q equals the
    cell at (min(k, Q), min(c, P)), so only the [Q+1, P+1] corner is updated (on
    generated 8x60 type D at root multipliers, 55 of 60 tasks in each table: 6x
    faster than the full table, with loops the compiler vectorises).

    The cells are int32 in units of 2**-lim[i, 2] (twice the SIMD lanes of float64):
    every reduced cost is rounded down to that grid, so a cell is never above the
    exact value (a valid bound) and at most nt * 2**-lim[i, 2] below it; the exponent
    is the largest (at most 20) that keeps every sum within int32 (negative for reduced
    costs beyond about 1e9 in all).

    `slack`: the load caps' total less the free tasks' load (the same in every node when
    each task's load is the same on all its agents). At 0 every agent must fill its cap:
    it takes lo = k0 of load in every completion. That constraint is dualised with a
    multiplier M big enough that the table's best set has the most load that fits (each
    load unit's reduced cost lowered by M, lo * M added back): a valid bound for any M,
    here the least cost of a set with load exactly k0, and +inf when none fits (the node
    is infeasible). sh[i] = (M, lo * M) for the callers' forced-in values ((0, 0) when
    slack > 0: then M would have to be searched for, and a big one ruins the bound)."""
    n = C.shape[1]
    order = np.argsort(A[i], kind="mergesort")
    return _table(i, lam, C, A, D, allowed, agent_of, c0, k0, T[i], took, items,
                  np.zeros(n, dtype=np.int32), x[i], lim[i], pre, slack, sh[i], order,
                  np.empty(c0 + 1, dtype=T.dtype), np.zeros(n, dtype=np.bool_),
                  np.zeros((1, 2 * n + 4), dtype=np.int64), np.zeros((1, 2)), -1)


@_njit(cache=True, nogil=True)
def _table(i: int, lam: np.ndarray, C: np.ndarray, A: np.ndarray, D: np.ndarray,
           allowed: np.ndarray, agent_of: np.ndarray, c0: int, k0: int, Ti: np.ndarray,
           took: np.ndarray, items: np.ndarray, rv: np.ndarray, xi: np.ndarray,
           li: np.ndarray, pre: np.ndarray, slack: int, shi: np.ndarray, order: np.ndarray,
           buf: np.ndarray, mark: np.ndarray, memo: np.ndarray, mval: np.ndarray,
           slot: int) -> float:
    """:func:`_knap` into the given table Ti, choice row xi, limits li and shift shi
    (agent i's own, or scratch for a one-off value); `order`: agent i's tasks by demand
    ascending (stable), so the items need no sorting.

    `slot` >= 0: memo[slot] (item count, exponent, c0, k0, then the items and their grid
    values) and mval[slot] (M, value) describe what Ti and xi hold; when this call's
    items and values are the same, the table is not rebuilt (the same inputs give the
    same cells, choice and value). -1: no memo."""
    n = C.shape[1]
    lo = k0 if slack == 0 else 0
    M = 0.0
    if lo > 0:
        rmax = 0.0
        dmin = 1 << 60
        rsum = 0.0
        for j in range(n):
            ok = (agent_of[j] < 0) & allowed[i, j] & (A[i, j] <= c0) & (D[i, j] <= k0)
            r = abs(C[i, j] - lam[j])
            rmax = max(rmax, r if ok else 0.0)
            rsum += r if ok else 0.0
            dmin = min(dmin, D[i, j] if ok else dmin)
        # Two sets within the caps differ by at most 2 k0 rmax in reduced cost (each
        # holds at most k0 tasks when every load is >= 1), else by at most 2 rsum; a
        # power of two keeps the int32 grid exact for the shift.
        big = 2.0 * (k0 * rmax if dmin >= 1 else rsum) + 1.0
        M = math.ldexp(1.0, math.ceil(math.log2(big)))
    shi[0] = M
    shi[1] = M * lo if lo > 0 else 0.0
    # The items (free, allowed, fitting, negative reduced cost), without branches: the
    # sum in task order, the list in `order`.
    nt = 0
    neg = 1.0
    for j in range(n):
        r = C[i, j] - lam[j] - M * D[i, j]
        ok = ((agent_of[j] < 0) & allowed[i, j] & (r < 0.0) & (A[i, j] <= c0)
              & (D[i, j] <= k0))
        mark[j] = ok
        neg -= r if ok else 0.0
        nt += 1 if ok else 0
    t = 0
    for q in range(n):
        j = order[q]
        items[t] = j
        t += 1 if mark[j] else 0
    # (A product by a power of two is ldexp's double, without a libm call an item.)
    e = 20
    g = 1048576.0  # 2**e
    while e > -1000 and (neg + nt) * g >= 1.0e9:
        e -= 1  # huge costs: a coarser grid (still rounded down, so still a bound)
        g *= 0.5
    li[2] = e
    same = slot >= 0 and memo[slot, 0] == nt and memo[slot, 1] == e \
        and memo[slot, 2] == c0 and memo[slot, 3] == k0 and mval[slot, 0] == M
    for t in range(nt):
        j = items[t]
        rv[t] = np.int32(math.floor((C[i, j] - lam[j] - M * D[i, j]) * g))
        if same and (memo[slot, 4 + t] != j or memo[slot, 4 + n + t] != rv[t]):
            same = False
    if same:
        return mval[slot, 1]
    for j in range(n):
        xi[j] = False
    Ti[0, 0] = 0
    P = 0
    Q = 0
    for t in range(nt):
        j = items[t]
        aj = A[i, j]
        dj = D[i, j]
        rj = rv[t]
        P1 = min(P + aj, c0)
        Q1 = min(Q + dj, k0)
        # Widen rows 0..Q to columns P1 (each row's last cell), new rows copy row Q.
        for k in range(Q + 1):
            row = Ti[k]
            v = row[P]
            for c in range(P + 1, P1 + 1):
                row[c] = v
        src = Ti[Q]
        for k in range(Q + 1, Q1 + 1):
            row = Ti[k]
            for c in range(P1 + 1):
                row[c] = src[c]
        tk = took[t]
        if dj > 0:
            # Row k reads row k - dj < k, not yet updated for this item: any c order.
            for k in range(Q1, dj - 1, -1):
                cur = Ti[k, aj:P1 + 1]
                prev = Ti[k - dj, :P1 + 1 - aj]
                tr = tk[k, aj:P1 + 1]
                for c in range(P1 + 1 - aj):
                    v = np.int32(prev[c] + rj)
                    o = cur[c]
                    b = v < o
                    tr[c] = b
                    cur[c] = v if b else o
        else:
            # No load: row k reads itself. Its old prefix is copied first so the update
            # runs forwards without a dependence and vectorises like the loop above (in
            # place, capacity descending, it ran scalar: the same cap-free trees took
            # 1.5-1.8x the CPU on 8x60 / 10x80 type D with float64 tables).
            w = P1 + 1 - aj
            for k in range(Q1, -1, -1):
                row = Ti[k]
                for c in range(w):
                    buf[c] = row[c]
                cur = row[aj:P1 + 1]
                tr = tk[k, aj:P1 + 1]
                for c in range(w):
                    v = np.int32(buf[c] + rj)
                    o = cur[c]
                    b = v < o
                    tr[c] = b
                    cur[c] = v if b else o
        P = P1
        Q = Q1
        pre[t, 0] = Q
        pre[t, 1] = P
    li[0] = Q
    li[1] = P
    # Back from the last item; each item's decision is read at the state clamped to
    # its prefix (the same cell values, so the same decision).
    k = min(k0, Q)
    c = min(c0, P)
    load = 0
    for t in range(nt - 1, -1, -1):
        j = items[t]
        if k >= D[i, j] and c >= A[i, j] and took[t, min(k, pre[t, 0]), min(c, pre[t, 1])]:
            xi[j] = True
            k -= D[i, j]
            c -= A[i, j]
            load += D[i, j]
    if lo > 0 and load < lo:
        z = np.inf  # the most load that fits is below what the agent must take
    else:
        z = math.ldexp(float(Ti[min(k0, Q), min(c0, P)]), -e) + shi[1]
    if slot >= 0:
        memo[slot, 0] = nt
        memo[slot, 1] = e
        memo[slot, 2] = c0
        memo[slot, 3] = k0
        for t in range(nt):
            memo[slot, 4 + t] = items[t]
            memo[slot, 4 + n + t] = rv[t]
        mval[slot, 0] = M
        mval[slot, 1] = z
    return z


@_njit(cache=True, nogil=True, inline="always")
def _tv(T: np.ndarray, lim: np.ndarray, i: int, k: int, c: int) -> float:
    """Cell (k, c) of agent i's clamped table (see :func:`_knap`)."""
    return math.ldexp(float(T[i, min(k, lim[i, 0]), min(c, lim[i, 1])]), -lim[i, 2])


@_njit(cache=True, nogil=True, inline="always")
def _tvs(T: np.ndarray, lim: np.ndarray, unit: np.ndarray, i: int, k: int, c: int) -> float:
    """:func:`_tv` with unit[i] = 2**-lim[i, 2] (:func:`_units`): a product by a power of
    two is the same double as ldexp's, without a libm call per cell (the fixing loop
    reads one cell per free pair and iteration)."""
    return float(T[i, min(k, lim[i, 0]), min(c, lim[i, 1])]) * unit[i]


@_njit(cache=True, nogil=True)
def _units(lim: np.ndarray, unit: np.ndarray) -> None:
    for i in range(lim.shape[0]):
        unit[i] = math.ldexp(1.0, -lim[i, 2])


@_njit(cache=True, nogil=True, inline="always")
def _push(kind: int, i: int, j: int, trail: np.ndarray, st: np.ndarray) -> None:
    """Record an undoable change (kind 1: task j placed on agent i, 0: pair forbidden)."""
    tp = int(st[_TP])
    trail[tp, 0] = kind
    trail[tp, 1] = i
    trail[tp, 2] = j
    st[_TP] = tp + 1


@_njit(cache=True, nogil=True)
def _assign(i: int, j: int, C: np.ndarray, A: np.ndarray, D: np.ndarray,
            agent_of: np.ndarray, rcap: np.ndarray, rload: np.ndarray, fixed: np.ndarray,
            trail: np.ndarray, st: np.ndarray) -> None:
    agent_of[j] = i
    rcap[i] -= A[i, j]
    rload[i] -= D[i, j]
    fixed[0] += C[i, j]
    _push(1, i, j, trail, st)


@_njit(cache=True, nogil=True)
def _forbid(i: int, j: int, allowed: np.ndarray, trail: np.ndarray, st: np.ndarray) -> None:
    allowed[i, j] = False
    _push(0, i, j, trail, st)


@_njit(cache=True, nogil=True)
def _undo(mark: int, C: np.ndarray, A: np.ndarray, D: np.ndarray, agent_of: np.ndarray,
          allowed: np.ndarray, rcap: np.ndarray, rload: np.ndarray, fixed: np.ndarray,
          trail: np.ndarray, st: np.ndarray) -> None:
    tp = int(st[_TP])
    while tp > mark:
        tp -= 1
        i = trail[tp, 1]
        j = trail[tp, 2]
        if trail[tp, 0] == 1:
            agent_of[j] = -1
            rcap[i] += A[i, j]
            rload[i] += D[i, j]
            fixed[0] -= C[i, j]
        else:
            allowed[i, j] = True
    st[_TP] = tp


@_njit(cache=True, nogil=True, inline="always")
def _fits(i: int, j: int, A: np.ndarray, D: np.ndarray, allowed: np.ndarray,
          rcap: np.ndarray, rload: np.ndarray) -> bool:
    # `&`, not `and`: no branches, so the loops over agents compile to straight code (a
    # called or short-circuit test made the fixing loop 20x slower on mixed pairs).
    return allowed[i, j] & (A[i, j] <= rcap[i]) & (D[i, j] <= rload[i])


@_njit(cache=True, nogil=True)
def _propagate(C: np.ndarray, A: np.ndarray, D: np.ndarray, agent_of: np.ndarray,
               allowed: np.ndarray, rcap: np.ndarray, rload: np.ndarray, fixed: np.ndarray,
               trail: np.ndarray, st: np.ndarray) -> bool:
    """Place every free task that has one agent left; False when one has none."""
    m, n = C.shape
    changed = True
    while changed:
        changed = False
        for j in range(n):
            if agent_of[j] >= 0:
                continue
            cnt = 0
            last = -1
            for i in range(m):
                ok = _fits(i, j, A, D, allowed, rcap, rload)
                cnt += 1 if ok else 0
                last = i if ok else last
            if cnt == 0:
                return False
            if cnt == 1:
                _assign(last, j, C, A, D, agent_of, rcap, rload, fixed, trail, st)
                changed = True
    return True


@_njit(cache=True, nogil=True)
def _repair(C: np.ndarray, A: np.ndarray, D: np.ndarray, lam: np.ndarray, x: np.ndarray,
            agent_of: np.ndarray, rcap: np.ndarray, rload: np.ndarray, allowed: np.ndarray,
            fixed: float, plan: np.ndarray, uc: np.ndarray, ul: np.ndarray) -> float:
    """A plan from the node's relaxed choice: a task chosen by several agents stays on
    the one where it costs least, a task chosen by none goes (largest demand first) to
    the cheapest agent with room; then one pass of improving shifts. Its cost (inf: some
    task found no room)."""
    m, n = C.shape
    for i in range(m):
        uc[i] = rcap[i]
        ul[i] = rload[i]
    cost = fixed
    for j in range(n):
        plan[j] = agent_of[j]
    for j in range(n):
        if agent_of[j] >= 0:
            continue
        bi = -1
        for i in range(m):
            if x[i, j] and (bi < 0 or C[i, j] < C[bi, j]):
                bi = i
        plan[j] = bi
    # keep the chosen ones that fit (the relaxed choices fit agent by agent)
    for j in range(n):
        if agent_of[j] < 0 and plan[j] >= 0:
            i = plan[j]
            uc[i] -= A[i, j]
            ul[i] -= D[i, j]
            cost += C[i, j]
    while True:
        # the unplaced task with the largest least demand first
        bj = -1
        bd = -1
        for j in range(n):
            if plan[j] < 0:
                dm = 1 << 60
                for i in range(m):
                    if allowed[i, j] and A[i, j] < dm:
                        dm = A[i, j]
                if dm > bd:
                    bd = dm
                    bj = j
        if bj < 0:
            break
        bi = -1
        for i in range(m):
            if (allowed[i, bj] and A[i, bj] <= uc[i] and D[i, bj] <= ul[i]
                    and (bi < 0 or C[i, bj] < C[bi, bj])):
                bi = i
        if bi < 0:
            # No agent has room: eject one free task t from an agent i to an agent k with
            # room so that bj fits on i (tight load caps leave every agent full).
            best_d = np.inf
            ei = -1
            et = -1
            ek = -1
            for i in range(m):
                if not allowed[i, bj]:
                    continue
                for t in range(n):
                    if plan[t] != i or agent_of[t] >= 0:
                        continue
                    if A[i, bj] > uc[i] + A[i, t] or D[i, bj] > ul[i] + D[i, t]:
                        continue
                    for k in range(m):
                        if (k != i and allowed[k, t] and A[k, t] <= uc[k] and D[k, t] <= ul[k]):
                            d = C[i, bj] + C[k, t] - C[i, t]
                            if d < best_d:
                                best_d = d
                                ei = i
                                et = t
                                ek = k
            if ei < 0:
                return np.inf
            plan[et] = ek
            uc[ei] += A[ei, et]
            ul[ei] += D[ei, et]
            uc[ek] -= A[ek, et]
            ul[ek] -= D[ek, et]
            cost += C[ek, et] - C[ei, et]
            bi = ei
        plan[bj] = bi
        uc[bi] -= A[bi, bj]
        ul[bi] -= D[bi, bj]
        cost += C[bi, bj]
    # improving shifts of free tasks
    improved = True
    while improved:
        improved = False
        for j in range(n):
            if agent_of[j] >= 0:
                continue
            o = plan[j]
            for i in range(m):
                if i != o and allowed[i, j] and C[i, j] < C[o, j] and A[i, j] <= uc[i] \
                        and D[i, j] <= ul[i]:
                    uc[o] += A[o, j]
                    ul[o] += D[o, j]
                    uc[i] -= A[i, j]
                    ul[i] -= D[i, j]
                    cost += C[i, j] - C[o, j]
                    plan[j] = i
                    o = i
                    improved = True
    return cost


@_njit(cache=True, nogil=True)
def _without(j: int, z: np.ndarray, zex: np.ndarray, lam: np.ndarray, C: np.ndarray,
             A: np.ndarray, D: np.ndarray, allowed: np.ndarray, agent_of: np.ndarray,
             rcap: np.ndarray, rload: np.ndarray, x: np.ndarray, Ts: np.ndarray,
             took: np.ndarray, items: np.ndarray, rv: np.ndarray, xs: np.ndarray,
             ls: np.ndarray, pre: np.ndarray, slack: int, shs: np.ndarray, byA: np.ndarray,
             buf: np.ndarray, isel: np.ndarray, memo: np.ndarray,
             mval: np.ndarray) -> tuple[float, int, int]:
    """(rise, agents, agent): every agent whose relaxed choice holds free task j rebuilt
    without it in the scratch table (zex[k]; z[k] for the others), the summed rise of the
    finite ones, and how many (and the last) cannot fill their cap without j.

    Shared by strong branching and `_child_bounds`: an agent that cannot do without j
    (slack 0) leaves j that agent as its only child."""
    sex = 0.0
    ninf = 0
    kinf = -1
    for k in range(C.shape[0]):
        zex[k] = z[k]
        if x[k, j] and allowed[k, j]:
            allowed[k, j] = False
            zex[k] = _table(k, lam, C, A, D, allowed, agent_of, rcap[k], rload[k], Ts, took,
                            items, rv, xs[k], ls, pre, slack, shs, byA[k], buf, isel, memo,
                            mval, -1)
            allowed[k, j] = True
            if zex[k] == np.inf:
                ninf += 1
                kinf = k
            else:
                sex += zex[k] - z[k]
    return sex, ninf, kinf


@_njit(cache=True, nogil=True)
def _child_bounds(j: int, F: np.ndarray, z: np.ndarray, zex: np.ndarray, cb: np.ndarray,
                  lam: np.ndarray, C: np.ndarray, A: np.ndarray, D: np.ndarray,
                  allowed: np.ndarray, agent_of: np.ndarray, rcap: np.ndarray,
                  rload: np.ndarray, x: np.ndarray, Ts: np.ndarray, took: np.ndarray,
                  items: np.ndarray, rv: np.ndarray, xs: np.ndarray, ls: np.ndarray,
                  pre: np.ndarray, slack: int, shs: np.ndarray, byA: np.ndarray,
                  buf: np.ndarray, isel: np.ndarray, memo: np.ndarray,
                  mval: np.ndarray) -> None:
    """cb[i]: a lower bound on the node's child with free task j on agent i (+inf where
    i cannot take it), at the node's multipliers.

    F[i, j] is the forced-in bound of the pair read from the node's tables (j's multiplier
    out, its cost and i's table at the room left in); the child's other agents cannot take
    j either, so each agent k != i whose relaxed choice x[k] holds j adds its table's rise
    without j (zex[k] - z[k]; built in the scratch table Ts, ls, shs, xs[k], so the
    agents' own tables and memo stay as they are). A table without j that has no set
    (slack 0: k cannot fill its cap without j) leaves j that agent as its only child.
    Every term is a relaxation of the child's own at these multipliers (tables over a
    superset of its sets, rounded down): a valid bound whatever was forbidden since the
    tables were built."""
    m = C.shape[0]
    sex, ninf, kinf = _without(j, z, zex, lam, C, A, D, allowed, agent_of, rcap, rload, x,
                               Ts, took, items, rv, xs, ls, pre, slack, shs, byA, buf, isel,
                               memo, mval)
    for i in range(m):
        cb[i] = np.inf
        if ninf > 1 or (ninf == 1 and kinf != i) or not _fits(i, j, A, D, allowed, rcap,
                                                                 rload):
            continue
        cb[i] = F[i, j] + sex
        if zex[i] < np.inf:
            cb[i] -= zex[i] - z[i]


@_njit(cache=True, nogil=True)
def _keep(plan: np.ndarray, cost: float, Dm: np.ndarray, kept_cost: np.ndarray,
          kept_plan: np.ndarray, load: np.ndarray) -> None:
    """Keep a plan met in the tree as the cheapest seen at its makespan (in the true load
    units `Dm`, whatever this step's cap): a later, tighter step starts from it."""
    for i in range(load.size):
        load[i] = 0
    for j in range(plan.size):
        load[plan[j]] += Dm[plan[j], j]
    mk = 0
    for i in range(load.size):
        mk = max(mk, load[i])
    if mk < kept_cost.size and cost < kept_cost[mk] - 1e-9:
        kept_cost[mk] = cost
        for j in range(plan.size):
            kept_plan[mk, j] = plan[j]


@_njit(cache=True, nogil=True)
def _search(C: np.ndarray, A: np.ndarray, D: np.ndarray, step: float, target: float,
            agent_of: np.ndarray, allowed: np.ndarray, rcap: np.ndarray, rload: np.ndarray,
            fixed: np.ndarray, trail: np.ndarray, stack: np.ndarray, lams: np.ndarray,
            best: np.ndarray, st: np.ndarray, T: np.ndarray, took: np.ndarray,
            max_nodes: int, root_iters: int, node_iters: int, mu_root: float,
            mu_node: float, stall_root: int, stall_node: int, look: int,
            slack: int, Dm: np.ndarray, kept_cost: np.ndarray, kept_plan: np.ndarray,
            exclude_gap: float, exclude_tasks: int, regret: bool = False) -> None:
    """Process up to `max_nodes` nodes of the tree (module docstring); state in the arrays.

    `slack`: see :func:`_knap` (a huge value when the tasks' loads differ by agent).
    Dm, kept_cost, kept_plan: see :func:`_keep` (every plan met is offered).
    `exclude_gap`, `exclude_tasks`: a node whose bound is at most this far below the
    pruning target gets the child bounds (:func:`_child_bounds`) of that many free tasks
    before it branches (< 0: none).
    `regret`: break the branching's ties by the regret always (see the key below).

    stack rows: (trail mark, task, agent, depth); a task of -1 is the root. `target`:
    only plans costing at most this are sought (inf: any better than the incumbent).
    st: [stack size, trail size, nodes, incumbent cost, root bound, tree emptied, a
    proven lower bound (an incumbent at or below it ends the search as if the tree
    were emptied), Lagrangian evaluations].
    """
    m, n = C.shape
    items = np.zeros(n, dtype=np.int64)
    lim = np.zeros((m, 3), dtype=np.int64)
    sh = np.zeros((m, 2))
    pre = np.zeros((max(n, 1), 2), dtype=np.int64)
    x = np.zeros((m, n), dtype=np.bool_)
    lam = np.zeros(n)
    best_lam = np.zeros(n)
    z = np.zeros(m)
    lb = np.zeros(m)
    order = np.zeros(m, dtype=np.int64)
    zex = np.zeros(m)
    plan = np.zeros(n, dtype=np.int64)
    uc = np.zeros(m, dtype=np.int64)
    kload = np.zeros(m, dtype=np.int64)
    ul = np.zeros(m, dtype=np.int64)
    xs = np.zeros((m, n), dtype=np.bool_)
    unit = np.zeros(m)
    # _table's scratch: each agent's tasks by demand, grid values, a row, item marks; the
    # memo of what each agent's table holds; a table for the strong branching's values
    # (the agents' own tables stay as the memo says).
    byA = np.zeros((m, n), dtype=np.int64)
    for i in range(m):
        byA[i] = np.argsort(A[i], kind="mergesort")
    rv = np.zeros(n, dtype=np.int32)
    buf = np.empty(T.shape[2], dtype=T.dtype)
    isel = np.zeros(n, dtype=np.bool_)
    memo = np.zeros((m, 2 * n + 4), dtype=np.int64)
    memo[:, 0] = -1
    mval = np.zeros((m, 2))
    Ts = np.empty((T.shape[1], T.shape[2]), dtype=T.dtype)
    ls = np.zeros(3, dtype=np.int64)
    shs = np.zeros(2)
    F = np.full((m, n), np.inf)
    cbj = np.zeros(m)
    qkey = np.zeros(n)
    qtask = np.zeros(n, dtype=np.int64)
    # Agents whose table must be rebuilt: all of them when the multipliers change (and
    # at a node's start); after fixing with the same multipliers only those that lost a
    # task they could take at a negative reduced cost (a forbidden pair, a task placed
    # elsewhere) or got one placed on them: the trail since the last evaluation says.
    dirty = np.ones(m, dtype=np.bool_)
    seen = 0
    cand = np.zeros(max(look, 1), dtype=np.int64)
    ckey = np.zeros(max(look, 1))
    cbq = np.zeros((max(look, 1), m))
    done = 0
    while done < max_nodes:
        sp = int(st[_SP])
        if sp == 0 or st[_BEST] <= st[_LOW]:
            st[_DONE] = 1.0
            return
        sp -= 1
        st[_SP] = sp
        mark = stack[sp, 0]
        jb = stack[sp, 1]
        ib = stack[sp, 2]
        depth = stack[sp, 3]
        _undo(mark, C, A, D, agent_of, allowed, rcap, rload, fixed, trail, st)
        done += 1
        st[_NODES] += 1
        if jb >= 0:
            if agent_of[jb] >= 0 or not _fits(ib, jb, A, D, allowed, rcap, rload):
                continue
            _assign(ib, jb, C, A, D, agent_of, rcap, rload, fixed, trail, st)
        for j in range(n):
            lam[j] = lams[depth, j]
        mu = mu_root if depth == 0 else mu_node
        iters = root_iters if depth == 0 else node_iters
        stall_max = stall_root if depth == 0 else stall_node
        best_l = -np.inf
        stall = 0
        pruned = False
        dirty[:] = True
        seen = int(st[_TP])
        # The trail's size at the last propagation's fixpoint: only a change since (a
        # forbidden pair, a placed task) can place or strand a task.
        fix = -1
        for it in range(iters):
            if int(st[_TP]) != fix:
                if not _propagate(C, A, D, agent_of, allowed, rcap, rload, fixed, trail, st):
                    pruned = True
                    break
                fix = int(st[_TP])
            for e in range(seen, int(st[_TP])):
                i = trail[e, 1]
                j = trail[e, 2]
                if trail[e, 0] == 1:
                    dirty[i] = True
                    for k in range(m):
                        if C[k, j] - lam[j] < 0.0:
                            dirty[k] = True
                elif C[i, j] - lam[j] < 0.0:
                    dirty[i] = True
            seen = int(st[_TP])
            thr = min(target, st[_BEST] - step + 1e-6 * max(1.0, abs(st[_BEST])))
            lval = fixed[0]
            nfree = 0
            for j in range(n):
                if agent_of[j] < 0:
                    lval += lam[j]
                    nfree += 1
            if nfree == 0:
                _keep(agent_of, fixed[0], Dm, kept_cost, kept_plan, kload)
                if fixed[0] <= thr:
                    st[_BEST] = fixed[0]
                    for j in range(n):
                        best[j] = agent_of[j]
                pruned = True
                break
            st[_EVALS] += 1
            for i in range(m):
                if dirty[i]:
                    z[i] = _table(i, lam, C, A, D, allowed, agent_of, rcap[i], rload[i], T[i],
                                  took, items, rv, x[i], lim[i], pre, slack, sh[i], byA[i],
                                  buf, isel, memo, mval, i)
                    dirty[i] = False
                lval += z[i]
            if depth == 0 and lval > st[_ROOT]:
                st[_ROOT] = lval
            if lval > thr or lval == np.inf:
                pruned = True
                break
            if lval > best_l + 1e-9:
                best_l = lval
                for j in range(n):
                    best_lam[j] = lam[j]
                stall = 0
            else:
                stall += 1
                if stall >= stall_max:
                    mu *= 0.5
                    stall = 0
            # Reduced-cost fixing, and is the relaxed choice a plan?
            _units(lim, unit)
            cover_ok = True
            norm = 0.0
            nforb = 0
            for j in range(n):
                if agent_of[j] >= 0:
                    continue
                s = 1.0
                for i in range(m):
                    s -= 1.0 if x[i, j] else 0.0
                    # Every pair's value, read inside the table whether it fits or not:
                    # the loop has no branch but the (rare) forbidding one.
                    ok = _fits(i, j, A, D, allowed, rcap, rload)
                    r = C[i, j] - lam[j]
                    f = lval - z[i] + r - sh[i, 0] * D[i, j] + sh[i, 1] + _tvs(
                        T, lim, unit, i, max(rload[i] - D[i, j], 0), max(rcap[i] - A[i, j], 0))
                    if ok & (f > thr):
                        _forbid(i, j, allowed, trail, st)
                        nforb += 1
                if s != 0.0:
                    cover_ok = False
                norm += s * s
            if cover_ok:
                # Every free task chosen once: a plan costing lval (here <= thr).
                cost = fixed[0]
                for j in range(n):
                    plan[j] = agent_of[j]
                    if agent_of[j] < 0:
                        for i in range(m):
                            if x[i, j]:
                                cost += C[i, j]
                                plan[j] = i
                _keep(plan, cost, Dm, kept_cost, kept_plan, kload)
                if cost <= thr:
                    st[_BEST] = cost
                    for j in range(n):
                        if agent_of[j] >= 0:
                            best[j] = agent_of[j]
                        else:
                            for i in range(m):
                                if x[i, j]:
                                    best[j] = i
                pruned = True
                break
            if it == iters - 1 or mu < 1e-6:
                break
            if nforb > 0:
                continue  # same multipliers on the smaller node
            tgt = thr if thr < np.inf else lval + 0.005 * abs(lval) + 1.0
            g = max(tgt - lval, 1e-3 * max(1.0, abs(lval)))
            for j in range(n):
                if agent_of[j] < 0:
                    s = 1.0
                    for i in range(m):
                        if x[i, j]:
                            s -= 1.0
                    lam[j] += mu * g / norm * s
            dirty[:] = True
        if pruned:
            continue
        # A plan from the relaxed choice (cheap next to the node's tables).
        pc = _repair(C, A, D, lam, x, agent_of, rcap, rload, allowed, fixed[0], plan, uc, ul)
        if pc == np.inf and depth == 0 and slack == 0:
            # Every agent full in the relaxed choice leaves the repair little room to move
            # a task (type D 4x16 at cap 4: no root plan on 4 of 6 seeds): at a round's
            # root the full and the plain choice at the best multipliers are tried too,
            # then the node's tables are restored.
            for sl in (slack, NO_SLACK):
                for i in range(m):
                    _table(i, best_lam, C, A, D, allowed, agent_of, rcap[i], rload[i], T[i],
                           took, items, rv, xs[i], lim[i], pre, sl, sh[i], byA[i], buf, isel,
                           memo, mval, -1)
                pc = _repair(C, A, D, lam, xs, agent_of, rcap, rload, allowed, fixed[0], plan,
                             uc, ul)
                if pc < np.inf:
                    break
            for i in range(m):
                _table(i, lam, C, A, D, allowed, agent_of, rcap[i], rload[i], T[i], took,
                       items, rv, xs[i], lim[i], pre, slack, sh[i], byA[i], buf, isel, memo,
                       mval, -1)
                memo[i, 0] = -1  # the table no longer matches the choice in x
        if pc < np.inf:
            _keep(plan, pc, Dm, kept_cost, kept_plan, kload)
        if pc < st[_BEST] - 1e-9:
            st[_BEST] = pc
            for j in range(n):
                best[j] = plan[j]
        # Branching. Candidates: the free tasks with the fewest agents left (ties: see
        # the key below; the forced-in bounds from the last tables).
        thr = min(target, st[_BEST] - step + 1e-6 * max(1.0, abs(st[_BEST])))
        _units(lim, unit)
        has_inc = st[_BEST] < np.inf
        ncand = 0
        for j in range(n):
            if agent_of[j] >= 0:
                continue
            cnt = 0
            f1 = np.inf
            f2 = np.inf
            for i in range(m):
                if _fits(i, j, A, D, allowed, rcap, rload):
                    cnt += 1
                    f = lval - z[i] + C[i, j] - lam[j] - sh[i, 0] * D[i, j] + sh[i, 1] + _tvs(
                        T, lim, unit, i, rload[i] - D[i, j], rcap[i] - A[i, j])
                    F[i, j] = f
                    if f < f1:
                        f2 = f1
                        f1 = f
                    elif f < f2:
                        f2 = f
            # Fewest agents first; ties, with an incumbent: the highest least child bound
            # (a task that no agent's relaxed choice holds gains on every child, one
            # chosen once gains nothing on its chooser's); the regret f2 - f1 there: 37 %
            # more nodes (49,365 against 36,066) on the proof trees of 14 tuning levels
            # (d1080 s151, s160, s161, s163, s165; held out: 21 % fewer with this rule).
            # With none yet, the regret: its first dive meets a plan sooner (type D 4x16
            # at a cap of 4, seed 4: at the second node, against the tenth); and always
            # with `regret` (the 10 s front's time-boxed trees, which need the optimum's
            # plan more than its proof: there the bound rule lost on 4 of 6 held-out
            # fronts at 2/3 of a core).
            if has_inc and not regret:
                key = cnt * 1e12 - max(f1 - lval, 1e-6)
            else:
                key = cnt * 1e12 - (f2 - f1 if f2 < np.inf else 1e11)
            # keep the `look` best keys (insertion into a short sorted list)
            if ncand < look:
                ncand += 1
            elif key >= ckey[ncand - 1]:
                continue
            b = ncand - 1
            while b > 0 and ckey[b - 1] > key:
                ckey[b] = ckey[b - 1]
                cand[b] = cand[b - 1]
                b -= 1
            ckey[b] = key
            cand[b] = j
        if ncand == 0:
            continue
        if thr - lval <= exclude_gap:
            # The children of the `exclude_tasks` free tasks with a pair nearest the target
            # (its forced-in bound, the pair not in the relaxed choice) bounded with the
            # other agents' tables without the task (built in the scratch table): a pair
            # whose child is above the target is forbidden in the subtree, a task with no
            # child left closes the node.
            dead = False
            nq = 0
            for j in range(n):
                if agent_of[j] >= 0:
                    continue
                hi = -np.inf
                for i in range(m):
                    if _fits(i, j, A, D, allowed, rcap, rload) and not x[i, j] and F[i, j] > hi:
                        hi = F[i, j]
                if hi == -np.inf:
                    continue
                b = nq
                while b > 0 and qkey[b - 1] < hi:
                    qkey[b] = qkey[b - 1]
                    qtask[b] = qtask[b - 1]
                    b -= 1
                qkey[b] = hi
                qtask[b] = j
                nq += 1
            for q in range(min(nq, exclude_tasks)):
                j = qtask[q]
                _child_bounds(j, F, z, zex, cbj, lam, C, A, D, allowed, agent_of, rcap, rload,
                              x, Ts, took, items, rv, xs, ls, pre, slack, shs, byA, buf, isel,
                              memo, mval)
                alive = 0
                for i in range(m):
                    if _fits(i, j, A, D, allowed, rcap, rload):
                        if cbj[i] > thr:
                            _forbid(i, j, allowed, trail, st)
                        else:
                            alive += 1
                if alive == 0:
                    dead = True
                    break
            if dead:
                continue
        # Strong branching at these multipliers: each candidate's child bounds exactly
        # (agent i's table with the task in, the others' without it; only those whose
        # choice held it change). A candidate with no child left closes the node; the
        # one whose two best children rise most is branched on.
        bj = -1
        bscore = -1.0
        dead = False
        for q in range(ncand):
            j = cand[q]
            # Agents that cannot do without j (see _knap's slack): j's only children.
            sex, ninf, kinf = _without(j, z, zex, lam, C, A, D, allowed, agent_of, rcap,
                                       rload, x, Ts, took, items, rv, xs, ls, pre, slack,
                                       shs, byA, buf, isel, memo, mval)
            c1 = np.inf
            c2 = np.inf
            for i in range(m):
                cbq[q, i] = np.inf
                if ninf > 1 or (ninf == 1 and kinf != i):
                    continue
                if _fits(i, j, A, D, allowed, rcap, rload):
                    allowed[i, j] = False
                    zi = _table(i, lam, C, A, D, allowed, agent_of, rcap[i] - A[i, j],
                                rload[i] - D[i, j], Ts, took, items, rv, xs[i], ls, pre, slack,
                                shs, byA[i], buf, isel, memo, mval, -1)
                    allowed[i, j] = True
                    cb = lval - lam[j] + C[i, j] + zi - z[i] + sex
                    if zex[i] < np.inf:
                        cb -= zex[i] - z[i]
                    if cb <= thr:
                        cbq[q, i] = cb
                        if cb < c1:
                            c2 = c1
                            c1 = cb
                        elif cb < c2:
                            c2 = cb
            if c1 == np.inf:
                dead = True
                break
            g2 = (c2 - lval) if c2 < np.inf else 1e9
            score = max(c1 - lval, 1e-6) * max(g2, 1e-6)
            if score > bscore:
                bscore = score
                bj = q
        if dead:
            continue
        nc = 0
        for i in range(m):
            if cbq[bj, i] < np.inf:
                lb[i] = cbq[bj, i]
                order[nc] = i
                nc += 1
        bj = cand[bj]
        # insertion sort by bound, best first
        for a in range(1, nc):
            v = order[a]
            b = a - 1
            while b >= 0 and lb[order[b]] > lb[v]:
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = v
        for j in range(n):
            lams[depth + 1, j] = best_lam[j]
        tp = int(st[_TP])
        sp = int(st[_SP])
        for a in range(nc - 1, -1, -1):
            stack[sp, 0] = tp
            stack[sp, 1] = bj
            stack[sp, 2] = order[a]
            stack[sp, 3] = depth + 1
            sp += 1
        st[_SP] = sp


class GapBranchBound:
    """The search over dense [m, n] data: costs (inf: not eligible), integral demands
    and capacities of the one binding resource, integral load units."""

    def __init__(self, C: np.ndarray, A: np.ndarray, cap: np.ndarray, D: np.ndarray):
        self.C = np.ascontiguousarray(C, dtype=np.float64)
        self.A = np.ascontiguousarray(A, dtype=np.int64)
        self.cap = np.ascontiguousarray(cap, dtype=np.int64)
        self.D = np.ascontiguousarray(D, dtype=np.int64)
        self.m, self.n = self.C.shape
        finite = np.where(np.isfinite(self.C), self.C, np.nan)
        second = np.sort(np.where(np.isfinite(self.C), self.C, np.inf), axis=0)[
            min(1, self.m - 1)]
        best = np.nanmin(finite, axis=0) if self.n else np.zeros(0)
        #: Above any plan's cost (a target past it is no target).
        self.most = float(np.where(np.isfinite(self.C), np.abs(self.C), 0).max(axis=0).sum()
                          ) + 1.0
        #: Multipliers carried from step to step (the next step starts from them).
        self.lam = np.where(np.isfinite(second), second, best)
        #: The cheapest plan met in any tree so far at each makespan (true load units; up
        #: to KEPT_CELLS): a tighter step starts from the best one within its cap.
        most_load = int(self.D.sum(axis=1).max(initial=0)) if self.n else 0
        levels = min(most_load + 1, max(2, KEPT_CELLS // max(self.n, 1)))
        self.kept_cost = np.full(levels, np.inf)
        self.kept_plan = np.full((levels, self.n), -1, dtype=np.int64)

    def kept(self, K: int | None) -> np.ndarray | None:
        """The cheapest plan met in a tree so far whose makespan is within K (None: any),
        checked feasible; None when there is none."""
        top = self.kept_cost.size if K is None else min(int(K) + 1, self.kept_cost.size)
        for lv in np.argsort(self.kept_cost[:top], kind="stable").tolist():
            if not np.isfinite(self.kept_cost[lv]):
                break
            plan = self.kept_plan[lv].copy()
            if self.feasible(plan, K):
                return plan
        return None

    def least_makespan(self, agent_of: np.ndarray, K: int | None) -> np.ndarray:
        """A plan met in a tree so far that costs no more than `agent_of` at a smaller
        makespan (the least such, checked feasible within K), else `agent_of`: a sweep's
        level then ends at the point that dominates (d1080-s173's cap-free tree returned
        (5055, 10) where (5055, 9) exists, and the sweep spent a level on makespan 9)."""
        a = np.asarray(agent_of)
        cost = self.cost(a)
        ar = np.arange(self.n)
        mk = int(np.bincount(a, weights=self.D[a, ar], minlength=self.m).max(initial=0))
        tol = 1e-9 * max(1.0, abs(cost))
        for lv in range(min(mk, self.kept_cost.size)):
            if self.kept_cost[lv] <= cost + tol:
                plan = self.kept_plan[lv].copy()
                if self.feasible(plan, K) and self.cost(plan) <= cost + tol:
                    return plan
        return a

    def feasible(self, agent_of: np.ndarray, K: int | None) -> bool:
        """Every task on an eligible agent, within capacity and the load cap K."""
        a = np.asarray(agent_of)
        if a.shape != (self.n,) or np.any(a < 0) or np.any(a >= self.m):
            return False
        ar = np.arange(self.n)
        if not np.all(np.isfinite(self.C[a, ar])):
            return False
        used = np.bincount(a, weights=self.A[a, ar], minlength=self.m)
        load = np.bincount(a, weights=self.D[a, ar], minlength=self.m)
        return bool(np.all(used <= self.cap) and (K is None or np.all(load <= K)))

    def cost(self, agent_of: np.ndarray) -> float:
        return float(self.C[agent_of, np.arange(self.n)].sum())

    def solve(self, K: int | None, incumbent: np.ndarray | None, *, step: float, deadline: float,
              clock: Callable[[], float], target: float = np.inf,
              max_nodes: int | None = None, raise_target: bool = True,
              lower: float = -np.inf, workers: int = 1,
              tail_step: bool | None = None, guess: float = -np.inf,
              split: float = 0.0, regret: bool = False) -> StepResult:
        """Least cost under capacities and the load cap K, from `incumbent` (used when it
        is feasible). Proven when the tree is emptied before `deadline` (on `clock`).
        One :class:`StepTree` run to the deadline (the arguments are its own).

        `workers` > 1: every round's tree below its root is searched by that many threads
        (:class:`_Team`; the kernel runs without the GIL), which share open nodes and the
        incumbent. The proven optimum is the same; the tree and the plan may differ from
        run to run, so deterministic callers keep 1.

        `target`: seek only plans costing at most this; an emptied tree then proves that
        none cheaper than min(target + step, incumbent) exists.

        `raise_target` (Posta et al.'s scheme): when the incumbent is more than
        RAISE_GAP steps above the root bound, search for plans at most T for T = the
        bound, then 1, 2, 4, ... steps above it: a low target fixes far more pairs, so
        the trees that show nothing lies below T are small and the first plan found is
        optimal; once doubling would reach the incumbent less a step, one round seeks a
        plan at the proven lower bound first (`tail_step`, default TAIL_STEP).

        `lower`: a proven lower bound on the optimum (the previous step's optimum under a
        looser cap): a plan costing that much is optimal at once, and the targets start
        there when it is above the root bound.

        `guess`: a cost the optimum is likely near but not proven to reach (the looser
        step's best plan when that step was cut short): the targets start there when it
        is above the root bound and `lower`, as they would from a proven `lower`, but a
        plan costing that much is not taken as optimal.

        `split` (0 < split < 1; 0: off): after an emptied round the next target is at
        least that share of the way from the emptied target to the incumbent, not only
        double the last distance. For a time-boxed tree that needs the optimum's plan
        more than its proof: rounds one or two steps apart below the optimum prove bounds
        such a tree does not use, and a target above the optimum meets plans early and
        works down from them in the same round (the round's pruning is at the incumbent
        less a step). The proof is the same kind: every round still prunes only above
        its target or the incumbent.

        `regret`: branch on the regret (the gap between a task's best two child bounds)
        rather than the highest least child bound (the proof's rule, the default): for
        time-boxed trees that need the optimum's plan more than its proof.
        """
        tree = StepTree(self, K, incumbent, step=step, deadline=deadline, clock=clock,
                        target=target, max_nodes=max_nodes, raise_target=raise_target,
                        lower=lower, workers=workers, tail_step=tail_step, guess=guess,
                        split=split, regret=regret)
        tree.run(deadline)
        return tree.result()

    @staticmethod
    def slack(D: np.ndarray, K: int, allowed: np.ndarray) -> int:
        """The load caps' total (m K) less the tasks' total load when every task's load is
        the same on all its agents (then each agent takes at least K - slack; see _knap),
        else a value that rules that out."""
        m, n = D.shape
        if n == 0 or not np.all(allowed.any(axis=0)):
            return NO_SLACK
        d = np.where(allowed, D, -1).max(axis=0)
        if np.any(allowed & (d[None, :] != D)):
            return NO_SLACK
        return int(min(m * K - int(d.sum()), NO_SLACK))

    @staticmethod
    def _grid(v: float, step: float) -> float:
        """The least multiple of `step` at or above v (costs are multiples of it)."""
        return float(np.ceil(v / step - 1e-6) * step)


class StepTree:
    """One cost step's search (:meth:`GapBranchBound.solve`) that pauses and resumes: its
    whole state (the kernel's arrays, the round and its target) lives here between
    :meth:`run` calls, so a caller can interleave other work (a large-neighbourhood search,
    another level) and continue later. Run in pieces it is the same tree as run at once
    (node for node, for the same incumbents), and :meth:`offer` hands it a cheaper plan
    found elsewhere: a lower incumbent only tightens the reduced-cost fixing (the pruning
    threshold is read afresh at every iteration), so every later proof stays valid.

    `deadline` only sizes the first root's subgradient (one kernel call); the search
    ends when its tree is settled (emptied, or a plan at the proven lower bound) or
    `max_nodes` are spent, else it pauses when :meth:`run`'s `until` passes. With
    `workers` > 1 a round's threads cannot pause: a round cut short ends the search."""

    def __init__(self, bb: GapBranchBound, K: int | None, incumbent: np.ndarray | None, *,
                 step: float, deadline: float, clock: Callable[[], float],
                 target: float = np.inf, max_nodes: int | None = None,
                 raise_target: bool = True, lower: float = -np.inf, workers: int = 1,
                 tail_step: bool | None = None, guess: float = -np.inf, split: float = 0.0,
                 regret: bool = False):
        self.bb, self.cap_K, self.step, self.clock = bb, K, float(step), clock
        self.regret = regret
        self.split = float(split)
        self.target, self.max_nodes, self.raise_target = target, max_nodes, raise_target
        self.lower, self.workers, self.guess, self.tail_step = lower, workers, guess, tail_step
        m, n = bb.m, bb.n
        D = bb.D
        ok = incumbent is not None and bb.feasible(incumbent, K)
        if K is None:  # no load cap: a one-row knapsack (load 0 everywhere)
            D, K = np.zeros_like(D), 0
        self.D, self.K = D, int(K)
        self.allowed0 = np.isfinite(bb.C) & (bb.cap[:, None] - bb.A >= 0) & (self.K - D >= 0)
        self.slack = bb.slack(D, self.K, self.allowed0)
        self.best = np.full(n, -1, dtype=np.int64)
        self.st = st = np.zeros(8)
        st[_BEST] = np.inf
        self.low = lower + 1e-6 * max(1.0, abs(lower)) if np.isfinite(lower) else -np.inf
        st[_LOW] = self.low
        self.nodes = self.evals = 0
        self.root = -np.inf
        self.tgt = target
        self.emptied = False
        #: Cheaper plans the tree itself found, and the clock when it found the last one.
        self.found = 0
        self.found_at = clock()
        self._until = -np.inf
        self._pause_at: int | None = None
        self._ended = False
        self._settled: StepResult | None = None
        if ok:
            assert incumbent is not None
            self.best[:] = incumbent
            st[_BEST] = bb.cost(incumbent)
            if st[_BEST] <= self.low:
                self._settled = StepResult(self.best, float(st[_BEST]), True, False, lower, 0,
                                           True, 0)
                self._ended = True
                return
        capmax = int(bb.cap.max(initial=0))
        self.T = np.zeros((m, self.K + 1, capmax + 1), dtype=np.int32)
        self.took = np.zeros((max(n, 1), self.K + 1, capmax + 1), dtype=np.bool_)
        self.trail = np.zeros((m * n + n + 8, 3), dtype=np.int64)
        self.stack = np.zeros((m * (n + 1) + 8, 4), dtype=np.int64)
        self.lams = np.zeros((n + 2, n))
        self._kload = np.zeros(m, dtype=np.int64)
        # The root's subgradient runs in one kernel call: keep it within the time.
        self.root_iters = int(min(ROOT_ITERS, max(10.0, (deadline - clock()) * ROOT_ITERS_PER_S)))
        self._rounds = self._search()

    @property
    def ended(self) -> bool:
        """The search is over: settled, its node limit spent, or a team round cut short."""
        return self._ended

    @property
    def cost(self) -> float:
        """The incumbent's cost (inf: none yet)."""
        return float(self.st[_BEST])

    def run(self, until: float, nodes: int | None = None) -> bool:
        """Search until `until` on the clock or, with `nodes`, after that many more nodes
        (the kernel's calls are cut to them); True when the search is over."""
        if self._ended:
            return True
        self._until = until
        self._pause_at = None if nodes is None else self.nodes + int(self.st[_NODES]) + nodes
        try:
            next(self._rounds)
        except StopIteration:
            self._ended = True
        return self._ended

    def offer(self, plan: np.ndarray) -> bool:
        """Take a feasible plan cheaper than the incumbent as the new incumbent (between
        kernel calls: the tree prunes against it from the next node on); it is also kept
        for tighter steps (:meth:`GapBranchBound.kept`). True when taken."""
        bb = self.bb
        if self._settled is not None or not bb.feasible(plan, self.cap_K):
            return False
        cost = bb.cost(plan)
        if cost >= self.st[_BEST] - 1e-9 * max(1.0, abs(cost)):
            return False
        a = np.ascontiguousarray(plan, dtype=np.int64)
        _keep(a, cost, bb.D, bb.kept_cost, bb.kept_plan, self._kload)
        self.best[:] = a
        self.st[_BEST] = cost
        return True

    def result(self) -> StepResult:
        """The outcome so far (proven only once the tree is settled)."""
        if self._settled is not None:
            return self._settled
        st = self.st
        nodes, evals = self.nodes, self.evals
        emptied, root = self.emptied, self.root
        if not self._ended:  # paused inside a round: count its nodes so far
            nodes += int(st[_NODES])
            evals += int(st[_EVALS])
            root = max(root, float(st[_ROOT]))
            emptied = False
        found = bool(np.isfinite(st[_BEST]))
        # An emptied tree proves the incumbent; with no incumbent and no target it
        # proves the step infeasible (with a target: that nothing costs <= target).
        tgt, target, low = self.tgt, self.target, self.low
        cost = float(st[_BEST]) if found else np.inf
        at_low = found and cost <= low
        settled = at_low or (emptied and (tgt >= target or (found and cost <= tgt)))
        return StepResult(self.best.copy() if found else None, cost,
                          at_low or (emptied and found and cost <= tgt),
                          emptied and not found and not np.isfinite(tgt),
                          root, nodes, settled, evals)

    def _paused(self) -> bool:
        return self.clock() >= self._until or (
            self._pause_at is not None and self.nodes + self.st[_NODES] >= self._pause_at)

    def _search(self) -> Generator[None, None, None]:
        """The rounds (GapBranchBound.solve's docstring); yields when `run` must pause."""
        bb, st, step, clock = self.bb, self.st, self.step, self.clock
        m, n = bb.m, bb.n
        C, A, D, K = bb.C, bb.A, self.D, self.K
        allowed0, slack, target, lower = self.allowed0, self.slack, self.target, self.lower
        T, took, trail, stack, lams, best = (self.T, self.took, self.trail, self.stack,
                                             self.lams, self.best)
        max_nodes = self.max_nodes
        base = target
        tail = TAIL_STEP if self.tail_step is None else self.tail_step
        rounds = 0
        chunk = 8
        team = self.workers > 1 and max_nodes is None
        while True:
            agent_of = np.full(n, -1, dtype=np.int64)
            allowed = allowed0.copy()
            rcap = bb.cap.copy()
            rload = np.full(m, K, dtype=np.int64)
            fixed = np.zeros(1)
            lams[0] = bb.lam
            stack[0] = (0, -1, -1, 0)
            st[_SP], st[_TP], st[_DONE], st[_ROOT] = 1, 0, 0, -np.inf
            st[_NODES] = st[_EVALS] = 0
            first = rounds == 0
            rounds += 1
            while max_nodes is None or self.nodes + st[_NODES] < max_nodes:
                if self._paused():
                    if team and st[_NODES] > 0:
                        break  # a team round cannot pause (its threads' nodes are gone)
                    yield
                    continue
                # The first round's root alone first: its bound sets the targets.
                t0 = clock()
                if team and st[_NODES] > 0:
                    # The round's root is done: its subtrees go to the team.
                    _Team(self.workers, C, A, D, bb.cap, K, allowed0, step, float(self.tgt),
                          T.shape, slack, bb, self.regret).run(
                              (agent_of, allowed, rcap, rload, fixed, trail, stack, lams, best,
                               st, T, took), self._until, clock)
                    break
                size = 1 if first or team else chunk
                if self._pause_at is not None:
                    size = max(1, min(size, self._pause_at - self.nodes - int(st[_NODES])))
                b0 = st[_BEST]
                _search(C, A, D, step, float(self.tgt), agent_of, allowed, rcap, rload,
                        fixed, trail, stack, lams, best, st, T, took, size,
                        self.root_iters if first else RESTART_ITERS,
                        NODE_ITERS, MU_ROOT if first else MU_RESTART, MU_NODE, STALL_ROOT,
                        STALL, LOOK, slack, bb.D, bb.kept_cost, bb.kept_plan,
                        EXCLUDE_GAP * step, EXCLUDE_TASKS, self.regret)
                if st[_BEST] < b0:
                    self.found += 1
                    self.found_at = clock()
                if not first:
                    # Calls of about CALL_S seconds: a fixed 64 nodes took up to 2 s of
                    # wall time on a starved process (nice 5, load 10), past the deadline.
                    dt = clock() - t0
                    if dt > CALL_S:
                        chunk = max(1, int(chunk * CALL_S / dt))
                    elif dt < 0.25 * CALL_S:
                        chunk = min(CHUNK, 2 * chunk)
                if np.any(lams[1] != 0):
                    # The root's multipliers open the next round and the next step.
                    bb.lam = lams[1].copy()
                if first:
                    first = False
                    root = max(self.root, float(st[_ROOT]))
                    self.root = root
                    start_at = (max(root, lower, self.guess) if np.isfinite(root)
                                else max(root, lower))
                    gap = (st[_BEST] if np.isfinite(st[_BEST]) else np.inf) - start_at
                    # (A root settled by propagation alone has no bound: no targets.)
                    if (self.raise_target and not np.isfinite(target)
                            and np.isfinite(start_at) and gap > RAISE_GAP * step):
                        self.tgt = base = bb._grid(start_at, step)
                if st[_DONE]:
                    break
            round_nodes = int(st[_NODES])
            self.nodes += round_nodes
            self.evals += int(st[_EVALS])
            st[_NODES] = st[_EVALS] = 0
            self.root = max(self.root, float(st[_ROOT]))
            self.emptied = emptied = bool(st[_DONE])
            tgt = self.tgt
            log.debug("K=%d round %d: target %s, %d nodes, best %s, emptied %s", K, rounds,
                      tgt, round_nodes, st[_BEST], emptied)
            if not emptied or tgt >= target or (np.isfinite(st[_BEST]) and st[_BEST] <= tgt):
                return
            # Nothing at most tgt: the optimum is at least tgt + step, so a plan costing
            # that ends the next round at once (from the looser cap's optimum as `lower`,
            # the second round then stops at the first plan one step above it).
            st[_LOW] = self.low = max(self.low,
                                      tgt + step + 1e-6 * max(1.0, abs(tgt + step)))
            # Raise the target: double its distance to the first one (the bound, or
            # `lower` when that is above it: doubling from the bound jumped from a
            # `lower` 5.7 steps above it to 11.4, a second full tree on d1080-s0, K=9).
            nxt = bb._grid(tgt + max(step, tgt - base), step)
            if self.split > 0 and np.isfinite(st[_BEST]):
                # (the `split` of the way to the incumbent: see GapBranchBound.solve)
                nxt = max(nxt, bb._grid(tgt + self.split * (st[_BEST] - tgt), step))
            if tail and nxt >= st[_BEST] - step:
                nxt = bb._grid(tgt + step, step)
                tail = False
            self.tgt = nxt if nxt < min(st[_BEST] - step, bb.most) else target


class _Worker:
    """One thread's part of a round's tree: the kernel's arrays for the nodes it holds."""

    def __init__(self, arrays: tuple[np.ndarray, ...]):
        (self.agent_of, self.allowed, self.rcap, self.rload, self.fixed, self.trail,
         self.stack, self.lams, self.best, self.st, self.T, self.took) = arrays
        self.chunk = 8

    def call(self, tm: _Team) -> None:
        _search(tm.C, tm.A, tm.D, tm.step, tm.tgt, self.agent_of, self.allowed, self.rcap,
                self.rload, self.fixed, self.trail, self.stack, self.lams, self.best,
                self.st, self.T, self.took, self.chunk, RESTART_ITERS, NODE_ITERS,
                MU_RESTART, MU_NODE, STALL_ROOT, STALL, LOOK, tm.slack, tm.Dm, tm.kept_cost,
                tm.kept_plan, EXCLUDE_GAP * tm.step, EXCLUDE_TASKS, tm.regret)

    def take_from(self, v: _Worker, tm: _Team) -> None:
        """Move v's shallowest open node (the bottom of its stack: the largest subtree
        left) to this worker, whose arrays become that node's parent's state: v's trail
        up to the node's mark, replayed on the step's initial state."""
        sp = int(v.st[_SP])
        e = v.stack[0].copy()
        v.stack[:sp - 1] = v.stack[1:sp].copy()
        v.st[_SP] = sp - 1
        mark, depth = int(e[0]), int(e[3])
        tr = v.trail[:mark]
        self.trail[:mark] = tr
        self.agent_of[:] = -1
        self.allowed[:] = tm.allowed0
        self.rcap[:] = tm.cap
        self.rload[:] = tm.K
        on = tr[tr[:, 0] == 1]
        ii, jj = on[:, 1], on[:, 2]
        self.agent_of[jj] = ii
        np.subtract.at(self.rcap, ii, tm.A[ii, jj])
        np.subtract.at(self.rload, ii, tm.D[ii, jj])
        self.fixed[0] = float(tm.C[ii, jj].sum())
        off = tr[tr[:, 0] == 0]
        self.allowed[off[:, 1], off[:, 2]] = False
        self.stack[0] = e
        self.lams[depth] = v.lams[depth]
        st = self.st
        st[_SP], st[_TP], st[_DONE] = 1, mark, 0
        st[_BEST], st[_LOW] = v.st[_BEST], v.st[_LOW]
        self.best[:] = v.best


class _Team:
    """A round's tree below its processed root, searched by several threads.

    A worker whose nodes are all done asks for more and waits; a worker with two or more
    open nodes hands its shallowest one to a waiting worker between its kernel calls (so
    no array is touched while the kernel runs), and the cheapest plan goes to every
    worker there too. The tree is emptied when every worker waits; the deadline or a
    plan at the lower bound ends the round early."""

    def __init__(self, workers: int, C: np.ndarray, A: np.ndarray, D: np.ndarray,
                 cap: np.ndarray, K: int, allowed0: np.ndarray, step: float, tgt: float,
                 shape: tuple[int, ...], slack: int, owner: GapBranchBound,
                 regret: bool = False):
        self.n_workers, self.C, self.A, self.D, self.cap, self.K = workers, C, A, D, cap, K
        self.slack, self.regret = slack, regret
        # The plans met, shared by the threads (a torn write is caught by kept()'s check).
        self.Dm, self.kept_cost, self.kept_plan = owner.D, owner.kept_cost, owner.kept_plan
        self.allowed0, self.step, self.tgt, self.shape = allowed0, step, tgt, shape
        self.cond = threading.Condition()
        self.waiting: list[_Worker] = []
        self.over = False
        self.emptied = False
        self.error: BaseException | None = None
        self._all: list[_Worker] = []

    def _helper(self, like: _Worker) -> _Worker:
        m, n = self.C.shape
        w = _Worker((np.full(n, -1, dtype=np.int64), self.allowed0.copy(), self.cap.copy(),
                     np.full(m, self.K, dtype=np.int64), np.zeros(1), np.zeros_like(like.trail),
                     np.zeros_like(like.stack), np.zeros_like(like.lams),
                     like.best.copy(), like.st.copy(),
                     np.zeros(self.shape, dtype=like.T.dtype), np.zeros_like(like.took)))
        st = w.st
        st[_SP], st[_TP], st[_NODES], st[_EVALS], st[_DONE], st[_ROOT] = 0, 0, 0, 0, 0, -np.inf
        return w

    def run(self, arrays: tuple[np.ndarray, ...], deadline: float,
            clock: Callable[[], float]) -> None:
        """Search on from the primary's arrays (those of :meth:`GapBranchBound.solve`);
        on return they hold the round's outcome: the best plan, node and evaluation
        counts of all workers, and st[_DONE] when it was emptied."""
        main = _Worker(arrays)
        helpers = [self._helper(main) for _ in range(self.n_workers - 1)]
        self._all = [main, *helpers]
        threads = [threading.Thread(target=self._loop, args=(w, deadline, clock),
                                    daemon=True) for w in helpers]
        for t in threads:
            t.start()
        self._loop(main, deadline, clock)
        for t in threads:
            t.join()
        if self.error is not None:
            raise self.error
        st = main.st
        for w in helpers:
            st[_NODES] += w.st[_NODES]
            st[_EVALS] += w.st[_EVALS]
            if w.st[_BEST] < st[_BEST]:
                st[_BEST] = w.st[_BEST]
                main.best[:] = w.best
        st[_DONE] = 1.0 if self.emptied or st[_BEST] <= st[_LOW] else 0.0

    def _share(self, w: _Worker, workers: list[_Worker]) -> None:
        """(under the lock) The cheapest plan to w, and w's open nodes to waiting workers."""
        for v in workers:
            if v.st[_BEST] < w.st[_BEST]:
                w.st[_BEST] = v.st[_BEST]
                w.best[:] = v.best
        while self.waiting and w.st[_SP] >= 2:
            self.waiting.pop().take_from(w, self)
            self.cond.notify_all()

    def _loop(self, w: _Worker, deadline: float, clock: Callable[[], float]) -> None:
        try:
            self._work(w, deadline, clock)
        except BaseException as exc:  # re-raised by run() in the caller
            with self.cond:
                self.error = exc
                self.over = True
                self.cond.notify_all()

    def _work(self, w: _Worker, deadline: float, clock: Callable[[], float]) -> None:
        everyone = self._all
        while True:
            with self.cond:
                if self.over:
                    return
                self._share(w, everyone)
                if w.st[_BEST] <= w.st[_LOW] or clock() >= deadline:
                    self.over = True
                    self.cond.notify_all()
                    return
                if w.st[_SP] == 0:
                    self.waiting.append(w)
                    if len(self.waiting) == len(everyone):
                        self.over = self.emptied = True
                        self.cond.notify_all()
                        return
                    while w in self.waiting and not self.over and clock() < deadline:
                        self.cond.wait(CALL_S)
                    if w in self.waiting:
                        self.waiting.remove(w)
                    continue
            t0 = clock()
            w.call(self)
            dt = clock() - t0
            if dt > CALL_S:
                w.chunk = max(1, int(w.chunk * CALL_S / dt))
            elif dt < 0.25 * CALL_S:
                w.chunk = min(CHUNK, 2 * w.chunk)


def warm_up() -> None:
    """Solve a tiny step once, with every argument as `solve` passes them: loads numba's
    on-disk cache of the kernel or compiles it (10-30 s of CPU on a loaded machine)."""
    try:
        C = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, np.inf]])
        A = np.array([[1, 2, 1], [2, 1, 1]], dtype=np.int64)
        bb = GapBranchBound(C, A, np.array([3, 2], dtype=np.int64),
                            np.ones((2, 3), dtype=np.int64))
        import time

        bb.solve(2, None, step=1.0, deadline=time.perf_counter() + 3600.0,
                 clock=time.perf_counter)
        # The sweep's incumbent search before every tree (compiled too: a cold cache
        # compiled it inside the first timed front of the bench, 10 s late).
        from allocator.solvers.gap_tabu import tabu_search

        tabu_search(C, A, np.array([3, 2], dtype=np.int64), np.ones((2, 3), dtype=np.int64),
                    2.0, None, seed=0, iterations=10, deadline=time.perf_counter() + 3600.0,
                    clock=time.perf_counter)
        # ... and the knapsack table behind the Lagrangian's repair heuristic (its first
        # use compiled it inside the bench's first timed front too: 13-17 s for 10 s).
        from allocator.solvers.knapsack_lagrange import _knapsack2

        r = np.array([-1.0, -2.0])
        one = np.array([1, 1], dtype=np.int64)
        for want_x in (True, False):
            _knapsack2(r, one, one, np.array([0, 1], dtype=np.int64), 2, 2, want_x)
        # ... and the packed level's exact cover (allocator.solvers.gap_cover).
        from allocator.solvers.gap_cover import warm_up as cover_warm_up

        cover_warm_up()
        _WARM.mark_ready()
    except Exception:  # the sweep simply does without the search
        log.exception("gap_bb: warm-up failed")


def _warm_thread() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    warm_up()


_WARM = WarmUp(_warm_thread, "gap-bb-warm-up")


def bb_ready() -> bool:
    """Whether the compiled search can run now without compiling inside a solve.

    The first call starts the warm-up in a low-priority thread; until it is done the
    sweep uses its other methods, so a compile never eats a short budget (an exact
    front over the API with a 2 s limit gave no plan at all while it compiled).
    """
    return _WARM.ready()
