"""The compiled penalty walk (allocator.solvers.gap_kernel): its best plan is always
within capacity and priced exactly, its bookkeeping matches a rebuild, a seed gives
one walk, and it improves on a known-bad start; `auto` hands its plans over."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import compile_snapshot
from allocator.solvers import auto
from allocator.solvers.base import plan_objective
from allocator.solvers.context import SolveContext
from allocator.solvers.gap_kernel import HAVE_NUMBA, PenaltySearch, _descend, kernel_ready
from allocator.solvers.greedy import greedy_assign
from allocator.solvers.lagrange import Lagrangian
from allocator.solvers.linear import LinearModel, build_linear, is_linear
from tests.strategies import snapshots

#: Without numba the kernel runs as Python: correct, but too slow for these walks.
compiled = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")


def _gap(kind: str, m: int, n: int, seed: int) -> tuple[LinearModel, np.ndarray]:
    problem = compile_snapshot(gap_to_snapshot(generate_gap(kind, m, n, seed)))
    lm = build_linear(problem)
    return lm, Lagrangian(lm).feasibility_first()


def _consistent(ps: PenaltySearch) -> None:
    """Usage and member lists equal a rebuild from the walk's plan."""
    used = np.zeros_like(ps.used)
    np.add.at(used, ps.x, ps.A[ps.x, np.arange(ps.n)])
    assert np.allclose(used, ps.used)
    for i in range(ps.m + 1):
        members = set(ps.members[i, : ps.mcount[i]].tolist())
        assert members == set(np.flatnonzero(ps.x == i).tolist())


@compiled
@pytest.mark.parametrize("kind", ["c", "e"])
def test_walk_is_valid_exact_deterministic_and_improves_a_bad_start(kind: str) -> None:
    lm, start = _gap(kind, 8, 80, 5)
    assert lm.feasible(start)
    bests = []
    for _ in range(2):
        ps = PenaltySearch.of_model(lm, start, seed=3)
        ps.run(150)
        _consistent(ps)
        best = ps.best_agent_of()
        assert lm.feasible(best) and not np.any(best < 0)
        assert ps.best_cost == pytest.approx(lm.objective(best), rel=1e-12)
        assert lm.objective(best) == pytest.approx(plan_objective(lm.problem, best), rel=1e-9)
        bests.append(best)
    assert np.array_equal(bests[0], bests[1])  # same seed, same rounds: same walk
    # the Lagrangian feasibility-first start is several per cent off; the walk is not
    assert lm.objective(bests[0]) < 0.98 * lm.objective(start)
    other = PenaltySearch.of_model(lm, start, seed=4)
    other.run(150)
    assert lm.feasible(other.best_agent_of())


@compiled
def test_adopt_restarts_from_a_better_plan_and_never_from_a_worse_one() -> None:
    lm, start = _gap("e", 6, 48, 2)
    ps = PenaltySearch.of_model(lm, start, seed=1)
    ps.run(40)
    good = ps.best_agent_of()
    fresh = PenaltySearch.of_model(lm, start, seed=1)
    fresh.adopt(good, lm.objective(good))
    assert np.array_equal(fresh.best_agent_of(), good)
    _consistent(fresh)
    fresh.adopt(start, lm.objective(start))  # worse: ignored
    assert np.array_equal(fresh.best_agent_of(), good)


@compiled
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(timed=False))
def test_any_assignment_model_keeps_capacity_eligibility_and_price(snap) -> None:  # type: ignore[no-untyped-def]
    problem = compile_snapshot(snap)
    if not is_linear(problem):
        return
    lm = build_linear(problem)
    start = greedy_assign(problem)
    if not PenaltySearch.applies(lm) or not lm.feasible(start):
        return
    ps = PenaltySearch.of_model(lm, start, seed=0)
    ps.run(20)
    _consistent(ps)
    best = ps.best_agent_of()
    assert lm.feasible(best)
    assert lm.objective(best) <= lm.objective(start) + 1e-9 * max(1.0, abs(lm.objective(start)))
    assert ps.best_cost == pytest.approx(lm.objective(best), rel=1e-9, abs=1e-9)


@compiled
def test_auto_walk_thread_offers_only_valid_better_plans() -> None:
    deadline = time.perf_counter() + 120
    while not kernel_ready() and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert kernel_ready()
    lm, start = _gap("e", 8, 80, 7)
    ctx = SolveContext(time_limit=1.8, workers=2)
    shared = auto._Shared(lm, start, lm.objective(start))
    stats = {"walk_rounds": 0, "walk_blocks": 0, "walk_improvements": 0}
    auto._walk(shared, ctx, threading.Event(), 0, stats)
    assert stats["walk_rounds"] > 0 and stats["walk_improvements"] > 0
    assert lm.feasible(shared.agent_of)
    assert shared.obj == pytest.approx(lm.objective(shared.agent_of))
    assert shared.obj < lm.objective(start)
    objs = [p.objective for p in shared.points]
    assert objs == sorted(objs, reverse=True)


@compiled
def test_block_walk_merges_into_a_valid_better_plan_and_auto_uses_blocks() -> None:
    lm, start = _gap("e", 12, 120, 4)
    agents = np.array([1, 4, 5, 9])
    ps, tasks = PenaltySearch.block(lm, start, agents, seed=2)
    assert set(tasks.tolist()) == set(np.flatnonzero(np.isin(start, agents)).tolist())
    assert ps.start_cost == pytest.approx(lm.score[start[tasks], tasks].sum())
    ps.run(60)
    _consistent(ps)
    merged = start.copy()
    merged[tasks] = agents[ps.best_agent_of()]
    assert lm.feasible(merged)
    assert set(np.unique(merged[tasks]).tolist()) <= set(agents.tolist())
    assert lm.objective(merged) - lm.objective(start) == pytest.approx(
        ps.best_cost - ps.start_cost)
    assert ps.best_cost <= ps.start_cost
    # auto's block mode (more agents than WALK_WHOLE_AGENTS)
    lm2, start2 = _gap("e", auto.WALK_WHOLE_AGENTS + 6, 300, 1)
    shared = auto._Shared(lm2, start2, lm2.objective(start2))
    stats = {"walk_rounds": 0, "walk_blocks": 0, "walk_improvements": 0}
    kernel_ready()
    deadline = time.perf_counter() + 120
    while not kernel_ready() and time.perf_counter() < deadline:
        time.sleep(0.05)
    auto._walk(shared, SolveContext(time_limit=1.7, workers=2), threading.Event(), 0, stats)
    assert stats["walk_blocks"] > 0 and stats["walk_improvements"] > 0
    assert lm2.feasible(shared.agent_of) and shared.obj < lm2.objective(start2)


def test_candidates_follow_the_given_rank_among_eligible_agents() -> None:
    lm, start = _gap("d", 8, 40, 3)
    adj = Lagrangian(lm).adjusted(np.full((lm.m, 1), 0.9))
    lm.score[2, 5] = np.inf  # agent 2 may not take task 5
    adj[2, 5] = -1e9  # ... however well it ranks
    ps = PenaltySearch.of_model(lm, start, seed=0, candidates=3, rank=adj)
    for j in range(lm.n):
        ok = np.flatnonzero(np.isfinite(lm.score[: lm.m, j]))
        want = ok[np.argsort(adj[ok, j], kind="stable")][:3]
        assert ps.cand[j, :3].tolist() == want.tolist()
    assert 2 not in ps.cand[5].tolist()
    # by cost (no rank) the cheapest agents come first: D's cost falls with demand, so
    # the two orders differ
    by_cost = PenaltySearch.of_model(lm, start, seed=0, candidates=3)
    assert not np.array_equal(by_cost.cand, ps.cand)
    agents = np.array([0, 3, 6])
    blk, tasks = PenaltySearch.block(lm, start, agents, seed=0, candidates=2, rank=adj)
    for q, j in enumerate(tasks):
        want = agents[np.argsort(adj[agents, j], kind="stable")][:2]
        assert agents[blk.cand[q, :2]].tolist() == want.tolist()


@compiled
@pytest.mark.parametrize("chains", [False, True])
def test_a_double_shift_is_found_where_no_shift_or_swap_fits(chains: bool) -> None:
    # three agents of capacity 10, every task uses 10: task 0 (on agent 0, cost 5) would
    # cost 1 on agent 1, which task 1 fills (cost 1 there, 2 on agent 2). No shift fits
    # and the swap costs 51; moving task 0 to agent 1 and task 1 on to agent 2 costs 3.
    inf = np.inf
    S = np.array([[5.0, 50.0], [1.0, 1.0], [50.0, 2.0], [inf, inf]])
    A = np.full((4, 2, 1), 10.0)
    ps = PenaltySearch(S, A, np.full((3, 1), 10.0), np.array([0, 1]), seed=0)
    hi = ps.alpha0 * 1e6  # within capacity only, as the repair descends
    _descend(ps.S, ps.A, ps.cap, ps.inv, ps.cand, ps.x, ps.used, hi, ps.members, ps.mcount,
             ps.slot, ps.rng, np.arange(2), 1e-9, 10, chains)
    _consistent(ps)
    assert ps.x.tolist() == ([1, 2] if chains else [0, 1])


@compiled
def test_the_warm_up_compiles_the_signature_the_walks_run() -> None:
    # numba compiles one machine-code version per argument-type signature; a walk
    # whose call differs from the warm-up's (an omitted default argument is enough)
    # compiles again inside the solve - 10-25 s holding the GIL - and the walk is lost.
    from allocator.solvers import gap_kernel

    kernel_ready()
    deadline = time.perf_counter() + 120
    while not kernel_ready() and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert kernel_ready()
    sigs = set(gap_kernel.search_rounds.signatures)
    assert sigs
    lm, start = _gap("d", 6, 30, 1)
    PenaltySearch.of_model(lm, start, seed=0, rank=lm.score[: lm.m] + 1.0).run(2)
    PenaltySearch.block(lm, start, np.array([0, 2, 3]), seed=1)[0].run(2, chains=False)
    assert set(gap_kernel.search_rounds.signatures) == sigs


def _penalised(ps: PenaltySearch, x: np.ndarray, alpha: np.ndarray) -> float:
    used = np.zeros_like(ps.used)
    np.add.at(used, x, ps.A[x, np.arange(ps.n)])
    excess = (np.maximum(used - ps.cap, 0.0) * ps.inv).sum(axis=1)
    return float(ps.S[x, np.arange(ps.n)].sum() + (alpha * excess).sum())


@compiled
@pytest.mark.parametrize("kind", ["c", "d", "e"])
def test_the_descent_skipping_unchanged_tasks_still_ends_in_a_local_optimum(kind: str) -> None:
    # the descent skips a task when neither its agent nor its candidates changed since
    # its last idle scan, and swaps only with tasks that have the task's agent among
    # their candidates: at its end no such shift or swap may improve (brute force)
    lm, start = _gap(kind, 10, 90, 3)
    ps = PenaltySearch.of_model(lm, start, seed=5, candidates=4)
    alpha = ps.alpha0 * 0.3  # low weights: the descent crosses capacity and moves a lot
    _descend(ps.S, ps.A, ps.cap, ps.inv, ps.cand, ps.x, ps.used, alpha, ps.members,
             ps.mcount, ps.slot, ps.rng, np.arange(ps.n), 1e-9, 10_000, False)
    _consistent(ps)
    x = ps.x.copy()
    here = _penalised(ps, x, alpha)
    assert here < _penalised(ps, start, alpha)
    tol = 1e-7 * max(1.0, abs(here))
    for j in range(ps.n):
        for k in ps.cand[j]:
            if k < 0 or k == x[j]:
                continue
            y = x.copy()
            y[j] = k
            assert _penalised(ps, y, alpha) >= here - tol, (j, k)
            if k == ps.m:
                continue
            for lt in np.flatnonzero(x == k):
                if x[j] not in ps.cand[lt]:
                    continue
                y = x.copy()
                y[j], y[lt] = k, x[j]
                assert _penalised(ps, y, alpha) >= here - tol, (j, k, lt)


@compiled
def test_the_repair_brings_an_overfull_plan_within_capacity_consistently() -> None:
    lm, start = _gap("d", 12, 150, 2)
    ps = PenaltySearch.of_model(lm, start, seed=1)
    # overfill: every task to its cheapest agent (D: the one where it is largest)
    cheap = np.argmin(ps.S[: ps.m], axis=0)
    from allocator.solvers.gap_kernel import _fits, _repair, _reset

    _reset(ps.x, cheap.astype(np.int64), ps.used, ps.A, ps.members, ps.mcount, ps.slot)
    assert not _fits(ps.used, ps.cap, ps.m)
    assert _repair(ps.S, ps.A, ps.cap, ps.inv, ps.cand, ps.x, ps.used, ps.members,
                   ps.mcount, ps.slot, 4 * ps.n)
    _consistent(ps)
    best = np.where(ps.x < ps.m, ps.x, -1)
    assert lm.feasible(best)
