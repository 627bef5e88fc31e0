"""Task and agent state as the executor core tracks it (internal, mutable, slotted).

Kept apart from the core's event handling so placement policies and stealing
(pure functions over these objects) do not import the core.
"""

from __future__ import annotations

from typing import Any, Final

from allocator.online.breaker import CircuitBreaker
from allocator.online.events import TaskSpec
from allocator.online.queues import PlanQueue, TaskQueue
from allocator.online.ratelimit import AgentLimiter
from allocator.problem import capacity_limit
from models import Agent, AgentStatus, Priority

# Enum members as module constants: `Enum.MEMBER` is a slow class-attribute lookup
# and these are compared on every event.
_DOWN: Final = AgentStatus.DOWN

# Task phases (ints: compared on every event; Final, so a compiled build folds them).
SUBMITTED: Final = 0
DEFERRED: Final = 1
QUEUED: Final = 2
RUNNING: Final = 3
DONE: Final = 4
PHASE_NAMES = ("submitted", "deferred", "queued", "running", "done")

#: Weight of a new observation in the agent-speed and token-ratio EWMAs:
#: 0.1 follows a change within ~10 tasks without chasing single outliers.
EWMA_ALPHA: Final = 0.1

Signature = tuple[Any, ...]

#: The signature of a task with no skills, permissions or demand.
_FREE_SIG: Final[Signature] = ((), None, (), ())

#: Priority -> rank as a plain dict (the `rank` property costs a call per task).
_RANK: Final = {p: p.rank for p in Priority}


class TaskState:
    """Everything the core tracks about one task (internal)."""

    __slots__ = ("agent", "attempt", "deadline", "defers", "demand", "enqueued", "est",
                 "first_start", "hard", "home", "id", "mc", "phase", "probe", "qkey", "queue",
                 "rank", "seq", "served_by", "sig", "spec", "started", "steal_pred", "steals",
                 "stolen_by", "submitted", "tenant", "timeout", "timer_token", "tokens_est",
                 "vtag", "where")

    def __init__(self, spec: TaskSpec, seq: int, now: float) -> None:
        self.spec = spec
        self.id = spec.id
        self.seq = seq
        self.phase = SUBMITTED
        self.attempt = 0
        self.agent: AgentState | None = None  # running on
        self.where: AgentState | None = None  # queued at (None: global pool)
        self.queue: TaskQueue | None = None  # the container holding it while queued
        self.qkey = 0.0
        self.est = spec.work
        self.tokens_est = spec.tokens
        self.submitted = now
        self.enqueued = now
        self.first_start = -1.0
        self.started = 0.0
        self.steals = 0
        #: The victim's estimated finish time when it was last stolen, and by whom
        #: (the thief learns from it whether stealing paid off).
        self.steal_pred = -1.0
        self.stolen_by: str | None = None
        #: WFQ virtual finish tag (-1: none yet); kept when the task moves between queues.
        self.vtag = -1.0
        self.defers = 0
        self.probe = False
        self.served_by: TaskQueue | None = None
        self.timer_token = 0
        skills, allowed, forbidden, demand = (spec.skills, spec.allowed, spec.forbidden,
                                              spec.demand)
        # The spec's fields the core reads on every dispatch and completion, copied once
        # (a compiled core reads its own fields directly, a spec's through getattr).
        deadline = spec.deadline
        self.deadline = deadline
        #: A hard deadline is set (the admission and dispatch checks apply).
        self.hard = spec.hard_deadline and deadline is not None
        self.demand = demand
        self.timeout = spec.timeout
        self.home = spec.home
        self.mc = spec.migration_cost
        self.tenant = spec.tenant
        #: The eligibility signature (one shared tuple for tasks any agent may run).
        self.sig: Signature = (_FREE_SIG if not (skills or forbidden or demand)
                               and allowed is None
                               else (skills, allowed, forbidden, demand))
        #: The priority class's rank (0 critical .. 3 low), read on every queue operation.
        self.rank = _RANK[spec.priority]


class AgentState:
    """One agent as the core sees it (internal)."""

    __slots__ = ("backoff_until", "breaker", "busy", "capacity", "completed", "concurrency",
                 "id", "index", "limiter", "margin", "planned", "pools", "queue", "run_est",
                 "run_start", "running", "skills", "spec", "speed", "status", "steal_fails",
                 "steal_interval", "tokens_used", "up_since", "uptime", "used")

    def __init__(self, spec: Agent, index: int, queue: TaskQueue, breaker: CircuitBreaker,
                 limiter: AgentLimiter | None, now: float) -> None:
        self.id = spec.id
        self.index = index
        self.queue = queue
        self.planned = PlanQueue()
        self.breaker = breaker
        self.limiter = limiter
        self.running: dict[str, TaskState] = {}
        #: Sum of the running tasks' estimated work (an O(1) bound on their remainder).
        self.run_est = 0.0
        #: Sum of the running tasks' start times: with run_est, an O(1) lower bound of
        #: their remaining time (used by the home placement before the exact `load`).
        self.run_start = 0.0
        self.pools: list[Pool] = []
        self.busy = 0.0
        self.uptime = 0.0
        self.tokens_used = 0.0
        self.completed = 0
        self.steal_fails = 0
        self.backoff_until = 0.0
        #: Adaptive stealing state (set by the core from StealConfig on join).
        self.steal_interval = 0.0
        self.margin = 0.0
        self.up_since = now
        self.status = _DOWN
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

    def load_bound(self) -> float:
        """An upper bound of `load(now)` in O(1) (running tasks counted whole)."""
        return (self.run_est + self.queue.work + self.planned.work) / self.speed \
            / self.concurrency

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
    if not (spec.skills or spec.demand or spec.forbidden) and spec.allowed is None:
        return True
    if spec.allowed is not None and a.id not in spec.allowed:
        return False
    if spec.forbidden and a.id in spec.forbidden:
        return False
    for s in spec.skills:
        if s not in a.skills:
            return False
    if not spec.demand:
        return True
    return all(d <= capacity_limit(a.capacity.get(r, 0.0)) for r, d in spec.demand)


