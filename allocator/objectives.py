"""Schedules and objective terms, computed in one place on the compiled arrays.

Every backend, the plan builder, the metrics and NSGA-II call these, so a
plan's cost or makespan means the same whichever backend produced it.

An *assignment* is an int array `agent_of[n]` (-1 = unassigned). A *schedule*
adds `start[n]` and `end[n]` (NaN for unassigned tasks).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from allocator.problem import Problem

#: Objective terms in reporting order; weights come from Snapshot.weights.
TERMS = ("cost", "makespan", "imbalance", "tardiness", "migrations", "unassigned")
#: Topology terms (models.topology), reported after TERMS when a snapshot
#: uses topology fields: load above safety, balance, the most moved tasks of
#: a group, agent-pair move costs.
TOPOLOGY_TERMS = ("safety", "balance", "group_moves", "agent_moves")


def terms_of(problem: Problem) -> tuple[str, ...]:
    """The terms a plan of this problem reports: TERMS, plus TOPOLOGY_TERMS when it has any."""
    return TERMS + TOPOLOGY_TERMS if problem.topology is not None else TERMS


@dataclass(frozen=True)
class Schedule:
    agent_of: np.ndarray  # [n] int
    start: np.ndarray  # [n] float, NaN when unassigned
    end: np.ndarray  # [n] float, NaN when unassigned


def default_order_key(problem: Problem) -> np.ndarray:
    """[n] sequencing key when a solver gives no order: earliest due date first.

    Ties by priority class, then release, then snapshot order, so sequencing
    is deterministic. Tasks without a deadline go after those with one.
    """
    n = problem.n
    keys = np.lexsort(
        (np.arange(n), problem.release, problem.priority_rank, problem.deadline)
    )
    rank = np.empty(n, dtype=float)
    rank[keys] = np.arange(n, dtype=float)
    return rank


def relative_gap(objective: float, bound: float) -> float:
    """`Plan.gap`: (objective - bound) / max(|objective|, 1e-9), never below 0."""
    return max(0.0, (objective - bound) / max(abs(objective), 1e-9))


def build_schedule(
    problem: Problem, agent_of: np.ndarray, order_key: np.ndarray | None = None
) -> Schedule:
    """List-schedule each agent's tasks in `order_key` order on its concurrency lanes.

    A task starts when a lane is free and it is released; durations are exact
    (work / speed), so the result is feasible whatever order is given.
    """
    n = problem.n
    key = default_order_key(problem) if order_key is None else np.asarray(order_key, float)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    assigned = np.flatnonzero(agent_of >= 0)
    if assigned.size == 0:
        return Schedule(agent_of.copy(), start, end)
    # Group by agent, then by key within the agent (stable on task index).
    seq = assigned[np.lexsort((assigned, key[assigned], agent_of[assigned]))]
    dur = np.zeros(n)  # per task on its agent; no [m, n] matrix at scale
    dur[assigned] = problem.pair_duration(agent_of[assigned], assigned)
    ag = agent_of[seq]
    cuts = np.flatnonzero(ag[1:] != ag[:-1]) + 1
    lo_of = np.concatenate(([0], cuts)).tolist()
    hi_of = np.concatenate((cuts, [seq.size])).tolist()
    # One lane and nothing released after `now`: each task starts when the
    # previous one ends, so start/end are a running sum (np.cumsum adds left
    # to right, the same float operations as the heap loop below).
    late = np.zeros(seq.size + 1, dtype=np.int64)
    np.cumsum(problem.release[seq] > problem.now, out=late[1:])
    now = problem.now
    for lo, hi in zip(lo_of, hi_of, strict=True):
        i = int(ag[lo])
        js = seq[lo:hi]
        if problem.concurrency[i] == 1 and late[hi] == late[lo]:
            run = np.cumsum(np.concatenate(([now], dur[js])))
            start[js] = run[:-1]
            end[js] = run[1:]
            continue
        lanes = [now] * int(problem.concurrency[i])
        for j in js.tolist():
            free = heapq.heappop(lanes)
            s = max(free, problem.release[j])
            e = s + dur[j]
            start[j], end[j] = s, e
            heapq.heappush(lanes, e)
    return Schedule(agent_of.copy(), start, end)


def busy_time(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """[m] total run time assigned to each agent divided by its concurrency."""
    assigned = agent_of >= 0
    j = np.flatnonzero(assigned)
    i = agent_of[assigned]
    load = np.bincount(i, weights=problem.pair_duration(i, j), minlength=problem.m)
    return load / problem.concurrency


def term_cost(problem: Problem, agent_of: np.ndarray) -> float:
    """Soft. Sum of the cost of each placed task on its agent; grows linearly."""
    j = np.flatnonzero(agent_of >= 0)
    return float(problem.pair_cost(agent_of[j], j).sum())


def term_makespan(problem: Problem, schedule: Schedule) -> float:
    """Soft. Time from `now` until the last placed task ends; 0 with nothing placed."""
    if not np.any(schedule.agent_of >= 0):
        return 0.0
    return float(np.nanmax(schedule.end) - problem.now)


def term_imbalance(problem: Problem, agent_of: np.ndarray) -> float:
    """Soft. Busiest minus idlest *up* agent, in busy time; linear in the spread."""
    if not np.any(problem.up):
        return 0.0
    load = busy_time(problem, agent_of)[problem.up]
    return float(load.max() - load.min())


def term_tardiness(problem: Problem, schedule: Schedule) -> float:
    """Soft. Sum over placed tasks of priority weight x lateness past the deadline."""
    late = np.nan_to_num(schedule.end - problem.deadline, nan=0.0, neginf=0.0)
    return float((problem.tardiness_weight * np.maximum(late, 0.0)).sum())


def term_migrations(problem: Problem, agent_of: np.ndarray) -> float:
    """Soft. Sum of migration costs (base x pair factor) of placed tasks that leave their agent."""
    j = np.flatnonzero(agent_of >= 0)
    return float(problem.pair_migration(agent_of[j], j).sum())


def term_unassigned(problem: Problem, agent_of: np.ndarray) -> float:
    """Soft. Per-priority-class penalty for each task left unplaced."""
    return float(problem.unassigned_penalty[agent_of < 0].sum())


def used_capacity(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """[m, R] demand each agent holds under `agent_of` (moved tasks at their new agent only).

    Defined here, below the constraint layer, so the soft terms and the hard capacity
    rule read one sum."""
    used = np.zeros((problem.m, problem.n_resources))
    on = np.flatnonzero(agent_of >= 0)
    if on.size:
        np.add.at(used, agent_of[on], problem.pair_demand(agent_of[on], on))
    return used


def moved_mask(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """[n] placed tasks sitting on another agent than their current one (migrations)."""
    cur = problem.current
    return (cur >= 0) & (agent_of >= 0) & (agent_of != cur)


def _moved(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    return np.flatnonzero(moved_mask(problem, agent_of))


def term_safety(problem: Problem, agent_of: np.ndarray) -> float:
    """Soft. Sum over agents and resources of load_cost[r] x usage above the safety capacity.

    Linear in the excess; usage counts a moved task at its new agent only.
    """
    topo = problem.topology
    if topo is None:
        return 0.0
    over = np.maximum(used_capacity(problem, agent_of) - topo.safety, 0.0)
    return float((over.sum(axis=0) * topo.load_cost).sum())


def term_balance(problem: Problem, agent_of: np.ndarray) -> float:
    """Soft. Per balance objective, weight x sum over up agents of
    max(0, target x free(r1) - free(r2)); linear in the shortfall."""
    topo = problem.topology
    if topo is None or topo.bal_r1.size == 0:
        return 0.0
    free = (problem.capacity - used_capacity(problem, agent_of))[problem.up]
    gap = topo.bal_target[None, :] * free[:, topo.bal_r1] - free[:, topo.bal_r2]
    return float((np.maximum(gap, 0.0).sum(axis=0) * topo.bal_weight).sum())


def term_group_moves(problem: Problem, agent_of: np.ndarray) -> float:
    """Soft. The largest number of moved tasks of any one group (a task without a
    group is a group of its own); grows with the worst group only."""
    topo = problem.topology
    if topo is None:
        return 0.0
    moved = _moved(problem, agent_of)
    if moved.size == 0:
        return 0.0
    g = topo.group_of[moved]
    grouped = g[g >= 0]
    most = int(np.bincount(grouped).max()) if grouped.size else 0
    return float(max(most, 1 if np.any(g < 0) else 0))


def term_agent_moves(problem: Problem, agent_of: np.ndarray) -> float:
    """Soft. Sum over moved tasks of the move cost from their current agent to their
    new one (Agent.move_costs, else the zones' cost); linear in the moves."""
    topo = problem.topology
    if topo is None:
        return 0.0
    moved = _moved(problem, agent_of)
    return float(topo.move_cost(problem.current[moved], agent_of[moved]).sum())


def topology_terms(problem: Problem, agent_of: np.ndarray) -> dict[str, float]:
    """Raw value of each topology term of an assignment (all 0 without topology)."""
    return {
        "safety": term_safety(problem, agent_of),
        "balance": term_balance(problem, agent_of),
        "group_moves": term_group_moves(problem, agent_of),
        "agent_moves": term_agent_moves(problem, agent_of),
    }


def evaluate(problem: Problem, schedule: Schedule) -> dict[str, float]:
    """Raw value of every objective term (unweighted; topology terms when it has any)."""
    a = schedule.agent_of
    extra = topology_terms(problem, a) if problem.topology is not None else {}
    return extra | {
        "cost": term_cost(problem, a),
        "makespan": term_makespan(problem, schedule),
        "imbalance": term_imbalance(problem, a),
        "tardiness": term_tardiness(problem, schedule),
        "migrations": term_migrations(problem, a),
        "unassigned": term_unassigned(problem, a),
    }


def term_weights(problem: Problem) -> dict[str, float]:
    """Weight of each term; `unassigned` penalties are already per task, so weight 1
    (so are the safety and balance costs, weighted per resource / balance)."""
    w = problem.snapshot.weights
    topo = problem.topology
    extra = {} if topo is None else {
        "safety": 1.0, "balance": 1.0, "group_moves": topo.group_move_weight,
        "agent_moves": topo.agent_move_weight}
    return extra | {
        "cost": w.cost,
        "makespan": w.makespan,
        "imbalance": w.imbalance,
        "tardiness": w.tardiness,
        "migrations": w.migrations,
        "unassigned": 1.0,
    }


def weighted_total(problem: Problem, values: dict[str, float]) -> float:
    weights = term_weights(problem)
    return float(sum(weights[k] * values[k] for k in terms_of(problem) if k in values))
