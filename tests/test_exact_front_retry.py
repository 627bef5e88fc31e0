"""The exact sweep gives an unproven last solve the time left (exact_front._coarse)."""

from __future__ import annotations

import numpy as np
import pytest

import allocator.solvers.exact_front as ef
from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import Problem, compile_snapshot
from allocator.solvers.base import Budget
from models import ParetoFront, Plan


def _true_front(p: Problem) -> ParetoFront:
    """The proven front of the small instance every test here fakes a solve of."""
    true = ef.exact_front(p, ["cost", "makespan"], budget=Budget(20.0), seed=0)
    assert true.proven and len(true.points) >= 2
    return true


def _agent_of(p: Problem, plan: Plan) -> np.ndarray:
    """A plan as the sweep's array: agent index per task (ids are "task-i", "agent-j")."""
    out = np.full(p.n, -1, dtype=np.int64)
    for a in plan.assignments:
        out[int(a.task.split("-")[1])] = int(a.agent.split("-")[1])
    assert np.all(out >= 0)
    return out


def test_an_unproven_first_plan_at_the_bound_does_not_end_the_sweep(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first solve (least cost) is made to return the front's least-makespan plan,
    unproven: the sweep used to stop there (nothing lies below the makespan bound)."""
    p = compile_snapshot(gap_to_snapshot(generate_gap("e", 3, 8, 1)))
    true = _true_front(p)
    fake = _agent_of(p, true.points[-1].plan)
    real = ef._Sweep.solve
    calls = {"faked": 0}

    def solve(self: ef._Sweep, target: str, bounds: dict[str, float],
              start: np.ndarray | None, probe: bool = False,
              lower: float = -np.inf, guess: float = -np.inf) -> ef._Result:
        if not probe and not bounds and calls["faked"] == 0:
            calls["faked"] += 1
            self._probe = None
            return ef._Result(fake, self.values(fake), False)
        return real(self, target, bounds, start, probe, lower, guess)

    monkeypatch.setattr(ef._Sweep, "solve", solve)
    got = ef.exact_front(p, ["cost", "makespan"], budget=Budget(20.0), seed=0)
    assert calls["faked"] == 1
    assert got.vectors() == true.vectors()
    assert got.proven
    monkeypatch.setattr(ef, "MAX_RETRIES", 0)
    calls["faked"] = 0
    cut = ef.exact_front(p, ["cost", "makespan"], budget=Budget(20.0), seed=0)
    assert len(cut.points) == 1 and not cut.proven


def test_time_left_proves_a_point_whose_solve_was_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first solve returns the right plan but unproven; the next step is proven, the
    sweep ends early, and the time left proves the first point."""
    p = compile_snapshot(gap_to_snapshot(generate_gap("e", 3, 8, 1)))
    true = _true_front(p)
    first = _agent_of(p, true.points[0].plan)
    real = ef._Sweep.solve
    calls = {"faked": 0, "again": 0}

    def solve(self: ef._Sweep, target: str, bounds: dict[str, float],
              start: np.ndarray | None, probe: bool = False,
              lower: float = -np.inf, guess: float = -np.inf) -> ef._Result:
        if not probe and not bounds:
            if calls["faked"] == 0:
                calls["faked"] += 1
                self._probe = None
                return ef._Result(first, self.values(first), False)
            calls["again"] += 1
        return real(self, target, bounds, start, probe, lower, guess)

    monkeypatch.setattr(ef._Sweep, "solve", solve)
    got = ef.exact_front(p, ["cost", "makespan"], budget=Budget(20.0), seed=0)
    assert calls == {"faked": 1, "again": 1}
    assert got.vectors() == true.vectors()
    assert got.proven and all(pt.proven for pt in got.points)
    # Without time for it (the same sweep, nothing solved again) the front stays unproven.
    monkeypatch.setattr(ef, "RETRY_MIN_S", 1e9)
    calls.update(faked=0, again=0)
    cut = ef.exact_front(p, ["cost", "makespan"], budget=Budget(20.0), seed=0)
    assert calls == {"faked": 1, "again": 0}
    assert not cut.proven and cut.vectors() == true.vectors()


def test_the_seeding_sweep_keeps_a_plan_a_later_solve_replaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeding: the first solve returns the least-makespan plan unproven, the retry finds
    a cheaper one at a larger makespan and every capped step then finds nothing. The
    first plan is still among the plans returned (the sweep's points alone lost it)."""
    from allocator.solvers.gap_bb import warm_up

    warm_up()  # the branch-and-bound takes the steps only once compiled
    p = compile_snapshot(gap_to_snapshot(generate_gap("e", 3, 8, 1)))
    true = _true_front(p)
    fake = _agent_of(p, true.points[-1].plan)
    real = ef._Sweep._solve_bb
    calls = {"faked": 0, "capped": 0}

    def solve_bb(self: ef._Sweep, target: str, bounds: dict[str, float],
                 start: np.ndarray | None, lower: float = -np.inf,
                 guess: float = -np.inf) -> ef._Result:
        if bounds:
            calls["capped"] += 1
            return ef._Result(None, {}, False)
        if calls["faked"] == 0:
            calls["faked"] += 1
            return ef._Result(fake, self.values(fake), False)
        return real(self, target, bounds, start, lower, guess)

    monkeypatch.setattr(ef._Sweep, "_solve_bb", solve_bb)
    plans = ef.epsilon_assignments(p, ["cost", "makespan"], budget=Budget(20.0), seed=0)
    assert calls["faked"] == 1 and calls["capped"] >= 1
    got = {(float(p.cost[a, np.arange(p.n)].sum()), float(np.bincount(a, minlength=p.m).max()))
           for a in plans}
    want = tuple(true.points[-1].objectives[o] for o in ("cost", "makespan"))
    assert want in got
    assert min(c for c, _ in got) == true.points[0].objectives["cost"]
