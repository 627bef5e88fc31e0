"""The executor core on Ray: agents are Ray actors, the coordinator drives the core.

The scheduling core (`allocator.online.Executor`) is unchanged: it runs in the
coordinator (the driver process) and decides everything - placement, queue
order, stealing, retries, breakers, rate limits, timeouts - exactly as in the
simulator and the asyncio runtime. This module only carries out its
instructions on actors and reports back what happened:

* **Dispatch** -> `actor.run.remote(payload, ...)`. Each agent is one async
  actor created with `max_concurrency=agent.concurrency`, so Ray itself
  never runs more attempts on it than the core allows; synchronous task
  functions run in the actor's own thread pool of that size. The task's
  function and arguments travel with the call (Ray moves arguments over
  100 KB through its object store by itself); with `put_payloads=True`
  they are put in the object store once at submit, so a retry or a move to
  another agent ships a reference (worth it for large arguments; it costs
  a `ray.put`, about 0.8 ms here, per task).
* **Steal / Migrate** move *queued* tasks, and queues live in the core, so
  nothing has to happen on the actors (they only ever see dispatched work);
  the coordinator counts them.
* **Cancel** -> `ray.cancel(ref)` and the attempt is forgotten (a late result
  is stale for the core anyway).
* **SetTimer** -> the wait loop wakes up at that time and posts a Tick.
* **Complete / Fail / Reject** resolve the task's future exactly once.

Back from the actors: a result is `TaskCompleted` (with the duration the
actor measured and the usage of a `Reported` value, which settles the rate
limits); an exception raised by the task is `TaskFailed`, which feeds the
agent's circuit breaker - after enough failures the breaker opens and the
core moves the agent's queue elsewhere. A dead actor (`RayActorError`:
killed, node lost, OOM) is `AgentFailed`: the core takes the agent down,
retries each in-flight attempt elsewhere (code `agent_failed`) or fails it
with the reason once its retries are used up, and re-places the queue.
Every other reference of the dead actor is dropped, so nothing is reported
twice. With `max_restarts > 0` Ray restarts the actor; the coordinator pings
it `rejoin_after` seconds later and, once it answers, re-joins the agent
(`AgentJoined`, a fresh breaker).

Rate limits travel with the agent into the core (`AgentJoined.rate_limit`):
the core only dispatches when the agent's token buckets allow it.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from allocator.clock import Clock, MonotonicClock
from allocator.distributed import work, worker
from allocator.distributed.session import SessionInfo, ray_session, require_ray
from allocator.distributed.worker import AgentWorker, current_agent
from allocator.errors import AllocatorError, InvalidInputError
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
    Dispatch,
    Event,
    Fail,
    Instruction,
    Migrate,
    PlanInstalled,
    RateLimit,
    Reject,
    SetTimer,
    Shutdown,
    Steal,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSpec,
    TaskSubmitted,
    Tick,
)
from allocator.online.policies import Policy
from allocator.online.runtime import (
    TaskFailedError,
    TaskRejectedError,
    _bad_usage,
    _check_fields,
)
from models import Agent, Plan

log = logging.getLogger(__name__)

__all__ = ["AgentWorker", "DriverStats", "RayExecutor", "current_agent"]

# --------------------------------------------------------------------------- the coordinator

_DEFAULT_SPEC = TaskSpec(id="")
_SPEC_FIELDS = frozenset(TaskSpec.__dataclass_fields__) - {"id"}
#: The fields `_check_fields` checks (a default stands in for each one not given).
_CHECKED = ("work", "priority", "deadline", "skills", "allowed", "forbidden", "demand",
            "tokens", "migration_cost", "timeout", "max_retries")


@dataclass(slots=True)
class _Job:
    payload: Any  # (fn, args), or its ObjectRef with put_payloads
    future: concurrent.futures.Future[Any]
    results: dict[int, Any] = field(default_factory=dict)
    last_error: str | None = None


@dataclass(slots=True)
class _Attempt:
    task_id: str
    agent: str
    attempt: int


@dataclass
class DriverStats:
    """What the coordinator carried out (counts of instructions and events)."""

    dispatches: int = 0
    completed: int = 0
    failed_attempts: int = 0
    steals: int = 0
    migrations: int = 0
    cancels: int = 0
    actor_deaths: int = 0
    rejoins: int = 0
    breaker_opened: int = 0
    breaker_half_open: int = 0
    breaker_closed: int = 0
    terminal: dict[str, int] = field(default_factory=dict)


class RayExecutor:
    """Run callables on agents that are Ray actors, under an online policy.

    Use as a context manager::

        with RayExecutor(agents, "stealing") as rx:
            fut = rx.submit(fn, 1, 2, work=1.0, deadline=30.0)
            rx.join()
            fut.result()

    The coordinator is driven by the calling thread: `join()` (or `step()`)
    waits for results and feeds them to the core. `submit` keyword arguments
    are TaskSpec fields; deadlines are absolute times on `self.clock` (seconds
    since the executor started by default).

    `address` joins an existing Ray cluster (else `RAY_ADDRESS`, else a local
    Ray; see `ray_session`); an already initialised Ray is reused.
    `actor_options` are extra `ray.remote` options for every agent's actor,
    or a function of the agent (e.g. `{"resources": {...}}` to pin agents to
    nodes). `max_restarts` and `rejoin_after` control actor restarts;
    `put_payloads` stores each task's function and arguments in the object
    store once (for large arguments that are retried or moved).
    `coordinator` (e.g. `allocator.online.coordinator.Coordinator(rx.core)`,
    the simulator's hook `(core, now) -> instructions`) is called every
    `coordinate_every` seconds from the loop; its plans reach the core as
    PlanInstalled and come back as Migrate instructions. It runs inline, so
    keep its solver time limit short.
    """

    def __init__(
        self,
        agents: Iterable[Agent | tuple[Agent, RateLimit | None]],
        policy: str | Policy = "stealing",
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        temp_dir: str | None = None,
        clock: Clock | None = None,
        actor_options: dict[str, Any] | Callable[[Agent], dict[str, Any]] | None = None,
        max_restarts: int = 0,
        rejoin_after: float = 1.0,
        on_instruction: Callable[[Instruction], None] | None = None,
        put_payloads: bool = False,
        coordinator: Callable[[Executor, float], list[Instruction]] | None = None,
        coordinate_every: float | None = None,
        **executor_kwargs: Any,
    ) -> None:
        self._ray = require_ray()
        # Stdlib-only modules go by value: actors start without importing `allocator`.
        for mod in (worker, work):
            self._ray.cloudpickle.register_pickle_by_value(mod)
        self._session_args = dict(address=address, num_cpus=num_cpus, temp_dir=temp_dir)
        self._session: Any = None
        self.session: SessionInfo | None = None
        self.clock = clock or MonotonicClock()
        self.actor_options = actor_options
        self.max_restarts = max_restarts
        self.rejoin_after = rejoin_after
        self.on_instruction = on_instruction
        self.put_payloads = put_payloads
        self.coordinator = coordinator
        self.coordinate_every = coordinate_every
        self._next_coordinate = coordinate_every if coordinate_every else float("inf")
        executor_kwargs.setdefault("log", 10_000)
        self.core = Executor(policy, **executor_kwargs)
        self._initial = [a if isinstance(a, tuple) else (a, None) for a in agents]
        self.specs: dict[str, tuple[Agent, RateLimit | None]] = {}
        self.actors: dict[str, Any] = {}
        self._dead: set[str] = set()
        self._incarnation: dict[str, str] = {}  # agent -> the actor process last heard from
        self._restarted: set[str] = set()  # a new process answered; not counted yet
        self._jobs: dict[str, _Job] = {}
        self._inflight: dict[Any, _Attempt] = {}
        self._by_attempt: dict[tuple[str, int], Any] = {}
        self._pings: dict[Any, str] = {}
        self._rejoin_at: dict[str, float] = {}
        self._pending: list[Event] = []
        self._timer_at = float("inf")
        self._ids = itertools.count()
        self.stats = DriverStats()
        self.started = False
        self.closed = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> RayExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(drain=exc[0] is None)

    def start(self) -> None:
        if self.started:
            return
        self._session = ray_session(**self._session_args)  # type: ignore[arg-type]
        self.session = self._session.__enter__()
        self.started = True
        for spec, limit in self._initial:
            self.add_agent(spec, limit)
        self._flush()

    def close(self, *, drain: bool = True, timeout: float | None = None) -> list[str]:
        """Shut the core down (drain: finish everything; else return queued tasks unrun),
        kill the actors, and end the Ray session if this executor started it.
        Returns the ids of the tasks returned unrun."""
        if self.closed or not self.started:
            return []
        returned: list[str] = []
        try:
            self._post(Shutdown(drain=drain, cancel_running=not drain))
            before = set(self._jobs)
            try:
                self.join(timeout=timeout)
            except AllocatorError:
                # Out of time. Every task still live ends now (queued: returned unrun,
                # running: cancelled), or its future would stay pending for ever.
                self._post(Shutdown(drain=False, cancel_running=True))
                self._flush()
                raise
            returned = sorted(t for t in before if self.core.outcome(t) is not None
                              and self.core.outcome(t)[1] == "shutdown")  # type: ignore[index]
        finally:
            self.closed = True
            for actor in self.actors.values():
                try:
                    self._ray.kill(actor)
                except Exception:  # already dead
                    log.debug("kill failed", exc_info=True)
            self.actors.clear()
            self._session.__exit__(None, None, None)
            for tid, job in self._jobs.items():  # (interrupted mid-close: none ends twice)
                if not job.future.done():
                    job.future.set_exception(TaskFailedError(
                        tid, Code.SHUTDOWN, "the executor closed before the task ended"))
            self._jobs.clear()
        return returned

    # ------------------------------------------------------------------ agents and tasks

    def _options(self, spec: Agent) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if callable(self.actor_options):
            opts.update(self.actor_options(spec))
        elif self.actor_options:
            opts.update(self.actor_options)
        opts["max_concurrency"] = max(1, spec.concurrency)
        opts.setdefault("max_restarts", self.max_restarts)
        opts.setdefault("max_task_retries", 0)  # the core decides retries, not Ray
        return opts

    def add_agent(self, agent: Agent, rate_limit: RateLimit | None = None) -> None:
        """Start an actor for `agent` and tell the core it joined."""
        if not self.started:
            raise InvalidInputError("start the executor first", field="agent")
        cls = self._ray.remote(AgentWorker)
        old = self.actors.get(agent.id)
        if old is not None:
            self._forget_agent(agent.id)
            try:
                self._ray.kill(old)
            except Exception:
                log.debug("kill failed", exc_info=True)
        self.actors[agent.id] = cls.options(**self._options(agent)).remote(
            agent.id, agent.concurrency)
        self.specs[agent.id] = (agent, rate_limit)
        self._dead.discard(agent.id)
        self._incarnation.pop(agent.id, None)
        self._restarted.discard(agent.id)
        self._post(AgentJoined(agent=agent, rate_limit=rate_limit))

    def remove_agent(self, agent_id: str) -> None:
        """Graceful leave: queued work moves elsewhere, running work finishes."""
        self._post(AgentLeft(agent_id=agent_id))

    def actor(self, agent_id: str) -> Any:
        """The actor handle of an agent (for tests and ops: `ray.kill(rx.actor("a"))`)."""
        return self.actors[agent_id]

    def submit(self, fn: Callable[..., Any], *args: Any,
               **spec_fields: Any) -> concurrent.futures.Future[Any]:
        """Submit `fn(*args)`; keyword arguments are TaskSpec fields (id, work, priority,
        deadline, timeout, tenant, skills, tokens, home, ...). Returns a future resolved
        by the task's terminal instruction (its value, TaskRejectedError or TaskFailedError)."""
        if not self.started:
            self.start()
        if self.closed:
            raise InvalidInputError("executor is closed", field="submit")
        spec = self._spec(spec_fields)
        task_id = spec.id
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        payload = (fn, tuple(args))
        self._jobs[task_id] = _Job(self._ray.put(payload) if self.put_payloads else payload, fut)
        self._post(TaskSubmitted(task=spec))
        return fut

    def _spec(self, fields: dict[str, Any]) -> TaskSpec:
        """The TaskSpec of a submission, checked here as the asyncio runtime checks it.

        The core raises on a bad field or a known id when it handles the submission,
        which happens later, in `step`/`join`, with other events in the same batch: a
        finished task's id, `priority="urgent"` or an id that is not a string made the
        core raise there, the batch's other submissions were dropped unrun and `join`
        (and `close`) waited for ever. Negative work or tokens, NaN times and negative
        demands were taken as given.
        """
        task_id = fields.pop("id", None) or f"task-{next(self._ids)}"
        if not isinstance(task_id, str):
            raise InvalidInputError(f"need a string, got {task_id!r}", field="id")
        core = self.core
        if task_id in self._jobs or task_id in core.tasks or task_id in core.finished:
            raise InvalidInputError(f"duplicate task id {task_id!r}", field="id")
        unknown = sorted(set(fields) - _SPEC_FIELDS)
        if unknown:
            raise InvalidInputError(f"not a TaskSpec field: {unknown[0]!r}; known: "
                                    f"{', '.join(sorted(_SPEC_FIELDS))}", field=unknown[0])
        f = {k: getattr(_DEFAULT_SPEC, k) for k in _CHECKED} | fields
        prio, skills, allowed, forbidden, demand = _check_fields(
            f["work"], f["priority"], f["deadline"], f["skills"], f["allowed"], f["forbidden"],
            f["demand"], f["tokens"], f["migration_cost"], f["timeout"], f["max_retries"])
        for name in ("tenant", "home", "kind"):
            if f.get(name) is not None and not isinstance(f[name], str):
                raise InvalidInputError(f"need a string or None, got {f[name]!r}", field=name)
        return TaskSpec(**{**fields, "id": task_id, "work": float(f["work"]), "priority": prio,
                           "skills": skills, "allowed": allowed, "forbidden": forbidden,
                           "demand": demand, "tokens": float(f["tokens"]),
                           "migration_cost": float(f["migration_cost"]),
                           "hard_deadline": bool(f.get("hard_deadline", False))})

    def cancel(self, task_id: str, reason: str = "cancelled by submitter") -> None:
        self._post(TaskCancelled(task_id=task_id, reason=reason))

    def install(self, plan: Plan) -> None:
        """Install a solver's plan: queued tasks move to their planned agents."""
        self._post(PlanInstalled(plan=plan))

    # ------------------------------------------------------------------ the loop

    def _post(self, ev: Event) -> None:
        ev.time = self.clock.now()
        self._pending.append(ev)

    def _flush(self) -> None:
        while self._pending:
            events, self._pending = self._pending, []
            self._apply(self.core.handle(*events))

    def pending(self) -> int:
        """Tasks submitted and not ended yet."""
        return len(self._jobs)

    def step(self, timeout: float = 0.1) -> int:
        """Feed pending events to the core, wait up to `timeout` s for results (or the
        core's next timer) and feed them too. Returns the number of results handled."""
        self._flush()
        now = self.clock.now()
        if self.coordinator is not None and now >= self._next_coordinate:
            assert self.coordinate_every
            self._next_coordinate = now + self.coordinate_every
            self._post(Tick())
            self._flush()
            self._apply(self.coordinator(self.core, self.core.now))
            now = self.clock.now()
        if now >= self._timer_at:
            at, self._timer_at = self._timer_at, float("inf")
            self._post(Tick())
            self._pending[-1].time = max(self._pending[-1].time, at)
            self._flush()
            now = self.clock.now()
        wait = min(timeout, max(0.0, self._timer_at - now))
        refs = list(self._inflight) + list(self._pings)
        if not refs:
            if wait > 0 and (self._jobs or self._rejoin_at):
                time.sleep(min(wait, 0.05))
            self._check_rejoins()
            return 0
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=wait)
        if ready:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            if ref in self._pings:
                self._on_ping(ref)
            elif ref in self._inflight:
                self._on_result(ref)
        self._check_rejoins()
        self._flush()
        return len(ready)

    def join(self, timeout: float | None = None) -> None:
        """Run the coordinator until every submitted task has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flush()
        while self._jobs:
            if deadline is not None and time.monotonic() > deadline:
                raise AllocatorError(f"{len(self._jobs)} task(s) still live after {timeout}s",
                                     field="join")
            self.step(0.2)

    # ------------------------------------------------------------------ results

    def _on_result(self, ref: Any) -> None:
        att = self._inflight.pop(ref)
        self._by_attempt.pop((att.task_id, att.attempt), None)
        ray = self._ray
        try:
            status, value, dur, usage, incarnation = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            self._actor_died(att.agent, e)
            return
        except Exception as e:  # object lost, worker crash mid-call, result not picklable...
            self.stats.failed_attempts += 1
            self._post(TaskFailed(task_id=att.task_id, agent=att.agent, attempt=att.attempt,
                                  reason=f"ray: {_ray_reason(ray, e)}"))
            return
        self._heard_from(att.agent, incarnation)
        job = self._jobs.get(att.task_id)
        bad = _bad_usage(usage) if status == "ok" and usage is not None else None
        if bad is not None:
            # The task's own report is at fault (as in the asyncio runtime): fail it, not
            # retryable, before the core sees it (a string there made the core raise).
            self.stats.failed_attempts += 1
            if job is not None:
                job.last_error = str(bad)
            self._post(TaskFailed(task_id=att.task_id, agent=att.agent, attempt=att.attempt,
                                  reason=str(bad), duration=dur, retryable=False))
            return
        if status == "ok":
            if job is not None:
                job.results[att.attempt] = value
            self._post(TaskCompleted(task_id=att.task_id, agent=att.agent,
                                     attempt=att.attempt, duration=dur, usage=usage))
        else:
            self.stats.failed_attempts += 1
            if job is not None:
                job.last_error = value
            self._post(TaskFailed(task_id=att.task_id, agent=att.agent, attempt=att.attempt,
                                  reason=value, duration=dur))

    def _heard_from(self, agent_id: str, incarnation: str) -> None:
        """Count a restart no call saw: Ray restarted the actor while nothing was in flight
        on it (killed while idle), so no `RayActorError` came and only the answering
        process changed. While other calls of the agent are in flight the count waits:
        one of them may still fail with the old process, and `_actor_died` counts that."""
        before = self._incarnation.get(agent_id)
        self._incarnation[agent_id] = incarnation
        if agent_id in self._dead:
            return
        if before is not None and before != incarnation:
            self._restarted.add(agent_id)
        if agent_id in self._restarted and not any(
                a.agent == agent_id for a in self._inflight.values()):
            self._restarted.discard(agent_id)
            self.stats.actor_deaths += 1
            self.stats.rejoins += 1
            log.warning("agent %s: its actor was restarted while idle", agent_id)

    def _forget_agent(self, agent_id: str) -> None:
        for ref, att in list(self._inflight.items()):
            if att.agent == agent_id:
                del self._inflight[ref]
                self._by_attempt.pop((att.task_id, att.attempt), None)

    def _actor_died(self, agent_id: str, err: BaseException) -> None:
        if agent_id in self._dead:
            return
        self._dead.add(agent_id)
        self._restarted.discard(agent_id)  # the same death, counted here
        self.stats.actor_deaths += 1
        # Every other attempt on this actor is lost with it: the core retries them all
        # on AgentFailed, so their refs must never be reported again.
        self._forget_agent(agent_id)
        reason = f"actor died: {type(err).__name__}: {_first_line(err)}"
        log.warning("agent %s: %s", agent_id, reason)
        self._post(AgentFailed(agent_id=agent_id, reason=reason))
        if self.max_restarts != 0:
            self._rejoin_at[agent_id] = time.monotonic() + self.rejoin_after

    def _check_rejoins(self) -> None:
        if not self._rejoin_at:
            return
        now = time.monotonic()
        for agent_id, at in list(self._rejoin_at.items()):
            if now >= at and agent_id in self.actors:
                del self._rejoin_at[agent_id]
                self._pings[self.actors[agent_id].ping.remote()] = agent_id

    def _on_ping(self, ref: Any) -> None:
        agent_id = self._pings.pop(ref)
        try:
            incarnation = self._ray.get(ref)
        except Exception:
            # Not back (yet, or for good): try again later while Ray may still restart it.
            self._rejoin_at[agent_id] = time.monotonic() + self.rejoin_after
            return
        self._dead.discard(agent_id)
        self._incarnation[agent_id] = incarnation
        self.stats.rejoins += 1
        spec, limit = self.specs[agent_id]
        self._post(AgentJoined(agent=spec, rate_limit=limit))

    # ------------------------------------------------------------------ instructions

    def _apply(self, out: list[Instruction]) -> None:
        st = self.stats
        hook = self.on_instruction
        for ins in out:
            if hook is not None:
                hook(ins)
            typ = type(ins)
            if typ is Dispatch:
                self._dispatch(ins)  # type: ignore[arg-type]
            elif typ is Complete or typ is Fail or typ is Reject:
                self._finish(ins)
            elif typ is SetTimer:
                self._timer_at = min(self._timer_at, ins.at)  # type: ignore[attr-defined]
            elif typ is Cancel:
                st.cancels += 1
                ref = self._by_attempt.pop((ins.task_id, ins.attempt), None)  # type: ignore[attr-defined]
                if ref is not None:
                    self._inflight.pop(ref, None)
                    try:
                        self._ray.cancel(ref)
                    except Exception:
                        log.debug("ray.cancel failed", exc_info=True)
            elif typ is Steal:
                st.steals += 1
            elif typ is Migrate:
                st.migrations += 1
            elif typ is BreakerOpened:
                st.breaker_opened += 1
                log.warning("breaker of %s opened: %s", ins.agent, ins.reason)  # type: ignore[attr-defined]
            elif typ is BreakerHalfOpen:
                st.breaker_half_open += 1
            elif typ is BreakerClosed:
                st.breaker_closed += 1

    def _dispatch(self, ins: Dispatch) -> None:
        job = self._jobs[ins.task_id]
        actor = self.actors[ins.agent]
        try:
            ref = actor.run.remote(job.payload, ins.task_id, ins.attempt)
        except Exception as e:
            # The function or its arguments cannot be pickled. Raised out of `join`, it
            # left the task running in the core for ever (its agent's slot held) and
            # dropped the rest of the batch's instructions. No agent can run it: fail it.
            self.stats.failed_attempts += 1
            job.last_error = f"{type(e).__name__}: {_first_line(e)}"
            self._post(TaskFailed(task_id=ins.task_id, agent=ins.agent, attempt=ins.attempt,
                                  reason=f"cannot send the task to its actor: {_cause(e)}",
                                  retryable=False))
            return
        self._inflight[ref] = _Attempt(ins.task_id, ins.agent, ins.attempt)
        self._by_attempt[(ins.task_id, ins.attempt)] = ref
        self.stats.dispatches += 1

    def _finish(self, ins: Instruction) -> None:
        tid: str = ins.task_id  # type: ignore[attr-defined]
        kind = type(ins).__name__.lower()
        self.stats.terminal[kind] = self.stats.terminal.get(kind, 0) + 1
        job = self._jobs.pop(tid)
        if job.future.done():  # pragma: no cover - the core's exactly-once invariant
            raise RuntimeError(f"task {tid} ended twice")
        if isinstance(ins, Complete):
            self.stats.completed += 1
            job.future.set_result(job.results.pop(ins.attempt, None))
        elif isinstance(ins, Reject):
            job.future.set_exception(TaskRejectedError(tid, ins.code, ins.reason))
        elif isinstance(ins, Fail):
            exc = TaskFailedError(tid, ins.code, ins.reason)
            if job.last_error:
                exc.__cause__ = RuntimeError(job.last_error)
            job.future.set_exception(exc)

    # ------------------------------------------------------------------ introspection

    def actor_stats(self) -> dict[str, dict[str, Any]]:
        """Each live actor's own counters (peak concurrent attempts, attempts run)."""
        out: dict[str, dict[str, Any]] = {}
        for agent_id, actor in self.actors.items():
            if agent_id in self._dead:
                continue
            try:
                out[agent_id] = self._ray.get(actor.stats.remote(), timeout=10)
            except Exception:
                log.debug("stats of %s failed", agent_id, exc_info=True)
        return out


def _ray_reason(ray: Any, e: BaseException) -> str:
    """`Type: message` of what went wrong; for a RayTaskError the error under it (the
    first line of a RayTaskError is Ray's coloured `ray::AgentWorker.run() (pid=...)`
    header: a result that could not be pickled was reported as just that)."""
    cause = getattr(e, "cause", None) if isinstance(e, ray.exceptions.RayTaskError) else None
    if isinstance(cause, BaseException):
        return f"{type(e).__name__}({type(cause).__name__}): {_first_line(cause)}"
    return f"{type(e).__name__}: {_first_line(e)}"


def _cause(e: BaseException) -> str:
    """`Type: message` of the innermost cause (Ray wraps a pickling error in a TypeError
    whose first line quotes the whole payload)."""
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {_first_line(e)}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""
