"""Branch-and-price for the exact front's cost steps (min cost under capacity and a load cap).

A cost step of the epsilon sweep is a generalised assignment problem with
two knapsack rows per agent: the one binding resource and the makespan cap
``K`` (busy time in grid units). On type-D GAP (cost anti-correlated with
resource use) HiGHS's LP bound is weak and its search does not close the gap
in a minute; the knapsack Lagrangian (the Dantzig-Wolfe bound) is stronger
but still about 0.3 % below the optimum, so bound-and-fix alone does not
prove a step either. This module branches on that bound (Savelsbergh 1997):

* master LP (HiGHS): one column per (agent, task set) that fits both of
  the agent's rows, ``sum cover = 1`` per task, ``sum columns <= 1`` per
  agent, and one artificial column per task priced far above any plan;
* pricing: the exact two-dimensional knapsack table of each agent
  (:class:`allocator.solvers.knapsack_lagrange.KnapsackLagrangian`), which
  also gives the Lagrangian bound ``sum pi + sum_i T_i[cap, K]`` at every
  iteration, so a node is pruned as soon as that bound reaches the
  incumbent, before the LP has converged;
* at a converged node, Fisher's reduced-cost fixing forbids every pair whose
  forced-in bound reaches the incumbent (in that subtree);
* branching on the pair (i, j) whose LP value is nearest 0.5, the
  ``x[i, j] = 1`` child first (depth first, so leaves and incumbents come
  early); a rounded LP solution at every node is tried as an incumbent.

A node is pruned when its bound exceeds the incumbent's cost minus one grid
step, so an empty tree proves the incumbent optimal. Columns are kept
across steps (a set that fits a cap fits every larger one), so a sweep's
later steps start from the earlier steps' columns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from allocator.solvers.gap_bb import StepResult
from allocator.solvers.knapsack_lagrange import KnapsackLagrangian
from allocator.solvers.linear import new_highs

#: Column-generation iterations per node at most (a node stops earlier when
#: no column prices out or the Lagrangian bound prunes it).
MAX_CG_ITER = 400

#: Drop columns unused for a while once the pool is larger than this (LP time
#: grows with the pool: 8 ms a solve at 5,000 columns on 8x60). At 1,000 the trees
#: ran 1.4x the nodes a second of 4,000 (d0860-s0, d1080-s0, 12-15 s each, load 6).
POOL_LIMIT = 1000

#: Agents a task keeps in the root's core MILP (those with the least forced-in bound).
CORE_AGENTS = 3


class GapBranchPrice:
    """Branch-and-price over the data of a :class:`KnapsackLagrangian`; one per sweep."""

    def __init__(self, lag: KnapsackLagrangian):
        self.lag = lag
        m, n = lag.m, lag.n
        self.m, self.n = m, n
        finite = lag.C[np.isfinite(lag.C)]
        span = float(np.abs(finite).max()) if finite.size else 1.0
        #: Artificial cover cost: above any plan's total.
        self.big = 1.0 + 2.0 * n * max(span, 1.0)
        h = new_highs()
        h.setOptionValue("output_flag", False)  # type: ignore[attr-defined]
        none_i = np.array([], dtype=np.int32)
        none_v = np.array([], dtype=float)
        h.addRows(n, np.ones(n), np.ones(n), 0, none_i, none_i, none_v)  # type: ignore[attr-defined]
        h.addRows(m, np.full(m, -np.inf), np.ones(m), 0, none_i, none_i,  # type: ignore[attr-defined]
                  none_v)
        for j in range(n):
            h.addCol(self.big, 0.0, np.inf, 1, np.array([j], dtype=np.int32),  # type: ignore[attr-defined]
                     np.array([1.0]))
        self.h = h
        self._agent = np.zeros(0, dtype=np.int64)  # [columns] agent of the column
        self._X = np.zeros((0, n), dtype=bool)  # [columns] tasks of the column
        self._load = np.zeros(0, dtype=np.int64)  # [columns] load units of the column
        self._cost = np.zeros(0)
        self._idle = np.zeros(0, dtype=np.int64)  # CG rounds since the column was in a basis
        self._size = 0
        self._pending: list[tuple[int, np.ndarray]] = []
        D = lag.D if lag.D is not None else np.zeros((m, n), dtype=np.int64)
        self._D = D.astype(np.int64)
        #: Forced-in bounds [m, n] of the last converged node (inf: forbidden).
        self.last_fb = np.full((m, n), np.inf)

    # -- column pool ------------------------------------------------------------------

    def _flush(self) -> None:
        """Add the pending columns to the pool and to HiGHS."""
        if not self._pending:
            return
        k = len(self._pending)
        need = self._size + k
        if need > self._X.shape[0]:
            cap = max(need, 2 * self._X.shape[0], 256)
            X = np.zeros((cap, self.n), dtype=bool)
            X[: self._size] = self._X[: self._size]
            self._X = X
            for name in ("_agent", "_load", "_idle"):
                arr = np.zeros(cap, dtype=np.int64)
                arr[: self._size] = getattr(self, name)[: self._size]
                setattr(self, name, arr)
            cost = np.zeros(cap)
            cost[: self._size] = self._cost[: self._size]
            self._cost = cost
        starts: list[int] = []
        index: list[int] = []
        costs: list[float] = []
        for q, (i, js) in enumerate(self._pending):
            s = self._size + q
            self._agent[s] = i
            self._X[s] = False
            self._X[s, js] = True
            self._load[s] = int(self._D[i, js].sum())
            self._cost[s] = float(self.lag.C[i, js].sum())
            self._idle[s] = 0
            starts.append(len(index))
            index.extend([*np.sort(js).tolist(), self.n + i])
            costs.append(self._cost[s])
        self.h.addCols(k, np.array(costs), np.zeros(k), np.full(k, np.inf),  # type: ignore[attr-defined]
                       len(index), np.array(starts, dtype=np.int32),
                       np.array(index, dtype=np.int32), np.ones(len(index)))
        self._size = need
        self._pending = []

    def _purge(self) -> None:
        """Drop the longest-idle columns (not in the current basis) past POOL_LIMIT."""
        if self._size <= POOL_LIMIT:
            return
        lam = np.asarray(self.h.getSolution().col_value)[self.n: self.n + self._size]  # type: ignore[attr-defined]
        idle = self._idle[: self._size]
        order = np.argsort(-idle, kind="stable")
        drop = order[: self._size - POOL_LIMIT // 2]
        drop = drop[lam[drop] <= 1e-9]
        if drop.size == 0:
            return
        keep = np.ones(self._size, dtype=bool)
        keep[drop] = False
        idx = np.sort(self.n + drop).astype(np.int32)
        self.h.deleteCols(int(idx.size), idx)  # type: ignore[attr-defined]
        k = int(keep.sum())
        for name in ("_agent", "_load", "_idle", "_cost"):
            arr = getattr(self, name)
            arr[:k] = arr[: self._size][keep]
        self._X[:k] = self._X[: self._size][keep]
        self._size = k

    # -- one node ---------------------------------------------------------------------

    def _node(self, forb: np.ndarray, K: int | None, cut: float,
              deadline: float, clock: Callable[[], float]
              ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """Column generation at a node: (bound, LP value x[m, n] or None if pruned, new forb).

        `cut`: a bound above it prunes the node. A node whose LP needs an
        artificial column is infeasible (bound inf). A node stopped by the
        deadline returns (nan, None, None).
        """
        lag, h, n, m = self.lag, self.h, self.n, self.m
        kk = 0 if K is None else K
        best_l = -np.inf
        tables: list[np.ndarray] = []
        R = np.where(forb, np.inf, lag.C)
        for it in range(MAX_CG_ITER):
            self._flush()
            s = self._size
            if it == 0:
                # The node's branching rules close the pool's columns that break them;
                # the columns priced at this node keep them (forbidden pairs cost inf).
                ok = (~(self._X[:s] & forb[self._agent[:s]]).any(axis=1)
                      & ((self._load[:s] <= kk) if K is not None else True))
                h.changeColsBounds(s, np.arange(n, n + s, dtype=np.int32),  # type: ignore[attr-defined]
                                   np.zeros(s), np.where(ok, np.inf, 0.0))
            h.run()  # type: ignore[attr-defined]
            sol = h.getSolution()  # type: ignore[attr-defined]
            d = np.asarray(sol.row_dual)
            pi, mu = d[:n], d[n:]
            lam = np.asarray(sol.col_value)
            used = lam[n: n + s] > 1e-9
            self._idle[:s] = np.where(used, 0, self._idle[:s] + 1)
            Rp = R - pi[None, :]
            L = float(pi.sum())
            tables = []
            for i in range(m):
                T, chosen = lag._agent(i, Rp[i], K, True)
                tables.append(T)
                v = float(T[-1, -1])
                L += v
                if v - mu[i] < -1e-7 and chosen:
                    self._pending.append((i, np.array(chosen, dtype=np.int64)))
            best_l = max(best_l, L)
            if best_l > cut:
                self._pending = []
                return best_l, None, None
            if clock() >= deadline:
                self._pending = []
                return float("nan"), None, None
            if not self._pending:
                break
        else:
            self._pending = []
        lam = np.asarray(h.getSolution().col_value)  # type: ignore[attr-defined]
        if lam[:n].sum() > 1e-6:
            return np.inf, None, None
        obj = float(h.getInfo().objective_function_value)  # type: ignore[attr-defined]
        bound = max(best_l, obj) if np.isfinite(best_l) else obj
        if bound > cut:
            return bound, None, None
        # Reduced-cost fixing with the final duals (Fisher): forced-in bounds.
        new = forb.copy()
        d = np.asarray(h.getSolution().row_dual)  # type: ignore[attr-defined]
        pi = d[:n]
        Rp = R - pi[None, :]
        A, cap = lag.A, lag.cap
        D = self._D if K is not None else np.zeros_like(self._D)
        L = float(pi.sum()) + sum(float(T[-1, -1]) for T in tables)
        self.last_fb = np.full((m, n), np.inf)
        for i in range(m):
            T = tables[i]
            zi = float(T[-1, -1])
            js = np.flatnonzero(~forb[i] & (A[i] <= cap[i]) & (D[i] <= kk))
            fb = L - zi + Rp[i, js] + T[cap[i] - A[i, js], kk - D[i, js]]
            new[i, js[fb > cut]] = True
            self.last_fb[i, js] = fb
            new[i, A[i] > cap[i]] = True
            new[i, D[i] > kk] = True
        s = self._size
        x = np.zeros((m, n))
        lc = lam[n: n + s]
        on = np.flatnonzero(lc > 1e-9)
        np.add.at(x, self._agent[on], self._X[on] * lc[on, None])
        return bound, x, new

    # -- a core MILP for incumbents ---------------------------------------------------

    def core_mip(self, allowed: np.ndarray, K: int | None, start: np.ndarray | None,
                 seconds: float) -> np.ndarray | None:
        """HiGHS on the pairs in `allowed` only (a restriction: any plan is feasible)."""
        import highspy
        from scipy import sparse

        lag, m, n = self.lag, self.m, self.n
        I, J = np.nonzero(allowed)  # noqa: E741
        P = I.size
        if P == 0 or not allowed.any(axis=0).all():
            return None
        rows = [J]
        vals = [np.ones(P)]
        lo = [np.ones(n)]
        hi = [np.ones(n)]
        rows.append(n + I)
        vals.append(lag.A[I, J].astype(float))
        lo.append(np.full(m, -np.inf))
        hi.append(lag.cap.astype(float) + np.where(lag.A.any(axis=1), 0.0, np.inf))
        nr = n + m
        if K is not None:
            rows.append(nr + I)
            vals.append(self._D[I, J].astype(float))
            lo.append(np.full(m, -np.inf))
            hi.append(np.full(m, float(K)))
            nr += m
        cols = np.tile(np.arange(P), len(rows))
        mat = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), cols)),
                                shape=(nr, P))
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = P, nr
        lp.col_cost_ = lag.C[I, J].astype(float)
        lp.col_lower_ = np.zeros(P)
        lp.col_upper_ = np.ones(P)
        lp.row_lower_ = np.concatenate(lo)
        lp.row_upper_ = np.concatenate(hi)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = mat.indptr
        lp.a_matrix_.index_ = mat.indices
        lp.a_matrix_.value_ = mat.data
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = P, nr
        lp.integrality_ = [highspy.HighsVarType.kInteger] * P
        h = new_highs()
        h.setOptionValue("output_flag", False)  # type: ignore[attr-defined]
        h.setOptionValue("time_limit", max(seconds, 0.01))  # type: ignore[attr-defined]
        h.setOptionValue("mip_rel_gap", 0.0)  # type: ignore[attr-defined]
        h.passModel(lp)  # type: ignore[attr-defined]
        if start is not None and np.all(allowed[start, np.arange(n)]):
            sol = highspy.HighsSolution()
            sol.col_value = (start[J] == I).astype(float)
            sol.value_valid = True
            h.setSolution(sol)  # type: ignore[attr-defined]
        h.run()  # type: ignore[attr-defined]
        if h.getInfo().primal_solution_status != 2:  # type: ignore[attr-defined]
            return None
        x = np.asarray(h.getSolution().col_value)  # type: ignore[attr-defined]
        a = np.full(n, -1, dtype=np.int64)
        on = x > 0.5
        a[J[on]] = I[on]
        return a if lag.feasible(a, K) else None

    # -- the tree ---------------------------------------------------------------------

    def solve(self, K: int | None, incumbent: np.ndarray | None, *, step: float,
              deadline: float, clock: Callable[[], float], core_s: float = 0.0) -> StepResult:
        """Least cost with load cap K (grid units; None: none), depth first until `deadline`.

        `incumbent` (a feasible assignment) gives the first upper bound;
        `core_s` seconds go to a core MILP after the root (see CORE_AGENTS).
        The result is proven when the tree was emptied.
        """
        lag = self.lag
        best = incumbent.copy() if incumbent is not None and lag.feasible(incumbent, K) else None
        ub = lag.cost(best) if best is not None else np.inf
        tol = 1e-6 * max(1.0, abs(ub)) if np.isfinite(ub) else 1e-6

        def cut() -> float:
            return ub - step + tol if np.isfinite(ub) else np.inf

        stack = [~lag.elig.copy()]
        nodes = 0
        root = -np.inf
        while stack:
            if clock() >= deadline:
                break
            forb = stack.pop()
            if forb.all(axis=0).any():
                continue
            nodes += 1
            bound, x, new = self._node(forb, K, cut(), deadline, clock)
            if np.isnan(bound):  # stopped by the deadline: the node stays open
                stack.append(forb)
                break
            if nodes == 1:
                root = bound
            if x is None or new is None:
                if nodes == 1 and not np.isfinite(bound) and best is None:
                    return StepResult(None, np.inf, True, True, bound, nodes)
                continue
            self._purge()
            if nodes == 1 and core_s > 0:
                # The pairs the root's bound likes best (3 a task) and the
                # incumbent's: a small MILP that usually finds a near-optimal plan.
                fb = self.last_fb
                order = np.argsort(fb, axis=0, kind="stable")[:CORE_AGENTS]
                allowed = np.zeros_like(forb)
                np.put_along_axis(allowed, order, True, axis=0)
                allowed &= np.isfinite(fb)
                if best is not None:
                    allowed[best, np.arange(self.n)] = True
                allowed &= ~new
                c = self.core_mip(allowed, K, best, min(core_s, deadline - clock()))
                if c is not None and lag.cost(c) < ub - tol:
                    best, ub = c, lag.cost(c)
                    tol = 1e-6 * max(1.0, abs(ub))
            # A rounded LP point as an incumbent (each task to its largest share).
            a = np.argmax(x, axis=0).astype(np.int64)
            if lag.feasible(a, K) and lag.cost(a) < ub - tol:
                best, ub = a, lag.cost(a)
                tol = 1e-6 * max(1.0, abs(ub))
            frac = x * (1.0 - x)
            if frac.max() < 1e-6:  # integral: the LP optimum of this node is a plan
                continue
            if new.all(axis=0).any():
                continue
            score = np.where(x > 1e-6, -np.abs(x - 0.5), -9.0)
            i, j = np.unravel_index(int(np.argmax(score)), score.shape)
            zero = new.copy()
            zero[i, j] = True
            one = new.copy()
            one[:, j] = True
            one[i, j] = False
            stack.append(zero)
            stack.append(one)
        proven = not stack
        if best is None:  # an emptied tree without a plan: infeasible
            return StepResult(None, np.inf, False, proven, root, nodes)
        return StepResult(best, ub, proven, False, root, nodes)
