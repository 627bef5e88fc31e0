"""A level's plan lowered in makespan at no extra cost (exact_front._flatten_plan), and the
seeding sweep's level modes (exact_front.SEED_MODE)."""

from __future__ import annotations

import numpy as np
import pytest

import allocator.solvers.exact_front as ef
from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import compile_snapshot
from allocator.solvers.base import Budget
from allocator.validate import validate

INF = np.inf


def _load(D: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.bincount(a, weights=D[a, np.arange(a.size)], minlength=D.shape[0])


def test_a_move_at_equal_cost_lowers_the_makespan() -> None:
    """Agent 0 holds three tasks; task 2 costs the same on agent 2, which has room."""
    C = np.array([[1.0, 1.0, 4.0], [9.0, 9.0, 9.0], [9.0, 9.0, 4.0]])
    A = np.ones((3, 3), dtype=np.int64)
    cap = np.array([3, 3, 3])
    D = np.ones((3, 3), dtype=np.int64)
    a = np.array([0, 0, 0])
    b = ef._flatten_plan(C, A, cap, D, a)
    assert b is not None
    assert C[b, np.arange(3)].sum() == C[a, np.arange(3)].sum()
    assert _load(D, b).max() == 2


def test_a_chain_of_two_moves_when_the_direct_one_has_no_room() -> None:
    """Task 1 can only go to agent 1 at no extra cost, which is full; agent 1's task 3
    goes to agent 2 at the same cost to make room."""
    C = np.array([[1.0, 5.0, 9.0],
                  [9.0, 5.0, 2.0],
                  [9.0, 9.0, 2.0]])
    A = np.ones((3, 3), dtype=np.int64)
    cap = np.array([3, 1, 3])
    D = np.ones((3, 3), dtype=np.int64)
    a = np.array([0, 0, 1])  # loads 2, 1, 0; agent 1 has no room for task 1
    b = ef._flatten_plan(C, A, cap, D, a)
    assert b is not None
    assert C[b, np.arange(3)].sum() <= C[a, np.arange(3)].sum()
    assert _load(D, b).max() == 1
    used = np.bincount(b, weights=A[b, np.arange(3)], minlength=3)
    assert np.all(used <= cap)


def test_no_plan_when_every_move_costs_more() -> None:
    C = np.array([[1.0, 1.0], [2.0, 2.0]])
    A = np.ones((2, 2), dtype=np.int64)
    cap = np.array([2, 2])
    D = np.ones((2, 2), dtype=np.int64)
    assert ef._flatten_plan(C, A, cap, D, np.array([0, 0])) is None


@pytest.mark.parametrize("mode", ["share", "exact", "hybrid", "auto"])
def test_every_seeding_mode_returns_valid_plans_and_the_same_ones_for_the_same_seed(
        monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    from allocator.solvers.gap_bb import warm_up

    warm_up()
    monkeypatch.setattr(ef, "SEED_MODE", mode)
    snap = gap_to_snapshot(generate_gap("d", 4, 16, 3))
    p = compile_snapshot(snap)
    runs = [ef.epsilon_assignments(p, ["cost", "makespan"],
                                   budget=Budget(5.0, deterministic=True), seed=1)
            for _ in range(2)]
    assert runs[0] and len(runs[0]) == len(runs[1])
    assert all(np.array_equal(x, y) for x, y in zip(*runs, strict=True))
    ar = np.arange(p.n)
    for a in runs[0]:
        assert np.all(p.eligible[a, ar])
        used = np.zeros_like(p.capacity)
        np.add.at(used, a, p.demand[a, ar])
        assert np.all(used <= ef.capacity_limit(p.capacity))
    exact = ef.exact_front(p, ["cost", "makespan"], budget=Budget(20.0), seed=0)
    assert exact.proven
    assert not any(validate(snap, q.plan) for q in exact.points)


def test_hybrid_runs_the_last_level_in_exact_mode_only_after_a_proven_chain(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On two idle cores the last level after proven levels is one tree on both cores run
    to proof (the exact sweep's way; d1080-s140: 4923 proven where the portfolio ended at
    4926-4938), and after an unproven level it is searched for plans as before."""
    monkeypatch.setattr(ef, "SEED_MODE", "hybrid")
    p = compile_snapshot(gap_to_snapshot(generate_gap("d", 4, 16, 3)))
    objectives = ["cost", "makespan"]
    sw = ef._Sweep(ef._build(p, objectives), objectives, Budget(5.0), 0, share=True)
    sw.plan_level(True, 0.0)
    assert sw.exactish and sw.reserve == 0.0
    assert sw.slice() == pytest.approx(sw.budget.remaining(), abs=0.05)
    sw.plan_level(False, 0.0)
    assert not sw.exactish
    sw.plan_level(True, 1.0)
    assert sw.exactish and sw.reserve > 0.0


def test_a_plan_at_the_proven_lower_bound_is_returned_proven(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A level's plan found unproven (a tree cut short, then its LNS tail) at the cost the
    looser level proved is optimal: the sweep marks it so, which keeps the chain of proofs
    (held-out d1080 s221, s231 lost theirs this way); above that cost it stays unproven."""
    p = compile_snapshot(gap_to_snapshot(generate_gap("d", 4, 16, 3)))
    objectives = ["cost", "makespan"]
    sw = ef._Sweep(ef._build(p, objectives), objectives, Budget(5.0), 0, share=True)
    free = sw.solve("cost", {}, None)
    assert free.optimal and free.agent_of is not None
    at = free.values["cost"]

    def unproven(self: ef._Sweep, *a: object, **k: object) -> ef._Result:
        return ef._Result(free.agent_of, dict(free.values), False)

    monkeypatch.setattr(ef._Sweep, "_solve_bb", unproven)
    monkeypatch.setattr(ef._Sweep, "_bb_applies", lambda self, *a: True)
    cap = {"makespan": free.values["makespan"]}
    assert sw.solve("cost", cap, None, lower=at).optimal
    assert not sw.solve("cost", cap, None, lower=at - 1.0).optimal
    assert not sw.solve("cost", cap, None).optimal
