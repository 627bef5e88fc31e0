"""The dynamic-regret construction against its plain definition.

`regret_assign` only refreshes the tasks an agent's shrinking room affects;
the reference below recomputes every task's two best feasible agents after
every placement (Martello-Toth's rule as written). Both must place the same
tasks on the same agents, ties included.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from allocator.io.gap import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.problem import Problem, capacity_limit, compile_snapshot
from allocator.solvers.greedy import _score_matrix, construct, regret_assign, repair


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


def repair_reference(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """One leftover task at a time, one (agent, ejected task) pair at a time."""
    agent_of = agent_of.copy()
    demand, elig = problem.demand, problem.eligible
    used = np.zeros_like(problem.capacity)
    for j in np.flatnonzero(agent_of >= 0):
        used[agent_of[j]] += demand[agent_of[j], j]
    cap = capacity_limit(problem.capacity)
    score = _score_matrix(problem)
    for j in np.flatnonzero(agent_of < 0):
        best: tuple[float, int, int, int] | None = None
        for i in np.flatnonzero(elig[:, j]):
            if np.all(used[i] + demand[i, j] <= cap[i]):
                cand = (score[i, j], int(i), -1, -1)
                best = cand if best is None or cand < best else best
                continue
            for k in np.flatnonzero(agent_of == i):
                if not np.all(used[i] - demand[i, k] + demand[i, j] <= cap[i]):
                    continue
                room = elig[:, k] & np.all(used + demand[:, k, :] <= cap, axis=1)
                room[i] = False
                if not room.any():
                    continue
                i2 = int(np.flatnonzero(room)[np.argmin(score[room, k])])
                delta = score[i, j] + score[i2, k] - score[i, k]
                cand = (delta, int(i), int(k), i2)
                best = cand if best is None or cand < best else best
        if best is None or best[0] > problem.unassigned_penalty[j]:
            continue
        _, bi, bk, b2 = best
        if bk >= 0:
            used[bi] -= demand[bi, bk]
            used[b2] += demand[b2, bk]
            agent_of[bk] = b2
        used[bi] += demand[bi, j]
        agent_of[j] = bi
    return agent_of


@pytest.mark.parametrize("kind", ["a", "c", "d", "e"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repair_matches_the_pair_by_pair_definition(kind: str, seed: int) -> None:
    # Over-full instances (more tasks than room) leave tasks over for the repair;
    # integer scores make ties between candidates common.
    rng = np.random.default_rng([5, seed])
    inst = generate_gap(kind, 5, 40, seed=seed)
    room = inst.resource.min(axis=0).sum() / inst.m  # per agent, if each task took its least
    inst = replace(inst, capacity=np.floor(np.full(inst.m, room * rng.uniform(0.6, 0.9))))
    problem = compile_snapshot(gap_to_snapshot(inst))
    cost = _score_matrix(problem)
    for score in (cost, np.round(problem.demand.max(axis=2), 0)):
        start = regret_assign(problem, score)
        assert (start < 0).any()
        assert np.array_equal(repair(problem, start), repair_reference(problem, start))


def test_repair_stops_when_asked() -> None:
    inst = generate_gap("d", 5, 40, seed=1)
    inst = replace(inst, capacity=np.floor(np.full(inst.m, inst.resource.min(axis=0).sum()
                                                   / inst.m * 0.7)))
    problem = compile_snapshot(gap_to_snapshot(inst))
    start = regret_assign(problem, _score_matrix(problem))
    assert np.array_equal(repair(problem, start, stop=lambda: True), start)


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
