"""The live coordinator: the executor core hosted for real agents and real time.

Synchronous and single-threaded (the asyncio service in `allocator.live.service`
calls it from its event loop; tests call it directly on a VirtualClock). Every
input goes through `_record`, which assigns it a sequence number, queues it for
the durable log and applies it; `recover` applies the logged rows the same way,
so a restarted coordinator is the one that stopped (event sourcing, see
`allocator.live.store`).

Pull model. The core decides: when an agent has a free slot it emits a
`Dispatch` (from the agent's own queue, a steal, or a global pool, by its
policy); the coordinator puts it in that agent's outbox (state `assigned`),
and the agent's next pull takes it (state `running`, logged as the lease's
start). An agent's leases live as long as the agent is heard from (register,
heartbeat, pull, complete): one `lease_s` without a word and the agent is
declared failed, so the core retries its attempts elsewhere and moves its
queue. Delivery is at least once; accounting is exactly once: a completion
counts only for the current attempt on the current lessee, anything else is
a *late* completion, ignored and counted.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from allocator.clock import Clock
from allocator.errors import InvalidInputError, NotFoundError
from allocator.live.store import Row
from allocator.online.admission import AdmissionConfig
from allocator.online.core import Executor
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
    Migrate,
    PlanInstalled,
    RateLimit,
    Reject,
    Retry,
    SetTimer,
    Steal,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskReturned,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    Tick,
)
from allocator.online.policies import make_policy
from allocator.online.state import QUEUED, RUNNING
from models import Agent, AgentStatus, Plan, Priority

#: Task states as the service reports them.
QUEUED_S, DEFERRED_S, ASSIGNED_S, RUNNING_S = "queued", "deferred", "assigned", "running"
COMPLETED_S, FAILED_S, REJECTED_S, CANCELLED_S = "completed", "failed", "rejected", "cancelled"
FINAL_STATES = frozenset({COMPLETED_S, FAILED_S, REJECTED_S, CANCELLED_S})
STATES = (QUEUED_S, DEFERRED_S, ASSIGNED_S, RUNNING_S, *sorted(FINAL_STATES))
#: Entries of a task's history kept (the newest); enough for several attempts.
HISTORY = 40
_PRIORITIES = tuple(Priority)
_PRIORITY = {p.value: p for p in Priority}


@dataclass(slots=True)
class LiveOptions:
    """How the live core is configured (the same on every restart, or replay drifts)."""

    policy: str = "priority-wfq"
    tenant_weights: dict[str, float] = field(default_factory=dict)
    lease_s: float = 30.0
    seed: int = 0
    max_retries: int = 2
    admission: AdmissionConfig | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lease_s) and self.lease_s > 0):
            raise InvalidInputError(f"must be > 0, got {self.lease_s}", field="lease_s")
        for k, w in self.tenant_weights.items():
            if not (math.isfinite(w) and w > 0):
                raise InvalidInputError(f"weight of tenant {k!r} must be > 0, got {w}",
                                        field="tenant_weights")


class _History(list[tuple[float, str]]):
    """A task's history: the newest HISTORY entries (a list: cheap for the common short case)."""

    __slots__ = ()

    def append(self, x: tuple[float, str]) -> None:
        super().append(x)
        if len(self) > HISTORY:
            del self[: len(self) - HISTORY]


class TaskRecord:
    """What the service knows of one task (the core keeps only live ones)."""

    __slots__ = ("agent", "attempts", "code", "completions", "deadline", "finished",
                 "history", "id", "kind", "late", "payload", "priority", "reason", "result",
                 "started", "state", "submitted", "tenant", "timeout", "tokens", "work")

    def __init__(self, body: dict[str, Any], now: float) -> None:
        self.id: str = body["id"]
        self.priority = _PRIORITY[body.get("priority", "normal")]
        self.tenant: str | None = body.get("tenant")
        self.work: float = float(body.get("work", 1.0))
        self.payload: str = body.get("payload", "")
        self.kind: str | None = body.get("kind")
        self.timeout: float | None = body.get("timeout")
        d = body.get("deadline")
        self.deadline: float | None = now + d if d is not None else None
        self.state = QUEUED_S
        self.attempts = 0
        self.agent: str | None = None
        self.submitted = now
        self.started: float | None = None
        self.finished: float | None = None
        self.code: str | None = None
        self.reason: str | None = None
        self.result: str | None = None
        self.tokens = 0.0
        self.completions = 0
        self.late = 0
        self.history = _History()


class AgentRecord:
    """One registered agent: its spec, outbox of assigned work, liveness and usage."""

    __slots__ = ("body", "cancels", "completed", "failed", "id", "joined", "last_seen", "late",
                 "outbox", "tokens")

    def __init__(self, body: dict[str, Any], now: float) -> None:
        self.id: str = body["id"]
        self.body = body
        self.outbox: deque[tuple[str, int]] = deque()
        self.cancels: list[tuple[str, int]] = []
        self.last_seen = now
        self.joined = now
        self.completed = 0
        self.failed = 0
        self.late = 0
        self.tokens = 0.0


@dataclass(slots=True)
class Delivery:
    """One leased task as a pull returns it."""

    id: str
    attempt: int
    payload: str
    priority: str
    tenant: str | None
    work: float
    kind: str | None
    timeout: float | None
    submitted: float
    deadline: float | None


class LiveCoordinator:
    """The core plus leases, records and the event log (no I/O of its own).

    `clock` gives core time (seconds since the store's epoch). `on_work(agent)`
    is called when an agent's outbox gets work (the service wakes its pulls);
    `on_log()` when rows wait for the durable log (`drain_rows`).
    """

    def __init__(self, options: LiveOptions | None = None, *, clock: Clock,
                 epoch: float = 0.0, first_seq: int = 0) -> None:
        self.options = opts = options or LiveOptions()
        self.clock = clock
        self.epoch = epoch
        policy = make_policy(opts.policy, flow_weights=dict(opts.tenant_weights))
        self.core = Executor(policy, seed=opts.seed, max_retries=opts.max_retries,
                             admission=opts.admission, log=0, retain_finished=False,
                             reject_unplaceable=False, expire_waiting=True,
                             breaker_counts_last_failure=False)
        self.tasks: dict[str, TaskRecord] = {}
        self.agents: dict[str, AgentRecord] = {}
        self.seq = first_seq
        self.rows: list[tuple[int, float, str, list[tuple[str, dict[str, Any]]]]] = []
        self.timer_at = math.inf
        self.on_work: Callable[[str], None] | None = None
        self.on_log: Callable[[], None] | None = None
        self.replaying = False
        #: Set by `complete_many` while it records: whether each ack was current.
        self._verdicts: list[bool] | None = None
        self.stats: dict[str, int] = dict.fromkeys(
            ("submitted", "duplicates", "completed", "failed", "rejected", "cancelled",
             "late_completions", "lease_expiries", "retries", "leases", "replayed_events",
             "plans", "breaker_opens", "reoffered"), 0)
        #: Submit-to-first-lease waits (seconds) per priority class, in lease order.
        self.waits: dict[str, list[float]] = {p.value: [] for p in _PRIORITIES}
        self.tokens_by_tenant: dict[str, float] = {}
        #: Tasks per state (kept as they move: /v1/queues must not scan every task).
        self.counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self.started_by_tenant: dict[str, int] = {}

    # ------------------------------------------------------------------ the log

    def _record(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Log and apply a batch of inputs at the clock's time: one log row per batch.

        The row holds the items in order, and replay applies them through the
        same `_apply`, so a batch means the same thing live and replayed.
        """
        now = self.clock.now()
        if now < self.core.now:
            now = self.core.now
        self.seq += 1
        self.rows.append((self.seq, now, "batch", items))
        self._apply(items, now)
        if self.on_log is not None:
            self.on_log()

    def drain_rows(self) -> list[Row]:
        """The rows not yet handed to the durable log (the caller writes them), as JSON."""
        rows, self.rows = self.rows, []
        dumps = json.dumps
        return [(seq, t, kind, dumps(items, separators=(",", ":")))
                for seq, t, kind, items in rows]

    def recover(self, batches: Iterable[list[Row]]) -> int:
        """Replay logged rows into this (fresh) coordinator; the number applied.

        Afterwards every agent gets a full lease from now (they could not reach
        a dead server) and work assigned but never pulled is offered again.
        """
        n = 0
        self.replaying = True
        try:
            for rows in batches:
                for seq, t, kind, body in rows:
                    items = json.loads(body)
                    if kind != "batch":
                        raise InvalidInputError(f"unknown live log row kind {kind!r}",
                                                field="kind")
                    self._apply([(k, b) for k, b in items], t)
                    self.seq = seq
                    n += len(items)
        finally:
            self.replaying = False
        now = max(self.clock.now(), self.core.now)
        for a in self.agents.values():
            a.last_seen = now
            a.outbox = deque((r.id, r.attempts) for r in self.tasks.values()
                             if r.state == ASSIGNED_S and r.agent == a.id)
            if a.outbox and self.on_work is not None:
                self.on_work(a.id)
        self.stats["replayed_events"] = n
        return n

    # ------------------------------------------------------------------ applying inputs

    def _apply(self, items: list[tuple[str, dict[str, Any]]], now: float) -> None:
        """Apply a batch (live or replayed): runs of submits go through the core at once,
        everything else one input at a time (a completion's validity depends on the
        inputs before it)."""
        handle = self.core.handle
        i, n = 0, len(items)
        while i < n:
            kind, b = items[i]
            if kind == "submit":
                events: list[Event] = []
                while i < n and items[i][0] == "submit":
                    events += self._events("submit", items[i][1], now)
                    i += 1
            else:
                events = self._events(kind, b, now)
                i += 1
            if events:
                self._instructions(handle(*events))

    def _events(self, kind: str, b: dict[str, Any], now: float) -> list[Event]:
        """The core events of one logged input (and the records it updates first)."""
        events: list[Event] = []
        counts = self.counts
        if kind == "submit":
            rec = TaskRecord(b, now)
            self.tasks[rec.id] = rec
            counts[QUEUED_S] += 1
            self.stats["submitted"] += 1
            events.append(TaskSubmitted(task=_spec(b, now), time=now))
        elif kind == "lease":
            ag = self.agents.get(b["agent"])
            for tid, att in b["tasks"]:
                r = self.tasks.get(tid)
                if r is not None and r.attempts == att and r.state == ASSIGNED_S:
                    counts[r.state] -= 1
                    r.state = RUNNING_S
                    counts[RUNNING_S] += 1
                    r.history.append((now, f"leased to {b['agent']} (attempt {att})"))
                    if r.started is None:
                        r.started = now
                        self.waits[r.priority.value].append(now - r.submitted)
                        if r.tenant is not None:
                            self.started_by_tenant[r.tenant] = \
                                self.started_by_tenant.get(r.tenant, 0) + 1
                    self.stats["leases"] += 1
                events.append(TaskStarted(task_id=tid, agent=b["agent"], attempt=att,
                                          time=now))
            if ag is not None:
                ag.last_seen = now
        elif kind in ("complete", "fail"):
            tid, agent, att = b["task"], b["agent"], b["attempt"]
            r = self.tasks.get(tid)
            ag = self.agents.get(agent)
            if ag is not None:
                ag.last_seen = now
            t = self.core.tasks.get(tid)
            current = not (t is None or t.phase != RUNNING or t.attempt != att
                           or t.agent is None or t.agent.id != agent)
            if self._verdicts is not None:
                self._verdicts.append(current)
            if not current:
                self.stats["late_completions"] += 1
                if r is not None:
                    r.late += 1
                    r.history.append((now, f"late {kind} from {agent} attempt {att} "
                                           "ignored"))
                if ag is not None:
                    ag.late += 1
                return events  # the core would ignore it too (stale): nothing changes
            tokens = b.get("tokens")
            if kind == "complete":
                assert r is not None
                r.result = b.get("result")
                if tokens is not None:
                    r.tokens += tokens
                    if ag is not None:
                        ag.tokens += tokens
                    if r.tenant is not None:
                        self.tokens_by_tenant[r.tenant] = \
                            self.tokens_by_tenant.get(r.tenant, 0.0) + tokens
                events.append(TaskCompleted(
                    task_id=tid, agent=agent, attempt=att, duration=b.get("duration"),
                    usage={"tokens": tokens} if tokens is not None else None, time=now))
            else:
                if ag is not None:
                    ag.failed += 1
                if r is not None:
                    r.history.append((now, f"attempt {att} failed on {agent}: "
                                           f"{b.get('error') or 'error'}"))
                events.append(TaskFailed(task_id=tid, agent=agent, attempt=att,
                                         reason=b.get("error") or "error",
                                         retryable=b.get("retryable", True),
                                         duration=b.get("duration"), time=now))
        elif kind == "cancel":
            events.append(TaskCancelled(task_id=b["task"], reason=b.get("reason")
                                        or "cancelled by submitter", time=now))
        elif kind == "join":
            a = self.agents.get(b["id"])
            if a is None:
                a = self.agents[b["id"]] = AgentRecord(b, now)
            else:
                a.body = b
                a.outbox.clear()
                a.cancels.clear()
                a.last_seen = now
                a.joined = now
            rl = None
            if b.get("tokens_per_min") is not None or b.get("requests_per_min") is not None:
                rl = RateLimit(tokens_per_min=b.get("tokens_per_min"),
                               requests_per_min=b.get("requests_per_min"))
            spec = Agent(id=b["id"], capacity=b.get("capacity", {}),
                         speed=b.get("speed", 1.0), concurrency=b.get("concurrency", 1),
                         skills=b.get("skills", []), cost_rate=b.get("cost_rate", 0.0),
                         labels=b.get("labels", {}))
            events.append(AgentJoined(agent=spec, rate_limit=rl, time=now))
        elif kind == "leave":
            events.append(AgentLeft(agent_id=b["agent"], time=now))
        elif kind == "return":
            r = self.tasks.get(b["task"])
            if r is not None:
                r.history.append((now, f"given back unstarted by {b['agent']} "
                                       f"(attempt {b['attempt']}, not counted)"))
            events.append(TaskReturned(task_id=b["task"], agent=b["agent"],
                                       attempt=b["attempt"], reason=f"agent {b['agent']} "
                                       "left before pulling it", time=now))
        elif kind == "agent_failed":
            self.stats["lease_expiries"] += 1
            events.append(AgentFailed(agent_id=b["agent"], reason=b.get("reason", ""),
                                      time=now))
        elif kind == "tick":
            events.append(Tick(time=now))
        elif kind == "plan":
            self.stats["plans"] += 1
            events.append(PlanInstalled(plan=Plan.model_validate(b["plan"]), time=now))
        else:
            raise InvalidInputError(f"unknown live event kind {kind!r}", field="kind")
        return events

    def _instructions(self, out: list[Any]) -> None:
        tasks = self.tasks
        counts = self.counts
        woken: dict[str, AgentRecord] = {}
        for ins in out:
            k = type(ins)
            if k is Dispatch:
                r = tasks[ins.task_id]
                counts[r.state] -= 1
                r.state = ASSIGNED_S
                counts[ASSIGNED_S] += 1
                r.agent = ins.agent
                r.attempts = ins.attempt
                r.history.append((ins.time, f"assigned to {ins.agent} (attempt {ins.attempt}"
                                            f"{', from the global queue' if ins.remote else ''})"))
                a = self.agents[ins.agent]
                a.outbox.append((ins.task_id, ins.attempt))
                woken[a.id] = a
            elif k is Complete:
                r = tasks[ins.task_id]
                counts[r.state] -= 1
                r.state = COMPLETED_S
                counts[COMPLETED_S] += 1
                r.finished = ins.time
                r.completions += 1
                r.history.append((ins.time, f"completed by {ins.agent} (attempt {ins.attempt})"))
                self.stats["completed"] += 1
                self.agents[ins.agent].completed += 1
            elif k is Reject:
                self._final(tasks[ins.task_id], REJECTED_S, ins.code, ins.reason, ins.time)
            elif k is Fail:
                state = CANCELLED_S if ins.code is Code.CANCELLED else FAILED_S
                self._final(tasks[ins.task_id], state, ins.code, ins.reason, ins.time)
            elif k is Retry:
                r = tasks[ins.task_id]
                counts[r.state] -= 1
                r.state = QUEUED_S
                counts[QUEUED_S] += 1
                self.stats["retries"] += 1
                r.history.append((ins.time, f"queued again for attempt {ins.attempt}: "
                                            f"{ins.reason}"))
            elif k is Defer:
                r = tasks[ins.task_id]
                counts[r.state] -= 1
                r.state = DEFERRED_S
                counts[DEFERRED_S] += 1
                r.code, r.reason = ins.code.value, ins.reason
                r.history.append((ins.time, f"deferred until {ins.until:.3f}: {ins.reason}"))
            elif k is Cancel:
                ca = self.agents.get(ins.agent)
                if ca is not None:
                    ca.cancels.append((ins.task_id, ins.attempt))
                tasks[ins.task_id].history.append((ins.time, f"attempt {ins.attempt} on "
                                                             f"{ins.agent} cancelled: "
                                                             f"{ins.reason}"))
            elif k is SetTimer:
                self.timer_at = min(self.timer_at, ins.at)
            elif k is Steal:
                tasks[ins.task_id].history.append((ins.time, f"stolen by {ins.thief} from "
                                                             f"{ins.victim}"))
            elif k is Migrate:
                tasks[ins.task_id].history.append((ins.time, f"moved {ins.source} -> "
                                                             f"{ins.target} ({ins.code.value})"))
            elif k is BreakerOpened:
                self.stats["breaker_opens"] += 1
            elif k in (BreakerClosed, BreakerHalfOpen):
                pass
        if woken and self.on_work is not None and not self.replaying:
            for aid in woken:
                self.on_work(aid)

    def _final(self, r: TaskRecord, state: str, code: Code, reason: str, now: float) -> None:
        counts = self.counts
        counts[r.state] -= 1
        r.state = state
        counts[state] += 1
        r.code = code.value
        r.reason = reason
        r.finished = now
        r.history.append((now, f"{state}: {reason} ({code.value})"))
        self.stats[state] += 1

    # ------------------------------------------------------------------ agents

    def register(self, body: dict[str, Any]) -> dict[str, Any]:
        """(Re-)register an agent. Re-registering returns what it held to the queues."""
        self._record([("join", body)])
        return {**self.agent_view(body["id"]), "lease_s": self.options.lease_s}

    def _agent(self, agent_id: str) -> AgentRecord:
        a = self.agents.get(agent_id)
        if a is None:
            raise NotFoundError(f"no agent {agent_id!r}; register it first (POST /v1/agents)",
                                field="agent")
        return a

    def _alive(self, a: AgentRecord) -> bool:
        """Mark the agent heard from; rejoin it if its leases had expired (True: rejoined)."""
        a.last_seen = self.clock.now()
        st = self.core.agents.get(a.id)
        if st is None or st.status is AgentStatus.DOWN:
            self._record([("join", a.body)])
            return True
        return False

    def heartbeat(self, agent_id: str, *, draining: bool = False) -> dict[str, Any]:
        """Renew the agent's leases; tell it what to cancel (and whether it was rejoined)."""
        a = self._agent(agent_id)
        rejoined = False
        if draining:
            st = self.core.agents.get(a.id)
            if st is not None and st.status is AgentStatus.UP:
                self._record([("leave", {"agent": a.id})])
            a.last_seen = self.clock.now()
        else:
            rejoined = self._alive(a)
        return {"agent": a.id, "rejoined": rejoined, "cancel": self._cancels(a),
                "lease_s": self.options.lease_s}

    def leave(self, agent_id: str) -> dict[str, Any]:
        """The agent leaves: its queue moves, what it runs finishes, and what was
        assigned to it but never pulled goes back to the queues, uncounted (it waited
        for the lease to expire and came back as a counted retry)."""
        a = self._agent(agent_id)
        st = self.core.agents.get(a.id)
        rows: list[tuple[str, dict[str, Any]]] = []
        if st is not None and st.status is AgentStatus.UP:
            rows.append(("leave", {"agent": a.id}))
        tasks = self.tasks
        for tid, att in a.outbox:
            r = tasks.get(tid)
            if r is not None and r.attempts == att and r.agent == a.id and r.state == ASSIGNED_S:
                rows.append(("return", {"agent": a.id, "task": tid, "attempt": att}))
        a.outbox.clear()
        if rows:
            self._record(rows)
        return self.agent_view(agent_id)

    def _cancels(self, a: AgentRecord) -> list[dict[str, Any]]:
        out = [{"task": t, "attempt": n} for t, n in a.cancels]
        a.cancels = []
        return out

    def expire(self) -> list[str]:
        """Declare failed every agent not heard from within its lease (their work moves)."""
        now = self.clock.now()
        lease = self.options.lease_s
        dead = []
        for a in self.agents.values():
            if now - a.last_seen > lease:
                st = self.core.agents.get(a.id)
                if st is not None and st.status is not AgentStatus.DOWN:
                    dead.append(a.id)
        if dead:
            self._record([("agent_failed", {"agent": d, "reason": f"lease expired: not heard "
                                            f"from for more than {lease:g}s"}) for d in dead])
        return dead

    # ------------------------------------------------------------------ work

    def take(self, agent_id: str, limit: int) -> list[Delivery]:
        """Lease up to `limit` tasks the core assigned to this agent (logged as one row)."""
        a = self._agent(agent_id)
        self._alive(a)
        out: list[TaskRecord] = []
        box = a.outbox
        tasks = self.tasks
        while box and len(out) < limit:
            tid, att = box.popleft()
            r = tasks.get(tid)
            if r is not None and r.attempts == att and r.agent == a.id and r.state == ASSIGNED_S:
                out.append(r)
        if not out:
            return []
        self._record([("lease", {"agent": a.id, "tasks": [[r.id, r.attempts] for r in out]})])
        ep = self.epoch
        return [Delivery(id=r.id, attempt=r.attempts, payload=r.payload,
                         priority=r.priority.value, tenant=r.tenant, work=r.work, kind=r.kind,
                         timeout=r.timeout, submitted=ep + r.submitted,
                         deadline=ep + r.deadline if r.deadline is not None else None)
                for r in out]

    def reconcile(self, agent_id: str, held: Iterable[tuple[str, int]]) -> int:
        """Offer again what this agent was leased but does not hold (a lost pull answer).

        `held` is what the agent runs now plus what it is acknowledging; the
        attempt stays the same (delivery at least once, accounting unchanged).
        """
        a = self._agent(agent_id)
        st = self.core.agents.get(agent_id)
        if st is None or not st.running:
            return 0
        have = set(map(tuple, held))
        tasks = self.tasks
        counts = self.counts
        now = self.clock.now()
        n = 0
        for tid in st.running:
            r = tasks.get(tid)
            if r is not None and r.state == RUNNING_S and (tid, r.attempts) not in have:
                counts[r.state] -= 1
                r.state = ASSIGNED_S
                counts[ASSIGNED_S] += 1
                r.history.append((now, f"offered again to {agent_id} (attempt {r.attempts}): "
                                       "the agent does not hold it"))
                a.outbox.append((tid, r.attempts))
                n += 1
        self.stats["reoffered"] += n
        return n

    def has_work(self, agent_id: str) -> bool:
        a = self.agents.get(agent_id)
        return a is not None and bool(a.outbox)

    def cancels(self, agent_id: str) -> list[dict[str, Any]]:
        a = self.agents.get(agent_id)
        return self._cancels(a) if a is not None else []

    def submit(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Admit a batch: per task its id, state and, when not queued, the code and reason."""
        items: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        dup: set[str] = set()
        for b in tasks:
            if b.get("id") is None:
                b["id"] = uuid.uuid4().hex
            tid = b["id"]
            if tid in self.tasks or tid in seen:
                dup.add(tid)
                continue
            seen.add(tid)
            items.append(("submit", b))
        if items:
            self._record(items)
        self.stats["duplicates"] += len(dup)
        out = []
        for b in tasks:
            r = self.tasks[b["id"]]
            d: dict[str, Any] = {"id": r.id, "state": r.state}
            if r.id in dup:
                d["duplicate"] = True
            if r.state in (REJECTED_S, DEFERRED_S, FAILED_S):
                d["code"], d["reason"] = r.code, r.reason
            out.append(d)
        return out

    def complete(self, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """One attempt's end; `accepted` False means late (superseded attempt) or unknown."""
        return self.complete_many([{**body, "task": task_id}])[0]

    def complete_many(self, acks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[tuple[str, dict[str, Any]]] = []
        for b in acks:
            r = self.tasks.get(b["task"])
            agent = b.get("agent") or (r.agent if r is not None else None) or ""
            row: dict[str, Any] = {"task": b["task"], "agent": agent, "attempt": b["attempt"]}
            for k in ("duration", "tokens"):
                if b.get(k) is not None:
                    row[k] = b[k]
            if b.get("outcome", "ok") == "ok":
                if b.get("result") is not None:
                    row["result"] = b["result"]
                items.append(("complete", row))
            else:
                row["error"] = b.get("error") or "error"
                row["retryable"] = b.get("retryable", True)
                items.append(("fail", row))
        # Each ack's own verdict, as `_events` judges it in order (two acks of one
        # task in a batch: the current one is accepted, the stale one is not).
        verdicts: list[bool] = []
        self._verdicts = verdicts
        try:
            self._record(items)
        finally:
            self._verdicts = None
        out = []
        for b, accepted in zip(acks, verdicts, strict=True):
            r = self.tasks.get(b["task"])
            if r is None:
                out.append({"task": b["task"], "accepted": False, "state": "unknown"})
                continue
            out.append({"task": r.id, "accepted": accepted, "state": r.state})
        return out

    def cancel(self, task_id: str, reason: str | None = None) -> dict[str, Any]:
        r = self.tasks.get(task_id)
        if r is None:
            raise NotFoundError(f"no task {task_id!r}", field="task_id")
        if r.state not in FINAL_STATES:
            self._record([("cancel", {"task": task_id,
                                      "reason": reason or "cancelled by submitter"})])
        return self.task_view(task_id)

    def tick(self) -> bool:
        """Fire the core's due timers (deferrals, timeouts, breakers); True if it ticked."""
        now = self.clock.now()
        if now < self.timer_at:
            return False
        self.timer_at = math.inf
        self._record([("tick", {})])
        return True

    def install(self, plan: Plan) -> None:
        """Install a solver's plan (logged like any input)."""
        self._record([("plan", {"plan": plan.model_dump(mode="json")})])

    # ------------------------------------------------------------------ views

    def _t(self, x: float | None) -> float | None:
        return None if x is None else round(self.epoch + x, 6)

    def task_view(self, task_id: str, *, history: bool = True) -> dict[str, Any]:
        r = self.tasks.get(task_id)
        if r is None:
            raise NotFoundError(f"no task {task_id!r}", field="task_id")
        d: dict[str, Any] = {
            "id": r.id, "state": r.state, "priority": r.priority.value, "tenant": r.tenant,
            "attempts": r.attempts, "agent": r.agent, "work": r.work,
            "submitted_at": self._t(r.submitted), "started_at": self._t(r.started),
            "finished_at": self._t(r.finished), "deadline_at": self._t(r.deadline),
            "code": r.code, "reason": r.reason, "completions": r.completions,
            "late_completions": r.late, "tokens": r.tokens,
        }
        if history:
            d["result"] = r.result
            d["history"] = [{"at": self._t(t), "what": s} for t, s in r.history]
        return d

    def task_views(self, *, state: str | None = None, tenant: str | None = None,
                   limit: int = 1000, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        rs = [r for r in self.tasks.values()
              if (state is None or r.state == state) and (tenant is None or r.tenant == tenant)]
        return len(rs), [self.task_view(r.id, history=False) for r in rs[offset:offset + limit]]

    def agent_view(self, agent_id: str) -> dict[str, Any]:
        a = self._agent(agent_id)
        st = self.core.agents.get(agent_id)
        now = self.core.now
        running = [t for t, r in ((x, self.tasks.get(x)) for x in (st.running if st else ()))
                   if r is not None]
        return {
            "id": a.id, "status": st.status.value if st else "down",
            "concurrency": a.body.get("concurrency", 1),
            "running": len(running), "assigned": len(a.outbox),
            "queued": (len(st.queue) + len(st.planned)) if st else 0,
            "load": round(st.load(now), 6) if st else 0.0,
            "speed": round(st.speed, 6) if st else a.body.get("speed", 1.0),
            "breaker": st.breaker.state.value if st else "closed",
            "completed": a.completed, "failed": a.failed, "late_completions": a.late,
            "tokens": a.tokens, "last_seen_at": self._t(a.last_seen),
            "skills": a.body.get("skills", []),
        }

    def agent_views(self) -> list[dict[str, Any]]:
        return [self.agent_view(a) for a in self.agents]

    def metrics_snapshot(self) -> dict[str, Any]:
        """What /metrics exports (per-agent load, queue depth per class, usage, counters)."""
        q = self.queues()
        return {"agents": self.agent_views(), "queued_by_class": q["queued_by_class"],
                "states": q["states"], "tokens_by_tenant": q["tokens_by_tenant"],
                "stats": q["stats"]}

    def queues(self) -> dict[str, Any]:
        """Queue depths per class and tenant, pools, agents, counters and waits."""
        by_class = dict.fromkeys((p.value for p in _PRIORITIES), 0)
        by_tenant: dict[str, int] = {}
        states = dict(self.counts)
        for t in self.core.tasks.values():
            if t.phase == QUEUED:
                by_class[t.spec.priority.value] += 1
                k = t.spec.tenant or "-"
                by_tenant[k] = by_tenant.get(k, 0) + 1
        waits = {}
        for c, xs in self.waits.items():
            if xs:
                s = sorted(xs)
                waits[c] = {"n": len(s), "p50": s[len(s) // 2],
                            "p99": s[min(len(s) - 1, int(0.99 * len(s)))], "max": s[-1]}
        m = self.core.metrics
        return {
            "queued_by_class": by_class, "queued_by_tenant": by_tenant, "states": states,
            "agents": {a: {"queued": len(st.queue) + len(st.planned), "running": len(st.running),
                           "load": round(st.load(self.core.now), 6), "status": st.status.value,
                           "breaker": st.breaker.state.value}
                       for a, st in self.core.agents.items()},
            "stats": {**self.stats, "steals": m.steals, "migrations": m.migrations,
                      "stale_core": m.stale},
            "waits": waits, "tokens_by_tenant": dict(self.tokens_by_tenant),
            "tokens_by_agent": {a.id: a.tokens for a in self.agents.values()},
            "started_by_tenant": dict(self.started_by_tenant),
            "policy": self.options.policy, "tenant_weights": dict(self.options.tenant_weights),
        }


def _spec(b: dict[str, Any], now: float) -> TaskSpec:
    d = b.get("deadline")
    demand = b.get("demand")
    allowed = b.get("allowed_agents")
    return TaskSpec(
        id=b["id"], work=float(b.get("work", 1.0)), priority=_PRIORITY[b.get("priority", "normal")],
        deadline=now + d if d is not None else None, hard_deadline=b.get("hard_deadline", False),
        tenant=b.get("tenant"), skills=tuple(b.get("skills", ())),
        allowed=tuple(allowed) if allowed is not None else None,
        forbidden=tuple(b.get("forbidden_agents", ())),
        demand=tuple(sorted(demand.items())) if demand else (),
        tokens=float(b.get("tokens", 0.0)), timeout=b.get("timeout"),
        max_retries=b.get("max_retries"), kind=b.get("kind"))


__all__ = ["FINAL_STATES", "STATES", "AgentRecord", "Delivery", "LiveCoordinator",
           "LiveOptions", "TaskRecord"]
