"""A cost step by column enumeration and exact cover (first for a front's packed bottom).

When every agent must end exactly at its load cap K (the caps' total equals the tasks'
load, e.g. 10 agents x 80 unit tasks at makespan 8), each agent's share of a plan is a
set of exactly K load units within its capacity. At the tree's multipliers ``lam`` each
agent's best set has reduced cost ``z_i`` (a two-row knapsack) and any plan costs
``sum(lam) + sum(z) + sum of its sets' excesses over z_i``. On 10x80 type-D GAP that
constant is 6-11 units below the optimum, but the optimum's sets are each within about
4 units of their agent's best (docs/benchmarks/pareto-gap-cde.md, 2026-12-03 20:00 UTC),
where a few thousand sets lie. So, with ``g`` growing (2, 3, 4, 5, 6, 8, ...):

* enumerate every agent's sets whose excess is at most ``g`` (a depth-first walk over
  the tasks bounded by a suffix table of the same knapsack);
* pick one set per agent so that every task is covered once, cheapest first, by a
  depth-first exact cover: branch on the uncovered task with the fewest sets left, its
  sets in excess order; a node's bound is its excess plus every open agent's least
  compatible excess, pruned against the incumbent less a step.

A cover completed at ``g`` finds the cheapest plan made of such sets; once ``g`` reaches
the incumbent less a step less the constant, every set of a cheaper plan was enumerated
and the completed cover proves the incumbent optimal. The local searches end 15-50 units
above these optima and the tree finds them when it proves them (see gap_lns); on 15
tuning files this reached the bottom optimum within 1 CPU s on 10 (the tree on 3).

Any other level decomposes the same way: an agent's sets then have any load from the
least every agent must take (K less the caps' slack over the tasks' load, 0 without a
cap) up to K, and an agent may end empty (its empty set closes a cover once every task
is covered). On K = 9 levels of 10x80 type D the optimum lay 6-9 units above the
constant and within windows of 5,000-42,000 sets (15 tuning files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from allocator.jit import HAVE_NUMBA as HAVE_NUMBA
from allocator.jit import njit as _njit
from allocator.solvers.gap_bb import GapBranchBound

#: Widths of the excess window, in cost steps, tried in turn (each cover restarts with the
#: best plan so far as its incumbent); after the last one the width grows by half.
WIDTHS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
#: Most sets enumerated in all (memory: a set is K task ids and two masks); a window that
#: would need more ends the search.
MAX_COLUMNS = 400_000
#: Most cells of one agent's suffix table ((n + 1) x (K + 1) x (capacity + 1)).
MAX_CELLS = 8_000_000
#: First guess of the cover's nodes a second (measured after every call), and the seconds
#: of one kernel call between clock looks (the search resumes where a call stopped).
RATE0 = 20_000.0
CALL_S = 0.05


@dataclass
class CoverResult:
    """Best plan (None: none cheaper than the incumbent), its cost, proven optimal,
    the widest window completed, sets enumerated and cover nodes in all."""

    agent_of: np.ndarray | None
    cost: float
    proven: bool
    width: float
    columns: int
    nodes: int


@_njit(cache=True, nogil=True)
def _exact(r: np.ndarray, a: np.ndarray, d: np.ndarray, cap: int, K: int) -> np.ndarray:
    """B[j, k, c]: least sum of r over a set of tasks j.. with load exactly k and resource
    use at most c (inf: none); tasks with r = inf are left out."""
    n = r.size
    B = np.full((n + 1, K + 1, cap + 1), np.inf)
    B[n, 0, :] = 0.0
    for j in range(n - 1, -1, -1):
        rj, aj, dj = r[j], a[j], d[j]
        ok = np.isfinite(rj) and aj <= cap and dj <= K
        for k in range(K + 1):
            for c in range(cap + 1):
                v = B[j + 1, k, c]
                if ok and k >= dj and c >= aj:
                    w = B[j + 1, k - dj, c - aj] + rj
                    if w < v:
                        v = w
                B[j, k, c] = v
    return B


@_njit(cache=True, nogil=True)
def _suffix(r: np.ndarray, a: np.ndarray, d: np.ndarray, cap: int, K: int,
            lo: int) -> np.ndarray:
    """M[j, l, c]: least sum of r over a set of tasks j.. that brings a load l so far into
    [lo, K] with resource use at most c (inf: none)."""
    B = _exact(r, a, d, cap, K)
    n = r.size
    M = np.full((n + 1, K + 1, cap + 1), np.inf)
    for ld in range(K + 1):
        for k in range(max(0, lo - ld), K - ld + 1):
            for j in range(n + 1):
                for c in range(cap + 1):
                    if B[j, k, c] < M[j, ld, c]:
                        M[j, ld, c] = B[j, k, c]
    return M


@_njit(cache=True, nogil=True)
def _enumerate(r: np.ndarray, a: np.ndarray, d: np.ndarray, cap: int, K: int, lo: int,
               M: np.ndarray, width: int, limit: float,
               most: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Every set of tasks with load in [lo, K], resource use within cap and sum of r at
    most `limit` (at most `most` of them; M from _suffix): (task ids [q, width] padded with
    -1, sizes, sums, overflowed)."""
    n = r.size
    room = min(most, 1024)
    out = np.full((room, width), -1, dtype=np.int64)
    size = np.zeros(room, dtype=np.int64)
    vals = np.zeros(room)
    cnt = 0
    nxt = np.zeros(width + 2, dtype=np.int64)
    chosen = np.zeros(width + 1, dtype=np.int64)
    ws = np.zeros(width + 2, dtype=np.int64)
    ls = np.zeros(width + 2, dtype=np.int64)
    vs = np.zeros(width + 2)
    depth = 0
    over = False
    emit = lo <= 0 and limit >= 0.0  # the empty set first
    while depth >= 0:
        if emit:
            emit = False
            if cnt >= most:
                over = True
                break
            if cnt >= room:  # grow the buffers (doubling)
                room = min(most, 2 * room)
                o2 = np.full((room, width), -1, dtype=np.int64)
                o2[:cnt] = out[:cnt]
                s2 = np.zeros(room, dtype=np.int64)
                s2[:cnt] = size[:cnt]
                v2 = np.zeros(room)
                v2[:cnt] = vals[:cnt]
                out, size, vals = o2, s2, v2
            for u in range(depth):
                out[cnt, u] = chosen[u]
            size[cnt] = depth
            vals[cnt] = vs[depth]
            cnt += 1
        j = nxt[depth]
        w, ld, v = ws[depth], ls[depth], vs[depth]
        if depth < width:
            while j < n:
                if (np.isfinite(r[j]) and a[j] <= cap - w and d[j] <= K - ld
                        and v + r[j] + M[j + 1, ld + d[j], cap - w - a[j]] <= limit):
                    break
                j += 1
        else:
            j = n
        if j >= n:
            depth -= 1
            continue
        nxt[depth] = j + 1
        chosen[depth] = j
        ws[depth + 1] = w + a[j]
        ls[depth + 1] = ld + d[j]
        vs[depth + 1] = v + r[j]
        nxt[depth + 1] = j + 1
        depth += 1
        emit = ls[depth] >= lo and vs[depth] <= limit
    return out[:cnt], size[:cnt], vals[:cnt], over


@_njit(cache=True, nogil=True)
def _cover(agent: np.ndarray, exc: np.ndarray, cost: np.ndarray, mask: np.ndarray,
           tasks: np.ndarray, size: np.ndarray, m: int, n: int, const: float, step: float,
           best: float, max_nodes: int, pick: np.ndarray, live: np.ndarray, cnt: np.ndarray,
           br: np.ndarray, brn: np.ndarray, pos: np.ndarray, cov: np.ndarray, E: np.ndarray,
           Cs: np.ndarray, done: np.ndarray, chosen: np.ndarray, st: np.ndarray,
           empty: np.ndarray) -> tuple[float, int, bool]:
    """One set per agent covering every task once, cheapest first, costing at most
    `best` - `step` (sets sorted by excess; a plan costs `const` plus its excesses), for
    at most `max_nodes` nodes. `empty` [m]: each agent's empty set (-1: none), which the
    agents still open take once every task is covered. Returns (best cost, nodes,
    completed); `pick` [m] gets the best plan's sets. The search's whole state lives in
    the arrays after `pick` (see :class:`_CoverState`; st = (depth, expand, started)),
    so a call cut at `max_nodes` goes on where it stopped at the next call."""
    Q = agent.size
    W = mask.shape[1]
    least = np.empty(m)
    tcount = np.empty(n, dtype=np.int64)
    if st[2] == 0:
        for q in range(Q):
            live[0, q] = q
        cnt[0] = Q
        st[0], st[1], st[2] = 0, 1, 1
    nodes = 0
    depth = st[0]
    expand = st[1] == 1
    one = np.uint64(1)
    while depth >= 0:
        if expand:
            expand = False
            nodes += 1
            if nodes > max_nodes:
                st[0], st[1] = depth, 1
                return best, nodes, False
            for i in range(m):
                least[i] = np.inf
            for t in range(cnt[depth]):
                q = live[depth, t]
                if exc[q] < least[agent[q]]:
                    least[agent[q]] = exc[q]
            bound = E[depth]
            dead = False
            for i in range(m):
                if not done[depth, i]:
                    if least[i] == np.inf:
                        dead = True
                        break
                    bound += least[i]
            room = best - step + 1e-6 * max(1.0, abs(best)) - const - bound
            if dead or room < 0:
                depth -= 1
                continue
            for j in range(n):
                tcount[j] = 0
            k2 = 0
            for t in range(cnt[depth]):
                q = live[depth, t]
                if exc[q] - least[agent[q]] <= room:
                    live[depth, k2] = q
                    k2 += 1
                    for u in range(size[q]):
                        tcount[tasks[q, u]] += 1
            cnt[depth] = k2
            jb = -1
            cb = 1 << 60
            for j in range(n):
                if (cov[depth, j >> 6] >> np.uint64(j & 63)) & one:
                    continue
                if tcount[j] < cb:
                    cb = tcount[j]
                    jb = j
            if jb < 0:  # every task covered: the open agents take their empty sets
                ok = True
                for i in range(m):
                    if not done[depth, i] and empty[i] < 0:
                        ok = False
                if ok and Cs[depth] <= best - step + 1e-6 * max(1.0, abs(best)):
                    best = Cs[depth]
                    u = 0
                    for k in range(depth):
                        pick[u] = chosen[k]
                        u += 1
                    for i in range(m):
                        if not done[depth, i]:
                            pick[u] = empty[i]
                            u += 1
                depth -= 1
                continue
            if cb == 0:
                depth -= 1
                continue
            nb = 0
            wj = jb >> 6
            bj = one << np.uint64(jb & 63)
            for t in range(cnt[depth]):
                q = live[depth, t]
                if mask[q, wj] & bj:
                    br[depth, nb] = q
                    nb += 1
            brn[depth] = nb
            pos[depth] = 0
        if pos[depth] >= brn[depth]:
            depth -= 1
            continue
        q = br[depth, pos[depth]]
        pos[depth] += 1
        nd = depth + 1
        for w in range(W):
            cov[nd, w] = cov[depth, w] | mask[q, w]
        E[nd] = E[depth] + exc[q]
        Cs[nd] = Cs[depth] + cost[q]
        for i in range(m):
            done[nd, i] = done[depth, i]
        done[nd, agent[q]] = True
        chosen[depth] = q
        if nd == m:
            full = True
            for w in range(W):
                if cov[nd, w] != mask[Q, w]:
                    full = False
            if full and Cs[nd] <= best - step + 1e-6 * max(1.0, abs(best)):
                best = Cs[nd]
                for u in range(m):
                    pick[u] = chosen[u]
            continue
        k2 = 0
        for t in range(cnt[depth]):
            s = live[depth, t]
            if done[nd, agent[s]]:
                continue
            ok = True
            for w in range(W):
                if mask[s, w] & cov[nd, w]:
                    ok = False
                    break
            if ok:
                live[nd, k2] = s
                k2 += 1
        cnt[nd] = k2
        depth = nd
        expand = True
    st[0] = -1
    return best, nodes, True


class _CoverState:
    """The exact cover's arrays for Q sets, m agents and W mask words (see _cover)."""

    def __init__(self, Q: int, m: int, W: int):
        self.arrays = (np.empty((m + 1, Q), dtype=np.int32), np.zeros(m + 1, dtype=np.int64),
                       np.empty((m + 1, Q), dtype=np.int32), np.zeros(m + 1, dtype=np.int64),
                       np.zeros(m + 1, dtype=np.int64), np.zeros((m + 1, W), dtype=np.uint64),
                       np.zeros(m + 1), np.zeros(m + 1), np.zeros((m + 1, m), dtype=np.bool_),
                       np.zeros(m + 1, dtype=np.int64), np.zeros(3, dtype=np.int64))


def packed(D: np.ndarray, K: int | None, allowed: np.ndarray) -> bool:
    """Whether every agent must end exactly at load K (each task's load the same on all
    its agents and the caps' total equal to the tasks' load): where this search applies."""
    return K is not None and K > 0 and GapBranchBound.slack(D, int(K), allowed) == 0


def _loads(A: np.ndarray, D: np.ndarray, cap: np.ndarray, K: int | None,
           allowed: np.ndarray) -> tuple[np.ndarray, int]:
    """Each agent's most load in a set (the cap K, or what fits in its capacity when that is
    less: the tables' size) and the least load every agent must take (K less the caps'
    slack over the tasks' load, see GapBranchBound.slack; 0 without a cap)."""
    m = A.shape[0]
    most = np.zeros(m, dtype=np.int64)
    for i in range(m):
        c = int(cap[i])
        dp = np.zeros(c + 1, dtype=np.int64)  # most load within resource c
        for j in np.flatnonzero(allowed[i]):
            aj, dj = int(A[i, j]), int(D[i, j])
            if aj <= c:
                dp[aj:] = np.maximum(dp[aj:], dp[: c + 1 - aj] + dj)
        most[i] = int(dp[c]) if K is None else min(int(K), int(dp[c]))
    if K is None:
        return most, 0
    return most, max(0, int(K) - GapBranchBound.slack(D, int(K), allowed))


def cover_search(C: np.ndarray, A: np.ndarray, cap: np.ndarray, D: np.ndarray,
                 K: int | None, lam: np.ndarray, incumbent: np.ndarray, *, step: float,
                 deadline: float, clock: Callable[[], float],
                 on_plan: Callable[[float], None] | None = None) -> CoverResult:
    """Cheaper plans than the feasible `incumbent` of a cost step under capacities `cap`
    and load cap K (None: none), from the multipliers `lam` [n] (the tree's root ones: the
    tighter they are, the fewer sets), until `deadline` on `clock`. An agent's sets have a
    load from the least every agent must take (K itself on a packed step, see
    :func:`packed`) to K. Same inputs and node budgets give the same plan; the budgets come
    from the clock. `on_plan` is called with the cost of every cheaper plan found."""
    C = np.ascontiguousarray(C, dtype=np.float64)
    A = np.ascontiguousarray(A, dtype=np.int64)
    D = np.ascontiguousarray(D, dtype=np.int64)
    m, n = C.shape
    ar = np.arange(n)
    best_plan = np.asarray(incumbent, dtype=np.int64).copy()
    best = float(C[best_plan, ar].sum())
    out = CoverResult(None, best, False, 0.0, 0, 0)
    top = n * int(D.max()) if K is None else int(K)
    allowed = np.isfinite(C) & (cap[:, None] >= A) & (top >= D)
    most, lo = _loads(A, D, cap, K, allowed)
    if np.any(most < lo) or max((n + 1) * (int(k) + 1) * (int(c) + 1)
                                for k, c in zip(most, cap, strict=True)) > MAX_CELLS:
        return out
    # A set holds at most `most` tasks of positive load, and every task of load 0.
    wide = int(most.max()) + int((D == 0).any(axis=0).sum())
    R = C - lam[None, :]
    tables, z = [], np.zeros(m)
    for i in range(m):
        B = _suffix(R[i], A[i], D[i], int(cap[i]), int(most[i]), lo)
        z[i] = B[0, 0, int(cap[i])]
        tables.append(B)
    if not np.all(np.isfinite(z)):
        return out
    const = float(lam.sum() + z.sum())
    rate = RATE0
    width = 0.0
    widths = list(WIDTHS)
    W = (n + 63) // 64
    full = np.zeros(W, dtype=np.uint64)
    for j in range(n):
        full[j >> 6] |= np.uint64(1) << np.uint64(j & 63)
    while clock() < deadline:
        gap = best - step - const
        if gap < -1e-6 * max(1.0, abs(best)):
            out.proven = True  # nothing can cost less than the constant
            break
        g = widths.pop(0) * step if widths else width * 1.5
        g = min(g, gap + 1e-6 * max(1.0, abs(best)))
        parts = []
        over = False
        total = 0
        for i in range(m):
            S, size, vals, of = _enumerate(R[i], A[i], D[i], int(cap[i]), int(most[i]), lo,
                                           tables[i], wide, float(z[i] + g),
                                           MAX_COLUMNS - total)
            total += len(S)
            parts.append((S, size, vals - z[i]))
            if of:
                over = True
                break
        if over:
            break
        agent = np.concatenate([np.full(len(p[0]), i, dtype=np.int64)
                                for i, p in enumerate(parts)])
        tasks = np.concatenate([p[0] for p in parts]).reshape(-1, wide)
        size = np.concatenate([p[1] for p in parts])
        exc = np.concatenate([p[2] for p in parts])
        order = np.argsort(exc, kind="stable")
        agent, tasks, size, exc = agent[order], tasks[order], size[order], exc[order]
        safe = np.where(tasks >= 0, tasks, 0)
        cost = np.where(tasks >= 0, C[agent[:, None], safe], 0.0).sum(axis=1)
        mask = np.zeros((len(agent) + 1, W), dtype=np.uint64)
        empty = np.full(m, -1, dtype=np.int64)
        nil = np.flatnonzero(size == 0)
        empty[agent[nil]] = nil
        for u in range(wide):
            t = tasks[:, u]
            on = t >= 0
            np.bitwise_or.at(mask, (np.flatnonzero(on), t[on] >> 6),
                             np.left_shift(np.uint64(1), (t[on] & 63).astype(np.uint64)))
        mask[-1] = full
        out.columns = len(agent)
        completed = False
        state = _CoverState(len(agent), m, W)
        while clock() < deadline:
            pick = np.full(m, -1, dtype=np.int64)
            t0 = clock()
            budget = int(min(max(1000.0, min(deadline - t0, CALL_S) * rate), float(1 << 60)))
            got, nodes, completed = _cover(agent, exc, cost, mask, tasks, size, m, n, const,
                                           float(step), best, budget, pick, *state.arrays, empty)
            dt = clock() - t0
            out.nodes += nodes
            rate = max(1000.0, nodes / dt) if dt > 0.005 else 2.0 * rate
            if got < best and pick.min() >= 0:
                plan = np.full(n, -1, dtype=np.int64)
                for q in pick.tolist():
                    plan[tasks[q, : size[q]]] = agent[q]
                best, best_plan = float(C[plan, ar].sum()), plan
                out.agent_of = plan
                if on_plan is not None:
                    on_plan(best)
            if completed:
                break
        if not completed:
            break
        width = g
        out.width = g
        if g >= best - step - const - 1e-6 * max(1.0, abs(best)):
            out.proven = True  # every set of a cheaper plan was there: none exists
            break
    out.cost = best
    return out


def warm_up() -> None:
    """Run every kernel once on a tiny packed step (numba's cache load or compile), for
    :func:`allocator.solvers.gap_bb.warm_up`."""
    import time

    C = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]])
    A = np.ones((2, 4), dtype=np.int64)
    cover_search(C, A, np.array([2, 2], dtype=np.int64), np.ones((2, 4), dtype=np.int64), 2,
                 np.zeros(4), np.array([1, 0, 1, 0]), step=1.0,
                 deadline=time.perf_counter() + 3600.0, clock=time.perf_counter)
