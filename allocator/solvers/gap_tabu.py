"""Compiled tabu search with strategic oscillation for one cost step of the sweep.

A cost step (min cost with every agent's resource use within capacity and
its busy time within a makespan cap K) is a generalised assignment problem
with a second knapsack row per agent. On generated type D and E instances
HiGHS needs 10 s to several minutes for one such step's optimum, which is
why a 10 s front missed levels by a few cost units (and a few units are most
of the hypervolume of a front whose cost range is 7 to 40). Tabu search that
may leave the capacities (Diaz & Fernandez 2001; Yagiura et al.'s
oscillation) finds these optima in a fraction of a second when compiled:

* moves: shift one task to another agent, swap the agents of two tasks;
* score: cost + alpha * capacity excess + beta * load excess; alpha and
  beta grow while the current assignment breaks their row and shrink while
  it keeps it, so the search oscillates across the feasibility border;
* tabu: a task may not go back to an agent it left for 5-14 iterations,
  unless the move gives a feasible plan better than the best;
* after `stall` iterations without a new best, restart from the best with a
  few random shifts.

The kernel runs in chunks of iterations (state kept in arrays) so the caller
can watch a clock; with the same seed and iteration count the result is the
same. Without numba the functions run as plain Python (correct, slow) and
:data:`HAVE_NUMBA` tells callers to skip them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from allocator.jit import HAVE_NUMBA as HAVE_NUMBA
from allocator.jit import njit as _njit

#: Iterations without a new best before a restart from the best plan.
STALL = 3000
#: Random shifts applied at a restart.
KICK = 4
#: Factor of the penalty weights per iteration.
GROW = 1.1
#: Range of the penalty weights, relative to cost per unit of resource (load).
LOW, HIGH = 1e-3, 1e3
#: Iterations per kernel call (a chunk: about 20-60 ms on 8x60).
CHUNK = 2000


@_njit(cache=True, nogil=True)
def _excess(v: float, limit: float) -> float:
    return v - limit if v > limit else 0.0


@_njit(cache=True, nogil=True)
def _kernel(C: np.ndarray, A: np.ndarray, cap: np.ndarray, D: np.ndarray, K: float,
            a: np.ndarray, best: np.ndarray, tabu: np.ndarray, st: np.ndarray,
            iters: int, stall: int, kick: int) -> None:
    """`iters` iterations from assignment `a`; `best` holds the best feasible plan.

    st = [iteration, alpha, beta, best cost (inf: none), last improvement, rng seed].
    """
    m, n = C.shape
    np.random.seed(np.int64(st[5]))
    used = np.zeros(m)
    load = np.zeros(m)
    cost = 0.0
    for j in range(n):
        used[a[j]] += A[a[j], j]
        load[a[j]] += D[a[j], j]
        cost += C[a[j], j]
    it0 = int(st[0])
    alpha, beta, bcost, last = st[1], st[2], st[3], int(st[4])
    for it in range(it0, it0 + iters):
        # Restart from the best after a stall.
        if it - last > stall and bcost < np.inf:
            for j in range(n):
                a[j] = best[j]
            for _ in range(kick):
                j = np.random.randint(n)
                i = np.random.randint(m)
                if np.isfinite(C[i, j]):
                    a[j] = i
            used[:] = 0.0
            load[:] = 0.0
            cost = 0.0
            for j in range(n):
                used[a[j]] += A[a[j], j]
                load[a[j]] += D[a[j], j]
                cost += C[a[j], j]
            last = it
        bd = np.inf
        bj1 = -1
        bj2 = -1
        bk = -1
        nties = 0
        # Shifts.
        for j in range(n):
            i = a[j]
            oi = _excess(used[i] - A[i, j], cap[i]) - _excess(used[i], cap[i])
            li = _excess(load[i] - D[i, j], K) - _excess(load[i], K)
            for k in range(m):
                if k == i or not np.isfinite(C[k, j]):
                    continue
                dc = C[k, j] - C[i, j]
                ou = oi + _excess(used[k] + A[k, j], cap[k]) - _excess(used[k], cap[k])
                ol = li + _excess(load[k] + D[k, j], K) - _excess(load[k], K)
                d = dc + alpha * ou + beta * ol
                # Tabu unless it gives a feasible plan better than the best (aspiration).
                if tabu[k, j] > it and not (cost + dc < bcost - 1e-9 and _feasible_after(
                        used, load, cap, K, i, k, A[i, j], A[k, j], D[i, j], D[k, j])):
                    continue
                if d < bd - 1e-9:
                    bd, bj1, bj2, bk, nties = d, j, -1, k, 1
                elif d < bd + 1e-9:
                    nties += 1
                    if np.random.randint(nties) == 0:
                        bj1, bj2, bk = j, -1, k
        # Swaps.
        for j1 in range(n):
            i1 = a[j1]
            for j2 in range(j1 + 1, n):
                i2 = a[j2]
                if i1 == i2 or not (np.isfinite(C[i2, j1]) and np.isfinite(C[i1, j2])):
                    continue
                dc = C[i2, j1] + C[i1, j2] - C[i1, j1] - C[i2, j2]
                u1 = used[i1] - A[i1, j1] + A[i1, j2]
                u2 = used[i2] - A[i2, j2] + A[i2, j1]
                l1 = load[i1] - D[i1, j1] + D[i1, j2]
                l2 = load[i2] - D[i2, j2] + D[i2, j1]
                ou = (_excess(u1, cap[i1]) + _excess(u2, cap[i2])
                      - _excess(used[i1], cap[i1]) - _excess(used[i2], cap[i2]))
                ol = (_excess(l1, K) + _excess(l2, K)
                      - _excess(load[i1], K) - _excess(load[i2], K))
                d = dc + alpha * ou + beta * ol
                if (tabu[i2, j1] > it or tabu[i1, j2] > it) and not (
                        cost + dc < bcost - 1e-9
                        and _excess(u1, cap[i1]) + _excess(u2, cap[i2]) <= 0.0
                        and _excess(l1, K) + _excess(l2, K) <= 0.0
                        and _others_feasible(used, load, cap, K, i1, i2)):
                    continue
                if d < bd - 1e-9:
                    bd, bj1, bj2, bk, nties = d, j1, j2, -1, 1
                elif d < bd + 1e-9:
                    nties += 1
                    if np.random.randint(nties) == 0:
                        bj1, bj2, bk = j1, j2, -1
        if bj1 < 0:
            tabu[:, :] = 0
            continue
        if bj2 < 0:
            j, i, k = bj1, a[bj1], bk
            used[i] -= A[i, j]
            load[i] -= D[i, j]
            used[k] += A[k, j]
            load[k] += D[k, j]
            cost += C[k, j] - C[i, j]
            a[j] = k
            tabu[i, j] = it + 5 + np.random.randint(10)
        else:
            j1, j2 = bj1, bj2
            i1, i2 = a[j1], a[j2]
            used[i1] += A[i1, j2] - A[i1, j1]
            load[i1] += D[i1, j2] - D[i1, j1]
            used[i2] += A[i2, j1] - A[i2, j2]
            load[i2] += D[i2, j1] - D[i2, j2]
            cost += C[i2, j1] + C[i1, j2] - C[i1, j1] - C[i2, j2]
            a[j1] = i2
            a[j2] = i1
            tabu[i1, j1] = it + 5 + np.random.randint(10)
            tabu[i2, j2] = it + 5 + np.random.randint(10)
        over_u = False
        over_l = False
        for i in range(m):
            if used[i] > cap[i] + 1e-9:
                over_u = True
            if load[i] > K + 1e-9:
                over_l = True
        alpha = min(alpha * st[6], st[8]) if over_u else max(alpha / st[6], st[7])
        beta = min(beta * st[6], st[10]) if over_l else max(beta / st[6], st[9])
        if not over_u and not over_l and cost < bcost - 1e-9:
            bcost = cost
            last = it
            for j in range(n):
                best[j] = a[j]
    st[0] = it0 + iters
    st[1], st[2], st[3], st[4] = alpha, beta, bcost, last
    st[5] = np.random.randint(1 << 30)


@_njit(cache=True, nogil=True)
def _others_feasible(used: np.ndarray, load: np.ndarray, cap: np.ndarray, K: float,
                     i1: int, i2: int) -> bool:
    for i in range(used.shape[0]):
        if i != i1 and i != i2 and (used[i] > cap[i] + 1e-9 or load[i] > K + 1e-9):
            return False
    return True


@_njit(cache=True, nogil=True)
def _feasible_after(used: np.ndarray, load: np.ndarray, cap: np.ndarray, K: float,
                    i: int, k: int, ai: float, ak: float, di: float, dk: float) -> bool:
    for q in range(used.shape[0]):
        u = used[q]
        v = load[q]
        if q == i:
            u -= ai
            v -= di
        elif q == k:
            u += ak
            v += dk
        if u > cap[q] + 1e-9 or v > K + 1e-9:
            return False
    return True


@dataclass
class TabuResult:
    """Best feasible plan (None: none found), its cost, iterations run."""

    agent_of: np.ndarray | None
    cost: float
    iterations: int


def tabu_search(cost: np.ndarray, demand: np.ndarray, cap: np.ndarray, load: np.ndarray,
                K: float, start: np.ndarray | None, *, seed: int, iterations: int,
                deadline: float, clock: Callable[[], float]) -> TabuResult:
    """Least-cost plan found with every agent within `cap` (resource) and `K` (load).

    `cost` [m, n] is inf where a pair is not allowed; `start` any assignment
    (feasible or not; None: each task on its cheapest agent). Runs
    `iterations` iterations in chunks, stopping early at `deadline` on `clock`.
    """
    C = np.ascontiguousarray(cost, dtype=np.float64)
    m, n = C.shape
    A = np.ascontiguousarray(demand, dtype=np.float64)
    D = np.ascontiguousarray(load, dtype=np.float64)
    capf = np.ascontiguousarray(cap, dtype=np.float64)
    a = (np.argmin(C, axis=0) if start is None else np.asarray(start)).astype(np.int64).copy()
    best = a.copy()
    tabu = np.zeros((m, n), dtype=np.int64)
    fin = C[np.isfinite(C)]
    scale_c = float(np.abs(fin).mean()) if fin.size else 1.0
    scale_a = float(A[np.isfinite(C)].mean()) if fin.size else 1.0
    scale_d = float(D[np.isfinite(C)].mean()) if fin.size else 1.0
    al = scale_c / max(scale_a, 1e-9)
    be = scale_c / max(scale_d, 1e-9)
    st = np.array([0.0, al, be, np.inf, 0.0, float(seed % (1 << 30)), GROW,
                   al * LOW, al * HIGH, be * LOW, be * HIGH])
    ar = np.arange(n)
    if (np.all(np.isfinite(C[a, ar]))
            and np.all(np.bincount(a, weights=A[a, ar], minlength=m) <= capf + 1e-9)
            and np.all(np.bincount(a, weights=D[a, ar], minlength=m) <= K + 1e-9)):
        st[3] = float(C[a, ar].sum())
    done = 0
    while done < iterations and clock() < deadline:
        k = min(CHUNK, iterations - done)
        _kernel(C, A, capf, D, float(K), a, best, tabu, st, k, STALL, KICK)
        done += k
    if not np.isfinite(st[3]):
        return TabuResult(None, np.inf, done)
    return TabuResult(best.copy(), float(C[best, ar].sum()), done)

