"""The compiled loops of the Lagrangian construction (allocator.solvers.lagrange_kernel):
the greedy places exactly what the numpy loop places, the polish only makes shifts that
fit and gain and ends where no shift does, and both step aside where they do not apply;
the walk's per-round weight factors follow the task count."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import compile_snapshot
from allocator.solvers import lagrange_kernel
from allocator.solvers.gap_kernel import REF_TASKS, UP, PenaltySearch, round_factors
from allocator.solvers.lagrange import Lagrangian
from allocator.solvers.linear import LinearModel, build_linear
from allocator.solvers.localsearch import local_search

compiled = pytest.mark.skipif(not lagrange_kernel.HAVE_NUMBA, reason="numba is not installed")


def _lm(kind: str, m: int, n: int, seed: int) -> LinearModel:
    return build_linear(compile_snapshot(gap_to_snapshot(generate_gap(kind, m, n, seed))))


def _ready() -> None:
    deadline = time.monotonic() + 300
    while not lagrange_kernel.ready():
        assert time.monotonic() < deadline, "the kernels did not load"
        time.sleep(0.05)


@compiled
@pytest.mark.parametrize(("kind", "seed"), [("c", 1), ("d", 2), ("e", 3), ("d", 4)])
def test_the_compiled_greedy_places_exactly_what_the_numpy_loop_places(
        kind: str, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    _ready()
    lm = _lm(kind, 12, 150, seed)
    lg = Lagrangian(lm)
    lam = lg.uniform_start()
    for score in (lg.adjusted(lam), lg.adjusted(0.3 * lam), lg.S):
        fast = lg.greedy(score)
        with monkeypatch.context() as mp:  # the numpy loop: the kernel module not loaded
            mp.delitem(sys.modules, "allocator.solvers.lagrange_kernel")
            slow = lg.greedy(score)
        assert np.array_equal(fast, slow)
        assert lm.feasible(fast)


def _improving_shift(lm: LinearModel, x: np.ndarray) -> tuple[int, int] | None:
    """A single shift (or drop / insert) that keeps capacity and lowers the objective."""
    here = lm.objective(x)
    for j in range(lm.n):
        for b in [*range(lm.m), -1]:
            if b == x[j]:
                continue
            y = x.copy()
            y[j] = b
            if lm.feasible(y) and lm.objective(y) < here - 1e-9 * max(1.0, abs(here)):
                return j, b
    return None


@compiled
@pytest.mark.parametrize(("kind", "seed"), [("c", 5), ("d", 6), ("e", 7)])
def test_the_compiled_polish_ends_in_a_shift_optimum_never_worse_than_its_start(
        kind: str, seed: int) -> None:
    _ready()
    lm = _lm(kind, 8, 70, seed)
    lg = Lagrangian(lm)
    start = lg.insert(lg.S, lg.greedy(lg.adjusted(lg.uniform_start())))
    assert lm.feasible(start)
    start[:3] = -1  # a few left out: the polish inserts them where that pays
    polished = lagrange_kernel.polish(lm, start, max_passes=10_000)
    assert polished is not None
    assert lm.feasible(polished)
    assert lm.objective(polished) < lm.objective(start)
    assert _improving_shift(lm, polished) is None
    # five passes: no worse than the numpy search's five (same moves, bar ties) by much
    five = lagrange_kernel.polish(lm, start, max_passes=5)
    numpy_five = local_search(lm, start, seed=0, max_passes=5, pairs=False)
    assert five is not None and lm.feasible(five)
    assert lm.objective(five) <= lm.objective(numpy_five) * 1.01


@compiled
def test_the_polish_steps_aside_for_plans_over_capacity_and_load_terms() -> None:
    _ready()
    lm = _lm("d", 6, 40, 1)
    cheap = np.argmin(Lagrangian(lm).S, axis=0).astype(np.int64)  # D: the heaviest agents
    assert not lm.feasible(cheap)
    assert lagrange_kernel.polish(lm, cheap) is None
    assert lagrange_kernel.shift_polish(
        np.ascontiguousarray(lm.score), np.ascontiguousarray(lm.demand),
        np.vstack([lm.cap, np.full((1, lm.cap.shape[1]), np.inf)]), np.where(
            cheap >= 0, cheap, lm.m).astype(np.int64), 5, 1e-9) == -1
    from dataclasses import replace

    assert lagrange_kernel.polish(replace(lm, max_migrations=3),
                                  Lagrangian(lm).feasibility_first()) is None


def test_round_factors_keep_the_pace_per_task_and_the_walk_uses_them() -> None:
    assert round_factors(REF_TASKS // 2) == (UP, pytest.approx(0.97))
    up, down = round_factors(4 * REF_TASKS)
    assert up == pytest.approx(UP**4) and down == pytest.approx(0.97**4)
    if not lagrange_kernel.HAVE_NUMBA:
        return
    from allocator.solvers.gap_kernel import kernel_ready

    deadline = time.monotonic() + 300
    while not kernel_ready():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lm = _lm("e", 10, 2 * REF_TASKS, 2)
    start = Lagrangian(lm).feasibility_first()
    runs = []
    for kw in ({}, dict(zip(("up", "down"), round_factors(lm.n), strict=True)),
               {"up": UP, "down": 0.97}):
        ps = PenaltySearch.of_model(lm, start, seed=1)
        ps.run(3, **kw)  # three rounds move the weights apart (30 took 25 s a run here)
        runs.append((ps.alpha.copy(), ps.best_agent_of()))
    assert np.array_equal(runs[0][0], runs[1][0])  # the default is the scaled pair
    assert np.array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0])  # and it differs from the fixed one

