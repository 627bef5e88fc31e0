"""The exact cover of enumerated agent sets for a packed cost step (allocator.solvers.gap_cover)
and the sweep's use of it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import Problem, compile_snapshot
from allocator.solvers import exact_front as ef
from allocator.solvers import gap_bb, gap_cover
from allocator.solvers.base import Budget
from allocator.solvers.gap_bb import GapBranchBound, StepTree
from allocator.solvers.gap_cover import cover_search, packed
from allocator.solvers.gap_tabu import HAVE_NUMBA, tabu_search
from allocator.solvers.knapsack_lagrange import KnapsackLagrangian
from models import ParetoFront
from tests.gap_helpers import brute_optimum

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")


def _still() -> float:
    """A clock that never moves: every cover runs to its end."""
    return 0.0


def _packed_step(kind: str, m: int, n: int, seed: int) -> tuple[KnapsackLagrangian, int]:
    kl = KnapsackLagrangian.of(compile_snapshot(gap_to_snapshot(generate_gap(kind, m, n, seed))),
                               1.0)
    assert kl is not None
    return kl, n // m


def _start(kl: KnapsackLagrangian, K: float, seed: int) -> np.ndarray | None:
    r = tabu_search(kl.C, kl.A, kl.cap, kl.loads, K, None, seed=seed, iterations=50,
                    deadline=np.inf, clock=time.perf_counter)
    return r.agent_of


CASES = [(kind, seed) for kind in ("c", "d", "e") for seed in range(4)]


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("lam", ["zero", "root"])
def test_proves_the_brute_force_optimum_of_packed_steps(kind: str, seed: int, lam: str) -> None:
    """3 agents x 9 tasks at makespan 3 (every agent exactly 3 tasks): from a feasible start
    the cover ends proven at the optimum enumeration finds, whatever the multipliers (the
    proof holds for any), and its plan is feasible and costs what it says."""
    kl, K = _packed_step(kind, 3, 9, seed)
    assert packed(kl.loads, K, np.isfinite(kl.C))
    start = _start(kl, K, seed)
    if start is None or not kl.feasible(start, K):
        pytest.skip("no feasible start at this cap")
    bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)
    if lam == "root":
        StepTree(bb, K, start, step=1.0, deadline=np.inf, clock=_still).run(np.inf, nodes=1)
        mult = bb.lam
    else:
        mult = np.zeros(kl.n)
    r = cover_search(kl.C, kl.A, kl.cap, kl.loads, K, mult, start, step=1.0, deadline=np.inf,
                     clock=_still)
    opt = brute_optimum(kl, K)
    assert r.proven
    assert r.cost == pytest.approx(opt)
    plan = start if r.agent_of is None else r.agent_of
    assert kl.feasible(plan, K)
    assert kl.cost(plan) == pytest.approx(r.cost)
    assert r.cost <= kl.cost(start)


def test_the_cases_cover_both_a_better_plan_and_a_start_already_optimal() -> None:
    """The cases above include starts the cover improved and starts it proved as they were."""
    improved = kept = 0
    for kind, seed in CASES:
        kl, K = _packed_step(kind, 3, 9, seed)
        start = _start(kl, K, seed)
        if start is None or not kl.feasible(start, K):
            continue
        r = cover_search(kl.C, kl.A, kl.cap, kl.loads, K, np.zeros(kl.n), start, step=1.0,
                         deadline=np.inf, clock=_still)
        improved += r.agent_of is not None
        kept += r.agent_of is None
    assert improved > 0 and kept > 0


def test_same_inputs_same_plan() -> None:
    """A larger packed step (6 x 24, type D) with the same node budgets gives the same plan."""
    kl, K = _packed_step("d", 6, 24, 3)
    start = _start(kl, K, 0)
    assert start is not None and kl.feasible(start, K)
    runs = [cover_search(kl.C, kl.A, kl.cap, kl.loads, K, np.zeros(kl.n), start, step=1.0,
                         deadline=np.inf, clock=_still) for _ in range(2)]
    assert runs[0].cost == runs[1].cost and runs[0].proven == runs[1].proven
    assert runs[0].agent_of is not None and runs[1].agent_of is not None
    assert np.array_equal(runs[0].agent_of, runs[1].agent_of)
    assert kl.feasible(runs[0].agent_of, K)


@pytest.mark.parametrize("capped", [True, False], ids=["capped", "uncapped"])
def test_too_many_sets_ends_unproven_with_a_feasible_plan(
        monkeypatch: pytest.MonkeyPatch, capped: bool) -> None:
    """With room for only a few sets the search stops at the first window that overflows,
    on a capped level and with no cap alike: not proven, never dearer than its start."""
    monkeypatch.setattr(gap_cover, "MAX_COLUMNS", 40)
    kl, K = _packed_step("d", 6, 24, 3)
    cap = K if capped else None
    start = _start(kl, K if capped else np.inf, 0)
    assert start is not None
    r = cover_search(kl.C, kl.A, kl.cap, kl.loads, cap, np.zeros(kl.n), start, step=1.0,
                     deadline=np.inf, clock=_still)
    assert not r.proven
    assert r.cost <= kl.cost(start)
    assert kl.feasible(start if r.agent_of is None else r.agent_of, cap)


def test_packed_only_when_every_agent_must_end_at_its_cap() -> None:
    """Makespan 3 with 3 agents x 9 unit tasks is packed; makespan 4 is not."""
    kl, _ = _packed_step("d", 3, 9, 0)
    ok = np.isfinite(kl.C)
    assert packed(kl.loads, 3, ok)
    assert not packed(kl.loads, 4, ok)
    assert not packed(kl.loads, None, ok)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_seeding_sweep_runs_the_cover_and_still_reaches_the_exact_front(
        monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """D 4x16: the seeding sweep's bottom level (makespan 4) is packed and the cover runs
    there; its plans still reach every point of the proven exact front (which does not run
    the cover), each plan feasible."""
    # The sweep does without the compiled search until its warm-up has loaded (or, on a
    # cold cache, compiled) the kernels: load them here, so the cover can run.
    gap_bb.warm_up()
    problem = compile_snapshot(gap_to_snapshot(generate_gap("d", 4, 16, seed)))
    calls: list[int] = []
    real = ef.cover_search

    def spy(*args: object, **kwargs: object) -> gap_cover.CoverResult:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ef, "cover_search", spy)
    true = ef.exact_front(problem, ["cost", "makespan"],
                          budget=Budget(60, workers=1, deterministic=True), seed=0)
    assert true.proven and not calls
    plans = ef.epsilon_assignments(problem, ["cost", "makespan"],
                                   budget=Budget(20, workers=1, deterministic=True), seed=0)
    assert calls
    _assert_feasible_and_reaching(problem, plans, true)


LEVELS = [None, 4, 3]  # 3 agents x 8 tasks: no cap, a loose cap, a cap of slack 1 (load >= 2)


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("K", LEVELS)
def test_proves_the_brute_force_optimum_of_every_level_kind(kind: str, seed: int,
                                                            K: int | None) -> None:
    """Levels that are not packed (sets of any load up to the cap, or within capacity only
    with no cap; each agent's empty set taken once every task is covered): from a feasible
    start and the root's multipliers the cover ends proven at the brute-force optimum, its
    plan feasible and costing what it says."""
    kl, _ = _packed_step(kind, 3, 8, seed)
    start = _start(kl, np.inf if K is None else K, seed)
    if start is None or not kl.feasible(start, K):
        pytest.skip("no feasible start at this cap")
    bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)
    StepTree(bb, K, start, step=1.0, deadline=np.inf, clock=_still).run(np.inf, nodes=1)
    r = cover_search(kl.C, kl.A, kl.cap, kl.loads, K, bb.lam, start, step=1.0,
                     deadline=np.inf, clock=_still)
    assert r.proven
    assert r.cost == pytest.approx(brute_optimum(kl, K))
    plan = start if r.agent_of is None else r.agent_of
    assert kl.feasible(plan, K)
    assert kl.cost(plan) == pytest.approx(r.cost)


def test_a_level_where_an_agent_takes_nothing_is_covered() -> None:
    """Two agents, the second far dearer everywhere: with no cap the optimum leaves it empty
    (its empty set completes the cover), and the cover proves it from any start."""
    C = np.array([[1.0, 1.0, 1.0, 1.0], [9.0, 9.0, 9.0, 9.0]])
    A = np.ones((2, 4), dtype=np.int64)
    D = np.ones((2, 4), dtype=np.int64)
    r = cover_search(C, A, np.array([4, 4], dtype=np.int64), D, None, np.zeros(4),
                     np.array([1, 1, 0, 1]), step=1.0, deadline=np.inf, clock=_still)
    assert r.proven and r.cost == 4.0
    assert r.agent_of is not None and np.all(r.agent_of == 0)


@pytest.mark.parametrize("K", [None, 5])
def test_unpacked_levels_same_inputs_same_plan(K: int | None) -> None:
    """A larger level that is not packed (6 x 24, type D; no cap or a cap of 5) with the
    same node budgets gives the same plan twice, feasible (the root's multipliers: at zero
    an uncapped level's window would hold nearly every set)."""
    kl, _ = _packed_step("d", 6, 24, 3)
    start = _start(kl, np.inf if K is None else K, 0)
    assert start is not None and kl.feasible(start, K)
    bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)
    StepTree(bb, K, start, step=1.0, deadline=np.inf, clock=_still).run(np.inf, nodes=1)
    runs = [cover_search(kl.C, kl.A, kl.cap, kl.loads, K, bb.lam, start, step=1.0,
                         deadline=np.inf, clock=_still) for _ in range(2)]
    assert runs[0].cost == runs[1].cost and runs[0].proven == runs[1].proven
    plans = [start if r.agent_of is None else r.agent_of for r in runs]
    assert np.array_equal(plans[0], plans[1])
    assert kl.feasible(plans[0], K)
    assert kl.cost(plans[0]) == pytest.approx(runs[0].cost) and runs[0].cost <= kl.cost(start)


def test_the_cover_beside_the_tree_keeps_every_level_feasible_and_exact(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two cores (forced): every seeding level runs the cover in the thread beside its tree
    (COVER_BESIDE, portfolio and exact mode alike); the plans are feasible and reach every
    point of the proven exact front of D 4x16."""
    gap_bb.warm_up()  # the sweep runs no tree (and no cover) until the kernels are loaded
    problem = compile_snapshot(gap_to_snapshot(generate_gap("d", 4, 16, 1)))
    calls: list[int] = []
    real = ef._Sweep._cover_then_search

    def spy(self: ef._Sweep, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ef._Sweep, "_cover_then_search", spy)
    monkeypatch.setattr(ef._Sweep, "_workers", lambda self: 2)
    monkeypatch.setattr(ef, "COVER_BESIDE", True)
    true = ef.exact_front(problem, ["cost", "makespan"],
                          budget=Budget(60, workers=1, deterministic=True), seed=0)
    assert true.proven
    plans = ef.epsilon_assignments(problem, ["cost", "makespan"], budget=Budget(20), seed=0)
    assert calls
    _assert_feasible_and_reaching(problem, plans, true)


def _assert_feasible_and_reaching(problem: Problem, plans: list[np.ndarray],
                                  true: ParetoFront) -> None:
    """Every plan within capacity, and every point of the proven front matched or beaten."""
    ar = np.arange(problem.n)
    got = []
    for a in plans:
        used = np.zeros((problem.m, problem.n_resources))
        np.add.at(used, a, problem.demand[a, ar])
        assert np.all(used <= problem.capacity + 1e-9)
        load = np.bincount(a, minlength=problem.m).max()
        got.append((float(problem.cost[a, ar].sum()), float(load)))
    for q in true.points:
        want = (q.objectives["cost"], q.objectives["makespan"])
        assert any(c <= want[0] + 1e-6 and k <= want[1] + 1e-6 for c, k in got), want
