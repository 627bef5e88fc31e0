"""The executor core: a state machine with no I/O and no clock of its own.

`Executor.handle(*events) -> list[Instruction]` is the only way state changes.
Each event carries its time; the core stamps it with an id, logs it, updates
its state and returns what the driver must do (dispatch, cancel, set a timer)
plus what it decided (steals, migrations, retries, rejections, breaker moves).
The shape follows dask's `worker_state_machine.py`.

Where a task lives: submitted -> (deferred ->) queued (in an agent's deque,
an agent's plan queue, or a global pool) -> running on one agent -> done.
Invariant: every submitted task gets exactly one terminal instruction
(Complete, Reject or Fail). Results of attempts the core no longer considers
current (the agent was declared failed, the attempt timed out or was
cancelled) are *stale* and ignored, so a task is never completed twice.

Global pools: tasks waiting for any agent are grouped by their eligibility
signature (skills, allowed, forbidden, demand), so an idle agent looks only at
pools it can serve and a task that needs a rare skill never blocks the rest.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable
from typing import Any

from allocator.errors import InvalidInputError
from allocator.online.admission import Action, AdmissionConfig, AdmissionController
from allocator.online.breaker import BreakerConfig, BreakerState, CircuitBreaker
from allocator.online.events import (
    AgentFailed,
    AgentJoined,
    AgentLeft,
    BreakerClosed,
    BreakerHalfOpen,
    BreakerOpened,
    Cancel,
    Code,
    Complete,
    Defer,
    Dispatch,
    Event,
    Fail,
    Instruction,
    Migrate,
    PlanInstalled,
    RateLimit,
    Reject,
    Retry,
    SetTimer,
    Shutdown,
    Steal,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    Tick,
)
from allocator.online.log import EventLog
from allocator.online.metrics import OnlineMetrics
from allocator.online.policies import Policy, make_policy
from allocator.online.queues import PlanQueue, TaskQueue
from allocator.online.ratelimit import AgentLimiter
from models import Agent, AgentStatus, Plan, Snapshot, Task, Weights

# Task phases (ints: compared on every event).
SUBMITTED, DEFERRED, QUEUED, RUNNING, DONE = range(5)
PHASE_NAMES = ("submitted", "deferred", "queued", "running", "done")

# Timer kinds.
_T_DEFER, _T_TIMEOUT, _T_BREAKER, _T_WAKE = range(4)

#: Weight of a new observation in the agent-speed and token-ratio EWMAs:
#: 0.1 follows a change within ~10 tasks without chasing single outliers.
EWMA_ALPHA = 0.1
#: Relative slack when comparing summed demand with capacity (0.1 + 0.2 fits 0.3).
CAPACITY_RTOL = 1e-9

Signature = tuple[Any, ...]


class TaskState:
    """Everything the core tracks about one task (internal)."""

    __slots__ = ("agent", "attempt", "defers", "enqueued", "est", "first_start", "id",
                 "phase", "probe", "qkey", "queue", "seq", "served_by", "sig", "spec",
                 "started", "steals", "submitted", "timer_token", "tokens_est", "where")

    def __init__(self, spec: TaskSpec, seq: int, now: float) -> None:
        self.spec = spec
        self.id = spec.id
        self.seq = seq
        self.phase = SUBMITTED
        self.attempt = 0
        self.agent: AgentState | None = None  # running on
        self.where: AgentState | None = None  # queued at (None: global pool)
        self.queue: Any = None  # the container holding it while queued
        self.qkey = 0.0
        self.est = spec.work
        self.tokens_est = spec.tokens
        self.submitted = now
        self.enqueued = now
        self.first_start = -1.0
        self.started = 0.0
        self.steals = 0
        self.defers = 0
        self.probe = False
        self.served_by: Any = None
        self.timer_token = 0
        self.sig: Signature = (spec.skills, spec.allowed, spec.forbidden, spec.demand)


class AgentState:
    """One agent as the core sees it (internal)."""

    __slots__ = ("backoff_until", "breaker", "busy", "capacity", "concurrency", "id", "index",
                 "limiter", "planned", "pools", "queue", "running", "skills", "spec", "speed",
                 "status", "steal_fails", "tokens_used", "up_since", "uptime", "used")

    def __init__(self, spec: Agent, index: int, queue: TaskQueue, breaker: CircuitBreaker,
                 limiter: AgentLimiter | None, now: float) -> None:
        self.id = spec.id
        self.index = index
        self.queue = queue
        self.planned = PlanQueue()
        self.breaker = breaker
        self.limiter = limiter
        self.running: dict[str, TaskState] = {}
        self.pools: list[Pool] = []
        self.busy = 0.0
        self.uptime = 0.0
        self.tokens_used = 0.0
        self.steal_fails = 0
        self.backoff_until = 0.0
        self.up_since = now
        self.status = AgentStatus.DOWN
        self.update(spec)

    def update(self, spec: Agent) -> None:
        self.spec = spec
        self.speed = spec.speed
        self.concurrency = spec.concurrency
        self.capacity = dict(spec.capacity)
        self.skills = frozenset(spec.skills)
        self.used = dict.fromkeys(self.capacity, 0.0)

    def load(self, now: float) -> float:
        """Estimated time until this agent drains its queues (remaining work / speed / slots)."""
        rem = 0.0
        speed = self.speed
        for t in self.running.values():
            r = t.started + t.est / speed - now
            if r > 0:
                rem += r
        return (rem + (self.queue.work + self.planned.work) / speed) / self.concurrency

    def count(self) -> int:
        return len(self.running) + len(self.queue) + len(self.planned)


class Pool:
    """Global queue for tasks of one eligibility signature."""

    __slots__ = ("members", "queue", "sig", "spec")

    def __init__(self, sig: Signature, spec: TaskSpec, queue: TaskQueue) -> None:
        self.sig = sig
        self.spec = spec
        self.queue = queue
        self.members: list[AgentState] = []


def eligible(a: AgentState, spec: TaskSpec) -> bool:
    """Static fit: allowed, not forbidden, has the skills, demand within capacity."""
    if spec.allowed is not None and a.id not in spec.allowed:
        return False
    if spec.forbidden and a.id in spec.forbidden:
        return False
    for s in spec.skills:
        if s not in a.skills:
            return False
    if not spec.demand:
        return True
    return all(d <= a.capacity.get(r, 0.0) * (1 + CAPACITY_RTOL) for r, d in spec.demand)


class _CoreClock:
    """The breakers' clock: the time of the event being handled."""

    __slots__ = ("_ex",)

    def __init__(self, ex: Executor) -> None:
        self._ex = ex

    def now(self) -> float:
        return self._ex.now


class Executor:
    """The online scheduling core.

    Parameters
    ----------
    policy:
        A policy name (see `allocator.online.policy_names()`) or a Policy.
    agents:
        Agents present at time 0 (`Agent`, or `(Agent, RateLimit)` pairs).
    seed:
        Seeds the random placements (random, p2c).
    max_retries:
        Retries per task after a failed attempt (a task may override it).
    admission, breaker:
        Configurations of admission control and of each agent's breaker.
    log:
        Size of the event log (None: unbounded, 0: off).
    retain_finished:
        Remember each finished task's outcome (`outcome(task_id)`); simulators
        of millions of tasks switch it off.
    reject_unplaceable:
        Reject a task no known agent could ever run (when agents are known).
    """

    def __init__(
        self,
        policy: str | Policy = "fifo",
        *,
        agents: Iterable[Agent | tuple[Agent, RateLimit | None]] = (),
        seed: int = 0,
        max_retries: int = 2,
        admission: AdmissionConfig | None = None,
        breaker: BreakerConfig | None = None,
        log: int | None = 100_000,
        retain_finished: bool = True,
        reject_unplaceable: bool = True,
    ) -> None:
        self.policy = make_policy(policy)
        self.now = 0.0
        self.max_retries = max_retries
        self.admission = AdmissionController(admission)
        self.breaker_config = breaker or BreakerConfig()
        self.log = EventLog(log)
        self.metrics = OnlineMetrics()
        self.retain_finished = retain_finished
        self.reject_unplaceable = reject_unplaceable
        self.tasks: dict[str, TaskState] = {}
        self.finished: dict[str, tuple[str, str, str]] = {}
        self.agents: dict[str, AgentState] = {}
        self._rng = random.Random(seed)
        self._clock = _CoreClock(self)
        self._pools: dict[Signature, Pool] = {}
        self._dirty: dict[str, AgentState] = {}
        self._hungry: dict[str, AgentState] = {}
        #: Agents that may have queued tasks (steal victims); pruned lazily.
        self._loaded: dict[str, AgentState] = {}
        self._timers: list[tuple[float, int, int, Any, int]] = []
        self._timer_seq = itertools.count()
        self._requested = math.inf
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._out: list[Instruction] = []
        self._cause = 0
        self._queued_by_class = [0, 0, 0, 0]
        self._closing = False
        self._avers = 0
        self._cands: dict[Signature, tuple[int, list[AgentState]]] = {}
        self._rr = 0
        self._stealing = self.policy.stealing
        self._overflow = self.policy.steal.overflow_wait
        self._handlers: dict[type, Any] = {
            TaskSubmitted: self._on_submitted, TaskCompleted: self._on_completed,
            TaskFailed: self._on_task_failed, TaskStarted: self._on_started,
            TaskCancelled: self._on_cancelled, AgentJoined: self._on_joined,
            AgentLeft: self._on_left, AgentFailed: self._on_agent_failed, Tick: self._on_tick,
            PlanInstalled: self._on_plan, Shutdown: self._on_shutdown,
        }
        initial: list[Event] = []
        for a in agents:
            spec, limit = a if isinstance(a, tuple) else (a, None)
            initial.append(AgentJoined(agent=spec, rate_limit=limit))
        if initial:
            self.handle(*initial)

    # ------------------------------------------------------------------ entry point

    def handle(self, *events: Event) -> list[Instruction]:
        """Apply events in order; return the instructions they produced."""
        out: list[Instruction] = []
        self._out = out
        log = self.log.enabled
        for ev in events:
            ev.id = next(self._ids)
            if ev.time > self.now:
                self.now = ev.time
            else:
                ev.time = self.now
            self._cause = ev.id
            self.metrics.events += 1
            if log:
                self.log.add(ev)
            handler = self._handlers.get(type(ev))
            if handler is None:
                raise InvalidInputError(f"unknown event type {type(ev).__name__}", field="event")
            handler(ev)
            self._pump()
        return out

    def _emit(self, ins: Instruction) -> None:
        ins.id = next(self._ids)
        ins.time = self.now
        ins.cause = self._cause
        self._out.append(ins)
        if self.log.enabled:
            self.log.add(ins)

    # ------------------------------------------------------------------ queries

    def outcome(self, task_id: str) -> tuple[str, str, str] | None:
        """(kind, code, reason) of a finished task, None while it is live or unknown."""
        return self.finished.get(task_id)

    def phase(self, task_id: str) -> str:
        t = self.tasks.get(task_id)
        if t is not None:
            return PHASE_NAMES[t.phase]
        return "done" if task_id in self.finished else "unknown"

    def history(self, task_id: str) -> str:
        """The logged events and instructions about one task, one per line."""
        return self.log.format_history(task_id)

    def queued(self) -> int:
        return sum(1 for t in self.tasks.values() if t.phase == QUEUED)

    def live(self) -> int:
        return len(self.tasks)

    def loads(self) -> dict[str, float]:
        """Estimated remaining time per up agent."""
        return {a.id: a.load(self.now) for a in self.agents.values()
                if a.status is AgentStatus.UP}

    # ------------------------------------------------------------------ plans and snapshots

    def install(self, plan: Plan, *, time: float | None = None) -> list[Instruction]:
        """Install a solver's plan (shorthand for `handle(PlanInstalled(...))`)."""
        return self.handle(PlanInstalled(plan=plan, time=self.now if time is None else time))

    def snapshot(self, *, name: str | None = None, weights: Weights | None = None) -> Snapshot:
        """The current state as a Snapshot for the next solve.

        Agents carry their learned speeds. Queued tasks keep their agent as
        `current_agent` (so moving them counts as a migration); running tasks
        are pinned to their agent (`allowed_agents`) with their estimated
        remaining work, so the solver counts their load but cannot move them.
        Deferred tasks are not admitted yet and are left out.
        """
        now = self.now
        agents = [
            Agent(id=a.id, capacity=a.capacity, speed=max(a.speed, 1e-9),
                  concurrency=a.concurrency, skills=sorted(a.skills),
                  cost_rate=a.spec.cost_rate, status=a.status, labels=a.spec.labels)
            for a in self.agents.values()
        ]
        known = set(self.agents)
        resources = {r for a in self.agents.values() for r in a.capacity}
        tasks: list[Task] = []
        for t in self.tasks.values():
            if t.phase not in (QUEUED, RUNNING):
                continue
            spec = t.spec
            if any(r not in resources for r, _ in spec.demand):
                continue
            allowed = ([x for x in spec.allowed if x in known]
                       if spec.allowed is not None else None)
            current = t.where.id if t.where is not None else None
            work = t.est
            progress = 0.0
            if t.phase == RUNNING:
                assert t.agent is not None
                current = t.agent.id
                allowed = [current]
                done = (now - t.started) * t.agent.speed
                work = max(t.est - done, 0.0)
                progress = min(max(done / t.est, 0.0), 1.0) if t.est > 0 else 0.0
            deadline = spec.deadline if spec.deadline is not None and spec.deadline >= 0 else None
            tasks.append(Task(
                id=t.id, work=work, demand=dict(spec.demand), priority=spec.priority,
                deadline=deadline, hard_deadline=spec.hard_deadline and deadline is not None,
                skills=list(spec.skills), allowed_agents=allowed,
                forbidden_agents=[x for x in spec.forbidden if x in known],
                current_agent=current, progress=progress,
                migration_cost=spec.migration_cost or None, tenant=spec.tenant,
            ))
        return Snapshot(time=now, agents=agents, tasks=tasks,
                        weights=weights if weights is not None else Weights(),
                        name=name or f"executor@{now:.6g}")

    # ------------------------------------------------------------------ task events

    def _on_submitted(self, ev: TaskSubmitted) -> None:
        spec = ev.task
        if spec.id in self.tasks or spec.id in self.finished:
            raise InvalidInputError(f"duplicate task id {spec.id!r}", field="task.id")
        t = TaskState(spec, next(self._seq), self.now)
        self.tasks[spec.id] = t
        self.metrics.on_submit(t)
        if self._closing:
            self._end(t, Reject, Code.SHUTDOWN, "executor is shutting down")
            return
        self._admit(t)

    def _admit(self, t: TaskState) -> None:
        spec = t.spec
        adm = self.admission
        if adm.trivial and (spec.deadline is None or not spec.hard_deadline):
            # Fast path: no caps, no throttle, nothing to check for this task.
            t.phase = QUEUED
            self._queued_by_class[spec.priority.rank] += 1
            self._place(t, None)
            return
        ef = 0.0
        if spec.deadline is not None and adm.config.feasibility and (
                spec.hard_deadline or adm.config.defer_soft_infeasible):
            ef = self._earliest_finish(t)
        d = adm.decide(priority=spec.priority, deadline=spec.deadline, hard=spec.hard_deadline,
                       earliest_finish=ef, queued_in_class=self._queued_by_class[
                           spec.priority.rank], defers=t.defers, now=self.now)
        if d.action is Action.ACCEPT:
            t.phase = QUEUED
            t.enqueued = self.now
            self._queued_by_class[spec.priority.rank] += 1
            self._place(t, None)
        elif d.action is Action.DEFER:
            assert d.code is not None
            t.phase = DEFERRED
            t.timer_token += 1
            self.metrics.deferred += 1
            self._emit(Defer(task_id=t.id, until=d.until, code=d.code, reason=d.reason))
            self._timer(d.until, _T_DEFER, t, t.timer_token)
        else:
            assert d.code is not None
            self._end(t, Reject, d.code, d.reason)

    def _earliest_finish(self, t: TaskState) -> float:
        cands = self._candidates(t)
        if not cands:
            return 0.0  # nobody to ask yet: do not reject on a guess
        now = self.now
        best = min(a.load(now) + t.est / a.speed for a in cands)
        if self.policy.placement == "global":
            pool = self._pools.get(t.sig)
            if pool is not None and len(pool.queue):
                speed = sum(a.speed * a.concurrency for a in cands)
                best += pool.queue.work / speed
        return now + best

    def _on_started(self, ev: TaskStarted) -> None:
        t = self.tasks.get(ev.task_id)
        if t is not None and t.phase == RUNNING and t.attempt == ev.attempt:
            t.started = self.now

    def _current(self, task_id: str, agent: str, attempt: int) -> TaskState | None:
        t = self.tasks.get(task_id)
        if (t is None or t.phase != RUNNING or t.attempt != attempt or t.agent is None
                or t.agent.id != agent):
            self.metrics.stale += 1
            return None
        return t

    def _on_completed(self, ev: TaskCompleted) -> None:
        t = self._current(ev.task_id, ev.agent, ev.attempt)
        if t is None:
            return
        a = t.agent
        assert a is not None
        dur = self.now - t.started if ev.duration is None else ev.duration
        self._release(t, a)
        if dur > 0 and t.est > 0:
            # Observed speed (estimated work over run time) moves the agent's estimate.
            a.speed += EWMA_ALPHA * (t.est / dur - a.speed)
            if t.served_by is not None:
                t.served_by.charge(t, dur * a.speed - t.est)
        if ev.usage:
            used = ev.usage.get("tokens")
            if used is not None:
                a.tokens_used += used
                if a.limiter is not None:
                    a.limiter.settle(t.tokens_est, used, self.now)
                self.metrics.learn_tokens(t.spec, used)
        a.breaker.record_success(probe=t.probe)
        self._breaker_moves(a)
        self._end(t, Complete, None, "", agent=a)

    def _on_task_failed(self, ev: TaskFailed) -> None:
        t = self._current(ev.task_id, ev.agent, ev.attempt)
        if t is None:
            return
        a = t.agent
        assert a is not None
        self._release(t, a)
        a.breaker.record_failure(ev.reason, probe=t.probe)
        self._breaker_moves(a)
        self._retry_or_fail(t, ev.reason, ev.retryable, avoid=a.id)

    def _on_cancelled(self, ev: TaskCancelled) -> None:
        t = self.tasks.get(ev.task_id)
        if t is None:
            return
        if t.phase == RUNNING:
            a = t.agent
            assert a is not None
            self._emit(Cancel(task_id=t.id, agent=a.id, attempt=t.attempt, reason=ev.reason))
            self._release(t, a)
        self._end(t, Fail, Code.CANCELLED, ev.reason)

    def _retry_or_fail(self, t: TaskState, reason: str, retryable: bool,
                       avoid: str | None, code: Code = Code.RETRIES_EXHAUSTED) -> None:
        """Queue another attempt, or end the task when it may not retry (code: why)."""
        limit = self.max_retries if t.spec.max_retries is None else t.spec.max_retries
        if not retryable:
            self._end(t, Fail, Code.NOT_RETRYABLE, reason)
        elif t.attempt > limit:
            self._end(t, Fail, code, f"{t.attempt} attempt(s) failed; last: {reason}")
        else:
            self.metrics.retries += 1
            self._emit(Retry(task_id=t.id, attempt=t.attempt + 1, reason=reason))
            t.phase = QUEUED
            self._queued_by_class[t.spec.priority.rank] += 1
            self._place(t, avoid)

    # ------------------------------------------------------------------ placement

    def _pool(self, t: TaskState) -> Pool:
        pool = self._pools.get(t.sig)
        if pool is None:
            pool = self._pools[t.sig] = Pool(t.sig, t.spec, self.policy.new_queue())
            for a in self.agents.values():
                if eligible(a, t.spec):
                    pool.members.append(a)
                    a.pools.append(pool)
        return pool

    def _candidates(self, t: TaskState) -> list[AgentState]:
        """Up agents with a closed breaker that can run the task (cached per signature)."""
        hit = self._cands.get(t.sig)
        if hit is not None and hit[0] == self._avers:
            return hit[1]
        cands = [a for a in self._pool(t).members
                 if a.status is AgentStatus.UP and a.breaker.state is BreakerState.CLOSED]
        self._cands[t.sig] = (self._avers, cands)
        return cands

    def _choose(self, t: TaskState, avoid: str | None) -> AgentState | None:
        """The agent whose deque takes the task, or None for the global pool."""
        placement = self.policy.placement
        if placement == "global":
            return None
        if placement == "home":
            home = self.agents.get(t.spec.home) if t.spec.home is not None else None
            if (home is not None and home.id != avoid and home.status is AgentStatus.UP
                    and home.breaker.state is BreakerState.CLOSED and eligible(home, t.spec)
                    and len(home.queue) < self.policy.steal.deque_cap
                    and (self._overflow == math.inf or home.load(self.now) <= self._overflow)):
                return home
            return None
        cands = self._candidates(t)
        if avoid is not None and len(cands) > 1:
            cands = [a for a in cands if a.id != avoid]
        if not cands:
            return None
        n = len(cands)
        if placement == "round_robin":
            a = cands[self._rr % n]
            self._rr += 1
            return a
        if placement == "random":
            return cands[self._rng.randrange(n)]
        if placement == "jsq":
            return min(cands, key=AgentState.count)
        # p2c
        if n == 1:
            return cands[0]
        i, j = self._rng.sample(range(n), 2)
        a, b = cands[i], cands[j]
        return a if a.count() <= b.count() else b

    def _place(self, t: TaskState, avoid: str | None) -> AgentState | None:
        target = self._choose(t, avoid)
        if target is not None:
            t.where = target
            target.queue.push(t, self.now)
            self._loaded[target.id] = target
            if len(target.running) < target.concurrency:
                self._dirty[target.id] = target
            elif self._stealing and self._hungry:
                self._wake_thief(t, target)
            return target
        pool = self._pool(t)
        if not pool.members and self.reject_unplaceable and self.agents:
            self._end(t, Reject, Code.NO_ELIGIBLE_AGENT,
                      "no known agent has the skills, permissions and capacity for this task")
            return None
        t.where = None
        pool.queue.push(t, self.now)
        for h in self._hungry.values():
            if pool in h.pools:
                self._dirty[h.id] = h
                break
        return None

    def _wake_thief(self, t: TaskState, victim: AgentState) -> None:
        now = self.now
        for h in self._hungry.values():
            if h is not victim and h.backoff_until <= now and eligible(h, t.spec):
                self._dirty[h.id] = h
                return

    # ------------------------------------------------------------------ dispatch

    def _fill(self, a: AgentState) -> None:
        if a.status is not AgentStatus.UP:
            self._hungry.pop(a.id, None)
            return
        br = a.breaker
        now = self.now
        while len(a.running) < a.concurrency:
            if br.state is not BreakerState.CLOSED:
                allowed = br.allow()
                self._breaker_moves(a)
                if not allowed:
                    break
            src: Any = None
            t: TaskState | None = None
            if len(a.planned):
                src = a.planned
                t = src.peek(now)
            elif len(a.queue):
                src = a.queue
                t = src.peek(now)
            else:
                best = None
                for pool in a.pools:
                    q = pool.queue
                    if len(q):
                        k = q.peek_key(now)
                        if k is not None and (best is None or k < best):
                            best, src = k, q
                if src is not None:
                    t = src.peek(now)
            if t is None:
                if self._stealing and self._steal(a):
                    continue
                self._hungry[a.id] = a
                return
            spec = t.spec
            if spec.hard_deadline and spec.deadline is not None and (
                    now + t.est / a.speed > spec.deadline + 1e-9):
                src.take(t, now)
                self._end(t, Fail, Code.DEADLINE_EXPIRED,
                          f"cannot finish by its hard deadline t={spec.deadline:.4g} "
                          f"(now t={now:.4g}, needs {t.est / a.speed:.4g})")
                continue
            if spec.demand and not self._fits(a, spec):
                break
            if a.limiter is not None:
                ready = a.limiter.ready_at(t.tokens_est, now)
                if ready > now:
                    self._timer(ready, _T_WAKE, a, 0)
                    break
            src.take(t, now)
            self._dispatch(t, a, src)
        self._hungry.pop(a.id, None)

    def _fits(self, a: AgentState, spec: TaskSpec) -> bool:
        for r, d in spec.demand:
            if a.used.get(r, 0.0) + d > a.capacity.get(r, 0.0) * (1 + CAPACITY_RTOL):
                return False
        return True

    def _dispatch(self, t: TaskState, a: AgentState, src: Any) -> None:
        now = self.now
        t.phase = RUNNING
        t.where = None
        t.agent = a
        t.attempt += 1
        t.started = now
        t.served_by = src
        self._queued_by_class[t.spec.priority.rank] -= 1
        if t.first_start < 0:
            t.first_start = now
            wait = now - t.submitted
            self.metrics.waits.append(wait)
            self.admission.observe_wait(wait, now)
        a.running[t.id] = t
        for r, d in t.spec.demand:
            a.used[r] = a.used.get(r, 0.0) + d
        if a.limiter is not None:
            t.tokens_est = self.metrics.token_estimate(t.spec)
            a.limiter.take(t.tokens_est, now)
        t.probe = a.breaker.acquire() if a.breaker.state is not BreakerState.CLOSED else False
        self.metrics.dispatches += 1
        self._emit(Dispatch(task_id=t.id, agent=a.id, attempt=t.attempt, work=t.est))
        if t.spec.timeout is not None:
            self._timer(now + t.spec.timeout, _T_TIMEOUT, t, t.attempt)

    def _release(self, t: TaskState, a: AgentState) -> None:
        del a.running[t.id]
        a.busy += self.now - t.started
        for r, d in t.spec.demand:
            a.used[r] -= d
        t.agent = None
        if a.status is AgentStatus.DRAINING and not a.running:
            self._set_down(a)
        else:
            self._dirty[a.id] = a

    # ------------------------------------------------------------------ stealing

    def _steal(self, thief: AgentState) -> bool:
        """Move queued tasks from the most loaded agents to `thief`; True if any moved."""
        cfg = self.policy.steal
        now = self.now
        if now < thief.backoff_until:
            return False
        need = cfg.min_victim_queue
        victims: list[AgentState] = []
        loaded = self._loaded
        for v in list(loaded.values()):
            n = len(v.queue) + len(v.planned)
            if n == 0 or v.status is not AgentStatus.UP:
                del loaded[v.id]  # pruned lazily; re-added on the next push
            elif v is not thief and n >= need:
                victims.append(v)
        if not victims:
            return False  # nothing queued anywhere: wait to be woken by an arrival
        self.metrics.steal_attempts += 1
        loads = {v.id: v.load(now) for v in victims}
        victims = heapq.nsmallest(cfg.victims, victims, key=lambda v: (-loads[v.id], v.index))
        thief_fin = thief.load(now)
        stolen = 0
        for v in victims:
            n = len(v.queue) + len(v.planned)
            limit = min(cfg.max_batch, max(1, n // 2))  # steal-half
            cands = v.queue.back(limit)
            if len(cands) < limit:
                cands += v.planned.back(limit - len(cands))
            v_fin = loads[v.id]
            for t in cands:
                spec = t.spec
                mc = spec.migration_cost
                run_v = t.est / v.speed + (mc if spec.home is not None and v.id != spec.home
                                           else 0.0)
                if t.steals < cfg.max_steals_per_task and eligible(thief, spec):
                    run_t = t.est / thief.speed + (
                        mc if spec.home is not None and thief.id != spec.home else 0.0)
                    if thief_fin + run_t * (1 + cfg.margin_frac) + cfg.latency < v_fin:
                        t.queue.remove(t)
                        t.steals += 1
                        t.where = thief
                        thief.queue.push(t, now)
                        self._loaded[thief.id] = thief
                        self._emit(Steal(task_id=t.id, victim=v.id, thief=thief.id))
                        thief_fin += run_t / thief.concurrency
                        stolen += 1
                v_fin -= run_v / v.concurrency
            if stolen:
                break
        if stolen:
            self.metrics.steals += stolen
            thief.steal_fails = 0
            return True
        self.metrics.failed_steals += 1
        thief.steal_fails += 1
        # Exponent capped: 2**1024 overflows a float after long idle stretches.
        back = min(cfg.backoff * 2.0 ** min(thief.steal_fails - 1, 60), cfg.max_backoff)
        thief.backoff_until = now + back
        self._timer(thief.backoff_until, _T_WAKE, thief, 0)
        return False

    # ------------------------------------------------------------------ agents

    def _on_joined(self, ev: AgentJoined) -> None:
        spec = ev.agent
        a = self.agents.get(spec.id)
        now = self.now
        if a is None:
            br = CircuitBreaker(spec.id, self.breaker_config, clock=self._clock)
            lim = AgentLimiter(ev.rate_limit, now) if ev.rate_limit is not None else None
            a = AgentState(spec, len(self.agents), self.policy.new_queue(), br, lim, now)
            self.agents[spec.id] = a
        else:
            if a.status is not AgentStatus.DOWN:
                self._evacuate(a, Code.AGENT_LEFT)  # re-registration: requeue what it held
                for t in list(a.running.values()):
                    self._release(t, a)
                    self._retry_or_fail(t, f"agent {a.id} re-registered", True, avoid=None)
                self._account_uptime(a)
            a.update(spec)
            a.breaker = CircuitBreaker(spec.id, self.breaker_config, clock=self._clock)
            if ev.rate_limit is not None:
                a.limiter = AgentLimiter(ev.rate_limit, now)
            for pool in a.pools:
                pool.members.remove(a)
        a.pools = []
        for pool in self._pools.values():
            if eligible(a, pool.spec):
                pool.members.append(a)
                a.pools.append(pool)
        a.status = spec.status
        a.up_since = now
        a.steal_fails = 0
        a.backoff_until = 0.0
        self._avers += 1
        if a.status is AgentStatus.UP:
            self._dirty[a.id] = a
        elif a.status is AgentStatus.DOWN:
            self._hungry.pop(a.id, None)

    def _account_uptime(self, a: AgentState) -> None:
        a.uptime += self.now - a.up_since
        a.up_since = self.now

    def _set_down(self, a: AgentState) -> None:
        self._account_uptime(a)
        a.status = AgentStatus.DOWN
        self._avers += 1
        self._hungry.pop(a.id, None)
        self._dirty.pop(a.id, None)

    def _on_left(self, ev: AgentLeft) -> None:
        a = self.agents.get(ev.agent_id)
        if a is None or a.status is AgentStatus.DOWN:
            self.metrics.stale += 1
            return
        a.status = AgentStatus.DRAINING
        self._avers += 1
        self._hungry.pop(a.id, None)
        self._evacuate(a, Code.AGENT_LEFT)
        if not a.running:
            self._set_down(a)

    def _on_agent_failed(self, ev: AgentFailed) -> None:
        a = self.agents.get(ev.agent_id)
        if a is None or a.status is AgentStatus.DOWN:
            self.metrics.stale += 1
            return
        running = list(a.running.values())
        self._set_down(a)
        # The agent's breaker opens too, so drivers and metrics see the failure
        # the same way as a run of failed calls; a re-join starts a fresh one.
        a.breaker.trip(f"agent failed: {ev.reason}")
        self._breaker_moves(a)
        for t in running:
            del a.running[t.id]
            a.busy += self.now - t.started
            for r, d in t.spec.demand:
                a.used[r] -= d
            t.agent = None
            self._retry_or_fail(t, f"agent {a.id} failed mid-task: {ev.reason}", True,
                                avoid=a.id, code=Code.AGENT_FAILED)
        self._evacuate(a, Code.AGENT_FAILED)

    def _evacuate(self, a: AgentState, code: Code) -> None:
        """Re-place every task queued at `a` (it went down, left or its breaker opened)."""
        moving = list(a.planned) + list(a.queue)
        for t in moving:
            t.queue.remove(t)
        self._avers += 1
        for t in moving:
            target = self._place(t, a.id)
            if t.phase == QUEUED:
                self.metrics.requeued += 1
                self._emit(Migrate(task_id=t.id, source=a.id,
                                   target=target.id if target is not None else "global",
                                   code=code))

    def _breaker_moves(self, a: AgentState) -> None:
        br = a.breaker
        if br._reported == len(br.transitions):
            return
        for tr in br.new_transitions():
            self._avers += 1
            if tr.target is BreakerState.OPEN:
                until = br.open_until if br.open_until is not None else self.now
                self.metrics.breaker_opens += 1
                self._emit(BreakerOpened(agent=a.id, reason=tr.reason, until=until))
                self._timer(until, _T_BREAKER, a, 0)
                self._evacuate(a, Code.BREAKER_OPEN)
            elif tr.target is BreakerState.HALF_OPEN:
                self._emit(BreakerHalfOpen(agent=a.id))
                self._dirty[a.id] = a
            else:
                self._emit(BreakerClosed(agent=a.id))
                self._dirty[a.id] = a

    # ------------------------------------------------------------------ plans, ticks, end

    def _on_plan(self, ev: PlanInstalled) -> None:
        moved = skipped = 0
        for asg in sorted(ev.plan.assignments, key=lambda x: (x.start, x.agent, x.task)):
            t = self.tasks.get(asg.task)
            a = self.agents.get(asg.agent)
            if (t is None or t.phase != QUEUED or a is None or a.status is not AgentStatus.UP
                    or not eligible(a, t.spec)):
                skipped += 1
                continue
            src = t.where
            t.queue.remove(t)
            t.where = a
            a.planned.push_key(t, asg.start)
            self._loaded[a.id] = a
            self._dirty[a.id] = a
            if src is not a:
                moved += 1
                self._emit(Migrate(task_id=t.id, source=src.id if src else "global",
                                   target=a.id, code=Code.PLAN))
        self.metrics.migrations += moved
        self.metrics.plans += 1
        self.metrics.plan_skipped += skipped

    def _on_tick(self, ev: Tick) -> None:
        return None

    def _on_shutdown(self, ev: Shutdown) -> None:
        self._closing = True
        if ev.drain and not ev.cancel_running:
            return
        for t in list(self.tasks.values()):
            if t.phase in (QUEUED, DEFERRED, SUBMITTED) and not ev.drain:
                self._end(t, Reject, Code.SHUTDOWN, "executor shut down; returned unrun")
            elif t.phase == RUNNING and ev.cancel_running:
                a = t.agent
                assert a is not None
                self._emit(Cancel(task_id=t.id, agent=a.id, attempt=t.attempt,
                                  reason="shutdown"))
                self._release(t, a)
                self._end(t, Fail, Code.CANCELLED, "cancelled at shutdown")

    def _end(self, t: TaskState, kind: type[Instruction], code: Code | None, reason: str,
             agent: AgentState | None = None) -> None:
        if t.phase == DONE:  # pragma: no cover - invariant guard
            raise RuntimeError(f"task {t.id} ended twice")
        if t.phase == QUEUED:
            if t.queue is not None:
                t.queue.remove(t)
            self._queued_by_class[t.spec.priority.rank] -= 1
        t.phase = DONE
        if kind is Complete:
            assert agent is not None
            self._emit(Complete(task_id=t.id, agent=agent.id, attempt=t.attempt))
        elif kind is Reject:
            assert code is not None
            self._emit(Reject(task_id=t.id, code=code, reason=reason))
        else:
            assert code is not None
            self._emit(Fail(task_id=t.id, code=code, reason=reason))
        self.metrics.on_end(t, kind.__name__, code, self.now)
        del self.tasks[t.id]
        if self.retain_finished:
            self.finished[t.id] = (kind.__name__.lower(), code.value if code else "", reason)

    # ------------------------------------------------------------------ timers

    def _timer(self, at: float, kind: int, ref: Any, token: int) -> None:
        heapq.heappush(self._timers, (at, next(self._timer_seq), kind, ref, token))

    def _pump(self) -> None:
        timers = self._timers
        now = self.now
        while True:
            while timers and timers[0][0] <= now:
                _, _, kind, ref, token = heapq.heappop(timers)
                if kind == _T_DEFER:
                    if ref.phase == DEFERRED and ref.timer_token == token:
                        ref.defers += 1
                        self._admit(ref)
                elif kind == _T_TIMEOUT:
                    if ref.phase == RUNNING and ref.attempt == token:
                        self._timeout(ref)
                elif kind == _T_BREAKER:
                    _ = ref.breaker.state
                    self._breaker_moves(ref)
                    self._dirty[ref.id] = ref
                elif ref.status is AgentStatus.UP:
                    self._dirty[ref.id] = ref
            if not self._dirty:
                break
            while self._dirty:
                _, a = self._dirty.popitem()
                self._fill(a)
        if timers:
            nxt = timers[0][0]
            if nxt < self._requested or self._requested <= now:
                self._requested = nxt
                self._emit(SetTimer(at=nxt))

    def _timeout(self, t: TaskState) -> None:
        a = t.agent
        assert a is not None
        limit = t.spec.timeout
        self._emit(Cancel(task_id=t.id, agent=a.id, attempt=t.attempt,
                          reason=f"timed out after {limit}"))
        self._release(t, a)
        a.breaker.record_failure("timeout", probe=t.probe)
        self._breaker_moves(a)
        self._retry_or_fail(t, f"no result within {limit}", True, avoid=a.id,
                            code=Code.TIMEOUT)
