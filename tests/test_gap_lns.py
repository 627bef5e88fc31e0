"""The large-neighbourhood search of a cost step (allocator.solvers.gap_lns) and the seeding
sweep's use of it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import compile_snapshot
from allocator.solvers.base import Budget
from allocator.solvers.gap_bb import GapBranchBound, StepResult
from allocator.solvers.gap_lns import LevelSearch, lns_search
from allocator.solvers.gap_tabu import HAVE_NUMBA, tabu_search
from allocator.solvers.knapsack_lagrange import KnapsackLagrangian
from allocator.validate import validate
from tests.gap_helpers import brute_optimum

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")


def _step(kind: str, m: int, n: int, seed: int) -> tuple[KnapsackLagrangian, GapBranchBound]:
    kl = KnapsackLagrangian.of(compile_snapshot(gap_to_snapshot(generate_gap(kind, m, n, seed))),
                               1.0)
    assert kl is not None
    return kl, GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)


def _worst_feasible(kl: KnapsackLagrangian, K: int | None, seed: int) -> np.ndarray | None:
    """A feasible plan far from the optimum: the costliest of a few hundred random ones."""
    rng = np.random.default_rng(seed)
    worst, plan = -np.inf, None
    for _ in range(3000):
        a = rng.integers(0, kl.m, kl.n)
        if kl.feasible(a, K) and kl.cost(a) > worst:
            worst, plan = kl.cost(a), a
    return plan


def _tabu_start(kl: KnapsackLagrangian, K: int) -> np.ndarray:
    """A feasible plan from a short tabu search (400 iterations, no clock)."""
    r = tabu_search(kl.C, kl.A, kl.cap, kl.loads, K, None, seed=0, iterations=400,
                    deadline=np.inf, clock=time.perf_counter)
    assert r.agent_of is not None
    return r.agent_of


def _still() -> float:
    """A clock that never moves: every sub-tree runs to its end, as with no deadline."""
    return 0.0


@pytest.mark.parametrize("kind,seed", [("c", 0), ("d", 1), ("e", 2)])
@pytest.mark.parametrize("K", [None, 3])
def test_reaches_the_optimum_of_small_steps(kind: str, seed: int, K: int | None) -> None:
    """3 agents x 8 tasks from the costliest random feasible plan: feasible, and at the
    optimum that enumeration finds."""
    kl, bb = _step(kind, 3, 8, seed)
    opt = brute_optimum(kl, K)
    start = _worst_feasible(kl, K, seed)
    if start is None or not np.isfinite(opt):
        pytest.skip("no feasible assignment at this load cap")
    r = lns_search(bb, K, start, step=1.0, seed=seed, deadline=1.0, clock=_still,
                   max_trees=40)
    assert kl.feasible(r.agent_of, K)
    assert r.cost == kl.cost(r.agent_of) == opt
    assert r.improved >= (1 if kl.cost(start) > opt else 0)


def test_same_seed_same_plan_and_never_worse() -> None:
    """5 x 30 type D at makespan <= 7: the same seed and tree count give the same plan,
    which is feasible and no costlier than the start; the start is not changed."""
    kl, _ = _step("d", 5, 30, 3)
    K = 7
    start = _tabu_start(kl, K)
    before = start.copy()
    runs = [lns_search(GapBranchBound(kl.C, kl.A, kl.cap, kl.loads), K, start, step=1.0,
                       seed=5, deadline=1.0, clock=_still, max_trees=8) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].agent_of, runs[1].agent_of)
    assert runs[0].cost == runs[1].cost <= kl.cost(start)
    assert kl.feasible(runs[0].agent_of, K)
    np.testing.assert_array_equal(start, before)


def test_an_infeasible_start_is_refused() -> None:
    kl, bb = _step("d", 3, 8, 0)
    with pytest.raises(ValueError, match="feasible start"):
        lns_search(bb, 1, np.zeros(kl.n, dtype=np.int64), step=1.0, seed=0, deadline=1.0,
                   clock=_still)


def test_seeding_step_hands_a_cut_short_tree_to_the_search() -> None:
    """The seeding sweep's hand-over (_Sweep._lns) from a poor plan of a 5 x 30 type-D step:
    a cheaper plan that keeps every rule (the validator's reading) and is not marked proven."""
    import allocator.solvers.exact_front as ef
    from allocator.solvers.gap_bb import warm_up

    warm_up()
    snap = gap_to_snapshot(generate_gap("d", 5, 30, 4))
    p = compile_snapshot(snap)
    mm = ef._build(p, ["cost", "makespan"])
    sw = ef._Sweep(mm, ["cost", "makespan"], Budget(60, workers=1), 0, share=True)
    sw.placed_all = True  # what fix_placed finds on GAP data (every task placeable)
    assert sw._bb_applies("cost", {"makespan": 7.0})
    kl = sw._lagrangian
    assert kl is not None
    bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)
    start = _tabu_start(kl, 7)
    cut = StepResult(start, kl.cost(start), False, False, -np.inf, 0)
    r = sw._lns(bb, 7, cut, sw.mm.step["cost"], time.perf_counter() + 0.3)
    assert r.agent_of is not None and not r.proven
    assert r.cost == kl.cost(r.agent_of) < kl.cost(start)
    from allocator.pareto import build_front

    front = build_front(p, ["cost", "makespan"], [r.agent_of], method="exact",
                        budget=Budget(1), proven=False, seed=0)
    assert not validate(snap, front.points[0].plan)
    assert front.points[0].objectives["makespan"] <= 7


def test_a_clock_that_does_not_move_still_ends() -> None:
    """With no tree limit and a frozen clock the search ends after STALL_TREES sub-trees
    in a row without a cheaper plan (every sub-tree runs to its end), at the optimum."""
    import allocator.solvers.gap_lns as gl

    kl, bb = _step("d", 3, 8, 1)
    start = _worst_feasible(kl, 3, 1)
    assert start is not None
    r = lns_search(bb, 3, start, step=1.0, seed=0, deadline=1.0, clock=_still)
    assert gl.STALL_TREES <= r.trees <= (r.improved + 1) * gl.STALL_TREES
    assert kl.feasible(r.agent_of, 3) and r.cost == brute_optimum(kl, 3)


class _Ticks:
    """A clock that moves a millisecond a reading: every run sees the same times."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.001
        return self.t


@pytest.fixture()
def _short_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of a few clock readings, so that small trees are interleaved too."""
    import allocator.solvers.gap_lns as gl

    monkeypatch.setattr(gl, "TREE_FIRST_S", 0.005)
    monkeypatch.setattr(gl, "TREE_SLICE_S", 0.004)
    monkeypatch.setattr(gl, "LNS_SLICE_S", 0.01)
    monkeypatch.setattr(gl, "SUB_S", 0.005)


@pytest.mark.usefixtures("_short_slices")
@pytest.mark.parametrize("kind,seed", [("c", 0), ("d", 1), ("d", 2), ("e", 2), ("d", 3)])
@pytest.mark.parametrize("K", [None, 3])
def test_a_level_search_proves_the_brute_force_optimum(kind: str, seed: int,
                                                       K: int | None) -> None:
    """3 agents x 8 tasks from the costliest random feasible plan: the tree and the search
    in turn end proven at the optimum that enumeration finds, run in several pieces."""
    kl, bb = _step(kind, 3, 8, seed)
    opt = brute_optimum(kl, K)
    start = _worst_feasible(kl, K, seed)
    if start is None or not np.isfinite(opt):
        pytest.skip("no feasible assignment at this load cap")
    clock = _Ticks()
    level = LevelSearch(bb, K, start, step=1.0, seed=seed, deadline=1.0, clock=clock)
    for _ in range(5):
        level.run(clock() + 0.02)
    assert level.run(np.inf)
    r = level.result()
    assert level.proven and r.proven and r.agent_of is not None
    assert kl.feasible(r.agent_of, K) and r.cost == kl.cost(r.agent_of) == opt
    assert level.best is not None and level.cost == opt


@pytest.mark.usefixtures("_short_slices")
def test_a_level_search_hands_the_searchs_plans_to_its_tree() -> None:
    """5 x 30 type D at makespan <= 7 from a short tabu search's plan: the search gets
    slices, its cheaper plans become the tree's incumbent, and the level ends proven at
    the tree's own optimum; the same clock and seed give the same plan. Every plan keeps
    the validator's rules."""
    snap = gap_to_snapshot(generate_gap("d", 5, 30, 3))
    kl, _ = _step("d", 5, 30, 3)
    K = 7
    ref = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads).solve(
        K, None, step=1.0, deadline=np.inf, clock=_still)
    assert ref.proven
    start = _tabu_start(kl, K)
    runs = []
    for _ in range(2):
        bb = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads)
        clock = _Ticks()
        level = LevelSearch(bb, K, start, step=1.0, seed=4, deadline=1.0, clock=clock)
        level.run(clock() + 0.3)
        assert level.lns is not None and level.lns.trees > 0 and level.handed >= 1
        level.run(np.inf)
        r = level.result()
        assert r.proven and r.cost == pytest.approx(ref.cost)
        assert r.agent_of is not None and kl.feasible(r.agent_of, K)
        runs.append(r.agent_of.tolist())
    assert runs[0] == runs[1]
    from allocator.pareto import build_front

    p = compile_snapshot(snap)
    front = build_front(p, ["cost", "makespan"], [np.array(runs[0])], method="exact",
                        budget=Budget(1), proven=False, seed=0)
    assert not validate(snap, front.points[0].plan)


def test_a_seeding_step_interleaves_and_its_level_resumes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-tree seeding step (_Sweep._solve_bb with the LNS on, one worker) with
    INTERLEAVE runs a LevelSearch, kept on the sweep: whether its slice proved it or not,
    it resumes with more time to the proven optimum of the full tree."""
    import allocator.solvers.exact_front as ef
    from allocator.solvers.gap_bb import warm_up

    warm_up()
    monkeypatch.setattr(ef, "INTERLEAVE", True)
    snap = gap_to_snapshot(generate_gap("d", 8, 40, 2))
    p = compile_snapshot(snap)
    mm = ef._build(p, ["cost", "makespan"])
    sw = ef._Sweep(mm, ["cost", "makespan"], Budget(60, workers=1), 0, share=True)
    sw.placed_all = True
    sw.expect = 60.0  # a one-second slice of the budget
    res = sw.solve("cost", {"makespan": 6.0}, None)
    from allocator.pareto import build_front

    assert res.agent_of is not None and not validate(snap, build_front(
        p, ["cost", "makespan"], [res.agent_of], method="exact", budget=Budget(1),
        proven=False, seed=0).points[0].plan)
    level = sw.level
    assert level is not None
    kl = sw._lagrangian
    assert kl is not None
    ref = GapBranchBound(kl.C, kl.A, kl.cap, kl.loads).solve(
        6, None, step=1.0, deadline=np.inf, clock=_still)
    assert ref.proven
    assert level.run(np.inf) and level.proven
    assert level.cost == pytest.approx(ref.cost)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plans_the_sub_trees_meet_are_kept_for_tighter_steps(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 x 8 type D at makespan <= 3 from the costliest random feasible plan: the plans the
    sub-trees meet are kept in the step's GapBranchBound by makespan, so the cheapest kept
    one within the cap costs no more than the search's result; every kept plan keeps the
    capacities and its own cap (KEEP_MET on)."""
    import allocator.solvers.gap_lns as gl

    monkeypatch.setattr(gl, "KEEP_MET", True)
    kl, bb = _step("d", 3, 8, seed)
    start = _worst_feasible(kl, 3, seed)
    assert start is not None
    r = lns_search(bb, 3, start, step=1.0, seed=seed, deadline=1.0, clock=_still,
                   max_trees=40)
    assert r.improved >= 1
    met = bb.kept(3)
    assert met is not None and kl.feasible(met, 3) and kl.cost(met) <= r.cost
    for K in range(1, 4):
        plan = bb.kept(K)
        assert plan is None or kl.feasible(plan, K)
