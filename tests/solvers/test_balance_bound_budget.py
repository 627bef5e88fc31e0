"""`balance`'s makespan bound is bounded by the budget.

Beyond 20 eligibility groups the bound is a HiGHS LP with no time limit: at
500 agents x 50,000 tasks (thousands of allow-list groups) it took 12 s of a 10 s
solve, before the LPT started, and the solve returned after 56 s. The LP now gets
a share of the budget; cut short, the bound is the single-task one (still valid).
"""

from __future__ import annotations

import numpy as np
import pytest

from allocator.bounds import makespan_bound
from allocator.engine import solve
from allocator.solvers import balance
from allocator.validate import validate
from models import Agent, Snapshot, Task, Weights


def _groups(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m, n, g = 60, 3000, 40  # 40 groups: the LP, not the subset enumeration
    return (rng.random(n) * 10, rng.choice([0.5, 1.0, 2.0], m), rng.integers(0, g, n),
            rng.random((g, m)) < 0.3)


def test_a_cut_lp_gives_the_single_task_bound() -> None:
    work, speed, group_of, ga = _groups()
    full = makespan_bound(work, speed, group_of, ga)
    cut = makespan_bound(work, speed, group_of, ga, time_limit=1e-9)
    fastest = np.where(ga, speed[None, :], 0.0).max(axis=1)[group_of]
    assert cut == pytest.approx(float(np.max(work / fastest)))
    assert cut < full  # weaker, still a lower bound


def test_an_lp_highs_cannot_start_in_time_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """HiGHS does not read its limit in presolve (500 x 50,000 with 5,000 allow-list
    groups: 2.3 s of a 1.25 s share): such an LP is skipped, not cut."""
    import allocator.bounds as bounds_mod

    work, speed, group_of, ga = _groups()
    monkeypatch.setattr(bounds_mod, "HIGHS_LP_S_PER_NNZ", 1.0)
    monkeypatch.setattr(bounds_mod, "new_highs", lambda: pytest.fail("HiGHS was started"))
    cut = makespan_bound(work, speed, group_of, ga, time_limit=5.0)
    fastest = np.where(ga, speed[None, :], 0.0).max(axis=1)[group_of]
    assert cut == pytest.approx(float(np.max(work / fastest)))


def test_balance_gives_the_bound_a_share_of_its_budget(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    limits: list[float | None] = []
    real = balance.makespan_bound

    def spy(*args: object, time_limit: float | None = None) -> float:
        limits.append(time_limit)
        return real(*args, time_limit=time_limit)  # type: ignore[arg-type]

    monkeypatch.setattr(balance, "makespan_bound", spy)
    snap = Snapshot(agents=[Agent(id=f"a{i}") for i in range(3)],
                    tasks=[Task(id=f"t{j}", work=1 + j) for j in range(6)],
                    weights=Weights(cost=0, makespan=1))
    plan = solve(snap, solver="balance", time_limit=2.0)
    assert validate(snap, plan) == []
    assert limits and all(t is not None and 0 < t <= 2.0 * balance.BOUND_SHARE for t in limits)
