"""Discrete-event simulator: drives the executor core on a virtual clock.

One heap of `(time, seq, kind, payload)`; arrivals are pushed one at a time so
the heap stays small. The simulator plays the agents: a Dispatch becomes a
completion (or an attempt failure) after the task's *actual* work divided by
the agent's true speed, plus the migration cost when it runs away from home.
When an agent fails, its in-flight attempts never report (their completions
are dropped by agent epoch); the core retries them elsewhere.

Accounting is independent of the core: the simulator counts terminal
instructions per task itself, so `lost` and `duplicated` check the core's
invariant rather than repeat its bookkeeping.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from allocator.online.admission import AdmissionConfig
from allocator.online.breaker import BreakerConfig
from allocator.online.core import Executor
from allocator.online.events import (
    AgentFailed,
    AgentJoined,
    Cancel,
    Complete,
    Dispatch,
    Event,
    Fail,
    Instruction,
    Reject,
    SetTimer,
    Shutdown,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    Tick,
)
from allocator.online.metrics import summary
from allocator.online.policies import Policy
from allocator.online.workload import TOKENS_PER_WORK, Workload

_ARR, _DONE, _FAILT, _TICK, _AFAIL, _AJOIN, _COORD = range(7)


@dataclass
class SimResult:
    policy: str
    row: dict[str, Any]
    executor: Executor = field(repr=False)


class Simulator:
    """Run one policy on one workload.

    `coordinator`, if given, is a callable `(executor, now) -> instructions`
    called every `coordinate_every` time units (see allocator.online.coordinator).
    """

    def __init__(
        self,
        workload: Workload,
        policy: str | Policy = "fifo",
        *,
        seed: int = 0,
        log: int | None = 0,
        admission: AdmissionConfig | None = None,
        breaker: BreakerConfig | None = None,
        max_retries: int = 2,
        coordinator: Callable[[Executor, float], list[Instruction]] | None = None,
        coordinate_every: float | None = None,
        max_events: int = 50_000_000,
    ) -> None:
        self.workload = workload
        self.executor = Executor(policy, agents=[(a, workload.rate_limit)
                                                 for a in workload.agents],
                                 seed=seed, log=log, admission=admission, breaker=breaker,
                                 max_retries=max_retries, retain_finished=False)
        self.rng = random.Random(seed ^ 0x5EED)
        self.coordinator = coordinator
        self.coordinate_every = coordinate_every
        self.max_events = max_events

    def run(self) -> SimResult:
        wl = self.workload
        ex = self.executor
        n = wl.n
        agents = {a.id: a for a in wl.agents}
        speed = dict(wl.true_speed) or {a.id: a.speed for a in wl.agents}
        agent_ids = [a.id for a in wl.agents]
        mc = wl.migration_cost
        p_fail = wl.task_failure
        actual = wl.actual.tolist()
        home_of = wl.home.tolist()
        specs = wl.specs()
        arrivals = wl.arrival.tolist()
        rng = self.rng
        heap: list[tuple[float, int, int, Any]] = []
        seq = 0
        push = heapq.heappush
        pop = heapq.heappop
        push(heap, (arrivals[0], -1, _ARR, 0))
        for t, a_id, down in wl.failures:
            seq += 1
            push(heap, (t, seq, _AFAIL, (a_id, down)))
        if self.coordinator is not None and self.coordinate_every:
            seq += 1
            push(heap, (self.coordinate_every, seq, _COORD, None))
        ends = bytearray(n)
        epoch = dict.fromkeys(agents, 0)
        cancelled: set[tuple[str, int]] = set()
        ticks: set[float] = set()
        outstanding = 0
        submitted = 0
        arrivals_done = False
        handle = ex.handle
        wall0 = time.perf_counter()
        now = 0.0

        def apply(out: list[Instruction]) -> None:
            nonlocal seq, outstanding
            for ins in out:
                typ = type(ins)
                if typ is Dispatch:
                    assert isinstance(ins, Dispatch)
                    i = int(ins.task_id[1:])
                    a_id = ins.agent
                    dur = actual[i] / speed[a_id]
                    h = home_of[i]
                    if mc and h >= 0 and agent_ids[h] != a_id:
                        dur += mc
                    seq += 1
                    payload = (ins.task_id, a_id, ins.attempt, epoch[a_id], i)
                    if p_fail and rng.random() < p_fail:
                        push(heap, (now + dur * rng.random(), seq, _FAILT, payload))
                    else:
                        push(heap, (now + dur, seq, _DONE, payload))
                elif typ is Complete or typ is Reject or typ is Fail:
                    ends[int(ins.task_id[1:])] += 1  # type: ignore[attr-defined]
                    outstanding -= 1
                elif typ is SetTimer:
                    at = ins.at  # type: ignore[attr-defined]
                    if at not in ticks:
                        ticks.add(at)
                        seq += 1
                        push(heap, (at, seq, _TICK, None))
                elif typ is Cancel:
                    cancelled.add((ins.task_id, ins.attempt))  # type: ignore[attr-defined]

        tokens = wl.rate_limit is not None
        while heap and ex.metrics.events < self.max_events:
            now, _, kind, p = pop(heap)
            ev: Event
            if kind == _ARR:
                ev = TaskSubmitted(task=next(specs), time=now)
                submitted += 1
                outstanding += 1
                if p + 1 < n:
                    push(heap, (arrivals[p + 1], -1, _ARR, p + 1))
                else:
                    arrivals_done = True
            elif kind in (_DONE, _FAILT):
                task_id, a_id, attempt, ep, i = p
                if epoch[a_id] != ep or (task_id, attempt) in cancelled:
                    continue
                if kind == _DONE:
                    ev = TaskCompleted(task_id=task_id, agent=a_id, attempt=attempt, time=now,
                                       usage={"tokens": actual[i] * TOKENS_PER_WORK}
                                       if tokens else None)
                else:
                    ev = TaskFailed(task_id=task_id, agent=a_id, attempt=attempt, time=now,
                                    reason="task error (simulated)")
            elif kind == _TICK:
                ticks.discard(now)
                ev = Tick(time=now)
            elif kind == _AFAIL:
                if arrivals_done and outstanding == 0:
                    continue
                a_id, down = p
                epoch[a_id] += 1
                seq += 1
                push(heap, (now + down, seq, _AJOIN, a_id))
                ev = AgentFailed(agent_id=a_id, reason="crash (simulated)", time=now)
            elif kind == _AJOIN:
                ev = AgentJoined(agent=agents[p], rate_limit=wl.rate_limit, time=now)
            else:  # coordinator
                if not (arrivals_done and outstanding == 0):
                    assert self.coordinator is not None and self.coordinate_every
                    ex.handle(Tick(time=now))
                    apply(self.coordinator(ex, now))
                    seq += 1
                    push(heap, (now + self.coordinate_every, seq, _COORD, None))
                continue
            apply(handle(ev))
            if arrivals_done and outstanding == 0:
                break
        if outstanding:
            apply(handle(Shutdown(drain=False, cancel_running=True, time=now)))
        wall = time.perf_counter() - wall0
        row = summary(ex)
        lost = sum(1 for i in range(submitted) if ends[i] == 0)
        dup = sum(1 for i in range(submitted) if ends[i] > 1)
        row.update(
            policy=ex.policy.name, tasks=submitted, lost=lost, duplicated=dup,
            makespan=now, wall_s=wall, events_per_s=ex.metrics.events / wall if wall else 0.0,
        )
        return SimResult(ex.policy.name, row, ex)


def simulate(workload: Workload, policy: str | Policy, **kwargs: Any) -> dict[str, Any]:
    """Run and return the summary row."""
    return Simulator(workload, policy, **kwargs).run().row
