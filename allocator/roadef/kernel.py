"""Compiled move kernel of the ROADEF search: simulated annealing over shifts and
swaps on the arrays of a `RoadefState`, millions of moves per second.

Why compiled: the vectorised numpy screens of `solver.py` evaluate a few
thousand processes per second, and the shift/swap descent ends in local
optima far from the challenge's best results (a2_2, a2_5: 40-60 % above).
The winning teams evaluated millions of moves per second and escaped those
optima by accepting worsening moves; numba gives the same speed to the same
rules. Without numba (an optional import) the functions are plain Python:
correct, only slow, and the solver does not call them then.

Every move is checked before it is kept: capacity with the transient rule,
conflict, spread and dependency (after applying it, on the services and
neighbourhoods it touched; a failing move is undone), so the state is
feasible after every iteration. The cost is kept incrementally exactly as in
`RoadefState.move` (same arrays, updated in place); `tot` holds the totals
[machine load+balance, process move, machine move, max moved per service].
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from allocator.jit import HAVE_NUMBA as HAVE_NUMBA
from allocator.jit import njit as _njit

#: Compiles a kernel function without numba's reference counting (see above; `_nrt`
#: is numba's own switch, not in its type stubs): every function but the two entry
#: points that allocate the scratch arrays (`anneal`, `steepest`).
_leaf: Any = _njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]


class KState(NamedTuple):
    """The arrays of a `RoadefState` the kernel reads and updates in place (one
    object, so a kernel function takes the search state as one argument), plus
    the per-machine process lists and `tot`, the totals [machine load+balance,
    process move, machine move, max moved per service]."""

    a: np.ndarray
    init: np.ndarray
    svc: np.ndarray
    req: np.ndarray
    pmc: np.ndarray
    use: np.ndarray
    hard: np.ndarray
    mc: np.ndarray
    cap: np.ndarray
    saf: np.ndarray
    lw: np.ndarray
    tr: np.ndarray
    b1: np.ndarray
    b2: np.ndarray
    bt: np.ndarray
    bw: np.ndarray
    mmc: np.ndarray
    w_mm: int
    w_sm: int
    loc: np.ndarray
    nb: np.ndarray
    loc_count: np.ndarray
    nloc: np.ndarray
    nb_count: np.ndarray
    spread_min: np.ndarray
    svc_moved: np.ndarray
    hist: np.ndarray
    tot: np.ndarray
    sib_ptr: np.ndarray
    sib_idx: np.ndarray
    dep_ptr: np.ndarray
    dep_idx: np.ndarray
    rdep_ptr: np.ndarray
    rdep_idx: np.ndarray
    mproc: np.ndarray
    mcnt: np.ndarray
    ppos: np.ndarray


def _mcost_py(S: KState, m: int, u: np.ndarray) -> int:
    """Load + balance cost of machine m with usage row u."""
    saf, cap, lw = S.saf, S.cap, S.lw
    b1, b2, bt, bw = S.b1, S.b2, S.bt, S.bw
    c = 0
    for r in range(u.shape[0]):
        d = u[r] - saf[m, r]
        if d > 0:
            c += lw[r] * d
    for k in range(b1.shape[0]):
        v = bt[k] * (cap[m, b1[k]] - u[b1[k]]) - (cap[m, b2[k]] - u[b2[k]])
        if v > 0:
            c += bw[k] * v
    return c


_mcost = _leaf(_mcost_py)
_mcost_i = _njit(inline="always")(_mcost_py)


@_njit(cache=True, nogil=True)
def _mcost_n(S: KState, m: int, u: np.ndarray) -> int:
    """`_mcost` with reference counting (called from `steepest`)."""
    return _mcost_i(S, m, u)


def _added_cost_py(S: KState, p: int, m: int, u1: np.ndarray) -> int:
    """The change of machine m's load + balance cost when p joins it (u1: scratch row)."""
    for r in range(u1.shape[0]):
        u1[r] = S.use[m, r] + S.req[p, r]
    return _mcost_i(S, m, u1) - S.mc[m]


_added_cost = _leaf(_added_cost_py)
_added_cost_i = _njit(inline="always")(_added_cost_py)


@_leaf
def _copy(src: np.ndarray, dst: np.ndarray) -> None:
    """dst[:] = src (a slice assignment may allocate: not without reference counting)."""
    for i in range(src.shape[0]):
        dst[i] = src[i]


@_leaf
def _gcd(x: int, y: int) -> int:
    while y:
        x, y = y, x % y
    return x


@_leaf
def _apply(S: KState, p: int, m: int) -> None:
    """Shift p to m, every count and total in step (as `RoadefState.move`), and the
    per-machine process lists (`mproc[m, :mcnt[m]]`, p at `ppos[p]`)."""
    a, use, hard, req, tr, tot = S.a, S.use, S.hard, S.req, S.tr, S.tot
    mproc, mcnt, ppos = S.mproc, S.mcnt, S.ppos
    m0 = a[p]
    if m == m0:
        return
    k = ppos[p]
    last = mproc[m0, mcnt[m0] - 1]
    mproc[m0, k] = last
    ppos[last] = k
    mcnt[m0] -= 1
    mproc[m, mcnt[m]] = p
    ppos[p] = mcnt[m]
    mcnt[m] += 1
    i0 = S.init[p]
    s = S.svc[p]
    R = req.shape[1]
    for r in range(R):
        q = req[p, r]
        use[m0, r] -= q
        use[m, r] += q
        if tr[r]:
            if m0 != i0:
                hard[m0, r] -= q
            if m != i0:
                hard[m, r] += q
        else:
            hard[m0, r] -= q
            hard[m, r] += q
    mc = S.mc
    c0 = _mcost(S, m0, use[m0])
    c1 = _mcost(S, m, use[m])
    tot[0] += c0 - mc[m0] + c1 - mc[m]
    mc[m0] = c0
    mc[m] = c1
    was = m0 != i0
    now = m != i0
    if was != now:
        sign = 1 if now else -1
        tot[1] += sign * S.pmc[p]
        hist = S.hist
        c = S.svc_moved[s]
        hist[c] -= 1
        c += sign
        S.svc_moved[s] = c
        hist[c] += 1
        if c > tot[3]:
            tot[3] = c
        elif hist[tot[3]] == 0:
            tot[3] -= 1
    tot[2] += S.w_mm * (np.int64(S.mmc[i0, m]) - np.int64(S.mmc[i0, m0]))
    l0 = S.loc[m0]
    l1 = S.loc[m]
    if l0 != l1:
        loc_count, nloc = S.loc_count, S.nloc
        loc_count[s, l0] -= 1
        if loc_count[s, l0] == 0:
            nloc[s] -= 1
        loc_count[s, l1] += 1
        if loc_count[s, l1] == 1:
            nloc[s] += 1
    n0 = S.nb[m0]
    n1 = S.nb[m]
    if n0 != n1:
        S.nb_count[s, n0] -= 1
        S.nb_count[s, n1] += 1
    a[p] = m


@_leaf
def _swap_load_delta(S: KState, p: int, q: int, m1: int, m2: int, u0: np.ndarray,
                     u1: np.ndarray) -> int:
    """Load + balance change of swapping p (on m1) and q (on m2); 1 << 62 when the
    hard usage (transient rule) does not fit."""
    req, use, hard, cap, tr = S.req, S.use, S.hard, S.cap, S.tr
    ip = S.init[p]
    iq = S.init[q]
    for r in range(req.shape[1]):
        rp = req[p, r]
        rq = req[q, r]
        if tr[r]:
            # what leaves stays held at home, what comes home is already held
            h1 = hard[m1, r] - (rp if m1 != ip else 0) + (rq if m1 != iq else 0)
            h2 = hard[m2, r] - (rq if m2 != iq else 0) + (rp if m2 != ip else 0)
        else:
            h1 = hard[m1, r] - rp + rq
            h2 = hard[m2, r] - rq + rp
        if h1 > cap[m1, r] or h2 > cap[m2, r]:
            return 1 << 62
        u0[r] = use[m1, r] - rp + rq
        u1[r] = use[m2, r] - rq + rp
    return (_mcost(S, m1, u0) - S.mc[m1]
            + _mcost(S, m2, u1) - S.mc[m2])


@_leaf
def _swap_delta_below(S: KState, p: int, q: int, m1: int, m2: int, u0: np.ndarray,
                      u1: np.ndarray, limit: int) -> int:
    """`_swap_load_delta` in one pass over the resources that stops (1 << 62) as soon
    as the change reaches `limit`. Why: the annealing prices 20 swap partners a move
    and keeps only the best; the two machines' load terms only grow resource by
    resource (balance terms are >= 0 and come last), so a partner that cannot beat
    the best so far is known before its rows are read in full (a2_2: swaps were
    about 80 % of the kernel's time). Returns the exact change when below `limit`."""
    req, use, hard, cap, tr, saf, lw = S.req, S.use, S.hard, S.cap, S.tr, S.saf, S.lw
    ip = S.init[p]
    iq = S.init[q]
    acc = -(S.mc[m1] + S.mc[m2])
    for r in range(req.shape[1]):
        rp = req[p, r]
        rq = req[q, r]
        if tr[r]:
            h1 = hard[m1, r] - (rp if m1 != ip else 0) + (rq if m1 != iq else 0)
            h2 = hard[m2, r] - (rq if m2 != iq else 0) + (rp if m2 != ip else 0)
        else:
            h1 = hard[m1, r] - rp + rq
            h2 = hard[m2, r] - rq + rp
        if h1 > cap[m1, r] or h2 > cap[m2, r]:
            return 1 << 62
        x0 = use[m1, r] - rp + rq
        x1 = use[m2, r] - rq + rp
        u0[r] = x0
        u1[r] = x1
        d0 = x0 - saf[m1, r]
        if d0 > 0:
            acc += lw[r] * d0
        d1 = x1 - saf[m2, r]
        if d1 > 0:
            acc += lw[r] * d1
        if acc >= limit:
            return 1 << 62
    b1, b2, bt, bw, cap = S.b1, S.b2, S.bt, S.bw, S.cap
    for k in range(b1.shape[0]):
        v = bt[k] * (cap[m1, b1[k]] - u0[b1[k]]) - (cap[m1, b2[k]] - u0[b2[k]])
        if v > 0:
            acc += bw[k] * v
        v = bt[k] * (cap[m2, b1[k]] - u1[b1[k]]) - (cap[m2, b2[k]] - u1[b2[k]])
        if v > 0:
            acc += bw[k] * v
    return acc if acc < limit else 1 << 62


@_leaf
def _service_ok(S: KState, p: int, m_other: int) -> bool:
    """After p (service s) moved: conflict, spread, and the dependency rules of s
    in the neighbourhoods of p's machine and of `m_other` (where it came from)."""
    a, nb, nb_count = S.a, S.nb, S.nb_count
    s = S.svc[p]
    m = a[p]
    for k in range(S.sib_ptr[s], S.sib_ptr[s + 1]):
        q = S.sib_idx[k]
        if q != p and a[q] == m:
            return False
    if S.nloc[s] < S.spread_min[s]:
        return False
    for t in range(2):
        n = nb[m] if t == 0 else nb[m_other]
        if nb_count[s, n] > 0:
            for k in range(S.dep_ptr[s], S.dep_ptr[s + 1]):
                if nb_count[S.dep_idx[k], n] == 0:
                    return False
        else:
            for k in range(S.rdep_ptr[s], S.rdep_ptr[s + 1]):
                if nb_count[S.rdep_idx[k], n] > 0:
                    return False
    return True


@_leaf
def _shift(S: KState, p: int, m: int) -> bool:
    """Apply p -> m and keep it when the service rules hold (True); else undo it."""
    m0 = S.a[p]
    _apply(S, p, m)
    if _service_ok(S, p, m0):
        return True
    _apply(S, p, m0)
    return False


@_leaf
def _apply_pair(S: KState, p: int, mp: int, q: int, mq: int) -> bool:
    """Apply p -> mp then q -> mq (a swap, or a chain's two steps) and keep both
    when the service rules hold for both (True); else undo both, in reverse."""
    p0 = S.a[p]
    q0 = S.a[q]
    _apply(S, p, mp)
    _apply(S, q, mq)
    if _service_ok(S, p, p0) and _service_ok(S, q, q0):
        return True
    _apply(S, q, q0)
    _apply(S, p, p0)
    return False


@_leaf
def _max_moved_after(sp: int, cp: int, sq: int, cq: int, svc_moved: np.ndarray,
                     hist: np.ndarray, mx: int) -> int:
    """The largest moved count per service after service sp's count changes by cp
    and sq's by cq (sp may equal sq); the histogram is left as it was."""
    if sp == sq:
        cp += cq
        cq = 0
    a_p = svc_moved[sp] + cp
    hist[svc_moved[sp]] -= 1
    hist[a_p] += 1
    a_q = svc_moved[sq] + cq
    if sq != sp:
        hist[svc_moved[sq]] -= 1
        hist[a_q] += 1
    nm = max(mx, a_p, a_q)
    while nm > 0 and hist[nm] == 0:
        nm -= 1
    hist[a_p] -= 1
    hist[svc_moved[sp]] += 1
    if sq != sp:
        hist[a_q] -= 1
        hist[svc_moved[sq]] += 1
    return nm


def _fits_on_py(S: KState, p: int, m: int, ip: int) -> bool:
    """p fits on m by hard usage (coming home adds nothing on transient resources)."""
    req, hard, cap, tr = S.req, S.hard, S.cap, S.tr
    for r in range(req.shape[1]):
        q = req[p, r]
        if tr[r] and m == ip:
            q = 0
        if hard[m, r] + q > cap[m, r]:
            return False
    return True


_fits_on = _leaf(_fits_on_py)
_fits_on_i = _njit(inline="always")(_fits_on_py)


@_njit(cache=True, nogil=True)
def _fits_on_n(S: KState, p: int, m: int, ip: int) -> bool:
    """`_fits_on` with reference counting (called from `steepest`)."""
    return _fits_on_i(S, p, m, ip)


@_leaf
def build_lists(a: np.ndarray, n_machines: int, width: int, mproc: np.ndarray,
                mcnt: np.ndarray, ppos: np.ndarray) -> None:
    """The processes of each machine (`mproc[m, :mcnt[m]]`) and each one's slot."""
    mcnt[:] = 0
    for p in range(a.shape[0]):
        m = a[p]
        mproc[m, mcnt[m]] = p
        ppos[p] = mcnt[m]
        mcnt[m] += 1


@_leaf
def _eject(S: KState, p: int, m2: int, depth: int, temp: float, mv: np.ndarray,
           frm: np.ndarray, u0: np.ndarray, u1: np.ndarray) -> bool:
    """Make room: p moves to m2 even where it does not fit, then up to `depth`
    processes of m2 leave, each the best (process, machine) pair over every
    machine, until m2's capacity holds; kept by the Metropolis rule at `temp` on
    the exact total change, else undone. Why: a big process on a costly machine
    (a2_5: one process alone on a zero-safety machine, 78 million) fits under
    safety only on machines full of smaller processes; a shift never fits there,
    a swap or a chain frees one process's room, and the annealing does not build
    that room step by step before small processes flow back into it.

    mv (int64[depth + 1 + (R + 1) M]) holds the moves, then scratch rows (room
    [R, M], ok_m [M]): the scan tests whether q fits on every machine at once,
    resource by resource over a row of machines (no branch per target: most targets
    do not fit, a2_5: 82 %), marks its service's machines, then evaluates the other
    targets in machine order, so the pair chosen is the one a scan target by target
    picks."""
    a, init, svc, req, pmc = S.a, S.init, S.svc, S.req, S.pmc
    use, hard, mc, tot, mmc, cap, tr = S.use, S.hard, S.mc, S.tot, S.mmc, S.cap, S.tr
    mproc, mcnt, w_mm = S.mproc, S.mcnt, S.w_mm
    M = use.shape[0]
    R = req.shape[1]
    width = mproc.shape[1]
    # load costs only grow with usage, and a balance cost falls by at most its weight
    # times the fall of its term, which depends on q alone: a target's cost change is
    # at least its move costs plus that bound (`lbq`), so a target whose bound does
    # not beat the best pair so far is skipped without its rows (same pair chosen)
    b1, b2, bt, bw = S.b1, S.b2, S.bt, S.bw
    before = tot[0] + tot[1] + tot[2] + S.w_sm * tot[3]
    mv[0] = p
    frm[0] = a[p]
    n = 1
    _apply(S, p, m2)
    # scratch after the moves (one array: an argument more slows `_anneal`'s other moves)
    room = mv[depth + 1:depth + 1 + R * M]
    ok_m = mv[depth + 1 + R * M:depth + 1 + (R + 1) * M]
    # room[r, m]: capacity minus hard usage (only m2 and a level's target change)
    for m in range(M):
        for r in range(R):
            room[r * M + m] = cap[m, r] - hard[m, r]
    any_tr = False
    for r in range(R):
        if tr[r]:
            any_tr = True
    for _d in range(depth):
        over = False
        for r in range(R):
            if hard[m2, r] > cap[m2, r]:
                over = True
                break
        if not over:
            break
        best_d = np.int64(1) << 62
        bq = -1
        bm = -1
        for k in range(mcnt[m2]):
            q = mproc[m2, k]
            if q == p:
                continue
            iq = init[q]
            sq = svc[q]
            for r in range(R):
                u0[r] = use[m2, r] - req[q, r]
            d_out = (_mcost(S, m2, u0) - mc[m2] - w_mm * np.int64(mmc[iq, m2])
                     - (pmc[q] if m2 != iq else 0))
            lbq = np.int64(0)
            for k in range(b1.shape[0]):
                dv = np.int64(req[q, b2[k]]) - bt[k] * np.int64(req[q, b1[k]])
                if dv < 0:
                    lbq += bw[k] * dv
            # the least q's move can cost: a target's added load and machine move
            # cost are >= 0, its balance cost change >= lbq, and leaving home costs
            # its process move cost
            lb = d_out + (pmc[q] if m2 == iq else 0) + lbq
            if lb >= best_d:
                continue
            # ok_m[m] == 0: q fits on m by hard usage (home: `_fits_on`'s own test)
            for m in range(M):
                ok_m[m] = 0
            for r in range(R):
                rq = req[q, r]
                for m in range(M):
                    ok_m[m] |= rq > room[r * M + m]
            if any_tr:
                ok_m[iq] = 0 if _fits_on_i(S, q, iq, iq) else 1
            # nor where a process of its service is (q's own machine, m2, among them)
            for j in range(S.sib_ptr[sq], S.sib_ptr[sq + 1]):
                ok_m[a[S.sib_idx[j]]] = 1
            for m3 in range(M):
                if ok_m[m3] or mcnt[m3] >= width:
                    continue
                d = d_out + w_mm * np.int64(mmc[iq, m3]) + (pmc[q] if m3 != iq else 0)
                if d + lbq >= best_d:
                    continue
                d += _added_cost_i(S, q, m3, u1)
                if d < best_d:
                    best_d = d
                    bq = q
                    bm = m3
                    if d <= lb:
                        break  # no later target of q does better
        if bq < 0:
            break
        mv[n] = bq
        frm[n] = m2
        n += 1
        _apply(S, bq, bm)
        for r in range(R):
            room[r * M + m2] = cap[m2, r] - hard[m2, r]
            room[r * M + bm] = cap[bm, r] - hard[bm, r]
    ok = True
    for r in range(R):
        if hard[m2, r] > cap[m2, r]:
            ok = False
            break
    if ok:
        for i in range(n):
            if not _service_ok(S, mv[i], frm[i]):
                ok = False
                break
    if ok:
        delta = tot[0] + tot[1] + tot[2] + S.w_sm * tot[3] - before
        if delta > 0 and (temp <= 0 or np.random.random() >= math.exp(-delta / temp)):
            ok = False
    if ok:
        return True
    for i in range(n - 1, -1, -1):
        _apply(S, mv[i], frm[i])
    return False


@_njit(cache=True, nogil=True)
def anneal(S: KState, n_iter: int, t_start: float, t_end: float, p_swap: float,
           p_chain: float, scan: int, swap_scan: int, chain_scan: int, focus: int,
           seed: int, best_a: np.ndarray, best: np.ndarray, stats: np.ndarray,
           p_eject: float = 0.0, eject_depth: int = 4) -> None:
    """`n_iter` random moves with the Metropolis rule at a temperature falling
    geometrically from `t_start` to `t_end`: shifts, swaps (share `p_swap`) and
    ejection chains (share `p_chain`: p moves to m2 and one process of m2 makes
    room by moving on to a third machine). With `focus` > 1 the moved process
    comes from the costliest of that many random machines (the scarce room of
    tight instances goes to the moves off overloaded machines first). Keeps the
    best placement in `best_a` and its cost in best[0]. stats: [shifts kept, swaps
    kept, tried, chains kept, ejections kept, ejections tried]. With `p_eject` > 0
    that share of the moves are ejections (`_eject`: p, from the costliest of 3
    random machines, goes to a random machine and up to `eject_depth` of that
    machine's processes leave to make room)."""
    R = S.req.shape[1]
    _anneal(S, n_iter, t_start, t_end, p_swap, p_chain, scan, swap_scan, chain_scan, focus,
            seed, best_a, best, stats, p_eject, eject_depth, np.empty(R, dtype=np.int64),
            np.empty(R, dtype=np.int64), np.empty(R, dtype=np.int64),
            np.empty(R, dtype=np.int64),
            np.empty(eject_depth + 1 + (R + 1) * S.use.shape[0], dtype=np.int64),
            np.empty(eject_depth + 1, dtype=np.int64))


@_leaf
def _anneal(S: KState, n_iter: int, t_start: float, t_end: float, p_swap: float,
            p_chain: float, scan: int, swap_scan: int, chain_scan: int, focus: int,
            seed: int, best_a: np.ndarray, best: np.ndarray, stats: np.ndarray,
            p_eject: float, eject_depth: int, u0: np.ndarray, u1: np.ndarray,
            u2: np.ndarray, hp: np.ndarray, mv: np.ndarray, frm: np.ndarray) -> None:
    """`anneal` on scratch rows of R (u0, u1, u2, hp), eject_depth + 1 (frm) and
    `_eject`'s mv."""
    a, init, svc, req, pmc = S.a, S.init, S.svc, S.req, S.pmc
    use, hard, mc, tot, mmc = S.use, S.hard, S.mc, S.tot, S.mmc
    w_mm, w_sm, svc_moved, hist = S.w_mm, S.w_sm, S.svc_moved, S.hist
    mproc, mcnt, cap, tr = S.mproc, S.mcnt, S.cap, S.tr
    np.random.seed(seed)
    P = a.shape[0]
    M = use.shape[0]
    R = req.shape[1]
    width = mproc.shape[1]
    cost = tot[0] + tot[1] + tot[2] + w_sm * tot[3]
    ratio = 1.0
    if n_iter > 1 and t_start > 0 and t_end > 0:
        ratio = (t_end / t_start) ** (1.0 / (n_iter - 1))
    temp = t_start
    # a stride coprime with M walks `scan` distinct targets from a random start
    stride = 1
    if scan < M:
        stride = 7919 % M if M > 1 else 1
        while stride < 1 or _gcd(stride, M) != 1:
            stride += 1
    pstride = 1
    if swap_scan < P:
        pstride = 104729 % P if P > 1 else 1
        while pstride < 1 or _gcd(pstride, P) != 1:
            pstride += 1
    for _ in range(n_iter):
        temp *= ratio
        stats[2] += 1
        if p_eject > 0 and np.random.random() < p_eject:
            m1 = np.random.randint(M)
            for _f in range(2):
                mm = np.random.randint(M)
                if mc[mm] > mc[m1]:
                    m1 = mm
            if mcnt[m1] == 0:
                continue
            p = mproc[m1, np.random.randint(mcnt[m1])]
            m2 = np.random.randint(M)
            if m2 == m1 or mcnt[m2] >= width:
                continue
            stats[5] += 1
            if not _eject(S, p, m2, eject_depth, temp, mv, frm, u0, u1):
                continue
            stats[4] += 1
            cost = tot[0] + tot[1] + tot[2] + w_sm * tot[3]
            if cost < best[0]:
                best[0] = cost
                _copy(a, best_a)
            continue
        if focus > 0:
            # the process comes from the costliest of `focus` random machines
            m1 = np.random.randint(M)
            for _f in range(focus - 1):
                mm = np.random.randint(M)
                if mc[mm] > mc[m1]:
                    m1 = mm
            if mcnt[m1] == 0:
                continue
            p = mproc[m1, np.random.randint(mcnt[m1])]
        else:
            p = np.random.randint(P)
        m1 = a[p]
        sp = svc[p]
        ip = init[p]
        kind = np.random.random()
        if kind < p_chain:
            # -- ejection chain: p -> m2, q (on m2) -> m3; the best q and m3 of a scan
            m2 = np.random.randint(M)
            if m2 == m1 or M < 3:
                continue
            for r in range(R):
                u0[r] = use[m1, r] - req[p, r]
                hp[r] = hard[m2, r] + (0 if (tr[r] and m2 == ip) else req[p, r])
            d_p = (_mcost(S, m1, u0) - mc[m1]
                   + w_mm * (np.int64(mmc[ip, m2]) - np.int64(mmc[ip, m1])))
            cp = (1 if m2 != ip else 0) - (1 if m1 != ip else 0)
            d_p += cp * pmc[p]
            best_d = np.int64(1) << 62
            q_ = -1
            m3_ = -1
            for k in range(mcnt[m2]):
                qq = mproc[m2, k]
                iq = init[qq]
                fits = True
                for r in range(R):
                    h = hp[r] - (0 if (tr[r] and m2 == iq) else req[qq, r])
                    if h > cap[m2, r]:
                        fits = False
                        break
                if not fits:
                    continue
                for r in range(R):
                    u1[r] = use[m2, r] + req[p, r] - req[qq, r]
                d_q0 = (d_p + _mcost(S, m2, u1) - mc[m2]
                        - w_mm * np.int64(mmc[iq, m2])
                        - (pmc[qq] if m2 != iq else 0))
                for _j in range(chain_scan):
                    m3 = np.random.randint(M)
                    if m3 == m1 or m3 == m2 or mcnt[m3] >= width:  # noqa: SIM109 (numba)
                        continue
                    if not _fits_on(S, qq, m3, iq):
                        continue
                    for r in range(R):
                        u2[r] = use[m3, r] + req[qq, r]
                    d = (d_q0 + _mcost(S, m3, u2) - mc[m3]
                         + w_mm * np.int64(mmc[iq, m3]) + (pmc[qq] if m3 != iq else 0))
                    if d < best_d:
                        best_d = d
                        q_ = qq
                        m3_ = m3
            if q_ < 0:
                continue
            delta = best_d
            sq = svc[q_]
            iq = init[q_]
            cq = (1 if m3_ != iq else 0) - (1 if m2 != iq else 0)
            if w_sm and (cp != 0 or cq != 0):
                delta += w_sm * (_max_moved_after(sp, cp, sq, cq, svc_moved, hist, tot[3])
                                 - tot[3])
            if delta > 0 and (temp <= 0 or np.random.random() >= math.exp(-delta / temp)):
                continue
            # q makes room first, then p arrives
            if not _apply_pair(S, q_, m3_, p, m2):
                continue
            stats[3] += 1
        elif kind >= p_chain + p_swap:
            # -- shift p -> m2: the best of `scan` random targets (all when scan >= M)
            for r in range(R):
                u0[r] = use[m1, r] - req[p, r]
            d_out = _mcost(S, m1, u0) - mc[m1]
            c = svc_moved[sp]
            delta = np.int64(1) << 62
            m2 = -1
            k0 = np.random.randint(M)
            for k in range(min(scan, M)):
                mm = (k0 + k * stride) % M if scan < M else (k0 + k) % M
                if mm == m1 or mcnt[mm] >= width:
                    continue
                if not _fits_on(S, p, mm, ip):
                    continue
                d = d_out + _added_cost(S, p, mm, u1)
                d += w_mm * (np.int64(mmc[ip, mm]) - np.int64(mmc[ip, m1]))
                if m1 == ip:  # leaves home
                    d += pmc[p]
                    if c + 1 > tot[3]:
                        d += w_sm
                elif mm == ip:  # comes home
                    d -= pmc[p]
                    if c == tot[3] and hist[c] == 1:
                        d -= w_sm
                if d < delta:
                    delta = d
                    m2 = mm
            if m2 < 0:
                continue
            if delta > 0 and (temp <= 0 or np.random.random() >= math.exp(-delta / temp)):
                continue
            if not _shift(S, p, m2):
                continue
            stats[0] += 1
        else:
            # -- swap p (on m1) with q (on m2): the best of `swap_scan` random partners
            best_d = np.int64(1) << 62
            q_ = -1
            qq = np.random.randint(P)
            for k in range(min(swap_scan, P)):
                if k > 0:
                    qq += pstride  # (k0 + k * pstride) % P without a division
                    if qq >= P:
                        qq -= P
                mq = a[qq]
                if mq == m1 or svc[qq] == sp:
                    continue
                iqq = init[qq]
                dm = (w_mm * (np.int64(mmc[ip, mq]) - np.int64(mmc[ip, m1])
                              + np.int64(mmc[iqq, m1]) - np.int64(mmc[iqq, mq]))
                      + ((1 if mq != ip else 0) - (1 if m1 != ip else 0)) * pmc[p]
                      + ((1 if m1 != iqq else 0) - (1 if mq != iqq else 0)) * pmc[qq])
                # a partner is skipped when its load change alone reaches the best so
                # far, or with its move costs: priced only up to there (same choice)
                d = _swap_delta_below(S, p, qq, m1, mq, u0, u1, min(best_d, best_d - dm))
                if d >= (1 << 62):
                    continue
                d += dm
                if d < best_d:
                    best_d = d
                    q_ = qq
            if q_ < 0:
                continue
            m2 = a[q_]
            sq = svc[q_]
            iq = init[q_]
            delta = best_d
            cp = (1 if m2 != ip else 0) - (1 if m1 != ip else 0)
            cq = (1 if m1 != iq else 0) - (1 if m2 != iq else 0)
            if w_sm and (cp != 0 or cq != 0):
                delta += w_sm * (_max_moved_after(sp, cp, sq, cq, svc_moved, hist, tot[3])
                                 - tot[3])
            if delta > 0 and (temp <= 0 or np.random.random() >= math.exp(-delta / temp)):
                continue
            if not _apply_pair(S, p, m2, q_, m1):
                continue
            stats[1] += 1
        cost = tot[0] + tot[1] + tot[2] + w_sm * tot[3]
        if cost < best[0]:
            best[0] = cost
            _copy(a, best_a)


@_njit(cache=True, nogil=True)
def steepest(S: KState, max_moves: int, swaps: bool, stats: np.ndarray) -> None:
    """Steepest descent: apply the best improving shift over every (process, machine)
    pair, or when none improves the best improving swap over every pair of
    processes, until neither improves (or `max_moves`). Why: on tight instances
    the room a move takes is scarce, and the moves that gain most should get it
    first; a descent in random order spends it on small gains (a2_2: 1.27e9
    against 1.13e9 for the same moves taken best first)."""
    a, init, svc, req, pmc = S.a, S.init, S.svc, S.req, S.pmc
    use, mc, tot, mmc = S.use, S.mc, S.tot, S.mmc
    w_mm, w_sm, svc_moved, hist = S.w_mm, S.w_sm, S.svc_moved, S.hist
    sib_ptr, sib_idx, mproc, mcnt = S.sib_ptr, S.sib_idx, S.mproc, S.mcnt
    P = a.shape[0]
    M = use.shape[0]
    R = req.shape[1]
    u0 = np.empty(R, dtype=np.int64)
    u1 = np.empty(R, dtype=np.int64)
    dout = np.empty(P, dtype=np.int64)
    # room[r, m]: capacity minus hard usage; nf[m] != 0: the process at hand does not
    # fit on m or a process of its service is there (one pass per resource over a row
    # of machines, as in `_eject`: no branch per target)
    room = np.empty((R, M), dtype=np.int64)
    nf = np.empty(M, dtype=np.int64)
    any_tr = False
    for r in range(R):
        if S.tr[r]:
            any_tr = True
    banned = np.zeros((P, M), dtype=np.bool_)
    # swaps that broke a spread or dependency rule (not tried again)
    bad_p = np.empty(64, dtype=np.int64)
    bad_q = np.empty(64, dtype=np.int64)
    n_bad = 0
    has_ban = False  # a shift is banned
    stale = False  # ... and a move was kept after it
    width = mproc.shape[1]
    no_bal = S.b1.shape[0] == 0
    for _ in range(max_moves):
        best_d = np.int64(0)
        bp = -1
        bm = -1
        for m in range(M):
            for r in range(R):
                room[r, m] = S.cap[m, r] - S.hard[m, r]
        for p in range(P):
            m1 = a[p]
            ip = init[p]
            sp = svc[p]
            for r in range(R):
                u0[r] = use[m1, r] - req[p, r]
            d_out = _mcost_n(S, m1, u0) - mc[m1]
            dout[p] = d_out
            if no_bal and m1 == ip and d_out >= best_d:
                # load costs only grow with usage and leaving home adds move costs:
                # no target beats the best found so far
                continue
            for mm in range(M):
                nf[mm] = 0
            for r in range(R):
                rq = req[p, r]
                for mm in range(M):
                    nf[mm] |= rq > room[r, mm]
            if any_tr:
                nf[ip] = 0 if _fits_on_n(S, p, ip, ip) else 1
            for k in range(sib_ptr[sp], sib_ptr[sp + 1]):
                nf[a[sib_idx[k]]] = 1  # p's own machine among them
            c = svc_moved[sp]
            for mm in range(M):
                if nf[mm] or banned[p, mm] or mcnt[mm] >= width:
                    continue
                d = d_out + w_mm * (np.int64(mmc[ip, mm]) - np.int64(mmc[ip, m1]))
                if m1 == ip:
                    d += pmc[p]
                    if c + 1 > tot[3]:
                        d += w_sm
                elif mm == ip:
                    d -= pmc[p]
                    if c == tot[3] and hist[c] == 1:
                        d -= w_sm
                if d >= best_d:
                    continue
                d += _added_cost_i(S, p, mm, u1)
                if d < best_d:
                    best_d = d
                    bp = p
                    bm = mm
        if bp >= 0:
            if _shift(S, bp, bm):
                stats[0] += 1
                stale = has_ban
            else:
                banned[bp, bm] = True
                has_ban = True
            continue
        if stale:
            # a shift that broke a rule may keep it after the moves since: one more
            # pass with none banned (each pass follows a kept move: it ends)
            banned[:] = False
            has_ban = False
            stale = False
            continue
        if not swaps:
            return
        # no improving shift: the best improving swap
        best_d = np.int64(0)
        bq = -1
        for p in range(P):
            # with load costs only, a swap lowers a machine's cost only if the process
            # leaving it does alone: the processes whose leaving gains lead the swaps
            if dout[p] >= 0:
                continue
            m1 = a[p]
            ip = init[p]
            sp = svc[p]
            for q in range(P):
                m2 = a[q]
                if m2 == m1 or svc[q] == sp:
                    continue
                iq = init[q]
                d = (w_mm * (np.int64(mmc[ip, m2]) - np.int64(mmc[ip, m1])
                             + np.int64(mmc[iq, m1]) - np.int64(mmc[iq, m2]))
                     + ((1 if m2 != ip else 0) - (1 if m1 != ip else 0)) * pmc[p]
                     + ((1 if m1 != iq else 0) - (1 if m2 != iq else 0)) * pmc[q])
                d += _swap_load_delta(S, p, q, m1, m2, u0, u1)
                if d < best_d:
                    cp = (1 if m2 != ip else 0) - (1 if m1 != ip else 0)
                    cq = (1 if m1 != iq else 0) - (1 if m2 != iq else 0)
                    if w_sm and (cp != 0 or cq != 0):
                        d += w_sm * (_max_moved_after(sp, cp, svc[q], cq, svc_moved, hist,
                                                      tot[3]) - tot[3])
                    if d < best_d:
                        known_bad = False
                        for k in range(n_bad):
                            if bad_p[k] == p and bad_q[k] == q:
                                known_bad = True
                        if not known_bad:
                            best_d = d
                            bp = p
                            bq = q
        if bp < 0:
            return
        if _apply_pair(S, bp, a[bq], bq, a[bp]):
            stats[1] += 1
            stale = has_ban
        else:
            if n_bad == bad_p.shape[0]:
                return  # many swaps broke spread or dependency rules: stop here
            bad_p[n_bad] = bp
            bad_q[n_bad] = bq
            n_bad += 1


@_leaf
def restore(S: KState, target: np.ndarray) -> None:
    """Move every process to its machine in `target` (a placement seen before): the
    counts and totals are sums of per-move changes, so the end state is exact
    whatever the order (the steps in between need not be feasible)."""
    a = S.a
    for p in range(a.shape[0]):
        if a[p] != target[p]:
            _apply(S, p, target[p])


#: Per-machine process lists hold every process when machines x processes is at
#: most this (set A: 100 x 1000); beyond, a row holds a few times the fullest count.
LIST_CELLS = 4_000_000


def _csr(lists: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        ptr[i + 1] = ptr[i] + len(lists[i])
    idx = (np.concatenate(lists).astype(np.int64) if n and ptr[-1]
           else np.zeros(0, dtype=np.int64))
    return ptr, idx


class Annealer:
    """Runs `anneal` on a RoadefState's own arrays (updated in place) and keeps
    the state's scalar totals in step after each call."""

    def __init__(self, st: Any) -> None:
        self.st = st
        inst = st.inst
        S = inst.n_services
        self.dep_ptr, self.dep_idx = _csr(st.deps, S)
        self.rdep_ptr, self.rdep_idx = _csr(st.rdeps, S)
        bal = st.bal
        self.b1 = np.array([b[0] for b in bal], dtype=np.int64)
        self.b2 = np.array([b[1] for b in bal], dtype=np.int64)
        self.bt = np.array([b[2] for b in bal], dtype=np.int64)
        self.bw = np.array([b[3] for b in bal], dtype=np.int64)
        self.spread = inst.spread_min.astype(np.int64)
        self.lw = st.lw.astype(np.int64)
        self.pmc = st.pmc.astype(np.int64)
        self.best_a = st.a.copy()
        self.best = np.array([st.total()], dtype=np.int64)
        self.stats = np.zeros(6, dtype=np.int64)
        # per-machine process lists: every process fits in a row on set A; on larger
        # clusters a row holds a few times the fullest machine's count (a move onto
        # a machine whose row is full is not tried)
        P, M = inst.n_processes, inst.n_machines
        fullest = int(np.bincount(st.a, minlength=M).max(initial=0))
        self.width = P if M * P <= LIST_CELLS else max(64, 4 * fullest)
        self.mproc = np.zeros((M, max(1, self.width)), dtype=np.int64)
        self.mcnt = np.zeros(M, dtype=np.int64)
        self.ppos = np.zeros(P, dtype=np.int64)
        self.tot = np.zeros(4, dtype=np.int64)
        #: the state's arrays as the kernel takes them (the same arrays: the kernel
        #: updates the RoadefState in place)
        self.ks = KState(
            st.a, st.init, st.svc, st.req, self.pmc, st.use, st.hard, st.mc, st.cap,
            st.saf, self.lw, st.tr, self.b1, self.b2, self.bt, self.bw, st.mmc,
            int(st.w_mm), int(st.w_sm), st.loc, st.nb, st.loc_count, st.nloc,
            st.nb_count, self.spread, st.svc_moved, st.hist, self.tot, st.svc_ptr,
            st.svc_procs, self.dep_ptr, self.dep_idx, self.rdep_ptr, self.rdep_idx,
            self.mproc, self.mcnt, self.ppos)

    def _enter(self) -> KState:
        """The kernel's view of the state: totals copied in, process lists rebuilt
        (the state may have moved since the last call)."""
        st = self.st
        self.tot[:] = (st.mc_total, st.pm_total, st.mm_total, st.max_moved)
        build_lists(st.a, st.inst.n_machines, self.width, self.mproc, self.mcnt, self.ppos)
        return self.ks

    def _leave(self) -> None:
        st = self.st
        st.mc_total, st.pm_total, st.mm_total, st.max_moved = (int(x) for x in self.tot)

    def run(self, n_iter: int, t_start: float, t_end: float, p_swap: float,
            seed: int, scan: int = 1, swap_scan: int = 1, p_chain: float = 0.0,
            chain_scan: int = 1, focus: int = 0, p_eject: float = 0.0,
            eject_depth: int = 4) -> None:
        """`n_iter` moves; `best_a` / best[0] keep the best placement seen (any call)."""
        st = self.st
        if st.total() < self.best[0]:
            self.best[0] = st.total()
            self.best_a[:] = st.a
        if int(np.bincount(st.a, minlength=st.inst.n_machines).max(initial=0)) > self.width:
            raise ValueError("a machine holds more processes than the annealer's lists")
        anneal(self._enter(), int(n_iter), float(t_start), float(t_end), float(p_swap),
               float(p_chain), int(scan), int(swap_scan), int(chain_scan), int(focus),
               int(seed), self.best_a, self.best, self.stats, float(p_eject),
               int(eject_depth))
        self._leave()

    def descend(self, max_moves: int = 1 << 30, swaps: bool = True) -> None:
        """Steepest descent from the state's placement (`steepest`), in place."""
        st = self.st
        steepest(self._enter(), int(max_moves), bool(swaps), self.stats)
        self._leave()
        if st.total() < self.best[0]:
            self.best[0] = st.total()
            self.best_a[:] = st.a

    def restore(self, target: np.ndarray) -> None:
        """Put the state back on `target` (a feasible placement seen before)."""
        restore(self._enter(), target)
        self._leave()
