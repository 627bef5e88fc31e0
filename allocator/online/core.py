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
import math
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from allocator.errors import InvalidInputError
from allocator.online.admission import Action, AdmissionConfig, AdmissionController, Decision
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
    TaskReturned,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    Tick,
    complete,
    completed,
    submitted,
)
from allocator.online.log import EventLog
from allocator.online.metrics import OnlineMetrics
from allocator.online.placement import PLACEMENTS, place_home
from allocator.online.policies import Policy, make_policy
from allocator.online.queues import (
    COMPACT_AFTER,
    FifoQueue,
    PlanQueue,
    SortedQueue,
    TaskQueue,
)
from allocator.online.ratelimit import AgentLimiter
from allocator.online.state import (
    DEFERRED,
    DONE,
    EWMA_ALPHA,
    PHASE_NAMES,
    QUEUED,
    RUNNING,
    SUBMITTED,
    AgentState,
    Pool,
    Signature,
    TaskState,
    eligible,
)
from allocator.online.stealing import plan_probe, steal_moves, victims_of
from allocator.problem import capacity_limit
from models import Agent, AgentStatus, Plan, Snapshot, Task, Weights

# Enum members as module constants: `Enum.MEMBER` is a slow class-attribute lookup
# and these are compared on every event.
_UP: Final = AgentStatus.UP
_DOWN: Final = AgentStatus.DOWN
_DRAINING: Final = AgentStatus.DRAINING
_CLOSED: Final = BreakerState.CLOSED
_OPEN: Final = BreakerState.OPEN
_HALF_OPEN: Final = BreakerState.HALF_OPEN

_NAN: Final = math.nan
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop

# Timer kinds.
_T_DEFER: Final = 0
_T_TIMEOUT: Final = 1
_T_BREAKER: Final = 2
_T_WAKE: Final = 3
_T_EXPIRE: Final = 4


#: Admission lists a queue's order and schedules it slot by slot up to this many
#: tasks; past it, it spreads the queued work over the slots (O(1) for EDF).
_LIST_LIMIT: Final = 256


def _lane_free_at(a: AgentState, now: float) -> float:
    """When agent `a` next has a free lane: now, or the earliest estimated end of its
    running tasks (never before now)."""
    if len(a.running) < a.concurrency:
        return now
    speed = a.speed
    first = math.inf
    for r in a.running.values():
        x = r.started + r.est / speed
        if x < first:
            first = x
    return now if first < now else first


def _hard_prefix(q: TaskQueue) -> Iterable[tuple[TaskState, float]]:
    """The hard-deadline tasks of `q` in its order, each with the work queued before it."""
    before = 0.0
    for x in q:
        if x.hard:
            yield x, before
        before += x.est


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
    expire_waiting:
        Fail a task with a hard deadline that is still queued when its deadline
        passes (else it fails only once an agent reaches it: never, when no agent
        can serve it and unplaceable tasks wait, as in the live service).
    breaker_counts_last_failure:
        False: the failure that ends a task for good (its last retry, after earlier
        failed attempts) counts neither way on the agent's breaker: the task is then
        the likely fault (the live service; the simulator keeps its pinned runs).
    weights:
        The objective weights the run's `weighted_objective` is measured with
        (cost, tardiness, migrations; see allocator.online.metrics.online_objective):
        the same terms as a Plan's, so online and planned runs compare on one scale.
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
        expire_waiting: bool = False,
        breaker_counts_last_failure: bool = True,
        weights: Weights | None = None,
    ) -> None:
        self.policy = make_policy(policy)
        self.weights = weights if weights is not None else Weights()
        self.now = 0.0
        self.max_retries = max_retries
        self.admission = AdmissionController(admission, backlog=self._backlog_delay)
        self.breaker_config = breaker or BreakerConfig()
        self.log = EventLog(log)
        #: `log.enabled` (fixed at construction), read on every instruction.
        self._log_on = self.log.enabled
        self.metrics = OnlineMetrics()
        #: The ledger: a finished attempt adds one row.
        self._ledger = self.metrics.ledger
        self.retain_finished = retain_finished
        self.reject_unplaceable = reject_unplaceable
        self.expire_waiting = expire_waiting
        self.breaker_counts_last_failure = breaker_counts_last_failure
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
        #: The next timer's tie-break number.
        self._next_timer = 0
        self._requested = math.inf
        #: The next event or instruction id, and the next task's submission number
        #: (ints a compiled build counts natively; `next()` on a count is a generic call).
        self._next_id = 1
        self._next_seq = 0
        self._out: list[Instruction] = []
        self._cause = 0
        self._queued_by_class = [0, 0, 0, 0]
        self._closing = False
        #: Admitting the second or a later task of a run of submissions at one
        #: instant (class caps are applied after the run: `_trim_caps`).
        self._in_run = False
        #: Pools whose push found its idle agent already woken (see `_place`).
        self._unwoken: list[Pool] = []
        self._avers = 0
        self._cands: dict[Signature, tuple[int, list[AgentState]]] = {}
        self._rr = 0
        self._stealing = self.policy.stealing
        # The stealing parameters read on every steal attempt, as the core's own fields.
        steal = self.policy.steal
        self._st_min_queue = steal.min_victim_queue
        self._st_latency = steal.latency
        self._st_backoff = steal.backoff
        self._st_max_backoff = steal.max_backoff
        self._st_victims = steal.victims
        self._st_max_steals = steal.max_steals_per_task
        self._st_max_batch = steal.max_batch
        self._st_margin_frac = steal.margin_frac
        self._st_margin_max = steal.margin_max
        self._st_deque_cap = steal.deque_cap
        self._st_overflow_wait = steal.overflow_wait
        #: One virtual time per flow and per class for all queues (fairness across queues).
        self._fair = self.policy.fair_clock()
        self._placer = PLACEMENTS[self.policy.placement]
        self._at_home = self.policy.placement == "home"
        self._push_placement = self.policy.placement != "global"
        #: Agents take work from the global pools (off in batch mode: plans only).
        self._pull = self.policy.pull
        #: Agents whose breaker is half-open: placements route probes to them.
        self._halfopen: dict[str, AgentState] = {}
        self._throttle = self.admission.config.throttle
        #: `admission.trivial` without its property call: the configuration part is
        #: fixed, the shed level is read per task.
        cfg = self.admission.config
        self._adm_static = not (cfg.class_caps or cfg.throttle or cfg.defer_soft_infeasible)
        #: Queues serve by deadline or class, not arrival: admission counts only the
        #: work served before a new task, and checks the hard tasks it would delay.
        self._ordered = self.policy.discipline in ("edf", "priority", "priority_wfq")
        self._fair_across = self._push_placement and self.policy.discipline in (
            "wfq", "cfs", "priority")
        self._handlers: dict[type, Any] = {
            TaskSubmitted: self._on_submitted, TaskCompleted: self._on_completed,
            TaskFailed: self._on_task_failed, TaskStarted: self._on_started,
            TaskCancelled: self._on_cancelled, AgentJoined: self._on_joined,
            TaskReturned: self._on_returned,
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
        """Apply events in order; return the instructions they produced.

        A run of consecutive submissions at one instant (each one's time not
        after the first's) is applied whole before anything is dispatched:
        the policy then picks among all of them (see `_settle_batch`).
        """
        out: list[Instruction] = []
        self._out = out
        log = self.log.add if self._log_on else None
        handlers = self._handlers
        dirty = self._dirty
        timers = self._timers
        self.metrics.events += len(events)
        now = self.now
        n = len(events)
        run: list[TaskState] | None = None  # the open run of same-instant submissions
        i = 0
        while i < n:
            ev = events[i]
            i += 1
            typ = type(ev)
            if (typ is TaskSubmitted and run is None and i < n
                    and type(events[i]) is TaskSubmitted and events[i].time <= max(ev.time, now)):
                self._check_run(events, i - 1)  # a duplicate id refuses the run whole
                run = []
            eid = self._next_id
            self._next_id = eid + 1
            ev.id = eid
            t = ev.time
            if t > now:
                self.now = now = t
            else:
                ev.time = now
            self._cause = eid
            if log is not None:
                log(ev)
            if typ is TaskCompleted:  # the commonest two without the table's wrappers
                self._complete(ev.task_id, ev.agent, ev.attempt,  # type: ignore[attr-defined]
                               ev.duration, ev.usage)  # type: ignore[attr-defined]
            elif typ is TaskSubmitted:
                if run is None:
                    self._submit(ev.task)  # type: ignore[attr-defined]
                else:
                    self._in_run = len(run) > 0
                    try:
                        run.append(self._submit(ev.task))  # type: ignore[attr-defined]
                    finally:
                        self._in_run = False
                    if i < n and type(events[i]) is TaskSubmitted and events[i].time <= now:
                        continue  # the run goes on: no dispatch yet
                    self._settle_batch(run)
                    run = None
                    continue
            else:
                handler = handlers.get(typ)
                if handler is None:
                    raise InvalidInputError(f"unknown event type {typ.__name__}",
                                            field="event")
                handler(ev)
            if dirty or timers:  # nothing due and nothing to fill: skip the pump
                self._settle()
        return out

    def _check_run(self, events: tuple[Event, ...], start: int) -> None:
        """Refuse a run of same-instant submissions with a known or repeated id before
        any of it is applied (half a run queued and undispatched would wait for the
        next event)."""
        seen: set[str] = set()
        tasks = self.tasks
        finished = self.finished
        now = max(events[start].time, self.now)
        j = start
        while j < len(events) and type(events[j]) is TaskSubmitted and events[j].time <= now:
            sid = events[j].task.id  # type: ignore[attr-defined]
            if sid in seen or sid in tasks or sid in finished:
                raise InvalidInputError(f"duplicate task id {sid!r}", field="task.id")
            seen.add(sid)
            j += 1

    def submit_many_at(self, specs: list[TaskSpec], time: float) -> list[Instruction]:
        """Submissions at one instant, applied whole before anything is dispatched.

        `handle` of their TaskSubmitted events (same ids, event count and
        decisions), without the event objects while the log is off: the
        simulator's arrivals at equal times, a runtime's `submit_many`. All of
        them are admitted and queued first, then the idle agents take what the
        policy picks among them (EDF the earliest deadline, priority the
        critical one), not the first one listed. A known or repeated id
        refuses the batch whole (InvalidInputError, nothing applied).
        """
        if len(specs) <= 1:
            return self.submit_at(specs[0], time) if specs else []
        if self._log_on:
            return self.handle(*[submitted(s, time) for s in specs])
        seen: set[str] = set()
        tasks = self.tasks
        finished = self.finished
        for s in specs:
            sid = s.id
            if sid in seen or sid in tasks or sid in finished:
                raise InvalidInputError(f"duplicate task id {sid!r}", field="task.id")
            seen.add(sid)
        out: list[Instruction] = []
        self._out = out
        self.metrics.events += len(specs)
        if time > self.now:
            self.now = time
        run: list[TaskState] = []
        try:
            for s in specs:
                cid = self._next_id
                self._next_id = cid + 1
                self._cause = cid
                run.append(self._submit(s))
                self._in_run = True
        finally:
            self._in_run = False
        self._settle_batch(run)
        return out

    def submit_at(self, spec: TaskSpec, time: float) -> list[Instruction]:
        """`handle(TaskSubmitted(task=spec, time=time))`, without the event object.

        A driver's hot path (the simulator's arrivals): the same ids, event
        count and decisions; the event is built only when the log keeps it.
        One call is one submission: tasks of one instant go together through
        `submit_many_at`.
        """
        if self._log_on:
            return self.handle(submitted(spec, time))
        out: list[Instruction] = []
        self._out = out
        self.metrics.events += 1
        cid = self._next_id
        self._next_id = cid + 1
        self._cause = cid
        if time > self.now:
            self.now = time
        self._submit(spec)
        # _settle() and _after_fill(), inlined: one agent to fill, no timer due.
        dirty = self._dirty
        timers = self._timers
        if dirty or timers:
            now = self.now
            if timers and timers[0][0] <= now:
                self._pump()  # a timer is due
            elif len(dirty) == 1:
                only = next(iter(dirty.values()))  # dirty.popitem()[1], without a method call
                dirty.clear()
                self._fill(only)
                if dirty:
                    self._pump()
                elif timers:
                    req = self._requested
                    if not (timers[0][0] >= req and req > now):
                        self._pump()  # the driver's timer is not set for the next one
            elif dirty:
                self._pump()
            else:
                # Nothing to fill and nothing due: what the pump would conclude,
                # unless the driver's timer must move (steal back-off timers are
                # pending most of the time, so this skips a pump per event).
                req = self._requested
                if not (timers[0][0] >= req and req > now):
                    self._pump()
        return out

    def complete_at(self, task_id: str, agent: str, attempt: int, time: float,
                    duration: float | None = None,
                    usage: dict[str, float] | None = None) -> list[Instruction]:
        """`handle(TaskCompleted(...))` with the same fields, without the event object."""
        if self._log_on:
            return self.handle(completed(task_id, agent, attempt, time, duration, usage))
        out: list[Instruction] = []
        self._out = out
        self.metrics.events += 1
        cid = self._next_id
        self._next_id = cid + 1
        self._cause = cid
        if time > self.now:
            self.now = time
        self._complete(task_id, agent, attempt, duration, usage)
        # _settle() and _after_fill(), inlined: one agent to fill, no timer due.
        dirty = self._dirty
        timers = self._timers
        if dirty or timers:
            now = self.now
            if timers and timers[0][0] <= now:
                self._pump()  # a timer is due
            elif len(dirty) == 1:
                only = next(iter(dirty.values()))  # dirty.popitem()[1], without a method call
                dirty.clear()
                self._fill(only)
                if dirty:
                    self._pump()
                elif timers:
                    req = self._requested
                    if not (timers[0][0] >= req and req > now):
                        self._pump()  # the driver's timer is not set for the next one
            elif dirty:
                self._pump()
            else:
                # Nothing to fill and nothing due: what the pump would conclude,
                # unless the driver's timer must move (steal back-off timers are
                # pending most of the time, so this skips a pump per event).
                req = self._requested
                if not (timers[0][0] >= req and req > now):
                    self._pump()
        return out

    def tick_at(self, time: float) -> list[Instruction]:
        """`handle(Tick(time=time))`, without the event object (the simulator's timers)."""
        if self._log_on:
            return self.handle(Tick(time=time))
        out: list[Instruction] = []
        self._out = out
        self.metrics.events += 1
        cid = self._next_id
        self._next_id = cid + 1
        self._cause = cid
        if time > self.now:
            self.now = time
        if self._dirty or self._timers:
            self._settle()
        return out

    def feed(self, items: Iterable[Any]) -> list[Instruction]:
        """`handle` for a driver's queue of events, the two common ones given compactly.

        An item is an Event, a submission `(time, spec)` or a completion
        `(time, task_id, agent, attempt, duration, usage)` (the fields of
        `TaskCompleted`). Same ids, event count and decisions as `handle` over
        the equivalent events, in one call and without building the event
        objects while the log is off (the runtime posts one item per task
        twice, so the objects were most of its event traffic); consecutive
        submissions at one instant are one run, as there.
        """
        if self._log_on:
            return self.handle(*[self._as_event(x) for x in items])
        out: list[Instruction] = []
        self._out = out
        dirty = self._dirty
        timers = self._timers
        submit = self._submit
        complete = self._complete
        fill = self._fill
        pump = self._pump
        tup = tuple
        n = 0  # events counted here (handle counts its own)
        # A submission is settled when the next item is not a submission at its
        # instant (or at the end): a run of them settles once (`_settle_batch`),
        # as in `handle`. `held`: the last submission, not settled yet; `run`:
        # the run so far once it has two.
        held: TaskState | None = None
        run: list[TaskState] | None = None
        try:
            for x in items:
                if type(x) is tup:
                    n += 1
                    t = x[0]
                    if held is not None:
                        if len(x) == 2 and t <= self.now:
                            cid = self._next_id
                            self._next_id = cid + 1
                            self._cause = cid
                            if run is None:
                                run = [held]
                            self._in_run = True
                            try:
                                held = submit(x[1])
                            finally:
                                self._in_run = False
                            run.append(held)
                            continue
                        self._end_run(run)
                        held = run = None
                    cid = self._next_id
                    self._next_id = cid + 1
                    self._cause = cid
                    if t > self.now:
                        self.now = t
                    if len(x) == 2:
                        held = submit(x[1])
                        continue
                    complete(x[1], x[2], x[3], x[4], x[5])
                    if dirty or timers:
                        # _settle() and _after_fill(), inlined (see complete_at).
                        now = self.now
                        if timers and timers[0][0] <= now:
                            pump()
                        elif len(dirty) == 1:
                            fill(dirty.popitem()[1])
                            if dirty:
                                pump()
                            elif timers:
                                req = self._requested
                                if not (timers[0][0] >= req and req > now):
                                    pump()
                        elif dirty:
                            pump()
                        else:
                            req = self._requested
                            if not (timers[0][0] >= req and req > now):
                                pump()
                else:  # (its list is appended to ours)
                    if held is not None:
                        if type(x) is TaskSubmitted and x.time <= self.now:
                            # An event object in a run of submissions: one of the run.
                            n += 1
                            x.id = cid = self._next_id
                            self._next_id = cid + 1
                            self._cause = cid
                            x.time = self.now
                            if run is None:
                                run = [held]
                            self._in_run = True
                            try:
                                held = submit(x.task)
                            finally:
                                self._in_run = False
                            run.append(held)
                            continue
                        self._end_run(run)
                        held = run = None
                    out += self.handle(x)
                    self._out = out
            if held is not None:
                self._end_run(run)
        finally:
            self.metrics.events += n
        return out

    def _end_run(self, run: list[TaskState] | None) -> None:
        """Settle after `feed`'s last submission (`run`: the run it ended, if two or more)."""
        if run is not None:
            self._settle_batch(run)
        elif self._dirty or self._timers:
            self._settle()

    @staticmethod
    def _as_event(x: Any) -> Event:
        """The Event a `feed` item stands for."""
        if type(x) is not tuple:
            return x  # type: ignore[no-any-return]
        if len(x) == 2:
            return submitted(x[1], x[0])
        return completed(x[1], x[2], x[3], x[0], x[4], x[5])

    def _settle(self) -> None:
        """The pump after one event: due timers, then fill the dirty agents.

        One dirty agent and no timer due (the common case after a submission or
        a completion) is one fill, without the pump's loop.
        """
        dirty = self._dirty
        timers = self._timers
        if len(dirty) == 1 and (not timers or timers[0][0] > self.now) and not self._unwoken:
            self._fill(dirty.popitem()[1])
            if dirty or timers or self._unwoken:
                self._after_fill()
            return
        self._pump()

    def _after_fill(self) -> None:
        """`_settle` after its one fill left agents dirty or timers pending."""
        timers = self._timers
        if not self._dirty and not self._unwoken and timers:
            # Nothing due and the driver's timer already set: what the pump
            # would conclude (steal back-off timers are pending most of the time).
            now = self.now
            req = self._requested
            nxt = timers[0][0]
            if nxt > now and nxt >= req and req > now:
                return
        self._pump()

    def _dispatch_run(self, run: list[TaskState]) -> None:
        """Dispatch after a run of submissions at one instant (all of them queued).

        Dispatch decisions at an instant are taken once every event of the
        instant is in: the pump fills the agents the run woke, each taking
        what its discipline picks among everything queued. Then what one
        submission at a time would also have woken: every idle agent serving
        a global pool the run fed (a push wakes one), half-open ones first,
        and, for stealing policies, an idle thief for each task left behind a
        busy agent (a push to an agent still free at the time wakes none).
        """
        dirty = self._dirty
        timers = self._timers
        self._unwoken.clear()  # (the run's pools are served below, in order)
        # The agents the run woke, filled in the order they were woken (as one
        # submission at a time would have), after any timer due by now.
        woken = list(dirty.values())
        dirty.clear()
        if timers and timers[0][0] <= self.now:
            self._pump()
        for a in woken:
            self._fill(a)
        if dirty or timers:
            self._pump()
        hungry = self._hungry
        if not hungry:
            return
        pools: dict[Signature, Pool] | None = None
        behind = False
        for t in run:
            if t.phase == QUEUED:
                w = t.where
                if w is None:
                    if pools is None:
                        pools = {}
                    if t.sig not in pools:
                        pools[t.sig] = self._pools[t.sig]
                elif len(w.running) >= w.concurrency:
                    behind = True
        if pools is not None:
            self._serve_pools(list(pools.values()))
            if dirty or self._unwoken:
                self._pump()
        if behind and self._stealing and hungry:
            for t in run:
                w = t.where
                if t.phase == QUEUED and w is not None and len(w.running) >= w.concurrency:
                    self._wake_thief(t, w)
            if dirty:
                self._pump()

    def _serve_pools(self, pools: list[Pool]) -> None:
        """Fill every idle agent that serves one of `pools` while they hold work:
        half-open agents first, then in the order the agents went idle. (A push
        to a pool wakes one idle agent; several pushes at one instant, a burst,
        deferrals due together or an evacuation, woke the same one.)"""
        hungry = self._hungry
        halfopen = self._halfopen
        order = [h for h in halfopen.values() if h.id in hungry]
        order += [h for h in hungry.values() if h.id not in halfopen]
        for h in order:
            if h.id in hungry:
                for p in h.pools:
                    if p.queue.n and p in pools:
                        self._fill(h)
                        break

    def _settle_batch(self, run: list[TaskState]) -> None:
        """The pump after a run of submissions at one instant (all of them queued).

        Dispatch decisions at an instant are taken once every event of the
        instant is in (`_dispatch_run`); then class caps apply to what is
        still queued (`_trim_caps`).
        """
        self._dispatch_run(run)
        if self.admission.config.class_caps:
            self._trim_caps(run)
            if self._dirty or self._timers:
                self._pump()

    def _emit(self, ins: Instruction) -> None:
        ins.id = nid = self._next_id
        self._next_id = nid + 1
        ins.time = self.now
        ins.cause = self._cause
        self._out.append(ins)
        if self._log_on:
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

    def unplanned(self) -> int:
        """Queued tasks that no installed plan has placed (arrivals since the last plan)."""
        return sum(1 for t in self.tasks.values()
                   if t.phase == QUEUED and not isinstance(t.queue, PlanQueue))

    def live(self) -> int:
        return len(self.tasks)

    def loads(self) -> dict[str, float]:
        """Estimated remaining time per up agent."""
        return {a.id: a.load(self.now) for a in self.agents.values()
                if a.status is _UP}

    # ------------------------------------------------------------------ plans and snapshots

    def install(self, plan: Plan, *, time: float | None = None) -> list[Instruction]:
        """Install a solver's plan (shorthand for `handle(PlanInstalled(...))`)."""
        return self.handle(PlanInstalled(plan=plan, time=self.now if time is None else time))

    def snapshot(self, *, name: str | None = None, weights: Weights | None = None,
                 pack_queued: bool = False) -> Snapshot:
        """The current state as a Snapshot for the next solve.

        Agents carry their learned speeds. Queued tasks keep their agent (else
        their home) as `current_agent` (so moving them counts as a migration);
        running tasks are pinned to their agent (`allowed_agents`) with their
        estimated remaining work, so the solver counts their load but cannot
        move them. Deferred tasks are not admitted yet and are left out.

        Resource demand: a Snapshot's capacity is held by *every* task assigned
        to an agent, while the executor holds a task's demand only while it
        runs. So by default (`pack_queued=False`) a queued task's demand is
        turned into eligibility (`allowed_agents`: the agents it fits on
        alone) and dropped, and the plan orders a queue the core then packs
        at dispatch; running tasks keep their demand. With `pack_queued=True`
        every task keeps its demand (a plan then places only what fits at once).
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
            # Where it waits, else where it was produced (running elsewhere costs a move).
            current = (t.where.id if t.where is not None
                       else spec.home if spec.home in known else None)
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
            demand = dict(spec.demand)
            if demand and t.phase == QUEUED and not pack_queued:
                fit = [a.id for a in self.agents.values()
                       if eligible(a, spec) and (allowed is None or a.id in allowed)]
                if fit:
                    allowed, demand = fit, {}
                    if current is not None and current not in fit:
                        current = None
            tasks.append(Task(
                id=t.id, work=work, demand=demand, priority=spec.priority,
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
        self._submit(ev.task)

    def _submit(self, spec: TaskSpec) -> TaskState:
        """Admit and place one submission (no dispatch: the caller settles)."""
        sid = spec.id
        tasks = self.tasks
        finished = self.finished
        if sid in tasks or (finished and sid in finished):
            raise InvalidInputError(f"duplicate task id {sid!r}", field="task.id")
        seq = self._next_seq
        self._next_seq = seq + 1
        t = TaskState(spec, seq, self.now)
        tasks[sid] = t
        m = self.metrics
        m.submitted += 1
        if m.first_submit is None:
            m.first_submit = t.submitted
        if self._closing:
            self._end(t, Reject, Code.SHUTDOWN, "executor is shutting down")
            return t
        if not t.hard and self._adm_static and not self.admission.shed_level:
            # _admit's fast path, inlined: nothing to check for this task.
            t.phase = QUEUED
            qc = self._queued_by_class  # (item += on a list is a generic op compiled)
            qc[t.rank] = qc[t.rank] + 1
            self._place(t, None)
            return t
        self._admit(t)
        return t

    def _admit(self, t: TaskState) -> None:
        spec = t.spec
        adm = self.admission
        if not t.hard and adm.trivial:
            # Fast path: no caps, no throttle, nothing to check for this task.
            t.phase = QUEUED
            self._queued_by_class[t.rank] += 1
            self._place(t, None)
            return
        ef = 0.0
        conflict = ""
        if spec.deadline is not None and adm.config.feasibility and (
                spec.hard_deadline or adm.config.defer_soft_infeasible):
            if self._ordered:
                ef, conflict = self._ordered_finish(t)
            else:
                ef = self._earliest_finish(t)
        queued = self._queued_by_class[t.rank]
        if self._in_run:
            cap = adm.config.class_caps.get(spec.priority)
            if cap is not None and cap >= 1:
                # Later in a run at one instant: the tasks queued before it may yet
                # start now, so its class cap is applied once they have
                # (`_trim_caps`), not against them.
                queued = -1
        d = adm.decide(priority=spec.priority, deadline=spec.deadline, hard=spec.hard_deadline,
                       earliest_finish=ef, queued_in_class=queued, defers=t.defers,
                       now=self.now, conflict=conflict)
        if d.action is Action.ACCEPT:
            t.phase = QUEUED
            t.enqueued = self.now
            self._queued_by_class[t.rank] += 1
            if t.hard and self.expire_waiting:
                assert t.deadline is not None
                self._timer(t.deadline, _T_EXPIRE, t, 0)
            self._place(t, None)
        else:
            self._defer_or_end(t, d)

    def _defer_or_end(self, t: TaskState, d: Decision) -> None:
        """Carry out an admission's deferral or rejection of `t` (not queued)."""
        assert d.code is not None
        if d.action is Action.DEFER:
            t.phase = DEFERRED
            t.timer_token += 1
            self.metrics.deferred += 1
            self._emit(Defer(task_id=t.id, until=d.until, code=d.code, reason=d.reason))
            self._timer(d.until, _T_DEFER, t, t.timer_token)
        else:
            self._end(t, Reject, d.code, d.reason)

    def _trim_caps(self, run: list[TaskState]) -> None:
        """Class caps after a run at one instant was dispatched: the run's latest
        tasks still queued over their class's cap are deferred (then rejected), as
        they would have been arriving one at a time, and in submission order (so
        their retries come back in it)."""
        caps = self.admission.config.class_caps
        qc = self._queued_by_class
        count = list(qc)
        over: list[TaskState] = []
        for t in reversed(run):
            if t.phase != QUEUED:
                continue
            cap = caps.get(t.spec.priority)
            if cap is not None and count[t.rank] > cap:
                count[t.rank] -= 1
                over.append(t)
        for t in reversed(over):
            q = t.queue
            assert q is not None
            q.remove(t)
            if t.vtag >= 0.0:
                self._fair.dropped(t)
            qc[t.rank] -= 1
            t.where = None
            t.phase = SUBMITTED
            prio = t.spec.priority
            cap = caps[prio]
            self._defer_or_end(t, self.admission.over_cap(prio, cap, cap, t.defers, self.now))

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

    def _ordered_finish(self, t: TaskState) -> tuple[float, str]:
        """Earliest estimated finish of `t` under an EDF or priority discipline, and
        why admitting it would make a queued hard task miss ("" when it would not).

        The work ahead of `t` is what its queue serves first (`served_order`: an
        earlier or equal deadline; the stride order of the classes), after the
        agent's plan queue, scheduled slot by slot from the running tasks'
        estimated ends (`_list_check`; a queue over _LIST_LIMIT: its work ahead
        spread over the slots). A queued hard task served after `t` that met its
        deadline and would miss it with `t` ahead makes `t` refused (the classic
        EDF admission test; only hard tasks are held to it). Push placements:
        a candidate agent where `t` meets its deadline, its home first (a thief
        may take it elsewhere); the harm is checked where it is queued (its
        home) or, when the placement is made after admission (round-robin,
        random, jsq, p2c), on that candidate. A global pool (or a home that overflows to one):
        the pool's order over its candidates' slots (`_pool_finish`).
        """
        cands = self._candidates(t)
        if not cands:
            return 0.0, ""  # nobody to ask yet: do not reject on a guess
        if not self._push_placement:
            return self._pool_finish(t, cands)
        home: AgentState | None = None
        if self._at_home and not self._halfopen:
            home = place_home(self, t, None)
            if home is None:
                return self._pool_finish(t, cands)  # it waits in its pool
        now = self.now
        est = t.est
        d = t.deadline
        assert d is not None
        limit = d + 1e-9
        check = t.hard
        best_any = math.inf
        why = ""
        # Admission needs one candidate where `t` meets its deadline (and, placement
        # unknown, harms none): the home first, then the others; each one's lower
        # bound (its first free slot, then `t`) skips those that cannot make it.
        order_: list[AgentState] = cands
        if home is not None and cands[0] is not home:
            order_ = [home] + [a for a in cands if a is not home]
        for a in order_:
            speed = a.speed
            first = _lane_free_at(a, now)
            lb = first + est / speed
            if lb > limit:
                if lb < best_any:
                    best_any = lb
                continue
            order = self._deque_order(a, t)
            if order is None:  # a long deque: its work alone, over its slots
                f = now + ((self._run_rem(a, now) + (a.queue.work_before(t) + a.planned.work)
                            / speed) / a.concurrency + est / speed)
            else:
                f = self._list_check(self._slots([a], now, False), order[0], order[1], t,
                                     False, None)[0]
            if f < best_any:
                best_any = f
            if f > limit:
                continue
            if check and home is None:
                harm = self._harm_on(a, t)
                if harm:
                    if not why:
                        why = harm
                    continue
            if check and home is not None:
                return f, self._harm_on(home, t)
            return f, ""
        return best_any, why

    @staticmethod
    def _run_rem(a: AgentState, now: float) -> float:
        """The running tasks' estimated remaining time on `a` (summed over its slots)."""
        speed = a.speed
        rem = 0.0
        for r in a.running.values():
            x = r.started + r.est / speed - now
            if x > 0:
                rem += x
        return rem

    def _harm_on(self, a: AgentState, t: TaskState) -> str:
        """Why queueing `t` at `a` would make a queued hard task miss ("": none would).

        The hard tasks `a`'s deque serves after `t` are delayed by its run time on
        `a`; so are the hard tasks of the pools `a` serves (it takes from them
        once its deque is empty), by `t`'s work over the pool's capacity."""
        now = self.now
        speed = a.speed
        conc = a.concurrency
        q = a.queue
        order = self._deque_order(a, t) if q.n else None
        if order is not None:
            harm = self._list_check(self._slots([a], now, False), order[0], order[1], t,
                                    True, a.id)[1]
            if harm:
                return harm
        elif q.n:
            behind = q.behind(t)
            if behind:
                base = self._run_rem(a, now)
                pw = a.planned.work
                delta = t.est / speed / conc
                for h, before in behind:
                    hd = h.deadline
                    assert hd is not None
                    fh = now + ((base + (before + pw) / speed) / conc + h.est / speed)
                    if fh <= hd + 1e-9 < fh + delta:
                        return self._harm_reason(h, fh, fh + delta, a.id)
        for p in a.pools:
            pq = p.queue
            if pq.n:
                members = [m for m in p.members
                           if m.status is _UP and m.breaker.state is _CLOSED]
                if members:
                    cap = sum(m.speed * m.concurrency for m in members)
                    # Fair disciplines compare the deque's and the pools' heads (a
                    # task goes before the pool's later classes only); EDF serves
                    # the deque first.
                    later = pq.behind(t) if self._fair_across else list(_hard_prefix(pq))
                    hurt = self._pool_harm(members, cap, t.est / cap, later)
                    if hurt:
                        return hurt
        return ""

    def _deque_order(self, a: AgentState, t: TaskState
                     ) -> tuple[list[TaskState], int] | None:
        """What `a` serves, in order, were `t` pushed to its deque (its plan queue,
        then its deque), and how many before `t` (None: too long to list)."""
        planned = a.planned
        if planned.n > _LIST_LIMIT:
            return None
        order = a.queue.served_order(t, _LIST_LIMIT)
        if order is None or not planned.n:
            return order
        return list(planned) + order[0], planned.n + order[1]

    @staticmethod
    def _slots(agents: list[AgentState], now: float, own: bool
               ) -> list[tuple[float, float, int]]:
        """The slots of `agents` as a heap of (free time, speed, slot number): running
        tasks' estimated ends, idle slots now; with `own`, after each agent's plan
        queue and deque (served before the pools). Of slots free at one time the
        slowest comes first: which idle agent takes a task is not known here."""
        heap: list[tuple[float, float, int]] = []
        k = 0
        for a in agents:
            speed = a.speed
            ends: list[float] = []
            for r in a.running.values():
                x = r.started + r.est / speed
                ends.append(x if x > now else now)
            while len(ends) < a.concurrency:
                ends.append(now)
            if own and (a.planned.n or a.queue.n):
                if a.planned.n + a.queue.n > _LIST_LIMIT:  # its work, spread over its slots
                    share = (a.planned.work + a.queue.work) / speed / len(ends)
                    ends = [e + share for e in ends]
                else:
                    heapq.heapify(ends)
                    for q in (a.planned, a.queue):
                        for x2 in q:
                            heapq.heapreplace(ends, ends[0] + x2.est / speed)
            for e in ends:
                heap.append((e, speed, k))
                k += 1
        heapq.heapify(heap)
        return heap

    @staticmethod
    def _first_slot(agents: list[AgentState], now: float) -> tuple[float, float] | None:
        """(free time, speed) of the slot `_slots` would put first (None when an agent
        has its own queued work: then `_slots`)."""
        best_f = math.inf
        best_s = math.inf
        for a in agents:
            if a.planned.n or a.queue.n:
                return None
            speed = a.speed
            f = _lane_free_at(a, now)
            if f < best_f or (f == best_f and speed < best_s):
                best_f = f
                best_s = speed
        return (best_f, best_s) if best_f < math.inf else None

    def _list_check(self, heap: list[tuple[float, float, int]], seq: list[TaskState],
                    idx: int, t: TaskState, check: bool, where: str | None
                    ) -> tuple[float, str]:
        """List schedule of `seq` (the queue's order without `t`, `t` at `idx`) on the
        slots `heap` (each task to the slot free first): `t`'s finish and, with
        `check`, why it would make a hard task after it miss ("": none would)."""
        for j in range(idx):
            f, sp, k = heap[0]
            heapq.heapreplace(heap, (f + seq[j].est / sp, sp, k))
        f, sp, k = heap[0]
        fin = f + t.est / sp
        d = t.deadline
        if not check or idx >= len(seq) or (d is not None and fin > d + 1e-9):
            return fin, ""
        with_t = list(heap)
        heapq.heapreplace(with_t, (fin, sp, k))
        for j in range(idx, len(seq)):
            x = seq[j]
            f, sp, k = heap[0]
            e0 = f + x.est / sp
            heapq.heapreplace(heap, (e0, sp, k))
            f, sp, k = with_t[0]
            e1 = f + x.est / sp
            heapq.heapreplace(with_t, (e1, sp, k))
            hd = x.deadline
            if x.hard and hd is not None and e0 <= hd + 1e-9 < e1:
                return fin, self._harm_reason(x, e0, e1, where)
        return fin, ""

    def _pool_finish(self, t: TaskState, cands: list[AgentState]) -> tuple[float, str]:
        """`_ordered_finish` for a task that waits in its global pool."""
        now = self.now
        est = t.est
        if not self._fair_across:
            pool = self._pools.get(t.sig)
            q0 = pool.queue if pool is not None else None
            order = q0.served_order(t, _LIST_LIMIT) if q0 is not None and q0.n else ([], 0)
            if order is not None:
                if order[1] == 0 and not (t.hard and order[0]):
                    # Nothing ahead and nothing to check behind (the common case): the
                    # first free slot, without building them all.
                    first = self._first_slot(cands, now)
                    if first is not None:
                        return first[0] + est / first[1], ""
                return self._list_check(self._slots(cands, now, True), order[0], order[1],
                                        t, t.hard, None)
        if self._fair_across:
            # The agents compare their deque's head with the pools' (priority across
            # queues): of their deques only the work of equal or higher class is ahead.
            base = min((self._run_rem(a, now) + (a.queue.work_before(t) + a.planned.work)
                        / a.speed) / a.concurrency + est / a.speed for a in cands)
        else:
            base = min(a.load(now) + est / a.speed for a in cands)
        pool = self._pools.get(t.sig)
        q = pool.queue if pool is not None else None
        if q is None or not q.n:
            return now + base, ""
        cap = sum(a.speed * a.concurrency for a in cands)
        f = now + (base + q.work_before(t) / cap)
        d = t.deadline
        assert d is not None
        if not t.hard or f > d + 1e-9:
            return f, ""
        behind = q.behind(t)
        return f, self._pool_harm(cands, cap, est / cap, behind) if behind else ""

    def _pool_harm(self, cands: list[AgentState], cap: float, delta: float,
                   behind: list[tuple[TaskState, float]]) -> str:
        """Why delaying the pool's hard tasks `behind` (task, work before it) by `delta`
        would make one miss ("": none would); the pool formula of `_pool_finish`."""
        now = self.now
        loads = [a.load(now) for a in cands]
        low = min(loads)
        fast = max(a.speed for a in cands)
        for h, before in behind:
            hd = h.deadline
            assert hd is not None
            if now + (low + h.est / fast + before / cap) > hd + 1e-9:
                continue  # misses already (a lower bound): the new task does not change that
            hb = math.inf
            for i, a in enumerate(cands):
                x = loads[i] + h.est / a.speed
                if x < hb:
                    hb = x
            fh = now + (hb + before / cap)
            if fh <= hd + 1e-9 < fh + delta:
                return self._harm_reason(h, fh, fh + delta, None)
        return ""

    @staticmethod
    def _harm_reason(h: TaskState, before: float, after: float, agent: str | None) -> str:
        """Why a task is refused: it would make the queued hard task `h` miss."""
        where = f" on {agent}" if agent is not None else ""
        return (f"admitting it would make queued hard-deadline task {h.id!r}{where} miss "
                f"its deadline t={h.deadline:.4g} (estimated finish t={before:.4g} -> "
                f"t={after:.4g})")

    def _on_started(self, ev: TaskStarted) -> None:
        t = self.tasks.get(ev.task_id)
        if t is not None and t.phase == RUNNING and t.attempt == ev.attempt:
            if t.agent is not None:
                t.agent.run_start += self.now - t.started
            t.started = self.now

    def _current(self, task_id: str, agent: str, attempt: int) -> TaskState | None:
        t = self.tasks.get(task_id)
        if (t is None or t.phase != RUNNING or t.attempt != attempt or t.agent is None
                or t.agent.id != agent):
            self.metrics.stale += 1
            return None
        return t

    def _on_completed(self, ev: TaskCompleted) -> None:
        self._complete(ev.task_id, ev.agent, ev.attempt, ev.duration, ev.usage)

    def _complete(self, task_id: str, agent: str, attempt: int, duration: float | None,
                  usage: dict[str, float] | None) -> None:
        t = self.tasks.get(task_id)
        if (t is None or (a := t.agent) is None or a.id != agent or t.attempt != attempt
                or t.phase != RUNNING):
            self.metrics.stale += 1
            return
        now = self.now
        started = t.started
        dur = now - started if duration is None else duration
        # _release(t, a, done=True), inlined: this runs once per task.
        running = a.running
        del running[task_id]
        if running:
            a.run_est -= t.est
            a.run_start -= started
        else:
            a.run_est = a.run_start = 0.0
        a.busy += now - started
        d = t.deadline
        mc = t.mc
        self._ledger.add((a.index, started, now, True, t.rank, _NAN if d is None else d,
                             self._home_index(t.home) if mc else -1, mc))
        if t.demand:
            for r, q in t.demand:
                a.used[r] -= q
        t.agent = None
        if a.status is _DRAINING and not running:
            self._set_down(a)
        else:
            self._dirty[a.id] = a
        if dur > 0 and t.est > 0:
            # Observed speed (estimated work over run time) moves the agent's estimate.
            a.speed += EWMA_ALPHA * (t.est / dur - a.speed)
            sb = t.served_by
            if sb is not None and sb.charges:  # (cfs corrects its estimate; others skip)
                sb.charge(t, dur * a.speed - t.est)
        if usage:
            used = usage.get("tokens")
            if used is not None:
                a.tokens_used += used
                if a.limiter is not None:
                    a.limiter.settle(t.tokens_est, used, self.now)
                self.metrics.learn_tokens(t.spec, used)
        a.completed += 1
        if t.stolen_by is not None and t.stolen_by == a.id:
            self._learn_steal(t, a)
        br = a.breaker
        if br._state is _CLOSED:
            # What record_success does on a closed breaker; a full window without
            # failures stays as it is, so the push is skipped.
            w = br._window
            if br._failures or len(w) != w.maxlen:
                br._push(False)
        else:
            br.record_success(probe=t.probe)
            self._breaker_moves(a)
        # _end(t, Complete, ...), inlined (the task was running: no queue to leave).
        t.phase = DONE
        tid = task_id
        ins = Complete.__new__(Complete)
        ins.task_id = tid
        ins.agent = a.id
        ins.attempt = t.attempt
        ins.time = now
        ins.id = nid = self._next_id
        self._next_id = nid + 1
        ins.cause = self._cause
        self._out.append(ins)
        if self._log_on:
            self.log.add(ins)
        # metrics.on_complete(t, now), inlined.
        m = self.metrics
        m.last_end = now
        m.completed += 1
        m.add_latency(now - t.submitted)
        svc = now - started
        ten = t.tenant
        if ten is not None:
            ts = m.tenant_service
            ts[ten] = ts.get(ten, 0.0) + svc
        cs = m.class_service
        cs[t.rank] = cs[t.rank] + svc
        if d is not None:
            m.with_deadline += 1
            if now > d + 1e-9:
                m.misses += 1
        del self.tasks[tid]
        if self.retain_finished:
            self.finished[tid] = ("complete", "", "")

    def _stop_current(self, ev: TaskFailed | TaskReturned
                      ) -> tuple[TaskState, AgentState] | None:
        """The running attempt `ev` ends, off its agent's slots (None: a stale event)."""
        t = self._current(ev.task_id, ev.agent, ev.attempt)
        if t is None:
            return None
        a = t.agent
        assert a is not None
        self._release(t, a)
        return t, a

    def _on_task_failed(self, ev: TaskFailed) -> None:
        got = self._stop_current(ev)
        if got is None:
            return
        t, a = got
        limit = self.max_retries if t.spec.max_retries is None else t.spec.max_retries
        if (not self.breaker_counts_last_failure and ev.retryable and t.attempt > limit
                and t.attempt > 1):
            # The task has now failed every attempt it had (on this agent or others):
            # the fault is the task's. Counted, a poison task's last failures kept its
            # only agent's breaker re-opening, the timeout doubling to its maximum,
            # while healthy tasks waited on a healthy agent after the poison was gone.
            a.breaker.record_inconclusive(probe=t.probe)
        else:
            a.breaker.record_failure(ev.reason, probe=t.probe)
        self._breaker_moves(a)
        self._retry_or_fail(t, ev.reason, ev.retryable, avoid=a.id)

    def _on_returned(self, ev: TaskReturned) -> None:
        """An attempt its agent never started goes back to the queues, uncounted (a
        graceful leave left it assigned until the lease expired, then a counted retry)."""
        got = self._stop_current(ev)
        if got is None:
            return
        t, a = got
        a.breaker.record_inconclusive(probe=t.probe)
        self._breaker_moves(a)
        t.attempt -= 1
        self._emit(Retry(task_id=t.id, attempt=t.attempt + 1, reason=ev.reason))
        t.phase = QUEUED
        self._queued_by_class[t.rank] += 1
        self._place(t, a.id)

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
            self._queued_by_class[t.rank] += 1
            self._place(t, avoid)

    # ------------------------------------------------------------------ placement

    def _pool(self, t: TaskState) -> Pool:
        pool = self._pools.get(t.sig)
        if pool is None:
            pool = self._pools[t.sig] = Pool(t.sig, t.spec, self.policy.new_queue(self._fair))
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
                 if a.status is _UP and a.breaker.state is _CLOSED]
        self._cands[t.sig] = (self._avers, cands)
        return cands

    def _choose(self, t: TaskState, avoid: str | None) -> AgentState | None:
        """The agent whose deque takes the task, or None for the global pool.

        The probe rule comes first for every push placement: a half-open
        agent that can run the task, has a free probe slot and nothing
        queued gets it, so breakers recover whatever the policy.
        """
        if self._halfopen and self._push_placement:
            for a in self._halfopen.values():
                if (a.id != avoid and a.status is _UP and not len(a.queue)
                        and not len(a.planned) and a.breaker.allow() and eligible(a, t.spec)):
                    return a
        return self._placer(self, t, avoid)

    def _place(self, t: TaskState, avoid: str | None) -> AgentState | None:
        if not self._push_placement:  # (global: always the pools)
            target = None
        elif self._halfopen:
            target = self._choose(t, avoid)
        elif self._at_home:  # (the stealing policies' placement, called directly)
            target = place_home(self, t, avoid)
        else:
            target = self._placer(self, t, avoid)
        if target is not None:
            t.where = target
            target.queue.push(t, self.now)
            self._loaded[target.id] = target
            if len(target.running) < target.concurrency:
                self._dirty[target.id] = target
            elif self._stealing and self._hungry:
                self._wake_thief(t, target)
            return target
        pool = self._pools.get(t.sig)
        if pool is None:
            pool = self._pool(t)
        if not pool.members and self.reject_unplaceable and self.agents:
            self._end(t, Reject, Code.NO_ELIGIBLE_AGENT,
                      "no known agent has the skills, permissions and capacity for this task")
            return None
        t.where = None
        pool.queue.push(t, self.now)
        if self._halfopen:  # probes first: a recovered agent gets work under every policy
            for h in self._halfopen.values():
                if h.id in self._hungry and pool in h.pools and h.breaker.allow():
                    self._dirty[h.id] = h
                    return None
        if self._hungry:
            dirty = self._dirty
            for h in self._hungry.values():
                if pool in h.pools:
                    if h.id in dirty:
                        # Already to be filled (this instant's earlier push or event
                        # woke it): one fill may not take this task too, so the pump
                        # serves the pool's other idle agents after it (`_serve_pools`).
                        self._unwoken.append(pool)
                    dirty[h.id] = h
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
        """Dispatch to `a` while it has free slots and work it may take (else it is hungry)."""
        running = a.running
        if a.status is not _UP or len(running) >= a.concurrency:
            if a.id in self._hungry:
                del self._hungry[a.id]
            return
        br = a.breaker
        now = self.now
        planned = a.planned
        own = a.queue
        m = self.metrics
        while True:
            if br._state is not _CLOSED:  # (state reads the clock; rarely needed)
                allowed = br.allow()
                self._breaker_moves(a)
                if not allowed:
                    break
            # Own plan queue, own deque, then (stealing policies) steal from the
            # most loaded eligible victim, then the global pools as the fallback.
            src: TaskQueue | None = None
            t: TaskState | None = None
            if planned.n:
                src = planned
            elif own.n:
                src = own
                if self._fair_across:
                    # Fair disciplines: the smallest virtual time among the own deque
                    # and the pools (shares are accounted across queues).
                    best = None
                    for pool in a.pools:
                        q = pool.queue
                        if q.n:
                            if best is None:
                                best = own.peek_key(now)
                            k = q.peek_key(now)
                            if k is not None and best is not None and k < best:
                                best, src = k, q
            elif self._stealing and self._loaded and self._steal(a):
                continue
            elif self._pull:
                pools = a.pools
                if len(pools) == 1:  # one signature (the common case): no keys to compare
                    q = pools[0].queue
                    if q.n:
                        src = q
                else:
                    best = None
                    for pool in pools:
                        q = pool.queue
                        if q.n:
                            k = q.peek_key(now)
                            if k is not None and (best is None or k < best):
                                best, src = k, q
            # (a non-empty queue) src.peek(now), inlined for plain ones (`plain`: the
            # loop takes their head itself too).
            plain = False
            if src is None:
                pass
            elif type(src) is FifoQueue:
                t = src._items[src._head]
                plain = True
            elif src.plain:
                if TYPE_CHECKING:  # (narrowing only)
                    assert isinstance(src, SortedQueue)
                t = src._items[src._head][2]
                plain = True
            else:
                t = src.peek(now)
            if t is None:
                if a.id in self._halfopen and self._probe_pull(a):
                    continue
                self._hungry[a.id] = a
                return
            if TYPE_CHECKING:
                assert src is not None
            if t.hard:
                d = t.deadline
                assert d is not None
                if now + t.est / a.speed > d + 1e-9:
                    src.take(t, now)
                    self._end(t, Fail, Code.DEADLINE_EXPIRED,
                              f"cannot finish by its hard deadline t={d:.4g} "
                              f"(now t={now:.4g}, needs {t.est / a.speed:.4g})")
                    continue
            demand = t.demand
            if demand and not self._fits(a, t.spec):
                break
            if a.limiter is not None:
                ready = a.limiter.ready_at(t.tokens_est, now)
                if ready > now:
                    self._timer(ready, _T_WAKE, a, 0)
                    break
            if plain:
                # SortedQueue.take of its head (peek returned it: _drop_head), inlined.
                if TYPE_CHECKING:
                    assert isinstance(src, SortedQueue)
                items = src._items
                h = src._head
                items[h] = None
                src._head = h = h + 1
                if h > COMPACT_AFTER and h * 2 > len(items):
                    del items[:h]
                    src._head = 0
                t.queue = None
                src.n = n = src.n - 1
                src.work = src.work - t.est if n else 0.0
            else:
                src.take(t, now)
                n = src.n
            if (not n and (src is own or src is planned) and not (own.n or planned.n)
                    and a.id in self._loaded):
                del self._loaded[a.id]  # nothing left to steal here (re-added on a push)
            # _dispatch(t, a, src), inlined: the task starts on `a` now.
            t.phase = RUNNING
            t.where = None
            t.agent = a
            t.attempt = attempt = t.attempt + 1
            t.started = now
            t.served_by = src
            qc = self._queued_by_class
            qc[t.rank] = qc[t.rank] - 1
            if t.first_start < 0:
                t.first_start = now
                m.add_wait(now - t.submitted)
                if self._throttle:
                    # Queueing delay since admission (a deferral is not queueing).
                    self.admission.observe_wait(now - t.enqueued, now)
            tid = t.id
            running[tid] = t
            a.run_est += t.est
            a.run_start += now
            if demand:
                used = a.used
                for r, need in demand:
                    used[r] = used.get(r, 0.0) + need
            if a.limiter is not None:
                t.tokens_est = m.token_estimate(t.spec)
                a.limiter.take(t.tokens_est, now)
            t.probe = br.acquire() if br._state is not _CLOSED else False
            m.dispatches += 1
            ins = Dispatch.__new__(Dispatch)  # dispatch(...), inlined
            ins.task_id = tid
            ins.agent = a.id
            ins.attempt = attempt
            ins.work = t.est
            ins.remote = src is not own and src is not planned
            ins.time = now
            ins.id = nid = self._next_id
            self._next_id = nid + 1
            ins.cause = self._cause
            self._out.append(ins)
            if self._log_on:
                self.log.add(ins)
            if t.timeout is not None:
                self._timer(now + t.timeout, _T_TIMEOUT, t, attempt)
            if len(running) >= a.concurrency:
                break
        hungry = self._hungry
        if hungry and a.id in hungry:  # (empty while every agent is busy: no lookup)
            del hungry[a.id]

    def _fits(self, a: AgentState, spec: TaskSpec) -> bool:
        for r, d in spec.demand:
            if a.used.get(r, 0.0) + d > capacity_limit(a.capacity.get(r, 0.0)):
                return False
        return True

    def _home_index(self, home: str | None) -> int:
        h = self.agents.get(home) if home is not None else None
        return h.index if h is not None else -1

    def _ledger_row(self, t: TaskState, a: AgentState, end: float, done: bool) -> None:
        """Record one finished attempt (see allocator.online.metrics.LedgerRow)."""
        d = t.deadline
        mc = t.mc
        self._ledger.add((a.index, t.started, end, done, t.rank, _NAN if d is None else d,
                             self._home_index(t.home) if mc else -1, mc))

    def _release(self, t: TaskState, a: AgentState, *, done: bool = False) -> None:
        running = a.running
        del running[t.id]
        if running:
            a.run_est -= t.est
            a.run_start -= t.started
        else:
            a.run_est = a.run_start = 0.0
        now = self.now
        a.busy += now - t.started
        spec = t.spec
        self._ledger_row(t, a, now, done)
        if spec.demand:
            for r, d in spec.demand:
                a.used[r] -= d
        t.agent = None
        if a.status is _DRAINING and not a.running:
            self._set_down(a)
        else:
            self._dirty[a.id] = a

    # ------------------------------------------------------------------ stealing

    def _loaded_list(self) -> list[AgentState]:
        """Agents with queued tasks (pruning the lazily kept `_loaded` map)."""
        loaded = self._loaded
        out = []
        for v in list(loaded.values()):
            if (v.queue.n + v.planned.n == 0) or v.status is not _UP:
                del loaded[v.id]  # re-added on the next push
            else:
                out.append(v)
        return out

    def _move(self, t: TaskState, victim: AgentState, thief: AgentState, pred: float) -> None:
        assert t.queue is not None
        t.queue.remove(t)
        loaded = self._loaded
        if not (victim.queue.n or victim.planned.n) and victim.id in loaded:
            del loaded[victim.id]  # (no longer a victim; re-added on its next push)
        t.steals += 1
        t.steal_pred = pred
        t.stolen_by = tid = thief.id
        t.where = thief
        thief.queue.push(t, self.now)
        loaded[tid] = thief
        ins = Steal.__new__(Steal)  # Steal(task_id=..., victim=..., thief=...), built faster
        ins.task_id = t.id
        ins.victim = victim.id
        ins.thief = tid
        # _emit(ins), inlined.
        ins.id = nid = self._next_id
        self._next_id = nid + 1
        ins.time = self.now
        ins.cause = self._cause
        self._out.append(ins)
        if self._log_on:
            self.log.add(ins)

    def _steal(self, thief: AgentState) -> bool:
        """Move queued tasks from the most loaded agents to `thief`; True if any moved.

        Adaptive rule (injected clock): a failed attempt doubles the thief's
        polling interval (from `backoff` up to `max_backoff`), a successful
        one resets it; an arrival at a busy agent wakes an idle thief at once.
        The margin a steal must gain adapts to outcomes (see `_learn_steal`).
        """
        if not self._loaded:
            return False  # nothing queued at any agent
        now = self.now
        if now < thief.backoff_until:
            return False
        # victims_of(thief, self._loaded_list(), ...) in one pass, keeping only the
        # victims steal_moves would rank: those whose O(1) load bound (load_bound(),
        # inlined) is above the thief's own finish time (steal_moves' floor).
        loaded = self._loaded
        min_queue = self._st_min_queue
        # thief.load(now), inlined (same operations, so the same float).
        speed = thief.speed
        rem = 0.0
        if thief.running:
            for t in thief.running.values():
                r = t.started + t.est / speed - now
                if r > 0:
                    rem += r
        thief_fin = (rem + (thief.queue.work + thief.planned.work) / speed) / thief.concurrency
        floor = thief_fin + self._st_latency
        floor -= 1e-9 * (1.0 + abs(floor))
        victims = []
        found = False
        stale = None
        for v in loaded.values():
            q = v.queue
            pq = v.planned
            n = q.n + pq.n
            if n == 0 or v.status is not _UP:
                if stale is None:
                    stale = []
                stale.append(v.id)  # re-added on the next push
            elif n >= min_queue and v is not thief:
                found = True
                if (v.run_est + q.work + pq.work) / v.speed / v.concurrency > floor:
                    victims.append(v)
        if stale is not None:
            for vid in stale:
                del loaded[vid]
        if not found:
            return False  # nothing queued anywhere: wait to be woken by an arrival
        m = self.metrics
        m.steal_attempts += 1
        moves = steal_moves(thief, victims, now, thief.margin, eligible, thief_fin, True,
                            self._st_latency, self._st_victims, self._st_max_steals,
                            self._st_max_batch) if victims else []
        if moves:
            for t, v, pred in moves:
                self._move(t, v, thief, pred)
            m.steals += len(moves)
            thief.steal_fails = 0
            thief.steal_interval = self._st_backoff
            return True
        m.failed_steals += 1
        thief.steal_fails += 1
        back = thief.steal_interval
        nxt = back * 2.0  # min(back * 2.0, max_backoff), without the builtin call
        thief.steal_interval = nxt if nxt <= self._st_max_backoff else self._st_max_backoff
        m.steal_interval_sum += back
        m.steal_intervals += 1
        thief.backoff_until = now + back
        self._timer(thief.backoff_until, _T_WAKE, thief, 0)
        return False

    def _learn_steal(self, t: TaskState, a: AgentState) -> None:
        """Steal outcome: did the thief finish the task before the victim would have?

        Yes: the thief's margin shrinks by 10% (down to `margin_frac / 4`),
        so it steals more readily; no: it grows by half (up to `margin_max`).
        """
        frac = self._st_margin_frac
        if self.now <= t.steal_pred + 1e-9:
            a.margin = max(a.margin * 0.9, frac / 4)
            self.metrics.steals_paid += 1
        else:
            a.margin = min(a.margin * 1.5, max(self._st_margin_max, frac))
            self.metrics.steals_lost += 1

    def _probe_pull(self, a: AgentState) -> bool:
        """A half-open agent with nothing to do takes one queued task as its probe."""
        hit = plan_probe(a, victims_of(a, self._loaded_list(), 1), self.now, eligible)
        if hit is None:
            return False
        t, v, pred = hit
        self._move(t, v, a, pred)
        self.metrics.steals += 1
        return True

    def _backlog_delay(self) -> float:
        """Queued work / up capacity: the wait a new task would see (the throttle's gauge)."""
        work = sum(p.queue.work for p in self._pools.values())
        cap = 0.0
        for a in self.agents.values():
            work += a.queue.work + a.planned.work
            if a.status is _UP:
                cap += a.speed * a.concurrency
        return work / cap if cap > 0 else (math.inf if work > 0 else 0.0)

    # ------------------------------------------------------------------ agents

    def _on_joined(self, ev: AgentJoined) -> None:
        spec = ev.agent
        a = self.agents.get(spec.id)
        now = self.now
        moving: list[TaskState] = []
        rerun: list[TaskState] = []
        if a is None:
            br = CircuitBreaker(spec.id, self.breaker_config, clock=self._clock)
            lim = AgentLimiter(ev.rate_limit, now) if ev.rate_limit is not None else None
            a = AgentState(spec, len(self.agents), self.policy.new_queue(self._fair), br, lim,
                           now)
            self.agents[spec.id] = a
        else:
            if a.status is not _DOWN:
                # Re-registration: what it held is placed again, but only once the new
                # spec is in (placed first, a task could go straight back to an agent
                # that has just dropped its skill or capacity, and run there).
                moving = self._unqueue(a)
                rerun = list(a.running.values())
                for t in rerun:
                    self._release(t, a)
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
        a.steal_interval = self.policy.steal.backoff
        a.margin = self.policy.steal.margin_frac
        self._halfopen.pop(a.id, None)
        self._avers += 1
        if a.status is _UP:
            self._dirty[a.id] = a
        elif a.status is _DOWN:
            self._hungry.pop(a.id, None)
        if moving:
            self._requeue(moving, a, Code.AGENT_LEFT)
        for t in rerun:
            self._retry_or_fail(t, f"agent {a.id} re-registered", True, avoid=None)

    def _account_uptime(self, a: AgentState) -> None:
        a.uptime += self.now - a.up_since
        a.up_since = self.now

    def _set_down(self, a: AgentState) -> None:
        self._account_uptime(a)
        a.status = _DOWN
        self._avers += 1
        self._hungry.pop(a.id, None)
        self._dirty.pop(a.id, None)

    def _on_left(self, ev: AgentLeft) -> None:
        a = self.agents.get(ev.agent_id)
        if a is None or a.status is _DOWN:
            self.metrics.stale += 1
            return
        a.status = _DRAINING
        self._avers += 1
        self._hungry.pop(a.id, None)
        self._evacuate(a, Code.AGENT_LEFT)
        if not a.running:
            self._set_down(a)

    def _on_agent_failed(self, ev: AgentFailed) -> None:
        a = self.agents.get(ev.agent_id)
        if a is None or a.status is _DOWN:
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
            a.run_est -= t.est
            a.run_start -= t.started
            a.busy += self.now - t.started
            self._ledger_row(t, a, self.now, False)
            for r, d in t.spec.demand:
                a.used[r] -= d
            t.agent = None
            self._retry_or_fail(t, f"agent {a.id} failed mid-task: {ev.reason}", True,
                                avoid=a.id, code=Code.AGENT_FAILED)
        self._evacuate(a, Code.AGENT_FAILED)

    def _evacuate(self, a: AgentState, code: Code) -> None:
        """Re-place every task queued at `a` (it went down, left or its breaker opened)."""
        self._requeue(self._unqueue(a), a, code)

    def _unqueue(self, a: AgentState) -> list[TaskState]:
        """Take every task queued at `a` out of its queues (to be placed by `_requeue`)."""
        moving = list(a.planned) + list(a.queue)
        for t in moving:
            assert t.queue is not None
            t.queue.remove(t)
        return moving

    def _requeue(self, moving: list[TaskState], a: AgentState, code: Code) -> None:
        """Place the tasks `_unqueue` took from `a` anew (away from `a`), a Migrate each."""
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
            if tr.target is _HALF_OPEN:
                self._halfopen[a.id] = a
            else:
                self._halfopen.pop(a.id, None)
            if tr.target is _OPEN:
                self._hungry.pop(a.id, None)  # (takes nothing until half-open)
                until = br.open_until if br.open_until is not None else self.now
                self.metrics.breaker_opens += 1
                self._emit(BreakerOpened(agent=a.id, reason=tr.reason, until=until))
                self._timer(until, _T_BREAKER, a, 0)
                self._evacuate(a, Code.BREAKER_OPEN)
            elif tr.target is _HALF_OPEN:
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
            if (t is None or t.phase != QUEUED or a is None or a.status is not _UP
                    or not eligible(a, t.spec)):
                skipped += 1
                continue
            src = t.where
            assert t.queue is not None
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
            if t.vtag >= 0.0:
                self._fair.dropped(t)
            self._queued_by_class[t.rank] -= 1
        t.phase = DONE
        if kind is Complete:
            assert agent is not None
            nid = self._next_id
            self._next_id = nid + 1
            ins = complete(t.id, agent.id, t.attempt, self.now, nid, self._cause)
            self._out.append(ins)
            if self._log_on:
                self.log.add(ins)
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
        k = self._next_timer
        self._next_timer = k + 1
        _heappush(self._timers, (at, k, kind, ref, token))

    def _pump(self) -> None:
        timers = self._timers
        now = self.now
        while True:
            while timers and timers[0][0] <= now:
                _, _, kind, ref, token = _heappop(timers)
                if kind == _T_WAKE:  # (the common one: stealing's back-off timers)
                    if TYPE_CHECKING:
                        assert isinstance(ref, AgentState)
                    if ref.status is _UP:
                        self._dirty[ref.id] = ref
                elif kind == _T_DEFER:
                    if ref.phase == DEFERRED and ref.timer_token == token:
                        ref.defers += 1
                        self._admit(ref)
                elif kind == _T_TIMEOUT:
                    if ref.phase == RUNNING and ref.attempt == token:
                        self._timeout(ref)
                elif kind == _T_EXPIRE:
                    if ref.phase == QUEUED and ref.deadline is not None:
                        self._end(ref, Fail, Code.DEADLINE_EXPIRED,
                                  f"still waiting at its hard deadline t={ref.deadline:.4g} "
                                  f"(no agent could start it in time; now t={now:.4g})")
                else:  # _T_BREAKER
                    _ = ref.breaker.state
                    self._breaker_moves(ref)
                    self._dirty[ref.id] = ref
            if not self._dirty:
                if not self._unwoken:
                    break
                pools = self._unwoken
                self._unwoken = []
                self._serve_pools(pools)
                continue  # (what those fills woke)
            while self._dirty:
                _, a = self._dirty.popitem()
                self._fill(a)
        if timers:
            nxt = timers[0][0]
            if nxt < self._requested or self._requested <= now:
                self._requested = nxt
                ins = SetTimer.__new__(SetTimer)  # SetTimer(at=nxt) and _emit(ins), built faster
                ins.at = nxt
                ins.id = nid = self._next_id
                self._next_id = nid + 1
                ins.time = now
                ins.cause = self._cause
                self._out.append(ins)
                if self._log_on:
                    self.log.add(ins)

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
