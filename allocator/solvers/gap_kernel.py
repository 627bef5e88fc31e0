"""Compiled penalty walk on the assignment model (GAP): shifts and swaps under
adaptive capacity penalties, numba.

Why: on tight GAP instances (Chu-Beasley C, D, E) the optimum is within
0.01-0.06 % of the LP bound (generated E 20x400: HiGHS proves 0.046 %), but
the feasible-space descent and the HiGHS sub-MIP LNS of `auto` stall
0.2-0.5 % above it: shifts rarely fit when every agent is nearly full, and a
sub-MIP costs 50-200 ms. This walk crosses infeasible plans instead:

* it moves on cost + ``sum_i alpha_i * excess_i / cap_i`` (per binding
  resource); a round is a first-improvement descent over shifts (a task to
  one of its ``CANDIDATES`` best agents - cheapest, or by a given rank such
  as Lagrangian-adjusted cost) and swaps (with a task on one of those
  agents that has the task's agent among its own candidates: on 80x1600 that
  cut a pass from ~50 to ~10 ms), in a random order; when neither improves, a pass also tries
  double shifts (j to agent k, and one of k's tasks on to a third agent -
  an ejection chain of length two), which is what moves type D: there
  every agent is packed nearly full and a better plan needs two tasks to
  move at once (seed 101 walk alone, 6 s: D 20x400 0.352 -> 0.319 %,
  D 80x1600 0.363 -> 0.316 % above the LP bound);
* a round that ends over capacity is repaired on a copy - on the agent most
  over capacity, the shift or swap off it removing excess at the least cost
  per unit, until it fits - and descended
  within capacity (skipped when the round ended no cheaper than the best
  plan: the repair adds cost); a round that fits is recorded as it is. The best plan is
  kept (the caller checks it against the model again before using it);
* then the weights adapt (strategic oscillation): agents over capacity get
  dearer (x ``UP``), and when the plan fits every weight gets cheaper
  (x ``DOWN``), so the walk keeps crossing the capacity boundary where the
  good plans lie; after ``PATIENCE`` rounds without a better plan it
  restarts from the best one with the initial weights.

The kernel runs a given number of rounds per call and keeps its whole state
(plan, usage, member lists, weights, random state) in arrays: the caller
checks the clock and the stop signal between calls, and a seed and a round
count give one walk. It releases the GIL (`nogil`), so it runs beside HiGHS
and the LNS thread. Measured (seed 101, 10 s, load 6-7): C 20x400
0.316 -> 0.252 %, E 20x400 0.437 -> 0.240 % above the LP bound; D (cost
anti-correlated with size, a packing problem) does not move. Without numba
(an optional import) the functions are plain Python and solvers do not call
them; :func:`kernel_ready` keeps a cold compile out of short budgets.
"""

from __future__ import annotations

import logging

import numpy as np

from allocator.jit import HAVE_NUMBA as HAVE_NUMBA
from allocator.jit import WarmUp, nice_if_compiling
from allocator.jit import njit as _njit
from allocator.solvers.linear import LinearModel

log = logging.getLogger(__name__)

#: Agents a task may shift to (its cheapest eligible ones), and whose tasks it may swap with.
CANDIDATES = 10
#: Weight factors per round: over-capacity agents x UP; all x DOWN when the plan fits.
UP, DOWN = 1.05, 0.97
#: Tasks UP and DOWN are set for. A round is a descent over every task, so on more
#: tasks it makes more moves and takes longer (80x1600 type D: ~0.2 s of CPU per round,
#: 15-25 rounds in 6 s), and weights changed by the same factor per round moved 4x
#: slower per move there than at 400 tasks: the walk hardly oscillated. Above
#: REF_TASKS the factors are raised to the power n / REF_TASKS (:func:`round_factors`).
REF_TASKS = 400
#: Rounds without a better plan before the walk restarts from the best one.
PATIENCE = 500
#: Descent passes per round at most.
MAX_PASSES = 50

# fstate slots
_BEST, _EPS, _STALE, _ROUNDS = 0, 1, 2, 3


@_njit(cache=True, nogil=True)
def _rand(st: np.ndarray, k: int) -> int:
    """Uniform integer in [0, k) from a xorshift64 state."""
    x = st[0]
    x ^= (x << np.uint64(13))
    x ^= (x >> np.uint64(7))
    x ^= (x << np.uint64(17))
    st[0] = x
    return int(x % np.uint64(k))


@_njit(inline="always")
def _skip(k: int, i: int, out: int) -> bool:
    """Candidate slot k is no move for a task on agent i: padding (-1), i itself, or
    `out` (the left-out row m where the move needs a real agent; -1: none excluded)."""
    return k < 0 or k == i or out == k


@_njit(cache=True, nogil=True)
def _dex(i: int, j_out: int, l_in: int, used: np.ndarray, A: np.ndarray,
         cap: np.ndarray, inv: np.ndarray) -> float:
    """Change of agent i's normalised excess when j_out leaves and l_in joins (-1: none)."""
    s = 0.0
    for r in range(A.shape[2]):
        u = used[i, r]
        v = u
        if j_out >= 0:
            v -= A[i, j_out, r]
        if l_in >= 0:
            v += A[i, l_in, r]
        e0 = u - cap[i, r]
        e1 = v - cap[i, r]
        s += ((e1 if e1 > 0.0 else 0.0) - (e0 if e0 > 0.0 else 0.0)) * inv[i, r]
    return s


@_njit(cache=True, nogil=True)
def _dpen(i: int, j_out: int, l_in: int, used: np.ndarray, A: np.ndarray, cap: np.ndarray,
          inv: np.ndarray, alpha: np.ndarray) -> float:
    """Penalty change of agent i when task j_out leaves it and l_in joins it (-1: none)."""
    return alpha[i] * _dex(i, j_out, l_in, used, A, cap, inv)


@_njit(cache=True, nogil=True)
def _shift(j: int, k: int, x: np.ndarray, used: np.ndarray, A: np.ndarray,
           members: np.ndarray, mcount: np.ndarray, slot: np.ndarray) -> None:
    """Move task j to agent k, keeping usage and member lists in step."""
    i = x[j]
    for r in range(A.shape[2]):
        used[i, r] -= A[i, j, r]
        used[k, r] += A[k, j, r]
    q = slot[j]
    last = members[i, mcount[i] - 1]
    members[i, q] = last
    slot[last] = q
    mcount[i] -= 1
    members[k, mcount[k]] = j
    slot[j] = mcount[k]
    mcount[k] += 1
    x[j] = k


@_njit(cache=True, nogil=True)
def _fits(used: np.ndarray, cap: np.ndarray, m: int) -> bool:
    for i in range(m):
        for r in range(used.shape[1]):
            if used[i, r] > cap[i, r]:
                return False
    return True


@_njit(cache=True, nogil=True)
def _reset(x: np.ndarray, src: np.ndarray, used: np.ndarray, A: np.ndarray,
           members: np.ndarray, mcount: np.ndarray, slot: np.ndarray) -> None:
    """Set the plan to `src` and rebuild usage and member lists."""
    used[:, :] = 0.0
    mcount[:] = 0
    for j in range(x.shape[0]):
        k = src[j]
        x[j] = k
        for r in range(A.shape[2]):
            used[k, r] += A[k, j, r]
        members[k, mcount[k]] = j
        slot[j] = mcount[k]
        mcount[k] += 1


@_njit(cache=True, nogil=True)
def _insertions(S: np.ndarray, A: np.ndarray, cap: np.ndarray, inv: np.ndarray,
                cand: np.ndarray, x: np.ndarray, used: np.ndarray, alpha: np.ndarray,
                ins_k: np.ndarray, ins_v: np.ndarray, m: int) -> None:
    """Per task, its three best other candidate agents by cost + penalty change of
    inserting it there (the second hop of a double shift; the caller re-prices the one
    it picks, since moves made since then may have changed the values)."""
    K = cand.shape[1]
    for t in range(x.shape[0]):
        ins_k[t, :] = -1
        ins_v[t, :] = np.inf
        for c in range(K):
            k = cand[t, c]
            if _skip(k, x[t], m):
                continue
            v = S[k, t] + _dpen(k, -1, t, used, A, cap, inv, alpha)
            if v < ins_v[t, 2]:
                if v < ins_v[t, 1]:
                    ins_v[t, 2] = ins_v[t, 1]
                    ins_k[t, 2] = ins_k[t, 1]
                    if v < ins_v[t, 0]:
                        ins_v[t, 1] = ins_v[t, 0]
                        ins_k[t, 1] = ins_k[t, 0]
                        ins_v[t, 0] = v
                        ins_k[t, 0] = k
                    else:
                        ins_v[t, 1] = v
                        ins_k[t, 1] = k
                else:
                    ins_v[t, 2] = v
                    ins_k[t, 2] = k


@_njit(cache=True, nogil=True)
def _descend(S: np.ndarray, A: np.ndarray, cap: np.ndarray, inv: np.ndarray,
             cand: np.ndarray, x: np.ndarray, used: np.ndarray, alpha: np.ndarray,
             members: np.ndarray, mcount: np.ndarray, slot: np.ndarray, rng: np.ndarray,
             order: np.ndarray, eps: float, max_passes: int, chains: bool) -> None:
    """First-improvement descent over shifts and swaps on the penalised cost; with
    `chains`, once a pass finds neither, a pass that also tries double shifts (a task
    to agent k, one of k's tasks on to a third agent), then shifts and swaps again.

    Shift and swap passes skip a task when neither its agent nor any of its candidate
    agents changed since it was last scanned without a move (its moves are the same,
    so none improves): late passes make few moves, and on 80x1600 a round spent most of
    its time re-scanning tasks that had nothing to do. Chain passes scan every task (a
    double shift's third agent is no candidate of the task's)."""
    m = S.shape[0] - 1
    n = S.shape[1]
    K = cand.shape[1]
    chain_pass = False
    ins_k = np.full((n, 3), -1, dtype=np.int64)
    ins_v = np.full((n, 3), np.inf)
    stamp = np.zeros(m + 1, dtype=np.int64)  # move count at each agent's last change
    seen = np.full(n, -1, dtype=np.int64)  # move count when the task was last scanned idle
    clock = 1
    isc = np.zeros((n, m + 1), dtype=np.bool_)  # agent is among the task's candidates
    for j in range(n):
        for c in range(K):
            if cand[j, c] >= 0:
                isc[j, cand[j, c]] = True
    for _p in range(max_passes):
        for t in range(n - 1, 0, -1):  # Fisher-Yates
            s = _rand(rng, t + 1)
            order[t], order[s] = order[s], order[t]
        moved = 0
        if chain_pass:
            _insertions(S, A, cap, inv, cand, x, used, alpha, ins_k, ins_v, m)
        for t in range(n):
            j = order[t]
            i = x[j]
            if not chain_pass and seen[j] >= 0:
                fresh = stamp[i] > seen[j]
                for c in range(K):
                    k = cand[j, c]
                    if k >= 0 and stamp[k] > seen[j]:
                        fresh = True
                        break
                if not fresh:
                    continue
            out_i = _dpen(i, j, -1, used, A, cap, inv, alpha)
            bd = -eps
            bk = -1
            for c in range(K):
                k = cand[j, c]
                if _skip(k, i, -1):
                    continue
                d = S[k, j] - S[i, j] + out_i + _dpen(k, -1, j, used, A, cap, inv, alpha)
                if d < bd:
                    bd = d
                    bk = k
            if bk >= 0:
                _shift(j, bk, x, used, A, members, mcount, slot)
                stamp[i] = clock
                stamp[bk] = clock
                clock += 1
                moved += 1
                continue
            bl = -1
            for c in range(K):
                k = cand[j, c]
                if _skip(k, i, m):
                    continue
                base = S[k, j] - S[i, j]
                for q in range(mcount[k]):
                    lt = members[k, q]
                    if not isc[lt, i]:
                        continue  # i is not among lt's candidate agents
                    d = base + S[i, lt] - S[k, lt]
                    d += _dpen(i, j, lt, used, A, cap, inv, alpha)
                    d += _dpen(k, lt, j, used, A, cap, inv, alpha)
                    if d < bd:
                        bd = d
                        bl = lt
            if bl >= 0:
                k = x[bl]
                _shift(j, k, x, used, A, members, mcount, slot)
                _shift(bl, i, x, used, A, members, mcount, slot)
                stamp[i] = clock
                stamp[k] = clock
                clock += 1
                moved += 1
                continue
            if not chains or not chain_pass:
                seen[j] = clock - 1
                continue
            bk2 = -1
            for c in range(K):
                k = cand[j, c]
                if _skip(k, i, m):
                    continue
                base = S[k, j] - S[i, j] + out_i
                for q in range(mcount[k]):
                    lt = members[k, q]
                    if ins_k[lt, 0] < 0:
                        continue
                    k2 = ins_k[lt, 0]
                    v2 = ins_v[lt, 0]
                    h = 0
                    while h < 2 and (k2 == i or k2 == k):  # noqa: SIM109 (numba)
                        h += 1
                        k2 = ins_k[lt, h]
                        v2 = ins_v[lt, h]
                    if k2 < 0 or k2 == i or k2 == k:  # noqa: SIM109 (numba)
                        continue
                    d = base + _dpen(k, lt, j, used, A, cap, inv, alpha) - S[k, lt] + v2
                    if d < bd:
                        # exact: the insertion value may be stale within this pass
                        d = base + _dpen(k, lt, j, used, A, cap, inv, alpha) - S[k, lt] + \
                            S[k2, lt] + _dpen(k2, -1, lt, used, A, cap, inv, alpha)
                        if d < bd:
                            bd = d
                            bl = lt
                            bk2 = k2
            if bk2 >= 0:
                k = x[bl]
                _shift(bl, bk2, x, used, A, members, mcount, slot)
                _shift(j, k, x, used, A, members, mcount, slot)
                stamp[i] = clock
                stamp[k] = clock
                stamp[bk2] = clock
                clock += 1
                moved += 1
            else:
                seen[j] = clock - 1
        if moved == 0:
            if chain_pass or not chains:
                break
            chain_pass = True
        else:
            chain_pass = False


@_njit(cache=True, nogil=True)
def _repair(S: np.ndarray, A: np.ndarray, cap: np.ndarray, inv: np.ndarray,
            cand: np.ndarray, x: np.ndarray, used: np.ndarray, members: np.ndarray,
            mcount: np.ndarray, slot: np.ndarray, max_moves: int) -> bool:
    """Bring the plan within capacity: repeatedly, on the agent with the largest
    normalised excess, the shift or swap off it that removes excess at the least cost per
    unit removed; True if it fits.

    One agent per move, not the best move off every over-capacity agent: on D 80x1600 a
    round ends with 25-50 agents over, and scanning all of them for each of the hundreds
    of moves made a round take 0.5-1 s of CPU (the walk did 2-3 rounds in a 10 s solve).
    An agent whose excess no move reduces is set aside for this call."""
    m = S.shape[0] - 1
    K = cand.shape[1]
    stuck = np.zeros(m, dtype=np.bool_)
    for _ in range(max_moves):
        i = -1
        worst = 0.0
        for a in range(m):
            if stuck[a]:
                continue
            e = 0.0
            for r in range(used.shape[1]):
                if used[a, r] > cap[a, r]:
                    e += (used[a, r] - cap[a, r]) * inv[a, r]
            if e > worst:
                worst = e
                i = a
        if i < 0:
            return _fits(used, cap, m)
        br = np.inf
        bj = -1
        bk = -1
        bl = -1
        for q in range(mcount[i]):
            j = members[i, q]
            out_i = _dex(i, j, -1, used, A, cap, inv)
            for c in range(K):
                k = cand[j, c]
                if _skip(k, i, -1):
                    continue
                de = out_i + _dex(k, -1, j, used, A, cap, inv)
                if de < -1e-12:
                    ratio = (S[k, j] - S[i, j]) / -de
                    if ratio < br:
                        br, bj, bk, bl = ratio, j, k, -1
                if k == m:
                    continue
                for q2 in range(mcount[k]):
                    lt = members[k, q2]
                    dc = S[k, j] - S[i, j] + S[i, lt] - S[k, lt]
                    if not (dc < np.inf):
                        continue
                    de = _dex(i, j, lt, used, A, cap, inv) + _dex(k, lt, j, used, A, cap, inv)
                    if de < -1e-12:
                        ratio = dc / -de
                        if ratio < br:
                            br, bj, bk, bl = ratio, j, k, lt
        if bj < 0:
            stuck[i] = True
            continue
        _shift(bj, bk, x, used, A, members, mcount, slot)
        if bl >= 0:
            _shift(bl, i, x, used, A, members, mcount, slot)
    return _fits(used, cap, m)


@_njit(cache=True, nogil=True)
def _raise(alpha: np.ndarray, used: np.ndarray, cap: np.ndarray, m: int, up: float) -> None:
    """Agents over capacity get dearer."""
    for i in range(m):
        for r in range(used.shape[1]):
            if used[i, r] > cap[i, r]:
                alpha[i] *= up
                break


@_njit(cache=True, nogil=True)
def search_rounds(S: np.ndarray, A: np.ndarray, cap: np.ndarray, inv: np.ndarray,
                  cand: np.ndarray, alpha0: np.ndarray, x: np.ndarray, used: np.ndarray,
                  alpha: np.ndarray, members: np.ndarray, mcount: np.ndarray,
                  slot: np.ndarray, best: np.ndarray, fstate: np.ndarray, rng: np.ndarray,
                  rounds: int, up: float, down: float, patience: int,
                  max_passes: int, chains: bool) -> int:
    """Run `rounds` rounds (descent, repair, record, re-weight); returns how many found
    a better plan.

    S [m+1, n] cost (inf: ineligible; row m: left out), A [m+1, n, R] demand,
    cap / inv [m+1, R] capacity and its inverse (row m: inf / 0), cand [n, K]
    candidate agents (-1 padded). `best` and fstate[_BEST] hold the best plan
    within capacity and its cost. A round that ends over capacity is repaired
    on a copy (the same descent with weights so high that any excess outweighs
    any cost) before it is recorded; the walk itself goes on from the
    penalised point.
    """
    m1, n = S.shape
    m = m1 - 1
    eps = fstate[_EPS]
    order = np.arange(n)
    found = 0
    x2 = x.copy()
    used2 = used.copy()
    members2 = members.copy()
    mcount2 = mcount.copy()
    slot2 = slot.copy()
    hi = alpha0 * 1e6
    for _ in range(rounds):
        _descend(S, A, cap, inv, cand, x, used, alpha, members, mcount, slot, rng, order,
                 eps, max_passes, chains)
        fstate[_ROUNDS] += 1
        fits = _fits(used, cap, m)
        if fits:
            xr = x
        else:
            c0 = 0.0
            for j in range(n):
                c0 += S[x[j], j]
            if c0 >= fstate[_BEST]:
                # no better than the best before the repair, which only adds cost
                # (bar the descent after it): skip it (1.3-1.7x the rounds per second)
                fstate[_STALE] += 1
                _raise(alpha, used, cap, m, up)
                if fstate[_STALE] >= patience:
                    fstate[_STALE] = 0
                    _reset(x, best, used, A, members, mcount, slot)
                    alpha[:] = alpha0
                continue
            x2[:] = x
            used2[:, :] = used
            mcount2[:] = mcount
            slot2[:] = slot
            for i in range(m1):
                for q in range(mcount[i]):
                    members2[i, q] = members[i, q]
            if _repair(S, A, cap, inv, cand, x2, used2, members2, mcount2, slot2, 4 * n):
                _descend(S, A, cap, inv, cand, x2, used2, hi, members2, mcount2, slot2, rng,
                         order, eps, max_passes, chains)
            xr = x2
        if _fits(used2 if not fits else used, cap, m):
            cost = 0.0
            for j in range(n):
                cost += S[xr[j], j]
            if cost < fstate[_BEST] - eps:
                fstate[_BEST] = cost
                best[:] = xr
                found += 1
                fstate[_STALE] = 0
            else:
                fstate[_STALE] += 1
        else:
            fstate[_STALE] += 1
        if fits:
            for i in range(m):
                alpha[i] *= down
        else:
            _raise(alpha, used, cap, m, up)
        if fstate[_STALE] >= patience:
            fstate[_STALE] = 0
            _reset(x, best, used, A, members, mcount, slot)
            alpha[:] = alpha0
    return found


def _warm_up() -> None:
    """Run every kernel once on a tiny model (loads numba's on-disk cache, or compiles).

    A compile runs at nice 10 so it takes idle CPU only; a load runs at normal
    priority (under a load of 10+ on two cores a niced load did not finish
    within a 10 s solve)."""
    nice_if_compiling(__file__, "search_rounds")
    try:
        S = np.array([[1.0, 2.0], [2.0, 1.0], [9.0, 9.0]])
        A = np.ones((3, 2, 1))
        cap = np.array([[1.0], [1.0], [np.inf]])
        inv = np.array([[1.0], [1.0], [0.0]])
        cand = np.array([[0, 1, 2], [1, 0, 2]], dtype=np.int64)
        x = np.array([0, 1], dtype=np.int64)
        members = np.zeros((3, 2), dtype=np.int64)
        mcount = np.zeros(3, dtype=np.int64)
        slot = np.zeros(2, dtype=np.int64)
        used = np.zeros((3, 1))
        _reset(x, x.copy(), used, A, members, mcount, slot)
        alpha0 = np.array([1.0, 1.0, 0.0])
        fstate = np.array([2.0, 1e-9, 0.0, 0.0])
        search_rounds(S, A, cap, inv, cand, alpha0, x, used, alpha0.copy(), members, mcount,
                      slot, x.copy(), fstate, np.ones(1, dtype=np.uint64), 1, UP, DOWN,
                      PATIENCE, MAX_PASSES, True)  # every argument, as `run` passes them:
        # an omitted default is another signature, which run() would compile in the solve
        _WARM.mark_ready()
    except Exception:  # the solver simply does without the walk
        log.exception("gap_kernel: warm-up failed")


_WARM = WarmUp(_warm_up, "gap-kernel-warm-up")


def kernel_ready() -> bool:
    """Whether the compiled kernel can run now without compiling.

    The first call starts a warm-up thread at a low priority (a cold numba
    cache compiles for 10-25 s of CPU on a loaded machine; a warm one loads
    in ~0.1 s); until it is done, solvers do without the walk, so a compile
    never eats a short budget.
    """
    return _WARM.ready()


def round_factors(n: int, up: float = UP, down: float = DOWN) -> tuple[float, float]:
    """Per-round weight factors for a walk over `n` tasks: the same pace per task scanned
    as `up` / `down` at REF_TASKS tasks (unchanged below). Measured, walk alone from the
    construction's plan, 7 s of CPU, seeds 501 / 601 (% above the LP bound, fixed ->
    scaled): D 80x1600 0.323 -> 0.308 and 0.337 -> 0.325, E 80x1600 0.343 -> 0.319 and
    0.350 -> 0.311, C 80x1600 0.136 -> 0.111, D 40x800 0.351 -> 0.320, E 40x800
    0.243 -> 0.261."""
    k = max(1.0, n / REF_TASKS)
    return up**k, down**k


class PenaltySearch:
    """State of one walk over a separable assignment model (see the module docstring).

    Built from a whole model (:meth:`of_model`) or from a block of it - some
    agents and the tasks on them, the rest fixed (:meth:`block`); in a block
    no task may be left out. Applies only where the model is separable and
    capacity is the only coupling: no makespan / imbalance terms and no
    migration limit (:meth:`applies`).
    """

    def __init__(self, S: np.ndarray, A: np.ndarray, cap: np.ndarray, start: np.ndarray,
                 seed: int, candidates: int = CANDIDATES, rank: np.ndarray | None = None
                 ) -> None:
        """S [m+1, n] cost (inf: ineligible; row m: left out), A [m+1, n, R] demand,
        cap [m, R] capacity, start [n] agent per task (m: left out), within capacity.

        `rank` [m, n] orders each task's candidate agents (default: the cost S);
        Lagrangian-adjusted costs (cost + multiplier x demand) pick far better
        ones on tight instances: on E 40x800 the walk reached 0.22 % above the LP
        bound in 6 s with them, 0.39 % with the cheapest agents by cost."""
        m = S.shape[0] - 1
        n = S.shape[1]
        self.m, self.n = m, n
        S = np.ascontiguousarray(S, dtype=np.float64)
        A = np.ascontiguousarray(A, dtype=np.float64)
        cap = np.vstack([cap, np.full((1, cap.shape[1]), np.inf)])
        with np.errstate(divide="ignore"):
            inv = np.where(np.isfinite(cap) & (cap > 0), 1.0 / np.maximum(cap, 1e-300), 0.0)
        inv[:m][cap[:m] <= 0] = 1.0
        # candidate agents: the cheapest eligible ones per task, and leaving out last
        k = max(1, min(candidates, m))
        key = S[:m] if rank is None else np.where(np.isfinite(S[:m]), rank, np.inf)
        order = np.argsort(key, axis=0, kind="stable")[:k].T  # [n, k]
        ok = np.isfinite(S[order, np.arange(n)[:, None]])
        cand = np.where(ok, order, -1)  # inf sorts last: the -1 padding is at the end
        cand = np.hstack([cand, np.where(np.isfinite(S[m]), m, -1)[:, None]])
        self.cand = np.ascontiguousarray(cand, dtype=np.int64)
        self.S, self.A, self.cap, self.inv = S, A, np.ascontiguousarray(cap), inv
        # initial weight: what a whole agent's capacity is worth in cost, roughly
        # (tasks per agent x the typical spread between a task's agents)
        fin = np.isfinite(S[:m])
        cnt = fin.sum(axis=0)
        ok = cnt > 0
        mean = np.where(fin, S[:m], 0.0).sum(axis=0)[ok] / cnt[ok]
        low = np.where(fin, S[:m], np.inf).min(axis=0)[ok]
        spread = float(np.mean(mean - low)) if ok.any() else 1.0
        if not np.isfinite(spread) or spread <= 0:
            spread = 1.0
        self.alpha0 = np.full(m + 1, float(spread) * max(1.0, n / max(m, 1)))
        self.alpha0[m] = 0.0
        self.alpha = self.alpha0.copy()
        rows = np.asarray(start, dtype=np.int64).copy()
        self.x = rows.copy()
        self.best = rows.copy()
        self.used = np.zeros_like(self.cap)
        self.members = np.zeros((m + 1, n), dtype=np.int64)
        self.mcount = np.zeros(m + 1, dtype=np.int64)
        self.slot = np.zeros(n, dtype=np.int64)
        _reset(self.x, rows, self.used, self.A, self.members, self.mcount, self.slot)
        cost = float(S[rows, np.arange(n)].sum())
        fits = bool(np.all(self.used[:m] <= self.cap[:m]))
        scale = max(1.0, abs(cost)) if np.isfinite(cost) else 1.0
        self.start_cost = cost
        self.fstate = np.array([cost if fits else np.inf, 1e-9 * scale, 0.0, 0.0])
        mixed = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64)
        self.rng = np.array([mixed | 1], dtype=np.uint64)  # xorshift needs a non-zero state

    @staticmethod
    def _binding(lm: LinearModel) -> np.ndarray:
        bind = np.flatnonzero(lm.binding)
        return bind if bind.size else np.zeros(1, dtype=np.int64)

    @classmethod
    def of_model(cls, lm: LinearModel, agent_of: np.ndarray, seed: int,
                 candidates: int = CANDIDATES, rank: np.ndarray | None = None
                 ) -> PenaltySearch:
        """A walk over the whole model from `agent_of` (-1: left out); `rank` [m, n]
        orders the candidate agents (see the constructor)."""
        bind = cls._binding(lm)
        rows = np.where(agent_of >= 0, agent_of, lm.m)
        return cls(lm.score, lm.demand[:, :, bind], lm.cap[:, bind], rows, seed, candidates,
                   rank)

    @classmethod
    def block(cls, lm: LinearModel, agent_of: np.ndarray, agents: np.ndarray, seed: int,
              candidates: int = CANDIDATES, rank: np.ndarray | None = None
              ) -> tuple[PenaltySearch, np.ndarray]:
        """A walk over `agents` and the tasks `agent_of` puts on them (returned too);
        every other task stays where it is, so the block's capacities are the agents'."""
        bind = cls._binding(lm)
        agents = np.asarray(agents, dtype=np.int64)
        local = np.full(lm.m + 1, -1, dtype=np.int64)
        local[agents] = np.arange(agents.size)
        rows = np.where(agent_of >= 0, agent_of, lm.m)
        tasks = np.flatnonzero(local[rows] >= 0)
        g = agents.size
        S = np.full((g + 1, tasks.size), np.inf)
        S[:g] = lm.score[agents][:, tasks]
        A = np.zeros((g + 1, tasks.size, bind.size))
        A[:g] = lm.demand[agents][:, tasks][:, :, bind]
        sub = None if rank is None else rank[agents][:, tasks]
        return cls(S, A, lm.cap[agents][:, bind], local[rows[tasks]], seed,
                   candidates, sub), tasks

    @staticmethod
    def applies(lm: LinearModel) -> bool:
        """Separable objective, capacity the only coupling, every task placeable."""
        return (HAVE_NUMBA and not lm.has_load_terms and lm.max_migrations is None
                and lm.m >= 2 and lm.n >= 2)

    @property
    def best_cost(self) -> float:
        return float(self.fstate[_BEST])

    @property
    def rounds_done(self) -> int:
        return int(self.fstate[_ROUNDS])

    def best_agent_of(self) -> np.ndarray:
        """The best plan within capacity (agent per task; -1: left out)."""
        return np.where(self.best < self.m, self.best, -1).astype(np.int64)

    def run(self, rounds: int, *, up: float | None = None, down: float | None = None,
            patience: int = PATIENCE, max_passes: int = MAX_PASSES, chains: bool = True) -> int:
        """Advance the walk by `rounds` rounds; returns how many of them found a better plan
        (`chains`: also double shifts when shifts and swaps stall; `up` / `down` default to
        :func:`round_factors` of the walk's task count)."""
        up0, down0 = round_factors(self.n)
        up = up0 if up is None else up
        down = down0 if down is None else down
        return int(search_rounds(
            self.S, self.A, self.cap, self.inv, self.cand, self.alpha0, self.x, self.used,
            self.alpha, self.members, self.mcount, self.slot, self.best, self.fstate,
            self.rng, int(rounds), float(up), float(down), int(patience), int(max_passes),
            bool(chains)))

    def adopt(self, agent_of: np.ndarray, cost: float) -> None:
        """Take a better plan found elsewhere as the best one and restart the walk from it."""
        if cost < self.best_cost - self.fstate[_EPS]:
            rows = np.where(agent_of >= 0, agent_of, self.m).astype(np.int64)
            self.best[:] = rows
            self.fstate[_BEST] = cost
            self.fstate[_STALE] = 0
            _reset(self.x, rows, self.used, self.A, self.members, self.mcount, self.slot)
            self.alpha[:] = self.alpha0
