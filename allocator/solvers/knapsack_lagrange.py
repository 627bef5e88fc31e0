"""Lagrangian bound of a min-cost assignment under capacity and a load cap (knapsack relaxation).

The exact front's cost-minimising steps are generalised assignment problems
with one extra knapsack row per agent: ``sum_j a[i,j] x[i,j] <= b[i]``
(the one binding resource) and ``sum_j d[i,j] x[i,j] <= K`` (the makespan
bound of an epsilon step, busy time in grid units). Relaxing the
assignment rows ``sum_i x[i,j] = 1`` with multipliers ``lam[j]`` leaves one
two-dimensional 0-1 knapsack per agent,

    L(lam) = sum_j lam[j] + sum_i min { sum_j (c[i,j] - lam[j]) x[i,j] : both rows of i },

solved exactly by dynamic programming over (capacity, load). Its maximum is
the Dantzig-Wolfe bound, which knows that an agent's tasks must fit *both*
rows at once; the LP relaxation HiGHS branches from does not (on generated
8x60 type-E GAP with makespan <= 9 the relaxation bound was 6159.4 against
the optimum 6160, so the bound alone proved the step, while HiGHS's own
bound had not closed the gap after 16 s).

The bound also fixes variables (Fisher's reduced-cost fixing): with the
final table ``T_i[c, k]`` of agent i, putting task j on i costs at least

    L - z_i + (c[i,j] - lam[j]) + T_i[b_i - a[i,j], K - d[i,j]]

(T may use j again, so this is a relaxation and still a bound). A pair whose
bound is not below the incumbent's cost minus one grid step cannot be in any
better solution, so the MILP that proves the step does not need it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from allocator.constraints import capacity_limit
from allocator.jit import HAVE_NUMBA as HAVE_NUMBA
from allocator.jit import njit as _njit
from allocator.problem import Problem
from allocator.solvers.linear import LinearModel

#: Largest (capacity + 1) x (load + 1) table per agent the dynamic programme builds.
MAX_TABLE = 60_000

#: Subgradient step factor at the start and its floor (Held-Karp, halved on stalls).
_MU0, _MU_MIN, _STALL = 2.0, 1e-4, 15


def _integral(values: np.ndarray, limit: int = 6) -> float | None:
    """Smallest power of ten making every value integral, or None."""
    v = np.abs(np.asarray(values, dtype=float))
    for p in range(limit + 1):
        s = v * 10.0**p
        if np.all(np.abs(s - np.round(s)) <= 1e-9 * np.maximum(1.0, s)):
            return 10.0**p
    return None


@dataclass
class LagrangeBound:
    """The best bound found, its multipliers and the pairs it rules out."""

    bound: float
    lam: np.ndarray  # [n]
    excluded: np.ndarray  # [m, n] pair cannot be in a solution cheaper than the incumbent
    iterations: int


class KnapsackLagrangian:
    """Dense [m, n] data of the relaxation; build with :meth:`of` (None when it does not apply)."""

    def __init__(self, cost: np.ndarray, eligible: np.ndarray, demand: np.ndarray,
                 cap: np.ndarray, load: np.ndarray | None, load_unit: float):
        self.C = np.where(eligible, cost, np.inf)
        self.elig = eligible
        self.A = demand.astype(np.int64)  # [m, n] scaled integral demand (0 off binding agents)
        self.cap = cap.astype(np.int64)  # [m]
        self.D = None if load is None else load.astype(np.int64)  # [m, n] load in grid units
        self.load_unit = load_unit
        self.m, self.n = cost.shape
        second = np.sort(self.C, axis=0)[min(1, self.m - 1)]
        best = self.C.min(axis=0)
        self.lam = np.where(np.isfinite(second), second, best)

    @classmethod
    def of(cls, problem: Problem, makespan_step: float | None) -> KnapsackLagrangian | None:
        """The relaxation of `problem`, or None unless it has at most one binding resource
        with integral demands, integral busy times (when `makespan_step` is given) and
        every task has an eligible agent."""
        m, n = problem.m, problem.n
        if n == 0 or not problem.eligible.any(axis=0).all():
            return None
        if not np.all(np.isfinite(problem.cost[problem.eligible])):
            return None
        dem = problem.demand if problem.demand_override else np.broadcast_to(
            problem.demand_base[None, :, :], (m, n, problem.n_resources))
        limit = capacity_limit(problem.capacity)
        tot = np.where(problem.eligible[:, :, None], dem, 0.0).sum(axis=1)  # [m, R]
        binding = tot > limit
        rs = np.flatnonzero(binding.any(axis=0))
        if rs.size > 1:
            return None
        A = np.zeros((m, n))
        cap = np.zeros(m)
        if rs.size == 1:
            r = int(rs[0])
            scale = _integral(np.concatenate([dem[:, :, r][problem.eligible]]))
            if scale is None:
                return None
            on = binding[:, r]
            A[on] = np.round(dem[on, :, r] * scale)
            cap[on] = np.floor(limit[on, r] * scale + 1e-9)
            A[~problem.eligible] = 0
        D = None
        if makespan_step is not None:
            busy = problem.duration / problem.concurrency[:, None]
            Dv = busy / makespan_step
            if np.any(np.abs(Dv[problem.eligible] - np.round(Dv[problem.eligible])) > 1e-6):
                return None
            D = np.where(problem.eligible, np.round(Dv), 0)
        if float((cap.max() + 1) * (1 + (0 if D is None else D.sum(axis=1).max()))) > 1e12:
            return None
        return cls(problem.cost, problem.eligible, A, cap, D, makespan_step or 1.0)

    @property
    def loads(self) -> np.ndarray:
        """[m, n] load in grid units, zeros when there is no makespan (the kernels' form)."""
        return self.D if self.D is not None else np.zeros_like(self.A)

    def load_units(self, eps: float) -> int | None:
        """The load cap `eps` in grid units (None: no cap)."""
        if self.D is None or not np.isfinite(eps):
            return None
        return int(np.floor(eps / self.load_unit + 1e-9))

    def fits(self, K: int | None) -> bool:
        """Whether the tables for load cap K stay within MAX_TABLE cells per agent."""
        k = 1 if K is None else K + 1
        return bool((self.cap.max() + 1) * k <= MAX_TABLE)

    def cost(self, agent_of: np.ndarray) -> float:
        return float(self.C[agent_of, np.arange(self.n)].sum())

    def _agent(self, i: int, r: np.ndarray, K: int | None, want_x: bool
               ) -> tuple[np.ndarray, list[int]]:
        """Final DP table of agent i for reduced costs r, and the chosen tasks if asked."""
        cap = int(self.cap[i])
        kk = 0 if K is None else K
        a = self.A[i]
        d = self.D[i] if (self.D is not None and K is not None) else np.zeros(self.n, np.int64)
        items = np.flatnonzero((r < 0) & (a <= cap) & (d <= kk))
        if HAVE_NUMBA:
            T, x = _knapsack2(np.ascontiguousarray(r, dtype=np.float64), a, d, items, cap, kk,
                              want_x)
            return T, np.flatnonzero(x).tolist()
        T = np.zeros((cap + 1, kk + 1))
        took: list[np.ndarray] = []
        for j in items.tolist():
            aj, dj = int(a[j]), int(d[j])
            src = T[: cap + 1 - aj, : kk + 1 - dj] + r[j]
            dst = T[aj:, dj:]
            if want_x:
                took.append(src < dst)
            np.minimum(dst, src, out=dst)
        chosen: list[int] = []
        if want_x:
            c, k = cap, kk
            for t in range(len(took) - 1, -1, -1):
                j = int(items[t])
                aj, dj = int(a[j]), int(d[j])
                if c >= aj and k >= dj and took[t][c - aj, k - dj]:
                    chosen.append(j)
                    c -= aj
                    k -= dj
        return T, chosen

    def value(self, lam: np.ndarray, K: int | None, want_x: bool = True
              ) -> tuple[float, np.ndarray, list[np.ndarray]]:
        """L(lam), the relaxed x [m, n] and each agent's final table."""
        R = self.C - lam[None, :]
        total = float(lam.sum())
        X = np.zeros((self.m, self.n))
        tables = []
        for i in range(self.m):
            T, chosen = self._agent(i, R[i], K, want_x)
            total += float(T[-1, -1])
            X[i, chosen] = 1.0
            tables.append(T)
        return total, X, tables

    def forced_bounds(self, lam: np.ndarray, K: int | None) -> tuple[float, np.ndarray]:
        """(L(lam), [m, n] lower bound on the cost of any plan putting j on i; inf if none)."""
        L, _, tables = self.value(lam, K, want_x=False)
        R = self.C - lam[None, :]
        out = np.full((self.m, self.n), np.inf)
        kk = 0 if K is None else K
        for i in range(self.m):
            T = tables[i]
            zi = float(T[-1, -1])
            cap = int(self.cap[i])
            a = self.A[i]
            d = self.D[i] if (self.D is not None and K is not None) else np.zeros(self.n, np.int64)
            js = np.flatnonzero(self.elig[i] & (a <= cap) & (d <= kk))
            out[i, js] = L - zi + R[i, js] + T[cap - a[js], kk - d[js]]
        return L, out

    def excluded(self, lam: np.ndarray, K: int | None, threshold: float
                 ) -> tuple[float, np.ndarray]:
        """(L(lam), pairs whose forced-in bound exceeds `threshold`)."""
        val, bounds = self.forced_bounds(lam, K)
        return val, bounds > threshold

    def bound(self, K: int | None, ub: float, step: float, *, deadline: float,
              clock: object, max_iter: int = 600) -> LagrangeBound:
        """Subgradient ascent from the stored multipliers until the bound proves `ub`
        (is above ``ub - step``), stalls, or `deadline` (on `clock`) passes."""
        lam = self.lam.copy()
        best, best_lam = -np.inf, lam.copy()
        mu, stall, it = _MU0, 0, 0
        tol = 1e-6 * max(1.0, abs(ub))
        target = ub if np.isfinite(ub) else None
        for it in range(1, max_iter + 1):  # noqa: B007  (the count is returned)
            val, X, _ = self.value(lam, K)
            if val > best + 1e-9:
                best, best_lam, stall = val, lam.copy(), 0
            else:
                stall += 1
                if stall >= _STALL:
                    mu, stall = mu / 2.0, 0
            if best > ub - step + tol or mu < _MU_MIN or clock() >= deadline:  # type: ignore[operator]
                break
            s = 1.0 - X.sum(axis=0)
            norm = float(s @ s)
            if norm == 0.0:  # the relaxed choice is an assignment: L is optimal
                break
            gap = (target - val) if target is not None else max(1.0, 0.01 * abs(val))
            lam = lam + mu * max(gap, 1e-3 * max(1.0, abs(val))) / norm * s
        self.lam = best_lam
        L, ex = self.excluded(best_lam, K, ub - step + tol)
        return LagrangeBound(max(best, L), best_lam, ex, it)

    # -- incumbents ------------------------------------------------------------------

    def _usage(self, agent_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ar = np.arange(self.n)
        used = np.bincount(agent_of, weights=self.A[agent_of, ar], minlength=self.m)
        load = (np.zeros(self.m) if self.D is None else
                np.bincount(agent_of, weights=self.D[agent_of, ar], minlength=self.m))
        return used, load

    def feasible(self, agent_of: np.ndarray, K: int | None) -> bool:
        """Every task on an eligible agent, within capacity and the load cap."""
        if np.any(agent_of < 0) or not np.all(self.elig[agent_of, np.arange(self.n)]):
            return False
        used, load = self._usage(agent_of)
        return bool(np.all(used <= self.cap) and (K is None or np.all(load <= K)))

    def heuristic(self, lam: np.ndarray, K: int | None) -> np.ndarray | None:
        """An assignment from the relaxed choice at `lam`: a task chosen by several agents
        stays with the cheapest, one chosen by none goes where it fits most cheaply
        (largest demand first). None when some task fits nowhere."""
        _, X, _ = self.value(lam, K)
        C = np.where(X > 0, self.C, np.inf)
        agent_of = np.where(X.any(axis=0), np.argmin(C, axis=0), -1)
        used, load = self._usage(np.where(agent_of >= 0, agent_of, 0))
        # _usage counted the unplaced tasks on agent 0: take them back out.
        for j in np.flatnonzero(agent_of < 0).tolist():
            used[0] -= self.A[0, j]
            if self.D is not None:
                load[0] -= self.D[0, j]
        kk = np.inf if K is None else K
        D = np.zeros((self.m, self.n)) if self.D is None else self.D
        R = self.C - lam[None, :]

        def fits(i: np.ndarray | int, j: int) -> np.ndarray:
            return self.elig[i, j] & (used[i] + self.A[i, j] <= self.cap[i]) & (
                load[i] + D[i, j] <= kk)

        left = np.flatnonzero(agent_of < 0)
        every = np.arange(self.m)
        for j in left[np.argsort(-self.A[:, left].max(axis=0), kind="stable")].tolist():
            ok = fits(every, j)
            if ok.any():
                i = int(np.flatnonzero(ok)[np.argmin(R[ok, j])])
            else:  # eject one task from an agent to another that has room, then fit j
                move = None
                for i in np.flatnonzero(self.elig[:, j])[np.argsort(R[self.elig[:, j], j])]:
                    for t in np.flatnonzero(agent_of == i).tolist():
                        used[i] -= self.A[i, t]
                        load[i] -= D[i, t]
                        if fits(int(i), j):
                            dest = np.flatnonzero(fits(every, t) & (every != i))
                            if dest.size:
                                move = (int(i), t, int(dest[np.argmin(R[dest, t])]))
                        used[i] += self.A[i, t]
                        load[i] += D[i, t]
                        if move:
                            break
                    if move:
                        break
                if move is None:
                    return None
                i, t, k = move
                agent_of[t] = k
                used[i] -= self.A[i, t]
                load[i] -= D[i, t]
                used[k] += self.A[k, t]
                load[k] += D[k, t]
            agent_of[j] = i
            used[i] += self.A[i, j]
            load[i] += D[i, j]
        return agent_of.astype(np.int64)

    def tabu(self, agent_of: np.ndarray, K: int | None, *, iterations: int, seed: int,
             deadline: float, clock: object) -> np.ndarray:
        """Tabu search over shifts and swaps that keep capacity and the load cap; the best
        assignment seen. A moved task may not go back to its agent for a few iterations
        unless that gives a new best."""
        m, n = self.m, self.n
        rng = np.random.default_rng(seed)
        a = agent_of.astype(np.int64).copy()
        ar = np.arange(n)
        used, load = self._usage(a)
        D = np.zeros((m, n)) if self.D is None else self.D.astype(float)
        kk = np.inf if K is None else float(K)
        A = self.A.astype(float)
        C = self.C
        cur = float(C[a, ar].sum())
        best, best_a = cur, a.copy()
        until = np.zeros((m, n), dtype=np.int64)
        for it in range(iterations):
            if it % 32 == 0 and clock() >= deadline:  # type: ignore[operator]
                break
            ca = C[a, ar]
            tab = until > it
            dS = C - ca[None, :]
            okS = self.elig & (used[:, None] + A <= self.cap[:, None]) & (load[:, None] + D <= kk)
            okS[a, ar] = False
            candS = np.where(okS & (~tab | (cur + dS < best - 1e-9)), dS, np.inf)
            Cx = C[a]  # [j1, j2] cost of j2 on j1's agent
            Ax = A[a]
            Dx = D[a]
            own_a = A[a, ar]
            own_d = D[a, ar]
            u1 = used[a][:, None] - own_a[:, None] + Ax  # j1's agent after the swap
            k1 = load[a][:, None] - own_d[:, None] + Dx
            ok = (u1 <= self.cap[a][:, None]) & (k1 <= kk) & np.isfinite(Cx)
            ok &= ok.T
            ok &= a[:, None] != a[None, :]
            dW = Cx + Cx.T - ca[:, None] - ca[None, :]
            tw = tab[a]  # [j1, j2]: j2 may not go to j1's agent
            tabW = tw | tw.T
            candW = np.where(ok & (~tabW | (cur + dW < best - 1e-9)), dW, np.inf)
            bs, bw = float(candS.min()), float(candW.min())
            if not np.isfinite(min(bs, bw)):
                break
            if bs <= bw:
                flat = np.flatnonzero(candS == bs)
                i, j = divmod(int(flat[rng.integers(flat.size)]), n)
                o = int(a[j])
                until[o, j] = it + int(rng.integers(5, 12))
                used[o] -= A[o, j]
                load[o] -= D[o, j]
                used[i] += A[i, j]
                load[i] += D[i, j]
                a[j] = i
                cur += bs
            else:
                flat = np.flatnonzero(candW == bw)
                j1, j2 = divmod(int(flat[rng.integers(flat.size)]), n)
                i1, i2 = int(a[j1]), int(a[j2])
                until[i1, j1] = it + int(rng.integers(5, 12))
                until[i2, j2] = it + int(rng.integers(5, 12))
                used[i1] += A[i1, j2] - A[i1, j1]
                used[i2] += A[i2, j1] - A[i2, j2]
                load[i1] += D[i1, j2] - D[i1, j1]
                load[i2] += D[i2, j1] - D[i2, j2]
                a[j1], a[j2] = i2, i1
                cur += bw
            if cur < best - 1e-9:
                best, best_a = cur, a.copy()
        return best_a


@_njit(cache=True, nogil=True)
def _knapsack2(r: np.ndarray, a: np.ndarray, d: np.ndarray, items: np.ndarray, cap: int,
               kk: int, want_x: bool) -> tuple[np.ndarray, np.ndarray]:
    """The two-row 0-1 knapsack table of one agent (min sum r over the chosen items, every
    cell [c, k] a capacity and load budget) and, if asked, the chosen items of [cap, kk].

    Compiled: in numpy this table was 40 % of a branch-and-price node's time (1 ms an
    agent on 8x60 type D). Same recursion and tie rule (take an item only when strictly
    better) as the numpy loop in :meth:`KnapsackLagrangian._agent`.
    """
    T = np.zeros((cap + 1, kk + 1))
    nt = items.shape[0]
    took = np.zeros((nt if want_x else 1, cap + 1, kk + 1), dtype=np.bool_)
    for t in range(nt):
        j = items[t]
        aj = a[j]
        dj = d[j]
        rj = r[j]
        for c in range(cap, aj - 1, -1):
            for k in range(kk, dj - 1, -1):
                v = T[c - aj, k - dj] + rj
                if v < T[c, k]:
                    T[c, k] = v
                    if want_x:
                        took[t, c, k] = True
    x = np.zeros(r.shape[0], dtype=np.bool_)
    if want_x:
        c = cap
        k = kk
        for t in range(nt - 1, -1, -1):
            j = items[t]
            if c >= a[j] and k >= d[j] and took[t, c, k]:
                x[j] = True
                c -= a[j]
                k -= d[j]
    return T, x


def assignment_bound(lm: LinearModel, lam0: np.ndarray | None, *, time_limit: float,
                     max_iter: int = 400, clock: Callable[[], float] = time.perf_counter
                     ) -> float | None:
    """Lower bound on the assignment model's objective from relaxing the assignment rows
    (one 0-1 knapsack per agent), or None where it does not apply.

    ``L(lam) = sum_j min(lam_j, pen_j) + sum_i min { sum_j (c_ij - lam_j) x_ij :
    sum_j a_ij x_ij <= b_i }`` (pen_j: the cost of leaving j out) is below the optimum
    for every lam (weak duality). The LP relaxation is the same with fractional
    knapsacks, so from the LP's task duals `lam0` the value is at least the LP bound,
    and subgradient steps raise it: on generated C 20x400 +0.17 %, C 40x800 +0.08 %,
    E +0.03-0.04 %, D 20x400 +0.03 % of the LP bound (the LP bound counts a fraction
    of a task into each agent's last free capacity; the knapsacks cannot). Applies to
    separable models (no load terms, no migration limit) with at most one binding
    resource and integral demands (scaled by a power of ten); each iteration costs
    one dynamic programme per agent over its capacity (~1 s at D 80x1600, so this is
    for benchmarks and offline use).
    """
    if lm.has_load_terms or lm.max_migrations is not None or lm.n == 0:
        return None
    m, n = lm.m, lm.n
    rs = np.flatnonzero(lm.binding)
    if rs.size != 1:
        return None
    r = int(rs[0])
    cost = lm.score[:m]
    elig = np.isfinite(cost)
    dem = lm.demand[:m, :, r]
    scale = _integral(dem[elig]) if elig.any() else 1.0
    if scale is None:
        return None
    tot = np.where(elig, dem, 0.0).sum(axis=1)
    on = tot > lm.cap[:, r]  # agents whose capacity can bind
    A = np.zeros((m, n))
    cap = np.zeros(m)
    A[on] = np.round(np.where(elig[on], dem[on], 0.0) * scale)
    # every plan within lm.cap uses at most floor(cap) scaled units (demands integral)
    cap[on] = np.floor(lm.cap[on, r] * scale + 1e-9)
    if float(cap.max(initial=0.0)) + 1 > 5e6:
        return None
    kl = KnapsackLagrangian(np.where(elig, cost, 0.0), elig, A, cap, None, 1.0)
    pen = lm.score[m]
    lam = np.asarray(lam0, dtype=np.float64).copy() if lam0 is not None else kl.lam.copy()

    def value(lam: np.ndarray) -> tuple[float, np.ndarray]:
        total, X, _ = kl.value(lam, None)
        out = pen < lam  # leaving j out pays pen_j instead of lam_j
        return total + float(np.where(out, pen - lam, 0.0).sum()), 1.0 - X.sum(axis=0) - out

    end = clock() + time_limit
    best = -np.inf
    mu, stall = _MU0, 0
    for _ in range(max_iter):
        val, s = value(lam)
        if val > best + 1e-9 * max(1.0, abs(val)):
            best, stall = val, 0
        else:
            stall += 1
            if stall >= _STALL:
                mu, stall = mu / 2.0, 0
        norm = float(s @ s)
        if norm == 0.0 or mu < _MU_MIN or clock() >= end:
            break  # norm 0: the knapsacks' choice is an assignment, L is optimal
        target = best + max(3e-3 * abs(best), 1.0)
        lam = lam + mu * (target - val) / norm * s
    return best if np.isfinite(best) else None
