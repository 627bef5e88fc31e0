"""Greedy construction: one pass over tasks, each to the best agent that still has room.

Order: priority class first, then hard deadlines, then the tasks with the
largest regret (second-best minus best placement score, as in Martello and
Toth's GAP heuristic) so contested tasks choose before the easy ones, then
larger work first (LPT). Per task, the choice over agents is one vectorised
numpy expression: weighted cost + makespan/imbalance growth + tardiness +
migration, ties broken by earliest finish, so with no costs it is LPT load
balancing. Every hard constraint is respected; this is the fallback and the
warm start of the other backends.
"""

from __future__ import annotations

import numpy as np

from allocator.problem import CAPACITY_RTOL, Problem
from allocator.solvers.base import Budget, WarmStart, make_plan, register
from models import Plan, PlanStatus

#: Weight of the finish-time tie-break relative to the real objective terms:
#: small enough never to override a real difference in cost.
_TIEBREAK = 1e-6


def task_order(problem: Problem) -> np.ndarray:
    """Order in which the greedy places tasks (see module docstring)."""
    w = problem.snapshot.weights
    score = w.cost * problem.cost + (w.makespan + w.imbalance) * problem.duration
    score = np.where(problem.eligible, score, np.inf)
    if problem.m >= 2:
        two = np.partition(score, 1, axis=0)[:2]
        regret = np.where(np.isfinite(two[1]), two[1] - two[0], 1e18)
    else:
        regret = np.zeros(problem.n)
    regret = np.nan_to_num(regret, nan=0.0, posinf=1e18)
    hard = (~problem.hard_deadline).astype(int)
    return np.lexsort((np.arange(problem.n), -problem.work, -regret, problem.deadline, hard,
                       problem.priority_rank))


def greedy_assign(problem: Problem, order: np.ndarray | None = None) -> np.ndarray:
    """Assignment `agent_of[n]` built one task at a time (-1 where nothing fits)."""
    w = problem.snapshot.weights
    m, n = problem.m, problem.n
    agent_of = np.full(n, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return agent_of
    free = problem.capacity.copy() * (1 + CAPACITY_RTOL) + 1e-12
    lane_load = np.zeros(m)  # busy time / concurrency: the agent's projected finish - now
    finish = np.full(m, problem.now)
    demand = problem.demand
    cost, dur, elig = problem.cost, problem.duration, problem.eligible
    makespan = 0.0
    order = task_order(problem) if order is None else order
    for j in order:
        ok = elig[:, j] & np.all(demand[:, j, :] <= free, axis=1)
        if not ok.any():
            continue
        add = dur[:, j] / problem.concurrency
        new_load = lane_load + add
        start = np.maximum(finish, problem.release[j])
        end = start + dur[:, j]
        if problem.hard_deadline[j]:
            ok &= end <= problem.deadline[j] + 1e-9
            if not ok.any():
                continue
        score = w.cost * cost[:, j]
        score = score + w.makespan * np.maximum(new_load - makespan, 0.0)
        score = score + w.imbalance * new_load
        if np.isfinite(problem.deadline[j]):
            score = score + w.tardiness * problem.tardiness_weight[j] * np.maximum(
                end - problem.deadline[j], 0.0)
        if problem.current[j] >= 0:
            moved = np.arange(m) != problem.current[j]
            score = score + w.migrations * problem.migration_cost[j] * moved
        score = score + _TIEBREAK * new_load
        score = np.where(ok, score, np.inf)
        i = int(np.argmin(score))
        if score[i] - _TIEBREAK * new_load[i] > problem.unassigned_penalty[j]:
            continue  # cheaper to leave it out
        agent_of[j] = i
        free[i] -= demand[i, j]
        lane_load[i] = new_load[i]
        finish[i] = problem.now + lane_load[i] if problem.concurrency[i] > 1 else end[i]
        makespan = max(makespan, lane_load[i])
    return agent_of


@register("greedy", "regret-ordered greedy construction (fast, respects every hard constraint)")
def solve_greedy(
    problem: Problem, *, budget: Budget, seed: int = 0, warm: WarmStart | None = None
) -> Plan:
    agent_of = greedy_assign(problem)
    return make_plan(problem, agent_of, solver="greedy", status=PlanStatus.FEASIBLE,
                     budget=budget)
