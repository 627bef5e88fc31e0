"""Local search on the assignment model: shift, swap and ejection chains, vectorised.

Works on the compiled arrays of :class:`allocator.solvers.linear.LinearModel`
(never on Python objects per task). The objective is the snapshot's own
weighted objective under that model: separable costs (cost, migrations,
unassigned penalties) plus the load terms (makespan, imbalance). Leaving a
task out is a virtual agent ``m`` with unlimited capacity and cost
``pen[j]``, so dropping and re-inserting are ordinary shifts.

Each pass scores *every* candidate move of a neighbourhood with numpy
(a [m+1, n] matrix for shifts, [block, n] matrices for swaps and chains),
then applies the improving ones best-first, re-checking feasibility and the
exact objective change against the current state before each. So a move is
applied only if it keeps every capacity and the migration limit and strictly
lowers the objective: the search never worsens and never leaves the feasible
set.

Neighbourhoods:

* shift: task j moves from its agent a to agent b (or in / out of the virtual
  'unassigned' agent).
* swap: j1 on a and j2 on b exchange agents.
* ejection chain (length 2): j1 moves a -> b, which ejects j2 from b to its
  best feasible agent c; scored as a pair so capacity at b may be full now.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from allocator.solvers.linear import LinearModel

#: A move must gain more than this (relative to the objective's scale) to count.
_EPS = 1e-9
#: Tasks per block when scoring pair moves, to bound memory to ~block x n x R.
_BLOCK = 256


class _State:
    """Incumbent assignment with its capacity use, loads and objective pieces."""

    def __init__(self, lm: LinearModel, agent_of: np.ndarray) -> None:
        self.lm = lm
        m, n = lm.m, lm.n
        self.rows = np.where(agent_of >= 0, agent_of, m).astype(np.int64)
        self.cap = np.vstack([lm.cap, np.full((1, lm.cap.shape[1]), np.inf)])
        self.S = lm.score
        self.D = lm.demand
        self.L = lm.load_of
        self.used = np.zeros_like(self.cap)
        np.add.at(self.used, self.rows, self.D[self.rows, np.arange(n)])
        self.loads = np.bincount(self.rows, weights=self.L[self.rows, np.arange(n)],
                                 minlength=m + 1).astype(float)
        self.moved_flag = np.zeros((m + 1, n), dtype=bool)
        self.moved_flag[lm.I, lm.J] = lm.moved
        self.n_moved = int(self.moved_flag[self.rows, np.arange(n)].sum())
        self.up_ext = np.append(lm.up, False)

    @property
    def agent_of(self) -> np.ndarray:
        return np.where(self.rows < self.lm.m, self.rows, -1)

    def objective(self) -> float:
        lm = self.lm
        sep = float(self.S[self.rows, np.arange(lm.n)].sum())
        return sep + (lm.load_term(self.loads[: lm.m]) if lm.has_load_terms else 0.0)

    # Exact change of the load terms when the loads of a few agents change.
    def load_delta(self, agents: list[np.ndarray], new: list[np.ndarray]) -> np.ndarray:
        lm = self.lm
        size = agents[0].shape
        out = np.zeros(size)
        if not lm.has_load_terms:
            return out
        m = lm.m
        loads = self.loads[:m]
        K = min(m, len(agents) + 1)

        def extreme(vals: np.ndarray, largest: bool) -> np.ndarray:
            order = np.argsort(-vals if largest else vals)[:K]
            res = np.full(size, -np.inf if largest else np.inf)
            done = np.zeros(size, dtype=bool)
            for idx in order:
                hit = np.zeros(size, dtype=bool)
                for a in agents:
                    hit |= a == idx
                take = ~done & ~hit
                res = np.where(take, vals[idx], res)
                done |= take
            for a, v in zip(agents, new, strict=True):
                ok = a < m
                if not largest:
                    ok &= self.up_ext[a]
                    v = np.where(ok, v, np.inf)
                    res = np.minimum(res, v)
                else:
                    if vals is not loads:
                        ok &= self.up_ext[a]
                    res = np.maximum(res, np.where(ok, v, -np.inf))
            return res

        if lm.w_mk > 0:
            cur = float(loads.max(initial=0.0))
            out += lm.w_mk * (np.maximum(extreme(loads, True), 0.0) - cur)
        if lm.w_imb > 0 and lm.up.any():
            up_hi = np.where(lm.up, loads, -np.inf)
            up_lo = np.where(lm.up, loads, np.inf)
            cur = float(up_hi.max() - up_lo.min())
            out += lm.w_imb * (extreme(up_hi, True) - extreme(up_lo, False) - cur)
        return out

    def fits(self, i: int, add: np.ndarray) -> bool:
        return bool(np.all(self.used[i] + add <= self.cap[i]))

    def move(self, j: int, b: int) -> None:
        a = int(self.rows[j])
        self.used[a] -= self.D[a, j]
        self.used[b] += self.D[b, j]
        self.loads[a] -= self.L[a, j]
        self.loads[b] += self.L[b, j]
        self.n_moved += int(self.moved_flag[b, j]) - int(self.moved_flag[a, j])
        self.rows[j] = b

    def migrations_ok(self) -> bool:
        mx = self.lm.max_migrations
        return mx is None or self.n_moved <= mx


def _try(state: _State, moves: list[tuple[int, int]], before: float) -> float | None:
    """Apply (task, agent) moves in order if all fit and the objective drops; else undo."""
    undo: list[tuple[int, int]] = []
    ok = True
    for j, b in moves:
        a = int(state.rows[j])
        if b == a or not np.isfinite(state.S[b, j]):
            ok = False
            break
        undo.append((j, a))
        state.move(j, b)
    if ok:
        ok = bool(np.all(state.used <= state.cap)) and state.migrations_ok()
    if ok:
        after = state.objective()
        if after < before - _EPS * max(1.0, abs(before)):
            return after
    for j, a in reversed(undo):
        state.move(j, a)
    return None


def _shift_pass(state: _State, obj: float) -> tuple[float, int]:
    lm = state.lm
    n = lm.n
    S, rows = state.S, state.rows
    ar = np.arange(n)
    cur = S[rows, ar]
    delta = S - cur[None, :]
    fit = np.all(state.used[:, None, :] + state.D <= state.cap[:, None, :], axis=2)
    delta = np.where(fit, delta, np.inf)
    delta[rows, ar] = np.inf
    if lm.has_load_terms:
        cand_b = np.argsort(delta, axis=0)[: min(4, lm.m + 1)]  # a few best per task
        bs = cand_b.ravel()
        js = np.tile(ar, cand_b.shape[0])
        a = rows[js]
        sep = delta[bs, js]
        finite = np.isfinite(sep)
        bs, js, a, sep = bs[finite], js[finite], a[finite], sep[finite]
        tot = sep + state.load_delta(
            [a, bs], [state.loads[a] - state.L[a, js], state.loads[bs] + state.L[bs, js]])
    else:
        bs = np.argmin(delta, axis=0)
        js = ar
        tot = delta[bs, js]
    order = np.argsort(tot)
    applied = 0
    touched = np.zeros(n, dtype=bool)
    for k in order:
        if tot[k] >= -_EPS * max(1.0, abs(obj)):
            break
        j, b = int(js[k]), int(bs[k])
        if touched[j]:
            continue
        new = _try(state, [(j, b)], obj)
        if new is not None:
            obj, applied = new, applied + 1
            touched[j] = True
    return obj, applied


def _pair_pass(state: _State, obj: float, rng: np.random.Generator,
               deadline: Callable[[], bool], chains: bool) -> tuple[float, int]:
    """Swaps (and ejection chains) scored in blocks of first tasks."""
    lm = state.lm
    m, n = lm.m, lm.n
    S, D = state.S, state.D
    applied = 0
    order = rng.permutation(n)
    for start in range(0, n, _BLOCK):
        if deadline():
            break
        j1 = order[start:start + _BLOCK]
        rows = state.rows
        r1 = rows[j1]
        ar = np.arange(n)
        cur = S[rows, ar]  # [n]
        # delta of swap (j1 -> rows[j2], j2 -> r1): [B, n]
        s_j1_to_r2 = S[rows[None, :], j1[:, None]]
        s_j2_to_r1 = S[r1[:, None], ar[None, :]]
        base = s_j1_to_r2 - cur[j1][:, None]
        swap = base + s_j2_to_r1 - cur[None, :]
        same = r1[:, None] == rows[None, :]
        d_j1_on_r2 = D[rows[None, :], j1[:, None]]  # [B, n, R]
        d_j2_on_r2 = D[rows, ar][None, :, :]
        r2_ok = np.all(state.used[rows][None, :, :] - d_j2_on_r2 + d_j1_on_r2
                       <= state.cap[rows][None, :, :], axis=2)
        d_j2_on_r1 = D[r1[:, None], ar[None, :]]
        d_j1_on_r1 = D[r1, j1][:, None, :]
        r1_ok = np.all(state.used[r1][:, None, :] - d_j1_on_r1 + d_j2_on_r1
                       <= state.cap[r1][:, None, :], axis=2)
        swap = np.where(r1_ok & r2_ok & ~same, swap, np.inf)
        best_swap = np.argmin(swap, axis=1)
        cands: list[tuple[float, list[tuple[int, int]]]] = []
        for b_, k2 in enumerate(best_swap):
            v = swap[b_, k2]
            if v < -_EPS * max(1.0, abs(obj)):
                cands.append((float(v), [(int(j1[b_]), int(rows[k2])), (int(k2), int(r1[b_]))]))
        if chains:
            # Best place for each j2 other than its agent, given current capacity.
            fit = np.all(state.used[:, None, :] + D <= state.cap[:, None, :], axis=2)
            alt = np.where(fit, S - cur[None, :], np.inf)
            alt[rows, ar] = np.inf
            tgt = np.argmin(alt, axis=0)
            gain2 = alt[tgt, ar]  # [n]
            chain = base + gain2[None, :]
            chain = np.where(r2_ok & ~same & (tgt[None, :] != r1[:, None])
                             & np.isfinite(gain2)[None, :], chain, np.inf)
            best_chain = np.argmin(chain, axis=1)
            for b_, k2 in enumerate(best_chain):
                v = chain[b_, k2]
                if v < -_EPS * max(1.0, abs(obj)):
                    cands.append((float(v), [(int(j1[b_]), int(rows[k2])),
                                             (int(k2), int(tgt[k2]))]))
        if lm.has_load_terms:
            pass  # exact check happens in _try
        cands.sort(key=lambda c: c[0])
        touched = np.zeros(n, dtype=bool)
        for _, mv in cands:
            if any(touched[j] for j, _ in mv):
                continue
            new = _try(state, mv, obj)
            if new is not None:
                obj, applied = new, applied + 1
                for j, _ in mv:
                    touched[j] = True
    del m
    return obj, applied


def local_search(
    lm: LinearModel,
    agent_of: np.ndarray,
    *,
    deadline: Callable[[], bool] | None = None,
    seed: int = 0,
    max_passes: int = 50,
    chains: bool = True,
    pairs: bool = True,
) -> np.ndarray:
    """Improve a feasible assignment until no move helps, `deadline()` is true or passes run out.

    The result is feasible whenever the input is, and its objective under
    `lm` is never higher. `pairs=False` runs shifts only (a cheap polish:
    a few ms a pass at 80 x 1600, against ~0.15 s for a swap / chain pass).
    """
    if lm.n == 0 or lm.m == 0:
        return agent_of.copy()
    deadline = deadline or (lambda: False)
    rng = np.random.default_rng(seed)
    state = _State(lm, np.asarray(agent_of, dtype=np.int64))
    obj = state.objective()
    for _ in range(max_passes):
        if deadline():
            break
        obj, a1 = _shift_pass(state, obj)
        if deadline() or not pairs:
            if not a1:
                break
            continue
        obj, a2 = _pair_pass(state, obj, rng, deadline, chains)
        if a1 + a2 == 0:
            break
    return state.agent_of


def round_lp(lm: LinearModel, x: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """A feasible assignment from a fractional LP solution `x[P]`.

    Tasks go to their agents in decreasing order of their LP value (ties by
    cost), each only if it still fits; the few split tasks a basic LP
    solution has are placed wherever they fit best, or left out for the local
    search to insert. `base` (a feasible assignment) is used for tasks the LP
    leaves unassigned when it fits.
    """
    m, n = lm.m, lm.n
    agent_of = np.full(n, -1, dtype=np.int64)
    used = np.zeros_like(lm.cap)
    order = np.lexsort((lm.c, -np.asarray(x)))
    placed = np.zeros(n, dtype=bool)
    for k in order:
        if x[k] <= 1e-6:
            break
        j = int(lm.J[k])
        if placed[j]:
            continue
        i = int(lm.I[k])
        if np.all(used[i] + lm.a[k] <= lm.cap[i]):
            agent_of[j], placed[j] = i, True
            used[i] += lm.a[k]
    # Remaining tasks: cheapest agent where they fit.
    pos = lm.pos
    for j in np.flatnonzero(~placed).tolist():
        ks = pos[:, j]
        ks = ks[ks >= 0]
        if ks.size == 0:
            continue
        fit = np.all(used[lm.I[ks]] + lm.a[ks] <= lm.cap[lm.I[ks]], axis=1)
        if not fit.any():
            continue
        ks = ks[fit]
        k = int(ks[np.argmin(lm.c[ks])])
        if lm.c[k] > lm.pen[j]:
            continue
        i = int(lm.I[k])
        agent_of[j] = i
        used[i] += lm.a[k]
    if lm.max_migrations is not None and not lm.feasible(agent_of):
        return base.copy() if base is not None else np.full(n, -1, dtype=np.int64)
    del m
    return agent_of
