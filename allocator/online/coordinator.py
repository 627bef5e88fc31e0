"""The coordinator: re-solve the executor's snapshot now and then, install the plan.

Triggers (any of them, never more often than `min_interval`):

- `every`: a fixed period T (0 or None: off);
- `imbalance`: the coefficient of variation of the agents' estimated
  remaining work passes the threshold (None: off);
- `queue_growth`: at least this many queued tasks are not in any plan yet
  (new arrivals since the last solve, e.g. a wave of batch jobs; None: off).

`deadline_margin` plans soft deadlines that share of their remaining slack
early (see `hedge`): plans that fill slow, cheap agents up to the deadline
otherwise turn every estimate error into a miss.

The plan comes from `allocator.engine.solve` (warm from the last plan, with
its stability preference) or, for `nsga2` with a `pick` rule, from the
Pareto front and that rule (allocator.pareto.pick), and goes in through
`PlanInstalled`, so the core turns it into Migrate instructions for queued
tasks; running tasks stay put.

Honest timing: a solve is not free. `propose(now)` takes the snapshot at
`now` and returns the plan with the time it becomes usable: `now + delay`,
where the delay is the solve's budget (`delay_factor=None`, the default:
deterministic, same seed => same run) or its measured wall time times
`delay_factor`. The simulator keeps running events until then and installs
the plan late; the core reconciles it with what happened meanwhile (tasks
that started, finished or were cancelled are skipped, tasks queued elsewhere
are moved). Drivers without a virtual clock (the asyncio runtime, Ray) call
`step`, whose solve takes real time anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from allocator.errors import InvalidInputError
from allocator.metrics import coefficient_of_variation
from allocator.online.core import Executor
from allocator.online.events import Instruction, PlanInstalled
from models import Plan, Snapshot, Weights

log = logging.getLogger(__name__)

#: What the coordinator asks the solver for between arrivals by default:
#: balance and deadlines first, agent cost ignored, a small price per
#: migration so a plan does not shuffle tasks for nothing. Runs that price
#: cost (the scenarios) pass their own weights.
BALANCE_WEIGHTS = Weights(cost=0.0, makespan=1.0, imbalance=1.0, tardiness=1.0,
                          migrations=0.1)

#: Backends the coordinator accepts by name (any registered backend works
#: through `solve=`; these are the ones the CLI offers).
COORDINATOR_SOLVERS = ("auto", "cpsat", "greedy", "nsga2")

SolveFn = Callable[..., Plan]


def _engine_solve(snapshot: Snapshot, **kwargs: Any) -> Plan:
    from allocator.engine import solve

    return solve(snapshot, **kwargs)


class Coordinator:
    def __init__(
        self,
        executor: Executor,
        *,
        every: float | None = 30.0,
        imbalance: float | None = 0.5,
        queue_growth: int | None = None,
        min_interval: float | None = None,
        solver: str = "greedy",
        time_limit: float = 1.0,
        solve: SolveFn | None = None,
        weights: Weights | None = None,
        delay_factor: float | None = None,
        stability: bool = True,
        pick: str | None = None,
        seed: int = 0,
        deadline_margin: float = 0.0,
    ) -> None:
        if every is not None and not every >= 0:
            raise InvalidInputError(f"must be >= 0, got {every}", field="coordinate_every")
        if not time_limit > 0:
            raise InvalidInputError(f"must be > 0, got {time_limit}", field="coordinator_budget")
        if delay_factor is not None and not delay_factor >= 0:
            raise InvalidInputError(f"must be >= 0, got {delay_factor}", field="delay_factor")
        if queue_growth is not None and queue_growth < 1:
            raise InvalidInputError(f"must be >= 1, got {queue_growth}", field="queue_growth")
        if not 0.0 <= deadline_margin < 1.0:
            raise InvalidInputError(f"must be in [0, 1), got {deadline_margin}",
                                    field="deadline_margin")
        if pick is not None and solver != "nsga2":
            raise InvalidInputError("a pick rule needs the nsga2 solver", field="pick")
        self.weights = weights or BALANCE_WEIGHTS
        self.executor = executor
        self.every = every or None
        self.threshold = imbalance
        self.queue_growth = queue_growth
        base = self.every if self.every else 1.0
        self.min_interval = base / 10 if min_interval is None else min_interval
        self.solver = solver
        self.time_limit = time_limit
        self.delay_factor = delay_factor
        self.stability = stability
        self.pick = pick
        self.seed = seed
        self.deadline_margin = deadline_margin
        self._solve = solve or _engine_solve
        self.last_solve = -float("inf")
        self.last_plan: Plan | None = None
        self.solves = 0
        #: Wall seconds spent solving, and virtual time the plans arrived late by.
        self.solve_wall = 0.0
        self.solve_time_total = 0.0

    # ------------------------------------------------------------------ triggers

    def imbalance(self) -> float:
        loads = list(self.executor.loads().values())
        return coefficient_of_variation(np.asarray(loads)) if loads else 0.0

    def due(self, now: float) -> bool:
        since = now - self.last_solve
        if self.every is not None and since >= self.every:
            return True
        if since < self.min_interval:
            return False
        if self.queue_growth is not None and self.executor.unplanned() >= self.queue_growth:
            return True
        return self.threshold is not None and self.imbalance() > self.threshold

    # ------------------------------------------------------------------ solving

    def _solve_locked(self, lock: Any) -> Plan | None:
        """`solve` with the snapshot taken under `lock` (the solve itself runs unlocked)."""
        with lock:
            snap = self._snapshot()
        return None if snap is None else self._solve_snapshot(snap)

    def _snapshot(self) -> Snapshot | None:
        if not self.executor.queued():
            return None  # only running tasks, which a plan does not move
        return self.hedge(self.executor.snapshot(weights=self.weights))

    def solve(self) -> Plan | None:
        """Solve the current snapshot (no state change); None when nothing is queued."""
        snap = self._snapshot()
        return None if snap is None else self._solve_snapshot(snap)

    def _solve_snapshot(self, snap: Snapshot) -> Plan | None:
        t0 = time.perf_counter()
        try:
            if self.pick is not None:
                return self._pareto(snap)
            return self._solve(snap, solver=self.solver, time_limit=self.time_limit,
                               previous=self.last_plan, stability=self.stability,
                               seed=self.seed, deterministic=True)
        finally:
            self.solve_wall += time.perf_counter() - t0

    def hedge(self, snap: Snapshot) -> Snapshot:
        """Plan soft deadlines `deadline_margin` of their remaining slack early.

        A plan that fills slow agents up to their deadlines turns every
        estimate error (work noise, learned speeds, the solve's own delay)
        into a miss; keeping a share of the slack in reserve absorbs them.
        Hard deadlines are left exact (tightening them could make tasks
        unplaceable).
        """
        k = self.deadline_margin
        if k <= 0:
            return snap
        now = snap.time
        tasks = [t.model_copy(update={"deadline": t.deadline - k * (t.deadline - now)})
                 if t.deadline is not None and not t.hard_deadline and t.deadline > now else t
                 for t in snap.tasks]
        return snap.model_copy(update={"tasks": tasks})

    def _pareto(self, snap: Snapshot) -> Plan:
        from allocator.usecases import ParetoParams, pareto_front

        names = [k for k in ("cost", "tardiness", "makespan")
                 if getattr(self.weights, k) > 0][:2] or ["cost", "makespan"]
        if len(names) < 2:
            names.append("makespan" if names[0] != "makespan" else "cost")
        out = pareto_front(snap, ParetoParams(objectives=names, time_limit=self.time_limit,
                                              seed=self.seed, pick=self.pick or "knee"))
        return out.front.points[out.picked_index].plan

    def delay(self, wall: float) -> float:
        """Virtual time from the snapshot until its plan is usable."""
        return self.time_limit if self.delay_factor is None else wall * self.delay_factor

    def propose(self, now: float) -> tuple[Plan, float] | None:
        """Snapshot at `now` and solve: (plan, time it takes effect), or None.

        Marks the solve as started (the triggers rest until `min_interval`).
        """
        self.last_solve = now
        w0 = self.solve_wall
        plan = self.solve()
        if plan is None:
            return None
        self.solves += 1
        d = self.delay(self.solve_wall - w0)
        self.solve_time_total += d
        log.info("coordinator: solve %d at t=%.4g, effective t=%.4g: %s, %d assignments",
                 self.solves, now, now + d, plan.status, len(plan.assignments))
        return plan, now + d

    def install(self, plan: Plan, now: float) -> list[Instruction]:
        self.last_plan = plan
        return self.executor.handle(PlanInstalled(plan=plan, time=now))

    def step(self, now: float, *, force: bool = False) -> list[Instruction]:
        """Re-solve and install at once if due (or forced); the core's instructions.

        For drivers on real time (the solve's wall time passes anyway); the
        simulator uses `propose` and installs the plan when it is ready.
        """
        if not force and not self.due(now):
            return []
        got = self.propose(now)
        if got is None:
            return []
        return self.install(got[0], now)

    def __call__(self, executor: Executor, now: float) -> list[Instruction]:
        """Driver hook: `coordinator(executor, now)` (Ray driver, simple loops)."""
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
            plan = await asyncio.to_thread(self._solve_locked, runtime.lock)
            if plan is not None and not runtime.closed:
                self.solves += 1
                self.last_plan = plan
                # Through the runtime (its lock: the worker threads drive the core too),
                # which fails every outstanding task if the core raises.
                runtime.handle(PlanInstalled(plan=plan, time=runtime.clock.now()))
