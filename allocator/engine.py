"""The one entry point for solving a snapshot: `solve(snapshot) -> Plan`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from allocator.errors import InvalidInputError
from allocator.problem import compile_snapshot
from allocator.rebalance import stabilize, warm_start
from allocator.solvers import Budget, get_solver
from allocator.solvers.base import make_plan
from models import Plan, PlanStatus, Snapshot

log = logging.getLogger(__name__)


def solve(
    snapshot: Snapshot,
    *,
    solver: str | None = None,
    time_limit: float | None = None,
    seed: int | None = None,
    previous: Plan | None = None,
    stability: bool = True,
    clock: Callable[[], float] | None = None,
) -> Plan:
    """Solve a snapshot with the named backend (default: `snapshot.options.solver`).

    Arguments override the snapshot's options. `previous` is a plan for an
    earlier version of the snapshot: its assignment, completed for new tasks,
    is the warm start (full hint, incumbent), and with `stability` (default)
    leaving a task's previous agent costs a little, so small edits of the
    snapshot change few assignments (see allocator.rebalance.stabilize).
    """
    opts = snapshot.options
    name = solver or opts.solver
    backend = get_solver(name)
    limit = opts.time_limit if time_limit is None else time_limit
    if not limit > 0:
        raise InvalidInputError(f"must be > 0, got {limit}", field="time_limit")
    budget = Budget(limit, workers=opts.workers) if clock is None else Budget(
        limit, workers=opts.workers, clock=clock)
    if previous is not None and stability:
        snapshot = stabilize(snapshot, previous)
    problem = compile_snapshot(snapshot)
    warm = warm_start(problem, previous) if previous is not None else None
    if problem.n == 0:  # nothing to decide: the empty plan is optimal for every backend
        plan = make_plan(problem, np.empty(0, dtype=np.int64), solver=name,
                         status=PlanStatus.OPTIMAL, budget=budget, message="no tasks")
    else:
        plan = backend(problem, budget=budget, seed=opts.seed if seed is None else seed,
                       warm=warm)
    log.info("solved %s with %s: %s objective=%s in %.3fs", snapshot.name or "snapshot", name,
             plan.status, plan.objective, plan.wall_time_s)
    return plan
