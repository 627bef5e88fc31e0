"""The executor's vocabulary: events in, instructions out.

Events are what happened (a driver reports them); instructions are what the
core decided (a driver carries them out). Both are small slotted dataclasses.
The core stamps every one with an `id` from one monotonic counter and the
time it was handled; an instruction's `cause` is the id of the event that led
to it, so a task's history reads as a chain.

Exactly one *terminal* instruction (:class:`Complete`, :class:`Reject`,
:class:`Fail`) is emitted for every submitted task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from allocator.errors import InvalidInputError
from models import Agent, Plan, Priority, Task


class Code(StrEnum):
    """Machine-readable reason of a rejection, failure, deferral or migration."""

    NO_ELIGIBLE_AGENT = "no_eligible_agent"
    DEADLINE_INFEASIBLE = "deadline_infeasible"
    DEADLINE_EXPIRED = "deadline_expired"
    QUEUE_CAP = "queue_cap"
    THROTTLED = "throttled"
    RETRIES_EXHAUSTED = "retries_exhausted"
    NOT_RETRYABLE = "not_retryable"
    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    TIMEOUT = "timeout"
    AGENT_FAILED = "agent_failed"
    AGENT_LEFT = "agent_left"
    BREAKER_OPEN = "breaker_open"
    PLAN = "plan"
    INTERNAL_ERROR = "internal_error"


# --------------------------------------------------------------------------- specs


@dataclass(slots=True)
class RateLimit:
    """Limits of an agent behind a quota (e.g. an LLM endpoint), per minute.

    Each becomes a token bucket holding one minute's worth (so bursts up to the
    per-minute amount are allowed), refilled continuously.
    """

    tokens_per_min: float | None = None
    requests_per_min: float | None = None

    def __post_init__(self) -> None:
        """A limit is a finite number > 0 (None: no limit). A negative one refilled the
        bucket downwards: the agent never dispatched again and the run hung."""
        for name in ("tokens_per_min", "requests_per_min"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v) and v > 0):
                raise InvalidInputError(f"need a finite number > 0 (or none), got {v!r}",
                                        field=name)


@dataclass(slots=True)
class TaskSpec:
    """What the executor knows about a task when it is submitted.

    Times are absolute, on the driver's clock. `work` is an estimate (the run
    time on a speed-1 agent); `tokens` the estimated usage charged to rate
    limits. `home` is where the task was produced or where its data lives: the
    stealing policies queue it there, and running it elsewhere costs
    `migration_cost` extra time.
    """

    id: str
    work: float = 1.0
    priority: Priority = Priority.NORMAL
    deadline: float | None = None
    hard_deadline: bool = False
    tenant: str | None = None
    skills: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = None
    forbidden: tuple[str, ...] = ()
    demand: tuple[tuple[str, float], ...] = ()
    tokens: float = 0.0
    home: str | None = None
    migration_cost: float = 0.0
    timeout: float | None = None
    max_retries: int | None = None
    kind: str | None = None

    @classmethod
    def from_task(cls, task: Task, *, timeout: float | None = None,
                  tokens: float = 0.0) -> TaskSpec:
        """The online view of a domain Task (deadline and release on the same clock)."""
        return cls(
            id=task.id, work=task.work, priority=task.priority, deadline=task.deadline,
            hard_deadline=task.hard_deadline, tenant=task.tenant, skills=tuple(task.skills),
            allowed=tuple(task.allowed_agents) if task.allowed_agents is not None else None,
            forbidden=tuple(task.forbidden_agents), demand=tuple(sorted(task.demand.items())),
            tokens=tokens, home=task.current_agent, migration_cost=task.migration_cost or 0.0,
            timeout=timeout,
        )


# --------------------------------------------------------------------------- events


@dataclass(slots=True, kw_only=True)
class Event:
    time: float = 0.0
    id: int = 0


@dataclass(slots=True, kw_only=True)
class TaskSubmitted(Event):
    task: TaskSpec


@dataclass(slots=True, kw_only=True)
class TaskStarted(Event):
    """Optional: the driver reports the moment an attempt really began."""

    task_id: str
    agent: str
    attempt: int


@dataclass(slots=True, kw_only=True)
class TaskCompleted(Event):
    task_id: str
    agent: str
    attempt: int
    duration: float | None = None
    usage: dict[str, float] | None = None


@dataclass(slots=True, kw_only=True)
class TaskFailed(Event):
    task_id: str
    agent: str
    attempt: int
    reason: str = "error"
    retryable: bool = True
    duration: float | None = None


@dataclass(slots=True, kw_only=True)
class TaskCancelled(Event):
    """The submitter withdraws a task (queued or running)."""

    task_id: str
    reason: str = "cancelled by submitter"


@dataclass(slots=True, kw_only=True)
class TaskReturned(Event):
    """The agent gives back an attempt it never started (it left before pulling it):
    the task is placed again and the attempt is not counted against its retries."""

    task_id: str
    agent: str
    attempt: int
    reason: str = "returned unstarted"


@dataclass(slots=True, kw_only=True)
class AgentJoined(Event):
    agent: Agent
    rate_limit: RateLimit | None = None


@dataclass(slots=True, kw_only=True)
class AgentLeft(Event):
    """Graceful leave: queued work moves elsewhere, running work finishes."""

    agent_id: str


@dataclass(slots=True, kw_only=True)
class AgentFailed(Event):
    """Crash: running attempts are lost (retried elsewhere), queued work moves."""

    agent_id: str
    reason: str = "agent failed"


@dataclass(slots=True, kw_only=True)
class Tick(Event):
    """Time passed: fire due timers (deferrals, back-offs, breaker and task timeouts)."""


@dataclass(slots=True, kw_only=True)
class PlanInstalled(Event):
    plan: Plan


@dataclass(slots=True, kw_only=True)
class Shutdown(Event):
    """Stop accepting work; `drain=False` returns every queued task unrun."""

    drain: bool = True
    cancel_running: bool = False


# --------------------------------------------------------------------------- instructions


@dataclass(slots=True, kw_only=True)
class Instruction:
    time: float = 0.0
    id: int = 0
    cause: int = 0


@dataclass(slots=True, kw_only=True)
class Dispatch(Instruction):
    """Start attempt `attempt` of the task on `agent` now.

    `remote`: the task came from a global queue (a central decision), not from
    the agent's own deque or plan queue; a driver may charge dispatch latency.
    """

    task_id: str
    agent: str
    attempt: int
    work: float = 0.0
    remote: bool = False


@dataclass(slots=True, kw_only=True)
class Steal(Instruction):
    """A queued task moved from `victim`'s deque to `thief`'s (informational)."""

    task_id: str
    victim: str
    thief: str


@dataclass(slots=True, kw_only=True)
class Migrate(Instruction):
    """A queued task moved between agents (plan, failure, breaker); `target` may be 'global'."""

    task_id: str
    source: str
    target: str
    code: Code = Code.PLAN


@dataclass(slots=True, kw_only=True)
class Defer(Instruction):
    task_id: str
    until: float
    code: Code
    reason: str


@dataclass(slots=True, kw_only=True)
class Retry(Instruction):
    task_id: str
    attempt: int
    reason: str


@dataclass(slots=True, kw_only=True)
class Cancel(Instruction):
    """Stop the running attempt; its late result, if any, will be ignored."""

    task_id: str
    agent: str
    attempt: int
    reason: str


@dataclass(slots=True, kw_only=True)
class Complete(Instruction):
    """Terminal: the task finished."""

    task_id: str
    agent: str
    attempt: int


@dataclass(slots=True, kw_only=True)
class Reject(Instruction):
    """Terminal: the task was never run; `reason` goes back to the submitter."""

    task_id: str
    code: Code
    reason: str


@dataclass(slots=True, kw_only=True)
class Fail(Instruction):
    """Terminal: the task was tried and gave up (or was cancelled)."""

    task_id: str
    code: Code
    reason: str


@dataclass(slots=True, kw_only=True)
class BreakerOpened(Instruction):
    agent: str
    reason: str
    until: float


@dataclass(slots=True, kw_only=True)
class BreakerHalfOpen(Instruction):
    agent: str


@dataclass(slots=True, kw_only=True)
class BreakerClosed(Instruction):
    agent: str


@dataclass(slots=True, kw_only=True)
class SetTimer(Instruction):
    """Send a Tick at time `at` (or soon after)."""

    at: float


TERMINAL = (Complete, Reject, Fail)


# --------------------------------------------------------------------------- hot-path builders
# Positional builders for the objects made once per task on the hot path: a
# keyword dataclass __init__ costs about twice as much as setting the slots
# directly, and the core and its drivers make four of these per task. `X.__new__(X)`
# rather than `object.__new__(X)`: the same in Python, and it also works if this
# module is compiled (mypyc's classes refuse object.__new__).


def submitted(task: TaskSpec, time: float = 0.0) -> TaskSubmitted:
    """`TaskSubmitted(task=task, time=time)`, built faster."""
    ev = TaskSubmitted.__new__(TaskSubmitted)
    ev.task = task
    ev.time = time
    ev.id = 0
    return ev


def completed(task_id: str, agent: str, attempt: int, time: float = 0.0,
              duration: float | None = None,
              usage: dict[str, float] | None = None) -> TaskCompleted:
    """`TaskCompleted(...)` with the same fields, built faster."""
    ev = TaskCompleted.__new__(TaskCompleted)
    ev.task_id = task_id
    ev.agent = agent
    ev.attempt = attempt
    ev.time = time
    ev.duration = duration
    ev.usage = usage
    ev.id = 0
    return ev


def dispatch(task_id: str, agent: str, attempt: int, work: float, remote: bool, time: float,
             id: int, cause: int) -> Dispatch:
    """`Dispatch(...)` with every field given, built faster (the core's hot path)."""
    ins = Dispatch.__new__(Dispatch)
    ins.task_id = task_id
    ins.agent = agent
    ins.attempt = attempt
    ins.work = work
    ins.remote = remote
    ins.time = time
    ins.id = id
    ins.cause = cause
    return ins


def complete(task_id: str, agent: str, attempt: int, time: float, id: int,
             cause: int) -> Complete:
    """`Complete(...)` with every field given, built faster (the core's hot path)."""
    ins = Complete.__new__(Complete)
    ins.task_id = task_id
    ins.agent = agent
    ins.attempt = attempt
    ins.time = time
    ins.id = id
    ins.cause = cause
    return ins


def task_specs(lo: int, hi: int, work: list[float], priority: list[int],
               priorities: list[Priority], deadline: list[float], hard: list[bool],
               tenant: list[int], tenants: list[str | None], home: list[int],
               homes: list[str | None], skills: list[tuple[str, ...]] | None,
               demand: list[tuple[tuple[str, float], ...]] | None, tokens_per_work: float,
               migration_cost: float) -> list[TaskSpec]:
    """The specs of tasks `lo..hi-1` (ids `t{i}`) from per-task columns, built faster.

    The simulator's workloads (allocator.online.workload) hold their tasks as
    columns: code columns index their tables (`priorities`, `tenants`,
    `homes`; code -1 picks the table's last entry, None), a nan deadline is
    none, `tokens` is work x `tokens_per_work`, and `skills` / `demand` (None:
    none for any task) are indexed from `lo`. Compiled, this loop sets the
    slots directly: the dataclass `__init__` mypyc keeps interpreted cost about
    1.5 us per task, a tenth of a compiled simulation.
    """
    out: list[TaskSpec] = []
    for i in range(lo, hi):
        s = TaskSpec.__new__(TaskSpec)
        s.id = f"t{i}"
        w = work[i]
        s.work = w
        s.priority = priorities[priority[i]]
        d = deadline[i]
        s.deadline = None if d != d else d
        s.hard_deadline = hard[i]
        s.tenant = tenants[tenant[i]]
        s.skills = () if skills is None else skills[i - lo]
        s.allowed = None
        s.forbidden = ()
        s.demand = () if demand is None else demand[i - lo]
        s.tokens = w * tokens_per_work if tokens_per_work else 0.0
        s.home = homes[home[i]]
        s.migration_cost = migration_cost
        s.timeout = None
        s.max_retries = None
        s.kind = None
        out.append(s)
    return out


def describe(x: Event | Instruction) -> str:
    """One line for logs and task histories: `#id t=.. Kind field=value ...`."""
    skip = {"id", "time", "cause"}
    parts: list[str] = []
    for name in getattr(x, "__dataclass_fields__", {}):
        if name in skip:
            continue
        v: Any = getattr(x, name)
        if isinstance(v, (TaskSpec, Agent)):
            v = v.id
        elif isinstance(v, Plan):
            v = f"<plan {v.solver} {len(v.assignments)} assignments>"
        parts.append(f"{name}={v}")
    cause = getattr(x, "cause", 0)
    tail = f" (cause #{cause})" if cause else ""
    return f"#{x.id} t={x.time:.4g} {type(x).__name__} " + " ".join(parts) + tail


__all__ = [
    "TERMINAL", "AgentFailed", "AgentJoined", "AgentLeft", "BreakerClosed", "BreakerHalfOpen",
    "BreakerOpened", "Cancel", "Code", "Complete", "Defer", "Dispatch", "Event", "Fail",
    "Instruction", "Migrate", "PlanInstalled", "RateLimit", "Reject", "Retry", "SetTimer",
    "Shutdown", "Steal", "TaskCancelled", "TaskCompleted", "TaskFailed", "TaskReturned",
    "TaskSpec", "TaskStarted", "TaskSubmitted", "Tick", "complete", "completed", "describe",
    "dispatch", "submitted", "task_specs",
]
