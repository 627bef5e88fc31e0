"""Discrete-event simulator: drives the executor core on a virtual clock.

One heap of `(time, seq, kind, payload)`; the next arrival waits beside it and
is compared with its top (so the heap stays small and an arrival costs no push
and pop). Order at equal times: queue samples, then completions and
attempt failures (in the order their dispatches were made), then the arrivals
(all of one time as one batch, `Executor.submit_many_at`: every one is queued
before any is dispatched), then everything else in the order it was scheduled
(timers, agent failures and rejoins, coordinator checks and plan installs): an
agent freed at t can take a task that arrives at t. The `seq` ranges say so: samples `_SAMPLE_SEQ`,
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
from typing import TYPE_CHECKING, Any, Final

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
    TaskSpec,
    Tick,
)
from allocator.online.metrics import summary
from allocator.online.policies import Policy
from allocator.online.workload import TOKENS_PER_WORK, Workload
from models import Plan, Weights

# Heap entry kinds (Final: a compiled build folds them into the code).
_ARR: Final = 0
_DONE: Final = 1
_FAILT: Final = 2
_TICK: Final = 3
_AFAIL: Final = 4
_AJOIN: Final = 5
_COORD: Final = 6
_INSTALL: Final = 7
_SAMPLE: Final = 8
#: Heap tie-breaks (see the module docstring): completions and attempt failures
#: count up from here, below the arrival's -1; a sample comes before them all.
_DONE_SEQ0: Final = -(1 << 62)
_SAMPLE_SEQ: Final = -(1 << 63)

#: A heap entry, one flat tuple of fixed types (a compiled build unboxes it
#: without a type test per field): `(time, seq, kind, i, attempt, epoch, task id,
#: agent id)`. A completion or attempt failure uses every field (`i`: the task's
#: index); an agent failure `i` (its index in `Workload.failures`) and the agent;
#: a rejoin the agent; a sample `i` (the sample's index); a plan install `seq`
#: (its plan waits in a side table); timers and coordinator checks none.
Entry = tuple[float, int, int, int, int, int, str, str]

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
        speed: dict[str, float] = dict(wl.true_speed) or {a.id: a.speed for a in wl.agents}
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
        actual: list[float] = wl.actual.tolist()
        home_of: list[int] = wl.home.tolist()
        # Specs come a chunk (a list) at a time: a list index per arrival, not a
        # generator's resumption.
        chunks = wl.spec_chunks()
        batch: list[TaskSpec] = []
        bi = 0
        arrivals: list[float] = wl.arrival.tolist()
        failures = wl.failures
        rng = self.rng
        heap: list[Entry] = []
        #: Plans waiting to be installed, by their heap entry's seq.
        plans: dict[int, Plan] = {}
        seq = 0
        cseq = _DONE_SEQ0
        push = heapq.heappush
        pop = heapq.heappop
        # The next arrival waits beside the heap (`na`, task `ai`), not in it: one
        # comparison with the heap's top instead of a push and a pop per task.
        inf = float("inf")
        ai = 0
        na = arrivals[0] if n else inf
        for k, (t, a_id, _) in enumerate(failures):
            seq += 1
            push(heap, (t, seq, _AFAIL, k, 0, 0, "", a_id))
        if self.coordinator is not None and self.coordinate_every:
            seq += 1
            push(heap, (self.coordinate_every, seq, _COORD, 0, 0, 0, "", ""))
        samples = self.sample_times
        q_samples: list[tuple[float, list[int]]] = []
        if samples:
            push(heap, (samples[0], _SAMPLE_SEQ, _SAMPLE, 0, 0, 0, "", ""))
        rec = self.record
        nan = float("nan")
        r_start = [nan] * n if rec else []
        r_end = [nan] * n if rec else []
        r_agent: list[str | None] = [None] * n if rec else []
        r_out: list[str | None] = [None] * n if rec else []
        ends = [0] * n  # terminal instructions per task (a list: native get and set)
        epoch = dict.fromkeys(agents, 0)
        cancelled: set[tuple[str, int]] = set()
        ticks: set[float] = set()
        propose = getattr(self.coordinator, "propose", None)
        pending = False
        outstanding = 0
        submitted = 0
        arrivals_done = n == 0
        handle = ex.handle
        # The instruction classes as locals (a compiled build looks a module's
        # imported names up in its globals on every use).
        dispatch_t: type[Instruction] = Dispatch
        complete_t: type[Instruction] = Complete
        set_timer_t: type[Instruction] = SetTimer
        steal_t: type[Instruction] = Steal
        wall0 = time.perf_counter()
        now = 0.0

        def apply(out: list[Instruction] | tuple[Instruction, ...]) -> None:
            nonlocal seq, cseq, outstanding, central_free, after_burst
            for ins in out:
                typ = type(ins)
                if typ is dispatch_t:
                    if TYPE_CHECKING:  # (narrowing only: an assert per dispatch costs time)
                        assert isinstance(ins, Dispatch)
                    task_id = ins.task_id
                    i = int(task_id[1:])
                    a_id = ins.agent
                    dur = actual[i] / speed[a_id]
                    h = home_of[i]
                    if mc and h >= 0 and agent_ids[h] != a_id:
                        dur += mc
                    if dlat:
                        if central or ins.remote:
                            central_free = max(now, central_free) + dlat
                            dur += central_free - now
                        elif task_id in stolen:
                            stolen.discard(task_id)
                            dur += dlat
                    if rec:
                        if r_start[i] != r_start[i]:
                            r_start[i] = ins.time
                        r_agent[i] = a_id
                    cseq += 1
                    attempt = ins.attempt
                    fp = p_fail
                    if flaky:
                        fk = flaky.get(a_id)
                        if fk is not None and now < fk[1]:
                            fp = 1.0 - (1.0 - fp) * (1.0 - fk[0])
                    if fp and rng.random() < fp:
                        push(heap, (now + dur * rng.random(), cseq, _FAILT, i, attempt,
                                    epoch[a_id], task_id, a_id))
                    else:
                        push(heap, (now + dur, cseq, _DONE, i, attempt, epoch[a_id], task_id,
                                    a_id))
                elif typ is complete_t:
                    if TYPE_CHECKING:
                        assert isinstance(ins, Complete)
                    i = int(ins.task_id[1:])
                    ends[i] += 1
                    outstanding -= 1
                    done_at[ins.agent].append(now)
                    if rec:
                        r_end[i] = now
                        r_out[i] = "complete"
                elif typ is Reject or typ is Fail:
                    if TYPE_CHECKING:
                        assert isinstance(ins, Reject | Fail)
                    i = int(ins.task_id[1:])
                    ends[i] += 1
                    outstanding -= 1
                    if rec:
                        r_end[i] = now
                        r_out[i] = "reject" if typ is Reject else "fail"
                    if typ is Reject and ins.code is Code.THROTTLED and now > burst_end:
                        after_burst += 1
                elif typ is steal_t and dlat:
                    if TYPE_CHECKING:
                        assert isinstance(ins, Steal)
                    stolen.add(ins.task_id)
                elif typ is set_timer_t:
                    if TYPE_CHECKING:
                        assert isinstance(ins, SetTimer)
                    at = ins.at
                    if at not in ticks:
                        ticks.add(at)
                        seq += 1
                        push(heap, (at, seq, _TICK, 0, 0, 0, "", ""))
                elif typ is Cancel:
                    if TYPE_CHECKING:
                        assert isinstance(ins, Cancel)
                    cancelled.add((ins.task_id, ins.attempt))

        tokens = wl.rate_limit is not None
        tokens_per_work = TOKENS_PER_WORK
        metrics = ex.metrics
        max_events = self.max_events
        # Dispatches without failure draws or dispatcher delays are applied in the
        # loop itself (the common case); `apply` does everything else.
        plain = not (dlat or p_fail or flaky or rec)
        out: list[Instruction]
        kind = _ARR
        task_id = ""  # (the last popped or dispatched task's id and index)
        i = -1
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
                if bi == len(batch):
                    batch = next(chunks)
                    bi = 0
                spec = batch[bi]
                bi += 1
                if na != now:
                    out = ex.submit_at(spec, now)
                else:
                    # Arrivals at one instant reach the core as one batch: all are
                    # queued before any is dispatched (the policy picks among them).
                    same = [spec]
                    while na == now:
                        submitted += 1
                        outstanding += 1
                        ai += 1
                        if ai < n:
                            na = arrivals[ai]
                        else:
                            arrivals_done = True
                            na = inf
                        if bi == len(batch):
                            batch = next(chunks)
                            bi = 0
                        same.append(batch[bi])
                        bi += 1
                    out = ex.submit_many_at(same, now)
            else:
                e = pop(heap)
                now, _, kind, i, attempt, ep, task_id, a_id = e
                if kind == _DONE:  # the commonest kind first
                    if epoch[a_id] != ep or (cancelled and (task_id, attempt) in cancelled):
                        continue
                    # (ex.method(...), not a bound method in a local: a compiled build
                    # then calls the compiled method directly, without boxing the arguments)
                    out = ex.complete_at(task_id, a_id, attempt, now, None,
                                         {"tokens": actual[i] * tokens_per_work} if tokens
                                         else None)
                elif kind == _FAILT:
                    if epoch[a_id] != ep or (cancelled and (task_id, attempt) in cancelled):
                        continue
                    out = handle(TaskFailed(task_id=task_id, agent=a_id, attempt=attempt,
                                            time=now, reason="task error (simulated)"))
                elif kind == _TICK:
                    ticks.discard(now)
                    out = ex.tick_at(now)
                elif kind == _AFAIL:
                    if arrivals_done and outstanding == 0:
                        continue
                    epoch[a_id] += 1
                    seq += 1
                    push(heap, (now + failures[i][2], seq, _AJOIN, 0, 0, 0, "", a_id))
                    out = handle(AgentFailed(agent_id=a_id, reason="crash (simulated)", time=now))
                elif kind == _AJOIN:
                    out = handle(AgentJoined(agent=agents[a_id], rate_limit=wl.rate_limit,
                                             time=now))
                elif kind == _SAMPLE:
                    q_samples.append((now, self._queue_lengths(agent_ids)))
                    if i + 1 < len(samples):
                        push(heap, (samples[i + 1], _SAMPLE_SEQ, _SAMPLE, i + 1, 0, 0, "", ""))
                    continue
                elif kind == _INSTALL:  # a plan is ready: install it, late by its solve time
                    pending = False
                    plan = plans.pop(e[1])
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
                                plans[seq] = got[0]
                                push(heap, (max(got[1], now), seq, _INSTALL, 0, 0, 0, "", ""))
                        seq += 1
                        push(heap, (now + self.coordinate_every, seq, _COORD, 0, 0, 0, "", ""))
                    continue
            if plain:
                for ins in out:
                    typ = type(ins)
                    if typ is dispatch_t:  # apply's dispatch without its options
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
                        push(heap, (now + dur, cseq, _DONE, i, ins.attempt, epoch[a_id], task_id,
                                    a_id))
                    elif typ is complete_t:
                        if TYPE_CHECKING:
                            assert isinstance(ins, Complete)
                        # (task_id, i) are always one task's pair: the completion just
                        # popped is that task's, so its index needs no parsing.
                        tid = ins.task_id
                        ends[i if tid is task_id else int(tid[1:])] += 1
                        outstanding -= 1
                        done_at[ins.agent].append(now)
                    elif typ is set_timer_t:  # apply's, inlined (stealing's back-off timers)
                        if TYPE_CHECKING:
                            assert isinstance(ins, SetTimer)
                        at = ins.at
                        if at not in ticks:
                            ticks.add(at)
                            seq += 1
                            push(heap, (at, seq, _TICK, 0, 0, 0, "", ""))
                    elif typ is not steal_t:  # (a steal needs nothing without dispatcher delays)
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
