"""Branch-and-bound for the exact front's cost steps: optimal against brute force, proven
only when the tree is emptied, every plan valid."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from allocator.constraints import assignment_feasible
from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import Problem, compile_snapshot
from allocator.solvers.base import Budget
from allocator.solvers.exact_front import exact_front
from allocator.solvers.gap_bb import GapBranchBound, StepTree, warm_up
from allocator.solvers.gap_tabu import tabu_search
from allocator.solvers.knapsack_lagrange import KnapsackLagrangian
from allocator.validate import validate
from models import ParetoFront
from tests.gap_helpers import brute_optimum


def _assert_covers(p: Problem, plans: list[np.ndarray], true: ParetoFront) -> None:
    """Every point of the exact cost-makespan front is matched or dominated by a plan."""
    ar = np.arange(p.n)
    got = {(float(p.cost[a, ar].sum()), float(np.bincount(a, minlength=p.m).max()))
           for a in plans}
    for q in true.points:
        want = (q.objectives["cost"], q.objectives["makespan"])
        assert any(c <= want[0] + 1e-6 and k <= want[1] + 1e-6 for c, k in got), want


@pytest.fixture(autouse=True, scope="module")
def _compiled() -> None:
    """Compile (or load) the kernel before any deadline starts."""
    warm_up()


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> dict[str, int]:
    """Count the calls of `owner.name` (still made): {"n": calls so far}."""
    calls = {"n": 0}
    real = getattr(owner, name)

    def counted(*a: object, **k: object) -> object:
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _bb(kind: str, m: int, n: int, seed: int) -> tuple[KnapsackLagrangian, GapBranchBound]:
    p = compile_snapshot(gap_to_snapshot(generate_gap(kind, m, n, seed)))
    kl = KnapsackLagrangian.of(p, 1.0)
    assert kl is not None and kl.D is not None
    return kl, GapBranchBound(kl.C, kl.A, kl.cap, kl.D)


@pytest.mark.parametrize("kind,seed", [("c", 0), ("c", 4), ("d", 1), ("d", 2), ("d", 5),
                                       ("e", 3), ("e", 6)])
@pytest.mark.parametrize("K", [None, 3, 2])
@pytest.mark.parametrize("raise_target", [True, False])
@pytest.mark.parametrize("workers", [1, 2])
def test_proven_optimum_equals_brute_force(kind: str, seed: int, K: int | None,
                                           raise_target: bool, workers: int) -> None:
    """No incumbent; load caps loose, tight and infeasible (3 agents x 2 < 7 tasks); with
    and without target raising; one thread and two sharing the tree."""
    kl, bb = _bb(kind, 3, 7, seed)
    opt = brute_optimum(kl, K)
    r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600, clock=time.perf_counter,
                 raise_target=raise_target, workers=workers)
    assert r.emptied
    if not np.isfinite(opt):
        assert r.infeasible and r.agent_of is None and not r.proven
        return
    assert r.proven and not r.infeasible
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(opt) == pytest.approx(kl.cost(r.agent_of))
    assert r.root_bound <= opt + 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("K", [None, 3])
def test_both_branching_rules_prove_the_brute_force_optimum(seed: int, K: int | None) -> None:
    """The proof's branching (ties: the highest least child bound, once there is an
    incumbent) and the seeding sweep's (`regret`) reach the same proven optimum from a
    root plan, and both empty a tree seeking anything below it."""
    kl, bb = _bb("d", 3, 9, seed)
    opt = brute_optimum(kl, K)
    start = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                     clock=time.perf_counter, max_nodes=1).agent_of
    for regret in (False, True):
        _, fresh = _bb("d", 3, 9, seed)
        r = fresh.solve(K, start, step=1.0, deadline=time.perf_counter() + 600,
                        clock=time.perf_counter, regret=regret)
        assert r.proven and r.cost == pytest.approx(opt)
        assert r.agent_of is not None and kl.feasible(r.agent_of, K)
        r = fresh.solve(K, start, step=1.0, deadline=time.perf_counter() + 600,
                        clock=time.perf_counter, target=opt - 1, raise_target=False,
                        regret=regret)
        assert r.emptied and not r.proven


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_from_an_incumbent_and_from_a_target(seed: int) -> None:
    """A feasible incumbent (optimal or not) and a target below or at the optimum."""
    kl, bb = _bb("d", 3, 8, seed)
    K = 3
    opt = brute_optimum(kl, K)
    assert np.isfinite(opt)
    ref = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                   clock=time.perf_counter)
    assert ref.proven and ref.cost == pytest.approx(opt) and ref.agent_of is not None
    # from the optimum itself: proven, same cost
    r = bb.solve(K, ref.agent_of, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter)
    assert r.proven and r.cost == pytest.approx(opt)
    # an infeasible incumbent is ignored
    bad = np.zeros(kl.n, dtype=np.int64)
    assert not kl.feasible(bad, K)
    r = bb.solve(K, bad, step=1.0, deadline=time.perf_counter() + 600, clock=time.perf_counter)
    assert r.proven and r.cost == pytest.approx(opt)
    # a target one below the optimum: emptied (nothing that cheap), not a proof of
    # infeasibility; a plan found on the way costs at least the optimum
    r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter, target=opt - 1)
    assert r.emptied and not r.infeasible and not r.proven
    if r.agent_of is not None:
        assert kl.feasible(r.agent_of, K) and r.cost >= opt - 1e-6
    # a target at the optimum: found and proven
    r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter, target=opt)
    assert r.proven and r.cost == pytest.approx(opt)


def test_a_spent_deadline_is_not_a_proof() -> None:
    kl, bb = _bb("d", 8, 60, 0)
    r = bb.solve(8, None, step=1.0, deadline=time.perf_counter() + 0.2,
                 clock=time.perf_counter, max_nodes=3)
    assert not r.proven and not r.infeasible and not r.emptied
    if r.agent_of is not None:
        assert kl.feasible(r.agent_of, 8)
    # two threads stop at the deadline too, with their best plan: a 10x80 type-D
    # step whose proof takes tens of thousands of nodes (seconds even on the fast kernel)
    kl, bb = _bb("d", 10, 80, 12)
    r = bb.solve(9, None, step=1.0, deadline=time.perf_counter() + 0.3,
                 clock=time.perf_counter, workers=2)
    assert not r.proven and not r.infeasible and not r.emptied
    if r.agent_of is not None:
        assert kl.feasible(r.agent_of, 9)


@pytest.mark.parametrize("kind,seed", [("d", 3), ("e", 1), ("c", 2)])
def test_front_by_branch_and_bound_is_proven_and_valid(kind: str, seed: int) -> None:
    snap = gap_to_snapshot(generate_gap(kind, 4, 16, seed))
    p = compile_snapshot(snap)
    front = exact_front(p, ["cost", "makespan"], budget=Budget(60), seed=0)
    assert "branch-and-bound" in (front.message or "")
    assert front.points and front.proven
    for q in front.points:
        assert validate(snap, q.plan) == []


@pytest.mark.parametrize("kind,seed", [("d", 4), ("e", 2)])
def test_front_equals_the_highs_sweeps(kind: str, seed: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The same proven front as the sweep without the branch-and-bound (HiGHS, Lagrangian
    fixing, branch-and-price)."""
    import allocator.solvers.exact_front as ef

    p = compile_snapshot(gap_to_snapshot(generate_gap(kind, 4, 14, seed)))
    ours = exact_front(p, ["cost", "makespan"], budget=Budget(60), seed=0)
    monkeypatch.setattr(ef, "USE_BB", False)
    theirs = exact_front(p, ["cost", "makespan"], budget=Budget(60), seed=0)
    assert "branch-and-bound" not in (theirs.message or "")
    assert ours.proven and theirs.proven
    assert sorted(ours.vectors()) == sorted(theirs.vectors())


@pytest.mark.parametrize("K", [None, 3])
def test_a_feasible_incumbent_is_kept_without_a_cap_too(K: int | None) -> None:
    """With no time at all the step returns the incumbent it was given (the cap-free step
    once checked the incumbent against a zero load cap and searched without it)."""
    kl, bb = _bb("e", 3, 8, 4)
    inc = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                   clock=time.perf_counter).agent_of
    assert inc is not None and kl.feasible(inc, K)
    r = bb.solve(K, inc, step=1.0, deadline=time.perf_counter() - 1.0, clock=time.perf_counter)
    assert r.agent_of is not None and r.cost == pytest.approx(kl.cost(inc))
    assert not r.proven


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("unit", [True, False])
@pytest.mark.parametrize("scale", [1.0, 1e8])
def test_clamped_knapsack_table_equals_brute_force(seed: int, unit: bool, scale: float) -> None:
    """Every cell of an agent's clamped table (read through `_tv`) is the least reduced
    cost of a subset within that load and capacity, never above it and at most one grid
    unit a task below (int32 cells: reduced costs rounded down), and the chosen set
    attains the corner; loads of 1 (the makespan's cardinality row) and of 0-2 (zero-load
    tasks, and the cap-free step's all-zero loads); costs near 30 and near 3e9 (a grid
    coarser than 1, where int32 would overflow on a fine one)."""
    import itertools

    from allocator.solvers.gap_bb import NO_SLACK, _knap, _tv

    rng = np.random.default_rng(seed)
    m, n = 2, 9
    C = rng.integers(1, 30, size=(m, n)).astype(float) * scale
    C[1, 3] = np.inf
    A = rng.integers(1, 12, size=(m, n)).astype(np.int64)
    D = np.ones((m, n), dtype=np.int64) if unit else rng.integers(0, 3, size=(m, n))
    lam = rng.uniform(0, 35, size=n) * scale
    allowed = np.isfinite(C)
    allowed[0, 5] = False
    agent_of = np.full(n, -1, dtype=np.int64)
    agent_of[7] = 1
    c0, k0 = 25, 4
    T = np.full((m, k0 + 1, c0 + 1), -(2**31) + 1, dtype=np.int32)
    took = np.zeros((n, k0 + 1, c0 + 1), dtype=np.bool_)
    items = np.zeros(n, dtype=np.int64)
    x = np.zeros((m, n), dtype=np.bool_)
    lim = np.zeros((m, 3), dtype=np.int64)
    pre = np.zeros((n, 2), dtype=np.int64)
    for i in range(m):
        free = [j for j in range(n) if allowed[i, j] and agent_of[j] < 0]
        best = np.full((k0 + 1, c0 + 1), 0.0)
        for r in range(1, len(free) + 1):
            for sub in itertools.combinations(free, r):
                a, d = int(A[i, list(sub)].sum()), int(D[i, list(sub)].sum())
                v = float((C[i, list(sub)] - lam[list(sub)]).sum())
                if a <= c0 and d <= k0:
                    best[d:, a:] = np.minimum(best[d:, a:], v)
        sh = np.zeros((m, 2))
        z = _knap(i, lam, C, A, D, allowed, agent_of, c0, k0, T, took, items, x, lim, pre,
                  NO_SLACK if seed % 2 else 1, sh)
        assert sh[i, 0] == 0.0 and sh[i, 1] == 0.0  # slack > 0: the plain table
        tol = n * 2.0 ** -lim[i, 2]
        assert tol < 1e-4 * scale
        for k in range(k0 + 1):
            for c in range(c0 + 1):
                assert best[k, c] - tol <= _tv(T, lim, i, k, c) <= best[k, c] + 1e-9 * scale
        chosen = np.flatnonzero(x[i])
        assert best[k0, c0] - tol <= z <= best[k0, c0] + 1e-9 * scale
        assert z - 1e-9 * scale <= float((C[i, chosen] - lam[chosen]).sum()) <= best[k0, c0] + tol
        assert A[i, chosen].sum() <= c0 and D[i, chosen].sum() <= k0
        assert all(allowed[i, j] and agent_of[j] < 0 for j in chosen)


def _full_knap(seed: int, unit: bool, c0: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    m, n = 2, 9
    C = rng.integers(1, 30, size=(m, n)).astype(float)
    C[1, 3] = np.inf
    A = rng.integers(1, 12, size=(m, n)).astype(np.int64)
    D = np.ones((m, n), dtype=np.int64) if unit else rng.integers(0, 3, size=(m, n))
    # multipliers around the costs: some tasks at a positive reduced cost, which the
    # plain table leaves out and a full agent may still have to take
    lam = C.min(axis=0) + rng.uniform(-12, 6, size=n)
    allowed = np.isfinite(C)
    allowed[0, 5] = False
    agent_of = np.full(n, -1, dtype=np.int64)
    agent_of[7] = 1
    return C, A, D, lam, allowed, agent_of


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("unit", [True, False])
@pytest.mark.parametrize("c0", [12, 25])
def test_a_full_agents_table_is_the_least_set_at_its_load_cap(seed: int, unit: bool,
                                                               c0: int) -> None:
    """At slack 0 (the caps' total equals the tasks' load: every agent must end at its
    cap) the agent's value is the least reduced cost of a set with load exactly k0 within
    capacity, or +inf when no such set fits (the node is infeasible); the forced-in value
    of every pair (read with sh's shift) is never above the least such set holding it.
    Where the least set within the caps has less load, this bound is above the plain
    table's (it prunes more); where it is full anyway, the two agree."""
    import itertools

    from allocator.solvers.gap_bb import NO_SLACK, _knap, _tv

    C, A, D, lam, allowed, agent_of = _full_knap(seed, unit, c0)
    m, n = C.shape
    k0 = 4
    T = np.zeros((m, k0 + 1, c0 + 1), dtype=np.int32)
    took = np.zeros((n, k0 + 1, c0 + 1), dtype=np.bool_)
    items = np.zeros(n, dtype=np.int64)
    x = np.zeros((m, n), dtype=np.bool_)
    lim = np.zeros((m, 3), dtype=np.int64)
    pre = np.zeros((n, 2), dtype=np.int64)
    sh = np.zeros((m, 2))
    stronger = agree = 0
    for i in range(m):
        free = [j for j in range(n) if allowed[i, j] and agent_of[j] < 0]
        full = np.inf  # least set at load k0
        plain = 0.0  # least set at load <= k0
        held = dict.fromkeys(free, np.inf)  # least set at load k0 holding j
        for r in range(1, len(free) + 1):
            for sub in itertools.combinations(free, r):
                s_ = list(sub)
                a, d = int(A[i, s_].sum()), int(D[i, s_].sum())
                v = float((C[i, s_] - lam[s_]).sum())
                if a > c0 or d > k0:
                    continue
                plain = min(plain, v)
                if d == k0:
                    full = min(full, v)
                    for j in s_:
                        held[j] = min(held[j], v)
        z_plain = _knap(i, lam, C, A, D, allowed, agent_of, c0, k0, T, took, items, x, lim,
                        pre, NO_SLACK, sh)
        assert z_plain == pytest.approx(plain, abs=1e-4)
        z = _knap(i, lam, C, A, D, allowed, agent_of, c0, k0, T, took, items, x, lim, pre, 0,
                  sh)
        if not np.isfinite(full):
            assert z == np.inf
            stronger += 1
            continue
        tol = n * 2.0 ** -lim[i, 2]
        assert full - tol <= z <= full + 1e-9
        chosen = np.flatnonzero(x[i])
        assert D[i, chosen].sum() == k0 and A[i, chosen].sum() <= c0
        assert float((C[i, chosen] - lam[chosen]).sum()) == pytest.approx(full, abs=tol)
        for j in free:
            if A[i, j] <= c0 and D[i, j] <= k0:
                f = (C[i, j] - lam[j] - sh[i, 0] * D[i, j] + sh[i, 1]
                     + _tv(T, lim, i, k0 - D[i, j], c0 - A[i, j]))
                assert f <= held[j] + tol
        if full > plain + 1e-6:
            assert z > z_plain + 1e-6
            stronger += 1
        else:
            assert z == pytest.approx(z_plain, abs=tol)
            agree += 1
    assert stronger + agree == m


def test_full_agents_cases_cover_both_outcomes() -> None:
    """The cases above include agents where the full-agent bound is stronger (or proves
    the node infeasible) and agents where it equals the plain table."""
    import itertools

    seen = set()
    for seed, unit, c0 in itertools.product(range(8), [True, False], [12, 25]):
        C, A, D, lam, allowed, agent_of = _full_knap(seed, unit, c0)
        for i in range(C.shape[0]):
            free = [j for j in range(C.shape[1]) if allowed[i, j] and agent_of[j] < 0]
            plain, full = 0.0, np.inf
            for r in range(1, len(free) + 1):
                for sub in itertools.combinations(free, r):
                    s_ = list(sub)
                    if A[i, s_].sum() <= c0 and D[i, s_].sum() <= 4:
                        v = float((C[i, s_] - lam[s_]).sum())
                        plain = min(plain, v)
                        if D[i, s_].sum() == 4:
                            full = min(full, v)
            seen.add("inf" if full == np.inf else "stronger" if full > plain + 1e-6
                     else "equal")
    assert seen == {"inf", "stronger", "equal"}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("loads", ["unit", "mixed", "none"])
@pytest.mark.parametrize("slack", [0, 1])
def test_a_memoised_table_is_the_table_built_afresh(seed: int, loads: str, slack: int) -> None:
    """The tree keeps each agent's table and skips rebuilding it when its items and grid
    values are unchanged: after any sequence of changes (some multipliers moved, pairs
    forbidden and allowed again, tasks placed and freed, smaller caps) the memoised
    agent's value, choice and every cell read are those of a table built afresh; the
    full-agent shift (slack 0) and zero-load tasks included."""
    from allocator.solvers.gap_bb import _knap, _table, _tv

    rng = np.random.default_rng(seed)
    m, n, K, cap = 3, 12, 4, 30
    C = rng.integers(1, 30, size=(m, n)).astype(float)
    C[1, 3] = np.inf
    A = rng.integers(1, 12, size=(m, n)).astype(np.int64)
    D = {"unit": np.ones((m, n), dtype=np.int64), "none": np.zeros((m, n), dtype=np.int64),
         "mixed": rng.integers(0, 3, size=(m, n))}[loads]
    lam = C.min(axis=0) + rng.uniform(-8, 6, size=n)
    allowed0 = np.isfinite(C)
    allowed = allowed0.copy()
    agent_of = np.full(n, -1, dtype=np.int64)

    def arrays() -> tuple[np.ndarray, ...]:
        return (np.zeros((m, K + 1, cap + 1), dtype=np.int32),
                np.zeros((n, K + 1, cap + 1), dtype=np.bool_), np.zeros(n, dtype=np.int64),
                np.zeros((m, n), dtype=np.bool_), np.zeros((m, 3), dtype=np.int64),
                np.zeros((n, 2), dtype=np.int64), np.zeros((m, 2)))

    T, took, items, x, lim, pre, sh = arrays()
    Tf, tookf, itemsf, xf, limf, pref, shf = arrays()
    byA = np.array([np.argsort(A[i], kind="mergesort") for i in range(m)])
    memo = np.zeros((m, 2 * n + 4), dtype=np.int64)
    memo[:, 0] = -1
    mval = np.zeros((m, 2))
    rv = np.zeros(n, dtype=np.int32)
    buf = np.empty(cap + 1, dtype=np.int32)
    mark = np.zeros(n, dtype=np.bool_)
    caps = np.array([cap, cap - 3, cap])
    kcap = np.array([K, K, K - 1])
    skipped = 0
    for step in range(60):
        change = rng.integers(0, 5)
        if change == 1:  # a few multipliers move (the subgradient's step)
            js = rng.choice(n, size=2, replace=False)
            lam[js] += rng.uniform(-3, 3, size=2)
        elif change == 2:  # a pair forbidden, or all allowed again (backtracking)
            if rng.random() < 0.7:
                allowed[rng.integers(m), rng.integers(n)] = False
            else:
                allowed[:] = allowed0
        elif change == 3:  # a task placed elsewhere, or every task freed
            if rng.random() < 0.7:
                agent_of[rng.integers(n)] = 0
            else:
                agent_of[:] = -1
        elif change == 4:
            caps[rng.integers(m)] = rng.integers(cap - 6, cap + 1)
            kcap[rng.integers(m)] = rng.integers(max(K - 2, 0), K + 1)
        for i in range(m):
            c0, k0 = int(caps[i]), int(kcap[i]) if loads != "none" else 0
            unchanged = change == 0 and step > 0
            if unchanged:
                T[i, 0, 0] = 12345  # a build starts by writing 0 there (the empty set)
            z = _table(i, lam, C, A, D, allowed, agent_of, c0, k0, T[i], took, items, rv, x[i],
                       lim[i], pre, slack, sh[i], byA[i], buf, mark, memo, mval, i)
            if unchanged:
                # Nothing changed since this agent's last call: not rebuilt.
                assert T[i, 0, 0] == 12345
                T[i, 0, 0] = 0
                skipped += 1
            zf = _knap(i, lam, C, A, D, allowed, agent_of, c0, k0, Tf, tookf, itemsf, xf, limf,
                       pref, slack, shf)
            assert z == zf
            assert np.array_equal(x[i], xf[i]) and np.array_equal(sh[i], shf[i])
            assert lim[i, 2] == limf[i, 2]
            for k in range(k0 + 1):
                for c in range(c0 + 1):
                    assert _tv(T, lim, i, k, c) == _tv(Tf, limf, i, k, c)
    assert skipped > 0


@pytest.mark.parametrize("kind,seed", [("c", 1), ("d", 0), ("d", 3), ("e", 5)])
@pytest.mark.parametrize("workers", [1, 2])
def test_every_agent_full_proven_optimum_equals_brute_force(kind: str, seed: int,
                                                            workers: int) -> None:
    """A load cap of n / m with unit loads (slack 0: the full-agent bound is on at every
    node): the proven optimum is the true one; one cap lower is infeasible."""
    kl, bb = _bb(kind, 3, 9, seed)
    assert GapBranchBound.slack(kl.loads, 3, np.isfinite(kl.C)) == 0
    for K in (3, 2):
        opt = brute_optimum(kl, K)
        r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                     clock=time.perf_counter, workers=workers)
        assert r.emptied
        if not np.isfinite(opt):
            assert r.infeasible and r.agent_of is None
            continue
        assert r.proven and r.agent_of is not None and kl.feasible(r.agent_of, K)
        assert r.cost == pytest.approx(opt) == pytest.approx(kl.cost(r.agent_of))


@pytest.mark.parametrize("raise_target", [True, False])
def test_a_root_settled_by_propagation_alone_is_proven(raise_target: bool) -> None:
    """Every task placed by propagation at the root (tight capacities, 3 x 6 type D seed
    3 at load cap 2): no bound was computed, and the step ends proven (with target
    raising it once raised the target to -inf and looped for ever)."""
    kl, bb = _bb("d", 3, 6, 3)
    r = bb.solve(2, None, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter, raise_target=raise_target)
    assert r.proven and r.emptied and r.evaluations == 0
    assert r.agent_of is not None and kl.feasible(r.agent_of, 2)
    assert r.cost == pytest.approx(brute_optimum(kl, 2))


def test_slack_is_known_only_for_loads_equal_on_every_agent() -> None:
    D = np.ones((2, 3), dtype=np.int64)
    allowed = np.ones((2, 3), dtype=bool)
    assert GapBranchBound.slack(D, 2, allowed) == 1
    D[1, 0] = 2
    from allocator.solvers.gap_bb import NO_SLACK

    assert GapBranchBound.slack(D, 2, allowed) == NO_SLACK
    allowed[1, 0] = False  # the pair with the other load is not eligible
    assert GapBranchBound.slack(D, 2, allowed) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_lower_bound_ends_the_search(seed: int) -> None:
    """`lower` (the previous step's optimum): an incumbent at it is proven with no tree;
    from a worse incumbent the plan found at it is proven; a lower bound below the
    optimum still gives the proven optimum."""
    kl, bb = _bb("d", 3, 8, seed)
    K = 3
    opt = brute_optimum(kl, K)
    ref = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                   clock=time.perf_counter)
    assert ref.proven and ref.agent_of is not None
    r = bb.solve(K, ref.agent_of, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter, lower=opt)
    assert r.proven and r.nodes == 0 and r.cost == pytest.approx(opt)
    for low in (opt, opt - 1, opt - 5):
        r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                     clock=time.perf_counter, lower=low)
        assert r.proven and r.cost == pytest.approx(opt)
        assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    # a lower bound that is not one (above the optimum) is the caller's error; a plan at
    # it is still a real plan of that cost
    r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter, lower=opt + 50)
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(kl.cost(r.agent_of))


@pytest.mark.parametrize("seed", range(6))
def test_the_node_heuristic_finds_plans_at_a_tight_load_cap(seed: int) -> None:
    """With exactly n/m tasks an agent every agent ends full, so inserting a task left
    over needs an ejection; the root and its first child (no incumbent) then yield a
    feasible plan of its stated cost (before the ejection: none on any of these at the
    root alone; with the full-agent bound's choices the root alone found one on 5 of 6)."""
    kl, bb = _bb("d", 4, 16, seed)
    K = 4
    r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 60, clock=time.perf_counter,
                 max_nodes=2)
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(kl.cost(r.agent_of))
    opt = GapBranchBound(kl.C, kl.A, kl.cap, kl.D).solve(
        K, None, step=1.0, deadline=time.perf_counter() + 600, clock=time.perf_counter)
    assert opt.proven and r.cost >= opt.cost - 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("K", [None, 5, 4])
def test_two_workers_prove_the_one_worker_optimum(seed: int, K: int | None) -> None:
    """Two threads sharing each round's tree (open nodes handed over, the incumbent
    shared) prove the optimum one thread proves, with a valid plan of that cost; D 5x20,
    cap-free, loose and tight (4 tasks an agent) load caps."""
    kl, bb = _bb("d", 5, 20, seed)
    ref = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                   clock=time.perf_counter)
    two = GapBranchBound(kl.C, kl.A, kl.cap, kl.D)
    r = two.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                  clock=time.perf_counter, workers=2)
    assert ref.proven and r.proven and r.emptied
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(ref.cost) == pytest.approx(kl.cost(r.agent_of))


def test_a_second_thread_only_on_an_idle_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact mode and the seeding sweep take a second thread for their trees when a core
    is idle (the threads of its last tree count in the load average), one on a loaded
    machine and on a deterministic budget."""
    import os

    import allocator.solvers.exact_front as ef

    p = compile_snapshot(gap_to_snapshot(generate_gap("d", 4, 16, 0)))
    mm = ef._build(p, ["cost", "makespan"])
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(ef, "_machine_busy_s", lambda: None)  # the load-average rule
    for load, want in ((0.9, 2), (1.4, 2), (2.1, 1), (9.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert ef._Sweep(mm, ["cost", "makespan"], Budget(10), 0)._workers() == want
        assert ef._Sweep(mm, ["cost", "makespan"], Budget(10), 0, share=True)._workers() == want
        assert ef._Sweep(mm, ["cost", "makespan"], Budget(10, workers=1), 0)._workers() == 1
        assert ef._Sweep(mm, ["cost", "makespan"], Budget(10, workers=1), 0,
                         share=True)._workers() == 1
    # its own two threads raise the load to about 2: it keeps them; a third process not
    sw = ef._Sweep(mm, ["cost", "makespan"], Budget(10), 0)
    for load, want in ((0.9, 2), (2.0, 2), (2.4, 2), (3.1, 1), (2.0, 1), (1.4, 2)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert sw._workers() == want, load


def test_idle_cores_from_the_machines_busy_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between two looks, the busy time of the machine less this process's own CPU time
    is what the others used: none (this process's two threads busy) gives 2 cores of 2,
    1.6 cores' worth gives 1."""
    import os

    import allocator.solvers.exact_front as ef

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    clock = {"wall": 100.0, "busy": 1000.0, "mine": 10.0}
    monkeypatch.setattr(ef.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(ef.time, "process_time", lambda: clock["mine"])
    monkeypatch.setattr(ef, "_machine_busy_s", lambda: clock["busy"])
    monkeypatch.setattr(ef, "_CPU_LOOK", [])
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert ef.idle_cores() == 1  # first look: the load average
    for busy, mine, want in ((2.0, 2.0, 2), (2.0, 0.4, 1), (1.0, 1.0, 2), (1.9, 0.95, 1)):
        clock["wall"] += 1.0
        clock["busy"] += busy
        clock["mine"] += mine
        assert ef.idle_cores() == want


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("K", [None, 5, 4])
def test_seeding_portfolio_proves_the_one_tree_optimum(seed: int, K: int | None) -> None:
    """On two idle cores a seeding step runs the target-raising tree and one working down
    from the incumbent in two threads: the first to prove stops the other, and the step
    is the optimum one tree proves, with a valid plan of that cost (D 5x20)."""
    import allocator.solvers.exact_front as ef

    kl, bb = _bb("d", 5, 20, seed)
    ref = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                   clock=time.perf_counter)
    p = compile_snapshot(gap_to_snapshot(generate_gap("d", 5, 20, seed)))
    sw = ef._Sweep(ef._build(p, ["cost", "makespan"]), ["cost", "makespan"], Budget(600), 0,
                   share=True)
    r = sw._portfolio(GapBranchBound(kl.C, kl.A, kl.cap, kl.D), K, None, 1.0,
                      time.perf_counter() + 600, -np.inf)
    assert ref.proven and r.proven
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(ref.cost) == pytest.approx(kl.cost(r.agent_of))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("K", [None, 5])
def test_seeding_portfolio_with_the_search_thread(monkeypatch: pytest.MonkeyPatch, seed: int,
                                                  K: int | None) -> None:
    """With an incumbent the portfolio's second thread is the large-neighbourhood search
    (PORTFOLIO_LNS): it runs, the step still ends at the optimum the tree proves, and a
    search that stops early (stalled after one sub-tree) does not cut the tree short
    (D 5x20, from a short tabu search's plan)."""
    import allocator.solvers.exact_front as ef
    import allocator.solvers.gap_lns as gl

    kl, bb = _bb("d", 5, 20, seed)
    ref = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                   clock=time.perf_counter)
    t = tabu_search(kl.C, kl.A, kl.cap, kl.loads, np.inf if K is None else K, None, seed=seed,
                    iterations=20, deadline=np.inf, clock=time.perf_counter)
    inc = t.agent_of
    assert inc is not None and kl.feasible(inc, K) and kl.cost(inc) > ref.cost
    monkeypatch.setattr(gl, "STALL_TREES", 1)
    calls = count_calls(monkeypatch, ef, "lns_search")
    p = compile_snapshot(gap_to_snapshot(generate_gap("d", 5, 20, seed)))
    sw = ef._Sweep(ef._build(p, ["cost", "makespan"]), ["cost", "makespan"], Budget(600), 0,
                   share=True)
    r = sw._portfolio(GapBranchBound(kl.C, kl.A, kl.cap, kl.D), K, inc, 1.0,
                      time.perf_counter() + 600, -np.inf)
    assert calls["n"] == 1
    assert ref.proven and r.proven
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(ref.cost) == pytest.approx(kl.cost(r.agent_of))


@pytest.mark.parametrize(("seed", "last_exact"), [(0, False), (1, False), (0, True)])
def test_seeding_sweep_on_two_idle_cores_reaches_the_exact_front(
        monkeypatch: pytest.MonkeyPatch, seed: int, last_exact: bool) -> None:
    """The seeding sweep with its portfolio (two idle cores) returns plans that reach
    every point of the proven exact front (D 4x16), each plan valid; also with the last
    level of a proven chain in exact mode (`LAST_EXACT`, the default), where a chain this
    small never reaches the portfolio."""
    import allocator.solvers.exact_front as ef

    snap = gap_to_snapshot(generate_gap("d", 4, 16, seed))
    p = compile_snapshot(snap)
    true = exact_front(p, ["cost", "makespan"], budget=Budget(60, workers=1), seed=0)
    assert true.proven
    monkeypatch.setattr(ef, "idle_cores", lambda own=1: 2)
    monkeypatch.setattr(ef, "LAST_EXACT", last_exact)
    calls = count_calls(monkeypatch, ef._Sweep, "_portfolio")
    plans = ef.epsilon_assignments(p, ["cost", "makespan"], budget=Budget(60), seed=0)
    assert calls["n"] >= 1 or last_exact
    _assert_covers(p, plans, true)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plans_met_in_a_tree_are_kept_by_makespan(seed: int) -> None:
    """After a cap-free step the tree has kept the cheapest plan it met at each makespan:
    the one offered for a cap is feasible within it, costs what the data says and no less
    than that cap's optimum; none for a cap no plan meets; a kept plan that breaks a
    capacity (a torn write by two threads) is never offered."""
    kl, bb = _bb("d", 3, 8, seed)
    r = bb.solve(None, None, step=1.0, deadline=time.perf_counter() + 600,
                 clock=time.perf_counter)
    assert r.proven
    offered = 0
    for K in (8, 5, 4, 3, 2):
        plan = bb.kept(K)
        opt = brute_optimum(kl, K)
        if plan is None:
            continue
        offered += 1
        assert kl.feasible(plan, K)
        assert bb.cost(plan) >= opt - 1e-6
        lv = int(np.bincount(plan, weights=kl.loads[plan, np.arange(kl.n)], minlength=3).max())
        assert bb.kept_cost[lv] <= bb.cost(plan) + 1e-9
    assert offered >= 1
    assert bb.kept(2) is None  # 3 agents x 2 < 8 tasks: no plan within cap 2 exists
    any_plan = bb.kept(None)
    assert any_plan is not None and kl.feasible(any_plan, None)
    # a torn entry (every task on agent 0: over capacity) is skipped
    lv = int(np.argmin(bb.kept_cost))
    bb.kept_plan[lv] = 0
    bb.kept_cost[lv] = -1.0
    again = bb.kept(None)
    assert again is None or kl.feasible(again, None)


@pytest.mark.parametrize("seed", [6])
def test_a_tighter_step_starts_from_a_plan_the_looser_tree_met(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact front's tighter steps are offered the best plan met within their cap: on
    small type-D fronts some step got one, and every point is proven and valid. (Which
    fronts' looser trees meet such a plan follows the branching: seed 7 did before the
    least-child-bound rule, seed 6 with either, as do seeds 0, 1, 8 and 9.)"""
    got: list[np.ndarray] = []
    orig = GapBranchBound.kept

    def spy(self: GapBranchBound, K: int | None) -> np.ndarray | None:
        plan = orig(self, K)
        if plan is not None and K is not None:
            got.append(plan)
        return plan

    monkeypatch.setattr(GapBranchBound, "kept", spy)
    snap = gap_to_snapshot(generate_gap("d", 4, 16, seed))
    p = compile_snapshot(snap)
    front = exact_front(p, ["cost", "makespan"], budget=Budget(60, workers=1), seed=0)
    assert front.proven and len(front.points) >= 2
    assert got
    for q in front.points:
        assert validate(snap, q.plan) == []


def test_a_tail_round_at_the_lower_bound_proves_the_brute_force_optimum() -> None:
    """Target raising with a round at the proven lower bound before the last one
    (tail_step) or without: the same proven optimum; the tail round changes the tree on
    some instance."""
    differ = 0
    for kind, seed in [("d", s) for s in range(6)] + [("e", 1), ("c", 2)]:
        kl, bb = _bb(kind, 3, 8, seed)
        for K in (None, 3):
            opt = brute_optimum(kl, K)
            nodes = []
            for tail in (True, False):
                bb.lam = GapBranchBound(kl.C, kl.A, kl.cap, kl.D).lam  # same start
                r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                             clock=time.perf_counter, tail_step=tail)
                assert r.proven and r.cost == pytest.approx(opt)
                assert r.agent_of is not None and kl.feasible(r.agent_of, K)
                nodes.append(r.nodes)
            differ += nodes[0] != nodes[1]
    assert differ >= 1


def _child_case(kind: str, n: int, seed: int) -> dict:
    """A root node of a 3-agent instance at load cap 3 and perturbed multipliers, with
    every agent's table built, its forced-in bounds read as the kernel reads them, and
    every (agent, subset) of the tasks enumerated."""
    import itertools

    from allocator.solvers.gap_bb import _knap, _tv

    kl, bb = _bb(kind, 3, n, seed)
    m, K = 3, 3
    C, A, D, cap = bb.C, bb.A, bb.D, bb.cap
    rng = np.random.default_rng(seed)
    best = np.where(np.isfinite(C), C, np.inf).min(axis=0)
    lam = best + rng.uniform(-8.0, 8.0, size=n)
    allowed = np.isfinite(C) & (cap[:, None] >= A) & (D <= K)
    slack = GapBranchBound.slack(D, K, allowed)
    agent_of = np.full(n, -1, dtype=np.int64)
    rcap, rload = cap.copy(), np.full(m, K, dtype=np.int64)
    T = np.zeros((m, K + 1, int(cap.max()) + 1), dtype=np.int32)
    took = np.zeros((n, K + 1, int(cap.max()) + 1), dtype=np.bool_)
    items, lim, pre = np.zeros(n, np.int64), np.zeros((m, 3), np.int64), np.zeros((n, 2), np.int64)
    x, sh = np.zeros((m, n), dtype=np.bool_), np.zeros((m, 2))
    z = np.array([_knap(i, lam, C, A, D, allowed, agent_of, rcap[i], rload[i], T, took, items,
                        x, lim, pre, slack, sh) for i in range(m)])
    lval = float(lam.sum() + z.sum())
    F = np.full((m, n), np.inf)
    for i in range(m):
        for j in range(n):
            if allowed[i, j]:
                F[i, j] = (lval - z[i] + C[i, j] - lam[j] - sh[i, 0] * D[i, j] + sh[i, 1]
                           + _tv(T, lim, i, rload[i] - D[i, j], rcap[i] - A[i, j]))
    plans = np.array(list(itertools.product(range(m), repeat=n)))
    ok = np.array([kl.feasible(p, K) for p in plans])
    costs = np.array([kl.cost(p) if f else np.inf for p, f in zip(plans, ok, strict=True)])
    subsets = np.array(list(itertools.product([False, True], repeat=n)))
    return dict(C=C, A=A, D=D, cap=cap, K=K, lam=lam, allowed=allowed, slack=slack,
                agent_of=agent_of, rcap=rcap, rload=rload, T=T, took=took, items=items,
                lim=lim, pre=pre, x=x, sh=sh, z=z, F=F, plans=plans, costs=costs,
                subsets=subsets)


def _scratch(c: dict) -> tuple:
    """The kernel's scratch arguments of `_child_bounds` (a table, its limits and shift,
    a choice matrix, the demand order, the table builder's buffers; no memo)."""
    m, n = c["C"].shape
    T = c["T"]
    return (np.empty(T.shape[1:], dtype=T.dtype), c["took"], c["items"],
            np.zeros(n, dtype=np.int32), np.zeros((m, n), dtype=np.bool_),
            np.zeros(3, dtype=np.int64), c["pre"], c["slack"], np.zeros(2),
            np.argsort(c["A"], axis=1, kind="mergesort"), np.empty(T.shape[2], dtype=T.dtype),
            np.zeros(n, dtype=np.bool_), np.zeros((m, 2 * n + 4), dtype=np.int64),
            np.zeros((m, 2)))


def _least_set(c: dict, i: int, j: int, room: int, k0: int) -> float:
    """Agent i's least reduced cost over the allowed subsets without task j within
    capacity `room` and load k0 (exactly k0 at slack 0, where every agent ends full)."""
    S = c["subsets"] & c["allowed"][i] & (np.arange(c["subsets"].shape[1]) != j)
    S = S[(c["subsets"] == S).all(axis=1)]
    load = (S * c["D"][i]).sum(axis=1)
    fit = ((S * c["A"][i]).sum(axis=1) <= room) & ((load == k0) if c["slack"] == 0
                                                   else (load <= k0))
    r = np.where(S, c["C"][i] - c["lam"], 0.0).sum(axis=1)
    return float(r[fit].min()) if fit.any() else np.inf


@pytest.mark.parametrize("kind,n,seed", [("d", 7, 0), ("d", 7, 1), ("c", 7, 2), ("e", 7, 3),
                                         ("d", 9, 0), ("d", 9, 4), ("e", 9, 5)])
def test_child_bounds_never_exceed_the_childs_lagrangian_or_optimum(kind: str, n: int,
                                                                     seed: int) -> None:
    """`_child_bounds` (every free task's children before branching): for every pair it
    is at most the child's own Lagrangian value at the node's multipliers (task j's
    multiplier out, agent i's least set at the room left without j, every other agent's
    least set without j; brute force) and so at most the child's optimum (every plan
    with j on i, enumerated); +inf only where no plan puts j on i. Load cap 3 with 7 tasks
    (plain tables) and 9 (slack 0: every agent full)."""
    from allocator.solvers.gap_bb import _child_bounds

    c = _child_case(kind, n, seed)
    m = 3
    zex, cb = np.zeros(m), np.zeros(m)
    for j in range(n):
        _child_bounds(j, c["F"], c["z"], zex, cb, c["lam"], c["C"], c["A"], c["D"],
                      c["allowed"], c["agent_of"], c["rcap"], c["rload"], c["x"],
                      *_scratch(c))
        for i in range(m):
            opt = float(c["costs"][c["plans"][:, j] == i].min())
            if not c["allowed"][i, j]:
                assert cb[i] == np.inf and opt == np.inf
                continue
            lag = float(c["lam"].sum() - c["lam"][j] + c["C"][i, j])
            lag += _least_set(c, i, j, int(c["cap"][i] - c["A"][i, j]), c["K"] - int(c["D"][i, j]))
            lag += sum(_least_set(c, k, j, int(c["cap"][k]), c["K"]) for k in range(m) if k != i)
            assert cb[i] <= lag + 1e-6
            assert cb[i] <= opt + 1e-6
            if cb[i] == np.inf:
                assert opt == np.inf


def test_child_bounds_cover_both_outcomes() -> None:
    """The cases above include pairs where the other agents' tables without the task raise
    the bound above the forced-in bound (the child is pruned where the forced-in bound
    alone would keep it), and pairs where no other agent held the task (the two agree)."""
    from allocator.solvers.gap_bb import _child_bounds

    seen = set()
    for kind, n, seed in [("d", 7, 0), ("d", 7, 1), ("c", 7, 2), ("d", 9, 0)]:
        c = _child_case(kind, n, seed)
        zex, cb = np.zeros(3), np.zeros(3)
        for j in range(n):
            _child_bounds(j, c["F"], c["z"], zex, cb, c["lam"], c["C"], c["A"], c["D"],
                          c["allowed"], c["agent_of"], c["rcap"], c["rload"], c["x"],
                          *_scratch(c))
            for i in range(3):
                if c["allowed"][i, j] and np.isfinite(cb[i]):
                    seen.add("stronger" if cb[i] > c["F"][i, j] + 1e-6 else "equal")
    assert seen == {"stronger", "equal"}


@pytest.mark.parametrize("kind,seed", [("d", 1), ("d", 5), ("e", 3)])
@pytest.mark.parametrize("gap", [-1.0, 1e9])
def test_child_bounds_keep_the_brute_force_optimum(kind: str, seed: int, gap: float,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With every node's children bounded (EXCLUDE_GAP huge: every node, and all 8 tasks
    are within EXCLUDE_TASKS) and with none (negative), the proven optimum is the
    brute-force one (3 x 8: cap-free, and load cap 3, slack 1)."""
    from allocator.solvers import gap_bb

    monkeypatch.setattr(gap_bb, "EXCLUDE_GAP", gap)
    kl, _ = _bb(kind, 3, 8, seed)
    for K in (None, 3):
        bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.D)
        r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                     clock=time.perf_counter)
        assert r.proven and r.agent_of is not None and kl.feasible(r.agent_of, K)
        assert r.cost == pytest.approx(brute_optimum(kl, K))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_guess_only_moves_the_first_target(seed: int) -> None:
    """`guess` (the looser step's unproven best cost) starts the rounds there but is no
    bound: below, at and above the optimum the proven optimum is the brute-force one."""
    kl, bb = _bb("d", 3, 8, seed)
    K = 3
    opt = brute_optimum(kl, K)
    for guess in (opt - 6, opt - 1, opt, opt + 1, opt + 4, opt + 50):
        r = bb.solve(K, None, step=1.0, deadline=time.perf_counter() + 600,
                     clock=time.perf_counter, guess=guess, tail_step=False)
        assert r.proven and not r.infeasible, guess
        assert r.agent_of is not None and kl.feasible(r.agent_of, K)
        assert r.cost == pytest.approx(opt) == pytest.approx(kl.cost(r.agent_of))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_short_seeding_level_never_ends_dearer_than_its_start(
        monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """A seeding level with less than BB_MIN_S goes to the tree's path (tabu start, tree,
    search), not to HiGHS, and ends no dearer than the start it was given: HiGHS's first
    plan in such a slice cost 6397 on d1080-s311 at makespan 8 (optimum 5043). D 8x40 at
    its tightest load cap, from a poor feasible plan."""
    import allocator.solvers.exact_front as ef

    kl, _ = _bb("d", 8, 40, seed)
    K = 5
    start = tabu_search(kl.C, kl.A, kl.cap, kl.loads, K, None, seed=seed, iterations=200,
                        deadline=np.inf, clock=time.perf_counter).agent_of
    assert start is not None and kl.feasible(start, K)
    p = compile_snapshot(gap_to_snapshot(generate_gap("d", 8, 40, seed)))
    obj = ["cost", "makespan"]
    sw = ef._Sweep(ef._build(p, obj), obj, Budget(60), 0, share=True)
    assert sw.fix_placed()
    sw.budget = Budget(0.3)
    assert sw.slice() < ef.BB_MIN_S
    highs = count_calls(monkeypatch, ef._Sweep, "_highs")
    r = sw.solve("cost", {"makespan": float(K)}, start)
    assert highs["n"] == 0
    assert r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert assignment_feasible(p, r.agent_of)
    assert r.values["cost"] == pytest.approx(kl.cost(r.agent_of))
    assert kl.cost(r.agent_of) <= kl.cost(start) + 1e-9


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("limit", [0.05, 0.3, 60.0])
def test_seeding_sweep_plans_are_valid_whatever_the_budget(
        monkeypatch: pytest.MonkeyPatch, seed: int, limit: float) -> None:
    """The one-thread seeding sweep (its capped steps start their targets at the looser
    step's best cost): with a budget too short for any tree every plan it returns is
    still valid; with ample time its plans reach every point of the proven front."""
    import allocator.solvers.exact_front as ef
    from allocator.solvers.nsga2 import nsga2_front

    snap = gap_to_snapshot(generate_gap("d", 4, 16, seed))
    p = compile_snapshot(snap)
    monkeypatch.setattr(ef, "idle_cores", lambda own=1: 1)
    plans = ef.epsilon_assignments(p, ["cost", "makespan"], budget=Budget(limit), seed=0)
    assert plans or limit < 1
    for a in plans:
        assert np.all(a >= 0) and assignment_feasible(p, a)
    if limit >= 60:
        true = exact_front(p, ["cost", "makespan"], budget=Budget(60, workers=1), seed=0)
        assert true.proven
        _assert_covers(p, plans, true)
    # the front a user gets from that budget (NSGA-II uses all of it: 2 s stand for 60)
    front = nsga2_front(p, ["cost", "makespan"], budget=Budget(min(max(limit, 0.2), 2.0)),
                        seed=0)
    assert front.points
    assert all(not validate(snap, q.plan) for q in front.points)


@pytest.mark.parametrize("kind,m,n,seed,K", [("d", 5, 30, 1, 7), ("d", 8, 40, 2, 6),
                                             ("e", 6, 30, 3, None), ("c", 5, 25, 4, 6)])
def test_a_tree_run_in_pieces_is_the_tree_run_at_once(kind: str, m: int, n: int, seed: int,
                                                      K: int | None) -> None:
    """Paused every 7 nodes and resumed, the step's tree is the same tree: same nodes,
    evaluations, root bound and plan, proven alike."""
    kl, _ = _bb(kind, m, n, seed)
    outs = []
    for piece in (None, 7):
        bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)
        tree = StepTree(bb, K, None, step=1.0, deadline=1e9, clock=lambda: 0.0)
        pauses = 0
        while not tree.run(1e9, nodes=piece):
            pauses += 1
            assert not tree.result().proven
        r = tree.result()
        assert r.agent_of is not None and kl.feasible(r.agent_of, K)
        outs.append((r.cost, r.nodes, r.evaluations, r.root_bound, r.proven,
                     r.agent_of.tolist()))
        if piece is not None:
            assert pauses >= r.nodes // 7 - 1
    assert outs[0] == outs[1] and outs[0][4]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("after", [0, 1, 5])
def test_a_tree_handed_a_cheaper_plan_still_proves_the_brute_force_optimum(
        seed: int, K: int | None, after: int) -> None:
    """3 x 8 type D from no plan; after `after` nodes the tree pauses and is offered the
    optimum (from a separate proof) or, on odd seeds, a plan one step above it when there
    is one: resumed, it ends proven at the brute-force optimum. Costlier and infeasible
    plans are refused."""
    kl, bb = _bb("d", 3, 8, seed)
    opt = brute_optimum(kl, K)
    ref = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads).solve(
        K, None, step=1.0, deadline=np.inf, clock=lambda: 0.0)
    assert ref.proven and ref.agent_of is not None and ref.cost == pytest.approx(opt)
    plans = [np.array(c) for c in itertools.product(range(kl.m), repeat=kl.n)]
    near = [a for a in plans if kl.feasible(a, K) and kl.cost(a) == opt + 1]
    give = near[0] if seed % 2 and near else ref.agent_of
    tree = StepTree(bb, K, None, step=1.0, deadline=np.inf, clock=lambda: 0.0)
    tree.run(np.inf, nodes=after)
    if tree.ended:
        pytest.skip("settled within the first nodes")
    before = tree.cost
    assert tree.offer(give) == (kl.cost(give) < before - 1e-9)
    assert tree.cost == min(before, kl.cost(give))
    infeasible = [a for a in plans if not kl.feasible(a, K)]
    assert not infeasible or not tree.offer(infeasible[0])
    worse = [a for a in plans if kl.feasible(a, K) and kl.cost(a) > tree.cost]
    if worse:
        assert not tree.offer(worse[0])
    assert tree.run(np.inf)
    r = tree.result()
    assert r.proven and r.agent_of is not None and kl.feasible(r.agent_of, K)
    assert r.cost == pytest.approx(opt) == pytest.approx(kl.cost(r.agent_of))
    assert bb.kept(K) is not None and kl.cost(bb.kept(K)) == pytest.approx(opt)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("K", [None, 3])
def test_split_targets_prove_the_brute_force_optimum(caplog: pytest.LogCaptureFixture,
                                                     seed: int, K: int | None) -> None:
    """Rounds that jump `split` of the way to the incumbent after an emptied one (the
    seeding sweep's one-tree steps) end proven at the brute-force optimum, from the dearest
    feasible plan as from none, and take no more rounds than doubling the targets."""
    kl, _ = _bb("d", 3, 8, seed)
    opt = brute_optimum(kl, K)
    plans = (np.array(c) for c in itertools.product(range(kl.m), repeat=kl.n))
    worst = max((a for a in plans if kl.feasible(a, K)), key=kl.cost)
    rounds = {}
    for start in (worst, None):
        for split in (0.0, 0.5, 0.9):
            bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)
            caplog.clear()
            with caplog.at_level("DEBUG", logger="allocator.solvers.gap_bb"):
                r = bb.solve(K, start, step=1.0, deadline=np.inf, clock=lambda: 0.0,
                             tail_step=False, split=split)
            assert r.proven and r.agent_of is not None and kl.feasible(r.agent_of, K)
            assert r.cost == pytest.approx(opt) == pytest.approx(kl.cost(r.agent_of))
            rounds[start is None, split] = sum("round" in m for m in caplog.messages)
    for none in (False, True):
        assert rounds[none, 0.5] <= rounds[none, 0.0]
        assert rounds[none, 0.9] <= rounds[none, 0.0]
    if rounds[False, 0.0] > 3:  # the dearest plan: many doublings, a jump skips some
        assert rounds[False, 0.5] < rounds[False, 0.0]


def test_least_makespan_returns_a_dominating_plan_met_never_a_dearer_one() -> None:
    """A seeding step's plan is swapped for a plan met in the trees that costs no more at
    a smaller makespan (it dominates the point), never for a dearer one."""
    from allocator.solvers.gap_bb import _keep

    kl, _ = _bb("d", 3, 8, 0)
    ar = np.arange(kl.n)

    def mk(a: np.ndarray) -> int:
        return int(np.bincount(a, weights=kl.loads[a, ar], minlength=kl.m).max())

    plans = [np.array(c) for c in itertools.product(range(kl.m), repeat=kl.n)]
    feas = [a for a in plans if kl.feasible(a, None)]
    a = max(feas, key=mk)
    cheaper = [b for b in feas if kl.cost(b) <= kl.cost(a) and mk(b) < mk(a)]
    dearer = [b for b in feas if kl.cost(b) > kl.cost(a) and mk(b) < mk(a)]
    assert cheaper and dearer
    for met, better in ((dearer[0], False), (min(cheaper, key=mk), True)):
        bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)
        assert np.array_equal(bb.least_makespan(a, None), a)  # nothing met yet
        _keep(met, kl.cost(met), bb.D, bb.kept_cost, bb.kept_plan, np.zeros(kl.m, np.int64))
        got = bb.least_makespan(a, None)
        assert np.array_equal(got, met if better else a)
        assert kl.feasible(got, None) and kl.cost(got) <= kl.cost(a) + 1e-9
