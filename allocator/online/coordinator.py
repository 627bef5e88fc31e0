"""The coordinator: re-solve the executor's snapshot now and then, install the plan.

It re-solves every `every` time units, or sooner when the imbalance (the
coefficient of variation of the agents' estimated remaining work) passes
`imbalance`, but never more often than `min_interval`. The plan comes from
`allocator.engine.solve` and goes in through `PlanInstalled`, so the core
turns it into Migrate instructions for queued tasks; running tasks stay put.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from allocator.metrics import coefficient_of_variation
from allocator.online.core import Executor
from allocator.online.events import Instruction, PlanInstalled
from models import Plan, Snapshot, Weights

log = logging.getLogger(__name__)

#: What the coordinator asks the solver for between arrivals: balance and
#: deadlines first, agent cost ignored, a small price per migration so a
#: plan does not shuffle tasks for nothing.
BALANCE_WEIGHTS = Weights(cost=0.0, makespan=1.0, imbalance=1.0, tardiness=1.0,
                          migrations=0.1)

SolveFn = Callable[..., Plan]


def _engine_solve(snapshot: Snapshot, **kwargs: Any) -> Plan:
    from allocator.engine import solve

    return solve(snapshot, **kwargs)


class Coordinator:
    def __init__(
        self,
        executor: Executor,
        *,
        every: float = 30.0,
        imbalance: float = 0.5,
        min_interval: float | None = None,
        solver: str = "greedy",
        time_limit: float = 1.0,
        solve: SolveFn | None = None,
        weights: Weights | None = None,
    ) -> None:
        self.weights = weights or BALANCE_WEIGHTS
        self.executor = executor
        self.every = every
        self.threshold = imbalance
        self.min_interval = every / 10 if min_interval is None else min_interval
        self.solver = solver
        self.time_limit = time_limit
        self._solve = solve or _engine_solve
        self.last_solve = -float("inf")
        self.last_plan: Plan | None = None
        self.solves = 0

    def imbalance(self) -> float:
        loads = list(self.executor.loads().values())
        return coefficient_of_variation(np.asarray(loads)) if loads else 0.0

    def due(self, now: float) -> bool:
        since = now - self.last_solve
        if since >= self.every:
            return True
        return since >= self.min_interval and self.imbalance() > self.threshold

    def solve(self) -> Plan | None:
        """Solve the current snapshot (no state change); None when nothing is queued."""
        if not self.executor.queued():
            return None  # only running tasks, which a plan does not move
        snap = self.executor.snapshot(weights=self.weights)
        return self._solve(snap, solver=self.solver, time_limit=self.time_limit,
                           previous=self.last_plan)

    def install(self, plan: Plan, now: float) -> list[Instruction]:
        self.last_plan = plan
        return self.executor.handle(PlanInstalled(plan=plan, time=now))

    def step(self, now: float, *, force: bool = False) -> list[Instruction]:
        """Re-solve and install if due (or forced); the core's instructions."""
        if not force and not self.due(now):
            return []
        self.last_solve = now
        plan = self.solve()
        if plan is None:
            return []
        self.solves += 1
        log.info("coordinator: solve %d at t=%.4g: %s, %d assignments", self.solves, now,
                 plan.status, len(plan.assignments))
        return self.install(plan, now)

    def __call__(self, executor: Executor, now: float) -> list[Instruction]:
        """Simulator hook: `Simulator(..., coordinator=coord, coordinate_every=dt)`."""
        return self.step(now)

    async def run(self, runtime: Any, *, check_every: float | None = None) -> None:
        """Loop beside an asyncio Runtime until it shuts down; solves run in a thread."""
        period = check_every or self.min_interval
        while not runtime.closed:
            await asyncio.sleep(period)
            now = runtime.clock.now()
            if not self.due(now):
                continue
            self.last_solve = now
            plan = await asyncio.to_thread(self.solve)
            if plan is not None and not runtime.closed:
                self.solves += 1
                runtime.apply(self.install(plan, runtime.clock.now()))
