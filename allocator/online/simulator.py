"""Discrete-event simulator: drives the executor core on a virtual clock.

One heap of `(time, seq, kind, payload)`; the next arrival waits beside it and
is compared with its top (so the heap stays small and an arrival costs no push
and pop). Order at equal times: queue samples, then completions and
attempt failures (in the order their dispatches were made), then the arrival,
then everything else in the order it was scheduled (timers, agent failures and
rejoins, coordinator checks and plan installs): an agent freed at t can take a
task that arrives at t. The `seq` ranges say so: samples `_SAMPLE_SEQ`,
completions count up from `_DONE_SEQ0` (< -1), the arrival -1, the rest from 1.

The simulator plays the agents: a Dispatch becomes a completion (or an
attempt failure) after the task's *actual* work divided by the agent's true
speed, plus the migration cost when it runs away from home.
When an agent fails, its in-flight attempts never report (their completions
are dropped by agent epoch); the core retries them elsewhere. Flaky agents
(`Workload.flaky`) fail an attempt with their probability until their time.

A `Coordinator` (allocator.online.coordinator) is checked every
`coordinate_every` time units; when one of its triggers fires it snapshots
the executor and solves, and its plan is installed when it is ready (the
snapshot time plus the solve's budget, or its wall time times a factor), not
at once: arrivals, completions and steals go on meanwhile and the core
reconciles the late plan with them. One solve at a time. Any other callable
`(executor, now) -> instructions` is called every `coordinate_every`.

`decision_latency` models a central dispatcher that makes one decision at a
time: every dispatch of a centrally placed task (any placement but `home`, or
a task taken from a global queue) waits for the dispatcher, which spends
`decision_latency` on it; a stolen task costs its thief `decision_latency`
(thieves decide in parallel), a task served from its home deque nothing.

Accounting is independent of the core: the simulator counts terminal
instructions per task itself, so `lost` and `duplicated` check the core's
invariant rather than repeat its bookkeeping. With `record=True` it also keeps
each task's first start, end, last agent and outcome (:class:`TaskRecords`),
and with `sample_times` each agent's queue length at those instants: what
the trace replay (allocator.workloads.replay) reports, from this same loop.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import random
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from allocator.online.admission import AdmissionConfig
from allocator.online.breaker import BreakerConfig
from allocator.online.core import Executor
from allocator.online.events import (
    AgentFailed,
    AgentJoined,
    Cancel,
    Code,
    Complete,
    Dispatch,
    Fail,
    Instruction,
    Reject,
    SetTimer,
    Shutdown,
    Steal,
    TaskFailed,
    Tick,
)
from allocator.online.metrics import summary
from allocator.online.policies import Policy
from allocator.online.workload import TOKENS_PER_WORK, Workload
from models import Plan, Weights

_ARR, _DONE, _FAILT, _TICK, _AFAIL, _AJOIN, _COORD, _INSTALL, _SAMPLE = range(9)
#: Heap tie-breaks (see the module docstring): completions and attempt failures
#: count up from here, below the arrival's -1; a sample comes before them all.
_DONE_SEQ0 = -(1 << 62)
_SAMPLE_SEQ = -(1 << 63)

_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a simulation runs.

    A run keeps millions of live objects (task states, specs, heap entries)
    and makes no garbage cycles per event, so the collector's passes only
    rescan live objects: a fifth of a large run's CPU time. Reference
    counting still frees everything at once. Nested and concurrent runs
    (threads) share one pause; the collector is re-enabled (if it was on)
    when the last one ends.
    """
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


@dataclass(slots=True)
class TaskRecords:
    """Per task, in arrival order: first start, end (terminal instruction), the agent
    of its last dispatch and its outcome (`complete`, `reject`, `fail`; None: none)."""

    start: list[float]
    end: list[float]
    agent: list[str | None]
    outcome: list[str | None]


@dataclass
class SimResult:
    policy: str
    row: dict[str, Any]
    executor: Executor = field(repr=False)
    #: With `record=True`.
    records: TaskRecords | None = field(default=None, repr=False)
    #: `(time, [queued per agent..., queued in global pools])` at each sample time.
    queue_samples: list[tuple[float, list[int]]] = field(default_factory=list, repr=False)


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
        decision_latency: float = 0.0,
        weights: Weights | None = None,
        record: bool = False,
        sample_times: list[float] | None = None,
    ) -> None:
        self.workload = workload
        self.executor = Executor(policy, agents=[(a, workload.rate_limit)
                                                 for a in workload.agents],
                                 seed=seed, log=log, admission=admission, breaker=breaker,
                                 max_retries=max_retries, retain_finished=False,
                                 weights=weights)
        self.rng = random.Random(seed ^ 0x5EED)
        self.coordinator = coordinator
        self.coordinate_every = coordinate_every
        self.max_events = max_events
        self.decision_latency = decision_latency
        self.record = record
        self.sample_times = sorted(sample_times or ())

    def run(self) -> SimResult:
        with _no_cyclic_gc():
            return self._run()

    def _run(self) -> SimResult:
        wl = self.workload
        ex = self.executor
        n = wl.n
        agents = {a.id: a for a in wl.agents}
        speed = dict(wl.true_speed) or {a.id: a.speed for a in wl.agents}
        agent_ids = [a.id for a in wl.agents]
        mc = wl.migration_cost
        p_fail = wl.task_failure
        flaky = wl.flaky
        dlat = self.decision_latency
        central = dlat > 0 and ex.policy.placement != "home"
        central_free = 0.0
        stolen: set[str] = set()
        done_at: dict[str, list[float]] = {a: [] for a in agents}
        burst_end = wl.bursts[-1][1] if wl.bursts else 0.0
        after_burst = 0
        actual = wl.actual.tolist()
        home_of = wl.home.tolist()
        specs = wl.specs()
        arrivals = wl.arrival.tolist()
        rng = self.rng
        heap: list[tuple[float, int, int, Any]] = []
        seq = 0
        cseq = _DONE_SEQ0
        push = heapq.heappush
        pop = heapq.heappop
        # The next arrival waits beside the heap (`na`, task `ai`), not in it: one
        # comparison with the heap's top instead of a push and a pop per task.
        inf = float("inf")
        ai = 0
        na = arrivals[0] if n else inf
        for t, a_id, down in wl.failures:
            seq += 1
            push(heap, (t, seq, _AFAIL, (a_id, down)))
        if self.coordinator is not None and self.coordinate_every:
            seq += 1
            push(heap, (self.coordinate_every, seq, _COORD, None))
        samples = self.sample_times
        q_samples: list[tuple[float, list[int]]] = []
        if samples:
            push(heap, (samples[0], _SAMPLE_SEQ, _SAMPLE, 0))
        rec = self.record
        nan = float("nan")
        r_start = [nan] * n if rec else []
        r_end = [nan] * n if rec else []
        r_agent: list[str | None] = [None] * n if rec else []
        r_out: list[str | None] = [None] * n if rec else []
        ends = bytearray(n)
        epoch = dict.fromkeys(agents, 0)
        cancelled: set[tuple[str, int]] = set()
        ticks: set[float] = set()
        propose = getattr(self.coordinator, "propose", None)
        pending = False
        outstanding = 0
        submitted = 0
        arrivals_done = n == 0
        handle = ex.handle
        wall0 = time.perf_counter()
        now = 0.0

        def apply(out: list[Instruction] | tuple[Instruction, ...]) -> None:
            nonlocal seq, cseq, outstanding, central_free, after_burst
            for ins in out:
                typ = type(ins)
                if typ is Dispatch:
                    if TYPE_CHECKING:  # (narrowing only: an assert per dispatch costs time)
                        assert isinstance(ins, Dispatch)
                    i = int(ins.task_id[1:])
                    a_id = ins.agent
                    dur = actual[i] / speed[a_id]
                    h = home_of[i]
                    if mc and h >= 0 and agent_ids[h] != a_id:
                        dur += mc
                    if dlat:
                        if central or ins.remote:
                            central_free = max(now, central_free) + dlat
                            dur += central_free - now
                        elif ins.task_id in stolen:
                            stolen.discard(ins.task_id)
                            dur += dlat
                    if rec:
                        if r_start[i] != r_start[i]:
                            r_start[i] = ins.time
                        r_agent[i] = a_id
                    cseq += 1
                    payload = (ins.task_id, a_id, ins.attempt, epoch[a_id], i)
                    fp = p_fail
                    if flaky:
                        fk = flaky.get(a_id)
                        if fk is not None and now < fk[1]:
                            fp = 1.0 - (1.0 - fp) * (1.0 - fk[0])
                    if fp and rng.random() < fp:
                        push(heap, (now + dur * rng.random(), cseq, _FAILT, payload))
                    else:
                        push(heap, (now + dur, cseq, _DONE, payload))
                elif typ is Complete:
                    i = int(ins.task_id[1:])  # type: ignore[attr-defined]
                    ends[i] += 1
                    outstanding -= 1
                    done_at[ins.agent].append(now)  # type: ignore[attr-defined]
                    if rec:
                        r_end[i] = now
                        r_out[i] = "complete"
                elif typ is Reject or typ is Fail:
                    i = int(ins.task_id[1:])  # type: ignore[attr-defined]
                    ends[i] += 1
                    outstanding -= 1
                    if rec:
                        r_end[i] = now
                        r_out[i] = "reject" if typ is Reject else "fail"
                    if (typ is Reject and ins.code is Code.THROTTLED  # type: ignore[attr-defined]
                            and now > burst_end):
                        after_burst += 1
                elif typ is Steal and dlat:
                    stolen.add(ins.task_id)  # type: ignore[attr-defined]
                elif typ is SetTimer:
                    at = ins.at  # type: ignore[attr-defined]
                    if at not in ticks:
                        ticks.add(at)
                        seq += 1
                        push(heap, (at, seq, _TICK, None))
                elif typ is Cancel:
                    cancelled.add((ins.task_id, ins.attempt))  # type: ignore[attr-defined]

        tokens = wl.rate_limit is not None
        metrics = ex.metrics
        max_events = self.max_events
        submit_at = ex.submit_at
        complete_at = ex.complete_at
        tick_at = ex.tick_at
        # Dispatches without failure draws or dispatcher delays are applied in the
        # loop itself (the common case); `apply` does everything else.
        plain = not (dlat or p_fail or flaky or rec)
        out: list[Instruction]
        while metrics.events < max_events:
            if heap:
                # The arrival goes first unless the top is earlier, or at the same
                # time a sample or completion (seq < -1, the arrival's seq being -1).
                top = heap[0]
                arr = na < top[0] or (na == top[0] and top[1] > -1 and not arrivals_done)
            elif arrivals_done:
                break
            else:
                arr = True
            if arr:
                kind = _ARR
                now = na
                submitted += 1
                outstanding += 1
                ai += 1
                if ai < n:
                    na = arrivals[ai]
                else:
                    arrivals_done = True
                    na = inf
                out = submit_at(next(specs), now)
            elif (e := pop(heap))[2] == _DONE:  # the commonest kind first
                now, _, kind, p = e
                task_id, a_id, attempt, ep, i = p
                if epoch[a_id] != ep or (cancelled and (task_id, attempt) in cancelled):
                    continue
                out = complete_at(task_id, a_id, attempt, now, None,
                                  {"tokens": actual[i] * TOKENS_PER_WORK} if tokens else None)
            else:
                now, _, kind, p = e
                if kind == _FAILT:
                    task_id, a_id, attempt, ep, i = p
                    if epoch[a_id] != ep or (cancelled and (task_id, attempt) in cancelled):
                        continue
                    out = handle(TaskFailed(task_id=task_id, agent=a_id, attempt=attempt,
                                            time=now, reason="task error (simulated)"))
                elif kind == _TICK:
                    ticks.discard(now)
                    out = tick_at(now)
                elif kind == _AFAIL:
                    if arrivals_done and outstanding == 0:
                        continue
                    a_id, down = p
                    epoch[a_id] += 1
                    seq += 1
                    push(heap, (now + down, seq, _AJOIN, a_id))
                    out = handle(AgentFailed(agent_id=a_id, reason="crash (simulated)", time=now))
                elif kind == _AJOIN:
                    out = handle(AgentJoined(agent=agents[p], rate_limit=wl.rate_limit, time=now))
                elif kind == _SAMPLE:
                    q_samples.append((now, self._queue_lengths(agent_ids)))
                    if p + 1 < len(samples):
                        push(heap, (samples[p + 1], _SAMPLE_SEQ, _SAMPLE, p + 1))
                    continue
                elif kind == _INSTALL:  # a plan is ready: install it, late by its solve time
                    pending = False
                    plan: Plan = p
                    apply(self.coordinator.install(plan, now))  # type: ignore[union-attr]
                    continue
                else:  # coordinator
                    if not (arrivals_done and outstanding == 0):
                        assert self.coordinator is not None and self.coordinate_every
                        apply(ex.handle(Tick(time=now)))
                        if propose is None:
                            apply(self.coordinator(ex, now))
                        elif not pending and self.coordinator.due(now):  # type: ignore[attr-defined]
                            got = propose(now)
                            if got is not None:
                                pending = True
                                seq += 1
                                push(heap, (max(got[1], now), seq, _INSTALL, got[0]))
                        seq += 1
                        push(heap, (now + self.coordinate_every, seq, _COORD, None))
                    continue
            if plain:
                for ins in out:
                    typ = type(ins)
                    if typ is Dispatch:  # apply's dispatch without its options
                        if TYPE_CHECKING:
                            assert isinstance(ins, Dispatch)
                        task_id = ins.task_id
                        i = int(task_id[1:])
                        a_id = ins.agent
                        dur = actual[i] / speed[a_id]
                        if mc:
                            h = home_of[i]
                            if h >= 0 and agent_ids[h] != a_id:
                                dur += mc
                        cseq += 1
                        push(heap, (now + dur, cseq, _DONE,
                                    (task_id, a_id, ins.attempt, epoch[a_id], i)))
                    elif typ is Complete:
                        ends[int(ins.task_id[1:])] += 1  # type: ignore[attr-defined]
                        outstanding -= 1
                        done_at[ins.agent].append(now)  # type: ignore[attr-defined]
                    elif typ is SetTimer:  # apply's, inlined (stealing's back-off timers)
                        at = ins.at  # type: ignore[attr-defined]
                        if at not in ticks:
                            ticks.add(at)
                            seq += 1
                            push(heap, (at, seq, _TICK, None))
                    elif typ is not Steal:  # (a steal needs nothing without dispatcher delays)
                        apply((ins,))
            else:
                apply(out)
            if kind == _ARR and arrivals_done:
                ex.metrics.mark()  # service shares are reported as of the last arrival
            if arrivals_done and outstanding == 0:
                break
        if outstanding:
            apply(handle(Shutdown(drain=False, cancel_running=True, time=now)))
        wall = time.perf_counter() - wall0
        row = summary(ex)
        lost = sum(1 for i in range(submitted) if ends[i] == 0)
        dup = sum(1 for i in range(submitted) if ends[i] > 1)
        quarter = 0.75 * now
        per_agent = []
        for a_id, times in done_at.items():
            st = ex.agents[a_id]
            per_agent.append({
                "agent": a_id, "completed": len(times),
                "busy_share": st.busy / (now * st.concurrency) if now > 0 else 0.0,
                "completed_last_quarter": len(times) - bisect_left(times, quarter),
            })
        row.update(
            policy=ex.policy.name, tasks=submitted, lost=lost, duplicated=dup,
            makespan=now, wall_s=wall, events_per_s=ex.metrics.events / wall if wall else 0.0,
            per_agent=per_agent, rejected_after_burst=after_burst,
            solves=getattr(self.coordinator, "solves", 0),
            solve_time_total=getattr(self.coordinator, "solve_time_total", 0.0),
            solve_wall_s=getattr(self.coordinator, "solve_wall", 0.0),
        )
        records = TaskRecords(r_start, r_end, r_agent, r_out) if rec else None
        return SimResult(ex.policy.name, row, ex, records, q_samples)

    def _queue_lengths(self, agent_ids: list[str]) -> list[int]:
        """Queued (and planned) tasks per agent, then those in the global pools."""
        ex = self.executor
        row = []
        for a_id in agent_ids:
            a = ex.agents.get(a_id)
            row.append(len(a.queue) + len(a.planned) if a is not None else 0)
        row.append(sum(len(p.queue) for p in ex._pools.values()))
        return row


def simulate(workload: Workload, policy: str | Policy, **kwargs: Any) -> dict[str, Any]:
    """Run and return the summary row."""
    return Simulator(workload, policy, **kwargs).run().row
