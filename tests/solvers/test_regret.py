"""The dynamic-regret construction against its plain definition.

`regret_assign` only refreshes the tasks an agent's shrinking room affects;
the reference below recomputes every task's two best feasible agents after
every placement (Martello-Toth's rule as written). Both must place the same
tasks on the same agents, ties included.
"""
from __future__ import annotations

import numpy as np
import pytest

from allocator.io.gap import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import Problem, capacity_limit, compile_snapshot
from allocator.solvers.greedy import _score_matrix, construct, regret_assign


def regret_reference(problem: Problem, score: np.ndarray) -> np.ndarray:
    agent_of = np.full(problem.n, -1, dtype=np.int64)
    free = capacity_limit(problem.capacity)
    open_ = set(range(problem.n))
    while open_:
        best: tuple[int, float, int, int] | None = None  # (-rank, regret, -j, agent)
        for j in sorted(open_):
            vals = [(float(score[i, j]), i) for i in range(problem.m)
                    if problem.eligible[i, j] and np.all(problem.demand[i, j] <= free[i])]
            if not vals:
                continue
            vals.sort()
            regret = vals[1][0] - vals[0][0] if len(vals) > 1 else 1e30
            key = (-int(problem.priority_rank[j]), regret, -j, vals[0][1])
            if best is None or key[:3] > best[:3]:
                best = key
        if best is None:
            break
        j, i = -best[2], best[3]
        agent_of[j] = i
        free[i] -= problem.demand[i, j]
        open_.discard(j)
    return agent_of


@pytest.mark.parametrize("kind", ["a", "c", "d", "e"])
@pytest.mark.parametrize("seed", [0, 1])
def test_incremental_regret_matches_the_definition(kind: str, seed: int) -> None:
    problem = compile_snapshot(gap_to_snapshot(generate_gap(kind, 4, 24, seed=seed)))
    cost = _score_matrix(problem)
    # Integer scores make ties between agents common; the rounded share too.
    share = np.round(problem.demand.max(axis=2) / problem.capacity.max(axis=1)[:, None], 1)
    for score in (cost, share):
        assert np.array_equal(regret_assign(problem, score), regret_reference(problem, score))


def test_construction_of_a_tight_instance_places_every_task_validly() -> None:
    problem = compile_snapshot(gap_to_snapshot(generate_gap("d", 10, 200, seed=7)))
    agent_of = construct(problem)
    assert (agent_of >= 0).all()
    used = np.zeros_like(problem.capacity)
    for j, i in enumerate(agent_of):
        used[i] += problem.demand[i, j]
    assert np.all(used <= capacity_limit(problem.capacity))
