"""An exact compiled solver for the two-machine sub-problem of a waste step: every
process of two machines re-split between them, everything else fixed.

Why: a2_5's LNS is almost only such steps (`_Search.waste_machines`), about 40
processes on 2 machines; CP-SAT took 20 ms of CPU per model (4 ms of it building the
model in Python) for a problem of 40 binary choices. A depth-first branch and bound
over the choices, compiled, proves the same optimum in a fraction of that on most of
them; where it exceeds its node budget the caller falls back to CP-SAT.

The model is the sub-model of `subproblem.solve_subproblem` restricted to what a waste
step meets (instances without transient resources and balance objectives, every
process of both machines freed):

- one *item* per freed process, or per two processes of one service (conflict: they
  must sit on different machines, so one choice places both);
- capacity: per resource, the usage of machine A is within [T - cap(B), cap(A)]
  (T: the freed processes' total, both machines hold nothing else);
- spread: a process whose service needs its location gets only the machine(s) whose
  location its fixed siblings do not cover (items of two processes cover both);
- dependency (when the machines are in different neighbourhoods): clauses "if this
  choice puts service s in neighbourhood n, some choice puts d there", checked as
  soon as their last item is chosen;
- cost: load above safety on both machines, the move costs of the freed processes and
  the service-move maximum (the other services' maximum is a floor).

The bound of a partial choice is per resource the least load cost over the usage
interval the open items can still reach (the cost is convex in A's usage), plus each
open item's cheaper move cost and the moved counts so far.
"""

from __future__ import annotations

import numpy as np

from allocator.jit import HAVE_NUMBA
from allocator.jit import njit as _njit
from allocator.roadef.state import RoadefState

#: Branch-and-bound nodes before the solver stops with the best choice found (not proved
#: optimal): about 80 ms of CPU. a2_5, 1,421 recorded models: 1,418 proved within it, the
#: other 3 found CP-SAT's value.
PAIR_NODE_LIMIT = 1_000_000


@_njit(cache=True, nogil=True)
def _load_lb(lo: int, hi: int, t: int, sa: int, sb: int) -> int:
    """min over u in [lo, hi] of max(0, u - sa) + max(0, t - u - sb) (convex in u)."""
    best = -1
    for u0 in (t - sb, sa):
        u = min(max(u0, lo), hi)
        v = max(0, u - sa) + max(0, t - u - sb)
        if best < 0 or v < best:
            best = v
    return best


@_njit(cache=True, nogil=True)
def branch_and_bound(ca: np.ndarray, mcost: np.ndarray, isvc: np.ndarray, mv: np.ndarray,
                     allowed: np.ndarray, lw: np.ndarray, tot: np.ndarray, cap_a: np.ndarray,
                     cap_b: np.ndarray, saf_a: np.ndarray, saf_b: np.ndarray,
                     base_cnt: np.ndarray, other: int, w_sm: int, cl_at_ptr: np.ndarray,
                     cl_trig: np.ndarray, cl_lit_ptr: np.ndarray, cl_lit: np.ndarray,
                     start: np.ndarray, node_limit: int) -> tuple[np.ndarray, int, int, int]:
    """The best choice per item (0: machine A, 1: B), its cost, the start's cost, and the
    nodes visited (above `node_limit`: stopped, the choice is the best found so far).

    Clauses are bucketed by the item after whose choice they are checked
    (`cl_at_ptr`); a clause's trigger is item * 2 + choice (-1: always), its literals
    item * 2 + choice too; it holds when the trigger is not chosen or a literal is."""
    n, _, R = ca.shape
    S = base_cnt.shape[0]
    if n == 0:
        return start.copy(), 0, 0, 0
    smin = np.zeros((n + 1, R), dtype=np.int64)
    smax = np.zeros((n + 1, R), dtype=np.int64)
    smc = np.zeros(n + 1, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        for r in range(R):
            smin[i, r] = smin[i + 1, r] + min(ca[i, 0, r], ca[i, 1, r])
            smax[i, r] = smax[i + 1, r] + max(ca[i, 0, r], ca[i, 1, r])
        c0 = mcost[i, 0] if allowed[i, 0] else mcost[i, 1]
        c1 = mcost[i, 1] if allowed[i, 1] else mcost[i, 0]
        smc[i] = smc[i + 1] + min(c0, c1)
    # the start's cost (the current placement: feasible)
    ua = np.zeros(R, dtype=np.int64)
    cnt = base_cnt.copy()
    pc = 0
    for i in range(n):
        c = start[i]
        for r in range(R):
            ua[r] += ca[i, c, r]
        pc += mcost[i, c]
        cnt[isvc[i]] += mv[i, c]
    z = other
    for s in range(S):
        z = max(z, cnt[s])
    start_cost = pc + w_sm * z
    for r in range(R):
        start_cost += lw[r] * (max(0, ua[r] - saf_a[r]) + max(0, tot[r] - ua[r] - saf_b[r]))
    best = start_cost
    best_choice = start.copy()
    choice = np.full(n, -1, dtype=np.int64)
    tried = np.zeros(n, dtype=np.int64)
    ua[:] = 0
    cnt[:] = base_cnt
    pc = 0
    nodes = 0
    d = 0
    while d >= 0:
        if choice[d] >= 0:  # undo the previous child of this level
            c = choice[d]
            for r in range(R):
                ua[r] -= ca[d, c, r]
            pc -= mcost[d, c]
            cnt[isvc[d]] -= mv[d, c]
            choice[d] = -1
        if tried[d] == 2:
            tried[d] = 0
            d -= 1
            continue
        c = start[d] if tried[d] == 0 else 1 - start[d]
        tried[d] += 1
        if not allowed[d, c]:
            continue
        nodes += 1
        if nodes > node_limit:
            break
        for r in range(R):
            ua[r] += ca[d, c, r]
        pc += mcost[d, c]
        cnt[isvc[d]] += mv[d, c]
        choice[d] = c
        ok = True
        for k in range(cl_at_ptr[d], cl_at_ptr[d + 1]):
            t = cl_trig[k]
            if t >= 0 and choice[t >> 1] != (t & 1):
                continue
            hit = False
            for q in range(cl_lit_ptr[k], cl_lit_ptr[k + 1]):
                lit = cl_lit[q]
                if choice[lit >> 1] == (lit & 1):
                    hit = True
                    break
            if not hit:
                ok = False
                break
        if not ok:
            continue
        bound = pc + smc[d + 1]
        for r in range(R):
            lo = max(ua[r] + smin[d + 1, r], tot[r] - cap_b[r])
            hi = min(ua[r] + smax[d + 1, r], cap_a[r])
            if lo > hi:
                ok = False
                break
            if lw[r]:
                bound += lw[r] * _load_lb(lo, hi, tot[r], saf_a[r], saf_b[r])
        if not ok:
            continue
        z = other
        for s in range(S):
            z = max(z, cnt[s])
        bound += w_sm * z
        if bound >= best:
            continue
        if d == n - 1:  # a complete choice: the bound is its cost
            best = bound
            best_choice[:] = choice
            continue
        d += 1
    return best_choice, best, start_cost, nodes


class PairStatic:
    """What every sub-problem of one instance shares: each process's weighted size
    (the order of the items) and each service's dependency pairs, both directions."""

    def __init__(self, st: RoadefState) -> None:
        self.size = (st.req * st.lw).sum(axis=1).tolist()
        S = st.inst.n_services
        self.dep_pairs: list[list[tuple[int, int]]] = [
            [(s, int(d)) for d in st.deps[s].tolist()] + [(int(r), s) for r in st.rdeps[s].tolist()]
            for s in range(S)]
        self.has_deps = any(len(d) for d in st.deps)
        self.lw = st.lw.astype(np.int64)


class PairProblem:
    """The arrays of one two-machine sub-problem (see the module docstring): `ok` is
    False where the rules cannot be modelled (the caller then uses CP-SAT). `items`:
    the processes of each item (the second -1 for one process)."""

    def __init__(self, st: RoadefState, machines: np.ndarray, static: PairStatic) -> None:
        self.st = st
        self.ms = [int(m) for m in machines]
        self.static = static
        self.ok = False
        self._build()

    def _build(self) -> None:
        st = self.st
        ma, mb = self.ms
        a = st.a
        F = np.flatnonzero((a == ma) | (a == mb))
        svc = st.svc[F].tolist()
        fl = F.tolist()
        by_svc: dict[int, list[int]] = {}
        for p, s in zip(fl, svc, strict=True):
            by_svc.setdefault(s, []).append(p)
        # items: one process, or two of one service (choice 0: the first on A)
        items: list[tuple[int, int]] = []
        size = self.static.size
        keys: list[int] = []
        for ps in by_svc.values():
            if len(ps) > 2:
                return
            q = ps[1] if len(ps) == 2 else -1
            items.append((ps[0], q))
            keys.append(size[ps[0]] + (size[q] if q >= 0 else 0))
        # big items first: their choices move the bound most
        order = sorted(range(len(items)), key=lambda i: -keys[i])
        items = [items[i] for i in order]
        n = len(items)
        pa = np.asarray([p for p, _ in items], dtype=np.int64)
        qa = np.asarray([q for _, q in items], dtype=np.int64)
        two = qa >= 0
        q2 = qa[two]
        req = st.req
        R = req.shape[1]
        ca = np.zeros((n, 2, R), dtype=np.int64)
        ca[:, 0] = req[pa]
        ca[two, 1] = req[q2]
        init = st.init
        ms = np.asarray(self.ms, dtype=np.int64)
        ip, iq = init[pa], init[q2]
        mcost = np.zeros((n, 2), dtype=np.int64)
        mv = np.zeros((n, 2), dtype=np.int64)
        for c in (0, 1):
            m_p, m_q = ms[c], ms[1 - c]
            mcost[:, c] = (np.where(ip != m_p, st.pmc[pa], 0)
                           + st.w_mm * st.mmc[ip, m_p].astype(np.int64))
            mcost[two, c] += (np.where(iq != m_q, st.pmc[q2], 0)
                              + st.w_mm * st.mmc[iq, m_q].astype(np.int64))
            mv[:, c] = ip != m_p
            mv[two, c] += iq != m_q
        services = [int(st.svc[p]) for p in pa.tolist()]
        isvc = np.arange(n, dtype=np.int64)  # one item per service
        moved_now = (a[pa] != ip).astype(np.int64)
        moved_now[two] += a[q2] != iq
        base_cnt = st.svc_moved[np.asarray(services, dtype=np.int64)] - moved_now
        mask = np.ones(st.inst.n_services, dtype=bool)
        mask[services] = False
        other = int(st.svc_moved[mask].max(initial=0))
        allowed = np.ones((n, 2), dtype=bool)
        loc_a, loc_b = int(st.loc[ma]), int(st.loc[mb])
        if loc_a != loc_b:
            spread = st.inst.spread_min
            for i, s in enumerate(services):
                if spread[s] <= 0:
                    continue
                lc = st.loc_count[s]
                if items[i][1] >= 0:
                    # one process on each machine: the locations it covers are fixed
                    continue
                # one process p: the locations its siblings cover without it
                lp = int(st.loc[a[items[i][0]]])
                fixed_n = int(st.nloc[s]) - (1 if lc[lp] == 1 else 0)
                need = int(spread[s]) - fixed_n
                if need <= 0:
                    continue
                if need > 1:
                    return
                allowed[i, 0] = lc[loc_a] - (1 if lp == loc_a else 0) == 0
                allowed[i, 1] = lc[loc_b] - (1 if lp == loc_b else 0) == 0
        clauses = self._clauses(items, services, by_svc)
        if clauses is None:
            return
        at = np.zeros(n + 1, dtype=np.int64)
        trig, lit_ptr, lits = [], [0], []
        clauses.sort(key=lambda c: c[0])
        for k, (pos, t, ls) in enumerate(clauses):
            at[pos + 1] = k + 1
            trig.append(t)
            lits.extend(ls)
            lit_ptr.append(len(lits))
        at = np.maximum.accumulate(at)
        self.ok = True
        self.items = items
        self.start = (a[pa] != ma).astype(np.int64)
        self.args = (ca, mcost, isvc, mv, allowed, self.static.lw,
                     req[F].sum(axis=0).astype(np.int64),
                     st.cap[ma].astype(np.int64), st.cap[mb].astype(np.int64),
                     st.saf[ma].astype(np.int64), st.saf[mb].astype(np.int64), base_cnt,
                     other, int(st.w_sm), at,
                     np.asarray(trig, dtype=np.int64), np.asarray(lit_ptr, dtype=np.int64),
                     np.asarray(lits, dtype=np.int64))

    def _clauses(self, items: list[tuple[int, int]], services: list[int],
                 by_svc: dict[int, list[int]]) -> list[tuple[int, int, list[int]]] | None:
        """Dependency clauses (item checked after, trigger, literals), or None when the
        rules cannot hold (never for a feasible placement)."""
        st = self.st
        ma, mb = self.ms
        nbs = (int(st.nb[ma]), int(st.nb[mb]))
        if nbs[0] == nbs[1] or not self.static.has_deps:
            return []
        item_of = {s: i for i, s in enumerate(services)}
        pairs: set[tuple[int, int]] = set()
        for s in services:
            pairs.update(self.static.dep_pairs[s])
        if not pairs:
            return []
        ss = sorted(pairs)
        involved = sorted({x for pr in ss for x in pr})
        counts = st.nb_count[np.asarray(involved)][:, list(nbs)].tolist()
        fixed: dict[int, list[int]] = {}
        a = st.a
        for k, s in enumerate(involved):
            c0, c1 = counts[k]
            for p in by_svc.get(s, ()):
                if a[p] == ma:
                    c0 -= 1
                else:
                    c1 -= 1
            fixed[s] = [c0, c1]
        out: list[tuple[int, int, list[int]]] = []
        for side in (0, 1):
            for s, d in ss:
                if fixed[d][side] > 0:
                    continue
                di = item_of.get(d)
                lits: list[int] = []
                if di is not None:
                    if items[di][1] >= 0:
                        continue  # d's two processes: one on each machine
                    lits = [di * 2 + side]
                si = item_of.get(s)
                if fixed[s][side] > 0 or (si is not None and items[si][1] >= 0):
                    trig = -1
                elif si is not None:
                    trig = si * 2 + side
                else:
                    continue
                if trig < 0 and not lits:
                    return None
                pos = max([x >> 1 for x in lits] + ([trig >> 1] if trig >= 0 else [0]))
                out.append((pos, trig, lits))
        return out

    def solve(self, node_limit: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """(freed processes, their new machines, cost change, proved optimal)."""
        choice, best, start_cost, nodes = branch_and_bound(*self.args, self.start, node_limit)
        ms = self.ms
        procs, new = [], []
        for (p, q), c in zip(self.items, choice.tolist(), strict=True):
            procs.append(p)
            new.append(ms[c])
            if q >= 0:
                procs.append(q)
                new.append(ms[1 - c])
        order = np.argsort(procs)
        return (np.asarray(procs, dtype=np.int64)[order], np.asarray(new, dtype=np.int64)[order],
                int(best - start_cost), bool(nodes <= node_limit))


def pair_applies(st: RoadefState, machines: np.ndarray, freed: np.ndarray) -> bool:
    """Whether the compiled solver models this sub-problem: two machines, every process
    on them freed, no transient resource and no balance objective, numba installed."""
    if not HAVE_NUMBA or len(machines) != 2 or st.tr.any() or st.bal:
        return False
    return int(freed.size) == int(((st.a == machines[0]) | (st.a == machines[1])).sum())


def warm_up() -> None:
    """Load `branch_and_bound` from numba's cache (or compile it) before a timed solve:
    a two-item problem with the argument types `PairProblem` passes."""
    if not HAVE_NUMBA:
        return
    i64 = np.int64
    ca = np.ones((2, 2, 1), dtype=i64)
    two = np.zeros((2, 2), dtype=i64)
    one = np.ones(1, dtype=i64)
    branch_and_bound(ca, two, np.arange(2, dtype=i64), two, np.ones((2, 2), dtype=bool), one,
                     2 * one, 2 * one, 2 * one, one, one, np.zeros(2, dtype=i64), 0, 1,
                     np.zeros(3, dtype=i64), np.zeros(0, dtype=i64), np.zeros(1, dtype=i64),
                     np.zeros(0, dtype=i64), np.zeros(2, dtype=i64), 100)
