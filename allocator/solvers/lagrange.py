"""Lagrangian relaxation of the capacity rows: an LP-free bound, costs and incumbents.

Relaxing ``sum_j a[i,j,r] x[i,j] <= cap[i,r]`` with multipliers
``lam[i,r] >= 0`` leaves one independent choice per task: the agent with the
smallest *adjusted* cost ``c[i,j] + sum_r lam[i,r] a[i,j,r]`` (or leaving it
out at its penalty). So

    L(lam) = sum_j min(min_i adj[i,j], pen[j]) - sum_{i,r} lam[i,r] cap[i,r]

is a lower bound on the separable part of the objective for *every* lam
(load terms are >= 0 and the migration limit only restricts, so it is a
bound on the whole objective too), and its maximum over lam equals the LP
bound (the per-task sub-problem has the integrality property). Subgradient
steps reach a few hundredths of a per cent of it in a few hundred
vectorised [m, n] passes - no LP solver, no waiting for a root LP.

The multipliers also price capacity: a task's adjusted costs say where it is
cheap *and* light. The heuristic (Fisher; Jeet & Kutanoglu) takes each
task's best adjusted agent, repairs over-full agents by the shifts that cost
least per unit of excess removed, inserts what is left out where it fits,
and hands the result to the caller - typically local search next. Ties and
the few tasks the LP would split are what the repair decides.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from allocator.solvers.linear import LinearModel

#: Subgradient step factor at the start; halved after `_STALL` iterations without progress.
_MU0 = 2.0
_STALL = 12
_MU_MIN = 1e-4
#: The heuristic runs when the relaxed plan exceeds capacity by less than this share.
_HEUR_EXCESS = 0.03


def loaded_kernel() -> ModuleType | None:
    """`allocator.solvers.lagrange_kernel` once something has imported it completely
    (auto imports it in a background thread: a module still being imported is in
    sys.modules without its functions), else None; never imports it (importing numba
    would hold the GIL for ~0.3 s inside a short budget)."""
    kernel = sys.modules.get("allocator.solvers.lagrange_kernel")
    return kernel if getattr(kernel, "IMPORTED", False) else None


@dataclass
class LagrangeResult:
    """Best bound found, its multipliers, and the best feasible assignment built from them."""

    bound: float  # valid lower bound on the model's objective (-inf if none)
    lam: np.ndarray  # [m, R] multipliers of the best bound
    agent_of: np.ndarray | None  # best feasible assignment (may leave tasks out), or None
    objective: float  # its objective under the model (inf if none)
    iterations: int
    heuristics: int


class Lagrangian:
    """Dense [m, n] view of a LinearModel for the relaxation and its heuristic."""

    def __init__(self, lm: LinearModel) -> None:
        self.lm = lm
        m = lm.m
        self.S = lm.score[:m]  # [m, n] inf where ineligible
        self.pen = lm.pen
        rb = np.flatnonzero(lm.binding)
        self.rb = rb
        self.A = lm.demand[:m][:, :, rb]  # [m, n, Rb]
        self.cap = lm.cap[:, rb]  # [m, Rb]
        self.ar = np.arange(lm.n)

    def adjusted(self, lam: np.ndarray) -> np.ndarray:
        if self.rb.size == 1:
            return self.S + lam[:, 0][:, None] * self.A[:, :, 0]
        return self.S + np.einsum("ir,ijr->ij", lam, self.A)

    def used(self, agent_of: np.ndarray) -> np.ndarray:
        out = np.zeros_like(self.cap)
        on = np.flatnonzero(agent_of >= 0)
        np.add.at(out, agent_of[on], self.A[agent_of[on], on])
        return out

    def value(self, lam: np.ndarray) -> float:
        """L(lam) (see module docstring)."""
        adj = self.adjusted(lam)
        return float(np.minimum(adj.min(axis=0), self.pen).sum() - (lam * self.cap).sum())

    def uniform_start(self) -> np.ndarray:
        """The best *uniform* price per unit of relative capacity use (1-D concave search).

        lam[i, r] = s / cap[i, r]; L is concave in s, so doubling then a
        golden-section search finds its maximum in ~30 vectorised passes, which
        saves the subgradient the ~150 iterations it needs to climb from zero
        on tight instances.
        """
        m, R = self.cap.shape
        unit = 1.0 / np.where(self.cap > 0, self.cap, np.inf)  # [m, R]

        def f(sv: float) -> float:
            return self.value(sv * unit)

        fin = self.S[np.isfinite(self.S)]
        if fin.size == 0:
            return np.zeros((m, R))
        # Scale: a typical cost per unit of capacity share.
        lo, s = 0.0, max(float(np.abs(fin).mean()), 1e-9)
        f0, fs = f(0.0), f(s)
        if fs <= f0:
            hi = s
        else:
            prev = fs
            hi = 2.0 * s
            for _ in range(40):
                fh = f(hi)
                if fh <= prev:
                    break
                lo, prev, hi = hi / 2.0, fh, hi * 2.0
        g = (np.sqrt(5.0) - 1.0) / 2.0
        a, b = lo, hi
        c, d = b - g * (b - a), a + g * (b - a)
        fc, fd = f(c), f(d)
        for _ in range(25):
            if fc >= fd:
                b, d, fd = d, c, fc
                c = b - g * (b - a)
                fc = f(c)
            else:
                a, c, fc = c, d, fd
                d = a + g * (b - a)
                fd = f(d)
        best = c if fc >= fd else d
        return best * np.where(np.isfinite(unit), unit, 0.0)

    # -- the heuristic ------------------------------------------------------

    def repair(self, adj: np.ndarray, agent_of: np.ndarray) -> np.ndarray:
        """Make `agent_of` capacity-feasible: cheapest shifts per unit of excess, then eject.

        Moves tasks off over-full agents to agents with room, choosing per
        round for every over-full agent the shift with the least adjusted
        cost increase per unit of relief; when no task of an over-full agent
        fits anywhere, the one relieving most per unit of its own adjusted cost
        is left out (for :meth:`insert` and local search to place).
        """
        agent_of = agent_of.copy()
        A, cap = self.A, self.cap
        used = self.used(agent_of)
        safe_cap = np.where(cap > 0, cap, 1.0)

        def state() -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
            """(excess [m, R], tasks on over-full agents, their agents); None: all fit."""
            excess = used - cap
            over = np.any(excess > 0, axis=1)
            if not over.any():
                return None
            js = np.flatnonzero((agent_of >= 0) & over[np.maximum(agent_of, 0)])
            return excess, js, agent_of[js]

        def relief_of(excess: np.ndarray, js: np.ndarray, src: np.ndarray) -> np.ndarray:
            """[|js|] the share of its agent's excess each task's leaving removes."""
            return (np.minimum(A[src, js], np.maximum(excess[src], 0.0))
                    / safe_cap[src]).sum(axis=1)

        rounds = 0
        while rounds <= self.lm.n:
            rounds += 1
            st = state()
            if st is None:
                break
            excess, js, src = st
            fits = np.all(used[:, None, :] + A[:, js, :] <= cap[:, None, :], axis=2)  # [m, |js|]
            delta = adj[:, js] - adj[src, js][None, :]
            relief = relief_of(excess, js, src)
            score = np.where(fits & np.isfinite(delta),
                             (np.maximum(delta, 0.0) + 1e-9) / np.maximum(relief, 1e-12)[None, :],
                             np.inf)
            best_k = np.argmin(score, axis=0)  # [|js|] best target per task
            best_v = score[best_k, np.arange(js.size)]
            moved = False
            # One move per over-full agent per round, best first, re-checked.
            order = np.argsort(best_v)
            done_src = np.zeros(self.lm.m, dtype=bool)
            for t in order:
                if not np.isfinite(best_v[t]):
                    break
                j, a, b = int(js[t]), int(src[t]), int(best_k[t])
                if done_src[a] or np.any(used[b] + A[b, j] > cap[b]):
                    continue
                used[a] -= A[a, j]
                used[b] += A[b, j]
                agent_of[j] = b
                done_src[a] = True
                moved = True
            if moved:
                continue
            # Nothing fits anywhere: leave out one task of the most over-full agent,
            # and again while that round's shifts stay impossible. Only agent a's
            # room changed, so a round would move something only onto a: while no
            # task of an over-full agent fits there, the next round is another
            # leave-out (1,000 tasks too many: 1,000 rounds of an [m, tasks] check,
            # 1.5 s a repair at 100 x 2,000, now one check each).
            while True:
                rel_excess = (np.maximum(excess, 0.0) / safe_cap).sum(axis=1)
                a = int(np.argmax(rel_excess))
                on_a = js[src == a]
                cost = np.abs(adj[a, on_a]) + 1e-9
                j = int(on_a[np.argmax(relief[src == a] / cost)])
                used[a] -= A[a, j]
                agent_of[j] = -1
                if rounds > self.lm.n:
                    break
                st = state()
                if st is None:
                    break
                excess, js, src = st
                onto_a = (np.all(used[a] + A[a, js] <= cap[a], axis=1)
                          & np.isfinite(adj[a, js] - adj[src, js]))
                if onto_a.any():
                    break  # a full round: a shift onto a may be best
                relief = relief_of(excess, js, src)
                rounds += 1
        return agent_of

    def insert(self, adj: np.ndarray, agent_of: np.ndarray) -> np.ndarray:
        """Place left-out tasks where they fit, most constrained (fewest fits) first."""
        agent_of = agent_of.copy()
        left = np.flatnonzero(agent_of < 0)
        if left.size == 0:
            return agent_of
        used = self.used(agent_of)
        A, cap = self.A, self.cap
        while left.size:
            fits = np.all(used[:, None, :] + A[:, left, :] <= cap[:, None, :], axis=2)
            fits &= np.isfinite(adj[:, left])
            nfit = fits.sum(axis=0)
            ok = nfit > 0
            if not ok.any():
                break
            k = int(np.flatnonzero(ok)[np.argmin(nfit[ok])])
            j = int(left[k])
            i = int(np.argmin(np.where(fits[:, k], adj[:, j], np.inf)))
            if self.S[i, j] > self.pen[j]:
                left = np.delete(left, k)
                continue
            agent_of[j] = i
            used[i] += A[i, j]
            left = np.delete(left, k)
        return agent_of

    def greedy(self, score: np.ndarray) -> np.ndarray:
        """Static-regret greedy: tasks by decreasing regret of `score`, each to its best agent
        with room (Martello-Toth with a fixed order; O(n m) numpy, ~10 ms at 80 x 1600)."""
        m, n = self.S.shape
        A, cap = self.A, self.cap
        fin = np.where(np.isfinite(score), score, np.inf)
        if m >= 2:
            two = np.partition(fin, 1, axis=0)[:2]
            with np.errstate(invalid="ignore"):
                regret = np.where(np.isfinite(two[1]), two[1] - two[0], 1e30)
            regret = np.nan_to_num(regret, nan=0.0, posinf=1e30)
        else:
            regret = np.zeros(n)
        agent_of = np.full(n, -1, dtype=np.int64)
        free = cap.copy()
        fin_t = np.ascontiguousarray(fin.T)  # [n, m] rows per task: cache-friendly
        A_t = np.ascontiguousarray(A.transpose(1, 0, 2))  # [n, m, R]
        order = np.argsort(-regret, kind="stable")
        # The same loop compiled (~20 % of the construction's CPU in numpy), once a caller
        # has loaded the kernels (auto does where its budget holds the walk; importing numba
        # here would hold the GIL for ~0.3 s inside a short budget).
        kernel = loaded_kernel()
        if kernel is not None and kernel.HAVE_NUMBA and kernel.ready():
            return kernel.greedy_fill(order, fin_t, A_t, free,  # type: ignore[no-any-return]
                                      np.ascontiguousarray(self.S, dtype=np.float64),
                                      np.ascontiguousarray(self.pen, dtype=np.float64))
        for j in order.tolist():
            ok = np.all(A_t[j] <= free, axis=1)
            if not ok.any():
                continue
            row = np.where(ok, fin_t[j], np.inf)
            i = int(np.argmin(row))
            if not np.isfinite(row[i]) or self.S[i, j] > self.pen[j]:
                continue
            agent_of[j] = i
            free[i] -= A_t[j, i]
        return agent_of

    def feasibility_first(self) -> np.ndarray:
        """A complete plan where one is easy to find, without any multipliers.

        Desirability = the share of the agent's capacity the task takes, plus
        a small cost tie-break (Martello-Toth's a_ij / b_i criterion), so
        tight instances where cheap means heavy (type E) still place every
        task; left-outs then go where they fit.
        """
        safe = np.where(self.cap > 0, self.cap, 1.0)
        share = (self.A / safe[:, None, :]).max(axis=2, initial=0.0)
        fin = np.where(np.isfinite(self.S), self.S, np.nan)
        lo, hi = np.nanmin(fin) if np.isfinite(fin).any() else 0.0, np.nanmax(fin) if (
            np.isfinite(fin).any()) else 1.0
        span = max(hi - lo, 1e-12)
        fin_s = np.isfinite(self.S)
        norm_cost = np.where(fin_s, self.S, lo) - lo
        score = np.where(fin_s, share + 0.1 * norm_cost / span * (
            share.mean() if share.size else 1.0), np.inf)
        x = self.greedy(score)
        return self.insert(self.S, x)

    def heuristic(self, lam: np.ndarray, excess: float = 0.0) -> np.ndarray:
        """Feasible plan from multipliers: repair the relaxed plan when nearly feasible,
        else the regret greedy on the adjusted costs."""
        adj = self.adjusted(lam)
        if excess >= _HEUR_EXCESS:
            x = self.insert(adj, self.greedy(adj))
            if not np.any(x < 0):
                return x
            # The greedy left tasks out (tight, cheap-means-heavy instances):
            # the repair of the relaxed plan places them more often.
            y = self._repaired(adj)
            return y if self.lm.objective(y) < self.lm.objective(x) else x
        return self._repaired(adj)

    def _repaired(self, adj: np.ndarray) -> np.ndarray:
        best = np.argmin(adj, axis=0)
        v = adj[best, self.ar]
        agent_of = np.where(self.pen < v, -1, best).astype(np.int64)
        agent_of[~np.isfinite(v)] = -1
        agent_of = self.repair(adj, agent_of)
        return self.insert(adj, agent_of)


def lagrangian(
    lm: LinearModel,
    *,
    deadline: Callable[[], bool] | None = None,
    max_iter: int = 400,
    heuristic_every: int = 25,
    upper: float | None = None,
    on_incumbent: Callable[[np.ndarray, float], object] | None = None,
    improve: Callable[[np.ndarray], np.ndarray] | None = None,
) -> LagrangeResult:
    """Subgradient ascent on L(lam) with the Lagrangian heuristic run along the way.

    `upper`: objective of a known feasible plan (Polyak step target).
    `improve` post-processes each heuristic plan (e.g. a few local-search
    passes); `on_incumbent(agent_of, objective)` sees every improving one.
    Deterministic for a given iteration count (no randomness).
    """
    deadline = deadline or (lambda: False)
    m, n = lm.m, lm.n
    R = int(np.flatnonzero(lm.binding).size)
    if n == 0 or m == 0:
        return LagrangeResult(0.0, np.zeros((m, R)), None, np.inf, 0, 0)
    lg = Lagrangian(lm)
    lam = lg.uniform_start() if R else np.zeros((m, R))
    best_L, best_lam = -np.inf, lam.copy()
    best_x: np.ndarray | None = None
    best_obj = np.inf if upper is None else float(upper)
    ub_known = upper is not None
    mu, stall, heur, it = _MU0, 0, 0, 0
    last_heur_L = -np.inf
    for it in range(1, max_iter + 1):
        adj = lg.adjusted(lam) if R else lg.S
        choice = np.argmin(adj, axis=0)
        v = adj[choice, lg.ar]
        out = lg.pen < v
        L = float(np.minimum(v, lg.pen).sum() - (lam * lg.cap).sum())
        if best_L == -np.inf or best_L + 1e-12 * max(1.0, abs(best_L)) < L:
            best_L, best_lam, stall = L, lam.copy(), 0
        else:
            stall += 1
            if stall >= _STALL:
                mu, stall = mu / 2.0, 0
        if R == 0:
            break
        on = np.flatnonzero(~out)
        used = np.zeros_like(lg.cap)
        np.add.at(used, choice[on], lg.A[choice[on], on])
        g = used - lg.cap
        g = np.where((lam <= 0) & (g < 0), 0.0, g)
        if not np.any(g > 0) and np.all(np.abs(lam * (used - lg.cap)) <= 1e-9 * max(1.0, abs(L))):
            # Feasible and complementary: the relaxation's solution is optimal.
            x = np.where(out, -1, choice).astype(np.int64)
            if lm.feasible(x):
                obj = lm.objective(x)
                if obj < best_obj:
                    best_x, best_obj = x, obj
                    if on_incumbent is not None:
                        on_incumbent(x, obj)
            break
        # Repair suits a nearly feasible relaxed plan (a few moves); far from
        # it, the regret greedy on the adjusted costs is faster and better.
        excess = float(np.maximum(used - lg.cap, 0.0).sum() / max(lg.cap.sum(), 1e-12))
        stopping = deadline() or mu < _MU_MIN or it == max_iter
        # The first heuristic runs at once (from the uniform start): an
        # incumbent within a few per cent in tens of milliseconds.
        run_heur = (it % heuristic_every == 0 or stopping or it == 1) and best_L > last_heur_L
        if run_heur:
            last_heur_L = best_L
            heur += 1
            x = lg.heuristic(best_lam, excess)
            if improve is not None:
                x = improve(x)
            if lm.feasible(x):
                obj = lm.objective(x)
                if obj < best_obj - 1e-9 * max(1.0, abs(best_obj)) or (best_x is None
                                                                      and obj <= best_obj):
                    best_x, best_obj = x, obj
                    if not np.any(x < 0):
                        ub_known = True
                    if on_incumbent is not None:
                        on_incumbent(x, obj)
        if stopping:
            break
        norm = float((g * g).sum())
        if norm <= 0:
            break
        gap_target = max(0.02 * abs(best_L), 1.0)
        target = min(best_obj, best_L + gap_target) if ub_known else best_L + gap_target
        target = max(target, best_L + 1e-6 * max(1.0, abs(best_L)))
        step = mu * (target - L) / norm
        lam = np.maximum(0.0, lam + step * g)
    if R == 0:  # nothing binds: every task at its cheapest agent is optimal for the sum
        x = np.where(lg.pen < lg.S.min(axis=0), -1, np.argmin(lg.S, axis=0)).astype(np.int64)
        if lm.feasible(x) and lm.objective(x) < best_obj:
            best_x, best_obj = x, lm.objective(x)
            if on_incumbent is not None:
                on_incumbent(x, best_obj)
    if best_x is None and R:
        x = lg.heuristic(best_lam, 1.0)
        heur += 1
        if improve is not None:
            x = improve(x)
        if lm.feasible(x):
            best_x, best_obj = x, lm.objective(x)
            if on_incumbent is not None:
                on_incumbent(x, best_obj)
    return LagrangeResult(bound=best_L, lam=best_lam, agent_of=best_x, objective=best_obj,
                          iterations=it, heuristics=heur)
