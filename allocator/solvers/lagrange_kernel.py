"""Compiled inner loops of the Lagrangian construction (numba): its regret greedy and the
shift-pass polish of its plans.

Why: the construction of `auto` (allocator/solvers/lagrange.py) builds ~20 plans
from the multipliers and polishes each with a few shift passes. In numpy that
was 2-3 s of CPU at 80x1600 (a profile of type D: 60 % in the polish's
per-move Python, 20 % in the greedy's per-task loop), 5-9 s of wall time on a
machine at load 8-12, and the compiled penalty walk that does most of the
improving only starts after it. The plans themselves matter: the walk is
sensitive to its start (D 80x1600, walk alone for 6 s of CPU: 0.33 % above the
LP bound from the construction's plan, 0.50 % from a plan 0.3 points worse),
so the construction is made cheaper, not shorter.

Both loops make the same moves in the same order as their numpy versions
(:meth:`allocator.solvers.lagrange.Lagrangian.greedy`, the shift passes of
:func:`allocator.solvers.localsearch.local_search`); the one difference is
the order of equal-gain shifts within a pass (numpy's and numba's sorts break
ties differently), which is why deterministic solves keep the numpy polish.
The kernels load in a background thread (:data:`WARM`); until then callers use
the numpy versions.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from allocator.jit import HAVE_NUMBA as HAVE_NUMBA
from allocator.jit import WarmUp, nice_if_compiling
from allocator.jit import njit as _njit
from allocator.solvers.linear import LinearModel

log = logging.getLogger(__name__)


@_njit(inline="always")
def _fits(used: np.ndarray, D: np.ndarray, cap: np.ndarray, b: int, j: int) -> bool:
    """Whether task j fits on agent b beside `used` (every resource)."""
    for r in range(used.shape[1]):  # noqa: SIM110 (numba: no generator in all())
        if used[b, r] + D[b, j, r] > cap[b, r]:
            return False
    return True


@_njit(cache=True, nogil=True)
def greedy_fill(order: np.ndarray, fin_t: np.ndarray, A_t: np.ndarray, free: np.ndarray,
                S: np.ndarray, pen: np.ndarray) -> np.ndarray:
    """Tasks in `order`, each to its least-`fin_t` agent with room (first on ties), unless
    its cost there exceeds its penalty; `free` [m, R] is used up in place.

    fin_t [n, m] score per task (inf: not allowed), A_t [n, m, R] demand, S [m, n] cost."""
    n, m = fin_t.shape
    R = A_t.shape[2]
    agent_of = np.full(n, -1, dtype=np.int64)
    for t in range(order.shape[0]):
        j = order[t]
        bi = -1
        bv = np.inf
        for i in range(m):
            ok = True
            for r in range(R):
                if A_t[j, i, r] > free[i, r]:
                    ok = False
                    break
            if ok and fin_t[j, i] < bv:
                bv = fin_t[j, i]
                bi = i
        if bi < 0 or not bv < np.inf or S[bi, j] > pen[j]:
            continue
        agent_of[j] = bi
        for r in range(R):
            free[bi, r] -= A_t[j, bi, r]
    return agent_of


@_njit(cache=True, nogil=True)
def shift_polish(S: np.ndarray, D: np.ndarray, cap: np.ndarray, rows: np.ndarray,
                 max_passes: int, eps: float) -> int:
    """Shift passes on a plan within capacity, in place; returns the shifts made (-1: the
    plan was over capacity, left as it was).

    S [m+1, n] cost (inf: not allowed; row m: left out), D [m+1, n, R] demand,
    cap [m+1, R] (row m: inf), rows [n] agent per task (m: left out). A pass scores
    each task's best shift to an agent with room at the pass's start, then applies
    them best first while they still fit and gain more than `eps` x the objective;
    passes stop when one applies nothing."""
    m1, n = S.shape
    R = D.shape[2]
    used = np.zeros((m1, R))
    obj = 0.0
    for j in range(n):
        a = rows[j]
        obj += S[a, j]
        for r in range(R):
            used[a, r] += D[a, j, r]
    for i in range(m1):
        for r in range(R):
            if used[i, r] > cap[i, r]:
                return -1
    total = 0
    tot = np.empty(n)
    bs = np.empty(n, dtype=np.int64)
    for _p in range(max_passes):
        for j in range(n):
            a = rows[j]
            cur = S[a, j]
            bv = np.inf
            bb = 0
            for b in range(m1):
                if b == a:
                    continue
                if _fits(used, D, cap, b, j):
                    d = S[b, j] - cur
                    if d < bv:
                        bv = d
                        bb = b
            tot[j] = bv
            bs[j] = bb
        order = np.argsort(tot, kind="mergesort")
        applied = 0
        for t in range(n):
            j = order[t]
            if tot[j] >= -eps * max(1.0, abs(obj)):
                break
            b = bs[j]
            a = rows[j]
            if b == a or not S[b, j] < np.inf:
                continue
            if not _fits(used, D, cap, b, j):
                continue
            d = S[b, j] - S[a, j]
            if not d < -eps * max(1.0, abs(obj)):
                continue
            for r in range(R):
                used[a, r] -= D[a, j, r]
                used[b, r] += D[b, j, r]
            rows[j] = b
            obj += d
            applied += 1
        total += applied
        if applied == 0:
            break
    return total


def _warm_up() -> None:
    """Run both kernels once on a tiny model (loads numba's on-disk cache, or compiles:
    a compile runs at nice 10, a load at normal priority, as in gap_kernel).

    After the walk's kernel has loaded, not beside it: three solves at once on a busy
    machine got 1.4-1.9 s of CPU each in 10 s, and there a second loader thread beside
    the construction delayed its first plans by about a second."""
    from allocator.solvers.gap_kernel import kernel_ready

    for _ in range(600):  # up to a minute; a cold walk kernel compiles for 10-30 s
        if kernel_ready():
            break
        time.sleep(0.1)
    nice_if_compiling(__file__, "shift_polish")
    try:
        S = np.array([[1.0, 2.0], [2.0, 1.0], [9.0, 9.0]])
        D = np.ones((3, 2, 1))
        cap = np.array([[1.0], [1.0], [np.inf]])
        shift_polish(S, D, cap, np.array([1, 0], dtype=np.int64), 5, 1e-9)
        greedy_fill(np.array([0, 1], dtype=np.int64), np.ascontiguousarray(S[:2].T),
                    np.ascontiguousarray(D[:2].transpose(1, 0, 2)), cap[:2].copy(), S[:2],
                    np.array([9.0, 9.0]))
        WARM.mark_ready()
    except Exception:  # the construction simply keeps its numpy loops
        log.exception("lagrange_kernel: warm-up failed")


WARM = WarmUp(_warm_up, "lagrange-kernel-warm-up")


def ready() -> bool:
    """Whether the kernels run now without compiling (the first call starts loading them)."""
    return WARM.ready()


def polish(lm: LinearModel, agent_of: np.ndarray, max_passes: int = 5) -> np.ndarray | None:
    """`local_search(lm, agent_of, max_passes=max_passes, pairs=False)`, compiled: the same
    shifts (see the module docstring), or None where it does not apply - load terms or a
    migration limit in the model (the numpy search prices those), the kernels not loaded
    yet, or a plan over capacity."""
    if lm.has_load_terms or lm.max_migrations is not None or not ready():
        return None
    m = lm.m
    cap = np.vstack([lm.cap, np.full((1, lm.cap.shape[1]), np.inf)])
    rows = np.where(agent_of >= 0, agent_of, m).astype(np.int64)
    S = np.ascontiguousarray(lm.score, dtype=np.float64)
    D = np.ascontiguousarray(lm.demand, dtype=np.float64)
    if shift_polish(S, D, cap, rows, int(max_passes), 1e-9) < 0:
        return None
    return np.where(rows < m, rows, -1).astype(np.int64)


#: Set last: the module is completely imported (lagrange.loaded_kernel reads it, since
#: auto imports this module in a background thread).
IMPORTED = True
