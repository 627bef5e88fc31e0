"""Asyncio runtime: the executor core driving real callables.

Coroutine functions run as asyncio tasks; plain functions run in a thread
pool. The core decides what runs where (its agents are logical workers with
a concurrency limit each); the runtime carries out Dispatch, Cancel and
SetTimer, and reports completions and failures back as events. Events are
batched: everything posted in one loop iteration goes to `core.handle` at
once.

Each `submit` returns an asyncio future resolved exactly once by the task's
terminal instruction: the result, `TaskRejectedError` or `TaskFailedError`
(with the last exception as `__cause__`). A task may report usage by
returning `Reported(value, usage={"tokens": n})`.

Caveat: a blocking function cannot be interrupted; when it times out or is
cancelled the core moves on (its late result is stale and ignored) but the
thread stays busy until the function returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from allocator.errors import AllocatorError, InvalidInputError
from allocator.online.clock import Clock, MonotonicClock
from allocator.online.core import Executor
from allocator.online.events import (
    AgentFailed,
    AgentJoined,
    AgentLeft,
    Cancel,
    Code,
    Complete,
    Dispatch,
    Event,
    Fail,
    Instruction,
    RateLimit,
    Reject,
    SetTimer,
    Shutdown,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSpec,
    TaskSubmitted,
    Tick,
)
from allocator.online.policies import Policy
from models import Agent

#: Rounds of handle/apply per flush before yielding to the event loop: enough
#: to run a burst of instantly-finishing tasks in one turn, few enough that
#: timers and I/O callbacks are not starved.
FLUSH_ROUNDS = 64


class TaskRejectedError(AllocatorError):
    """The executor did not run the task (admission, shutdown, no eligible agent)."""


    def __init__(self, task_id: str, code: Code, reason: str) -> None:
        super().__init__(f"task {task_id!r} rejected ({code.value}): {reason}")
        self.task_id, self.code, self.reason = task_id, code, reason


class TaskFailedError(AllocatorError):
    """The task was tried and gave up, was cancelled or timed out."""


    def __init__(self, task_id: str, code: Code, reason: str) -> None:
        super().__init__(f"task {task_id!r} failed ({code.value}): {reason}")
        self.task_id, self.code, self.reason = task_id, code, reason


@dataclass(slots=True)
class Reported:
    """A task's return value plus the usage it reports (e.g. {"tokens": 812})."""

    value: Any
    usage: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    is_coro: bool
    results: dict[int, Any] = field(default_factory=dict)
    error: BaseException | None = None


class _TaskFuture(asyncio.Future):  # type: ignore[type-arg]
    """The future `submit` returns: cancelling it cancels the task in the core."""

    runtime: Runtime
    task_id: str

    def cancel(self, msg: Any = None) -> bool:
        done = super().cancel(msg)
        if done:
            self.runtime._cancelled(self.task_id)
        return done


async def _resume(coro: Any, first: Any) -> Any:
    """Continue a coroutine that was started eagerly and yielded `first`.

    Mirrors what asyncio.Task does: wait for the yielded future, then resume
    the coroutine (which reads the future's result itself). Cancelling the
    wrapping Task cancels the awaited future, so the coroutine sees
    CancelledError where it awaited, as under a plain Task.
    """
    y = first
    while True:
        try:
            if y is None:
                await asyncio.sleep(0)  # a bare yield: give the loop one turn
            else:
                await asyncio.wait((y,))
        except asyncio.CancelledError:
            if y is not None:
                y.cancel()
            try:
                y = coro.throw(asyncio.CancelledError())
            except StopIteration as stop:
                return stop.value
            continue
        try:
            y = coro.send(None)
        except StopIteration as stop:
            return stop.value


class Runtime:
    """Run callables on logical agents under an online policy.

    Use as `async with Runtime(agents, "edf+stealing") as rt:`; leaving the
    block drains (waits for every task). `await rt.shutdown(drain=False)`
    instead returns every queued task unrun (their futures raise
    TaskRejectedError with code `shutdown`) and lets running ones finish, or
    cancels them with `cancel_running=True`.
    """

    def __init__(
        self,
        agents: Iterable[Agent | tuple[Agent, RateLimit | None]],
        policy: str | Policy = "stealing",
        *,
        clock: Clock | None = None,
        threads: int | None = None,
        **executor_kwargs: Any,
    ) -> None:
        self.clock = clock or MonotonicClock()
        executor_kwargs.setdefault("log", 10_000)
        agents = list(agents)
        self.core = Executor(policy, **executor_kwargs)
        self._jobs: dict[str, _Job] = {}
        self._running: dict[tuple[str, int], tuple[str, Any]] = {}
        self._done_q: deque[tuple[str, str, int, float, Any]] = deque()
        self._wake_pending = False
        self._loop: Any = None
        self._coro_fns: dict[Any, bool] = {}
        self._pending: list[Event] = []
        self._flushing = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._ids = itertools.count()
        self._idle: asyncio.Event | None = None
        self._returned: list[str] = []
        self.closed = False
        total = 0
        joins: list[Event] = []
        for a in agents:
            spec, limit = a if isinstance(a, tuple) else (a, None)
            total += spec.concurrency
            joins.append(AgentJoined(agent=spec, rate_limit=limit, time=self.clock.now()))
        self.core.handle(*joins)
        self._pool = ThreadPoolExecutor(max_workers=threads or max(total, 1),
                                        thread_name_prefix="allocator-agent")

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown(drain=True)

    # ------------------------------------------------------------------ submitting

    def submit(self, fn: Callable[..., Any], *args: Any, **spec_fields: Any) -> asyncio.Future[Any]:
        """Submit `fn(*args)`; keyword arguments are TaskSpec fields (id, work, priority,
        deadline (absolute, on `self.clock`), timeout, tenant, skills, tokens, home ...)."""
        loop = asyncio.get_running_loop()
        task_id = spec_fields.pop("id", None) or f"task-{next(self._ids)}"
        if task_id in self._jobs:
            raise InvalidInputError(f"duplicate task id {task_id!r}", field="id")
        spec = TaskSpec(id=task_id, **spec_fields)
        # A future that reports its own cancellation (no done-callback per task).
        fut = _TaskFuture(loop=loop)
        fut.runtime = self
        fut.task_id = task_id
        is_coro = self._coro_fns.get(fn)
        if is_coro is None:
            target = fn.func if isinstance(fn, functools.partial) else fn
            is_coro = inspect.iscoroutinefunction(target)
            if not isinstance(fn, functools.partial):
                self._coro_fns[fn] = is_coro
        self._jobs[task_id] = _Job(fn, args, fut, is_coro)
        self._post(TaskSubmitted(task=spec))
        return fut

    def add_agent(self, agent: Agent, rate_limit: RateLimit | None = None) -> None:
        self._post(AgentJoined(agent=agent, rate_limit=rate_limit))

    def remove_agent(self, agent_id: str) -> None:
        """Graceful leave: queued work moves, running work finishes."""
        self._post(AgentLeft(agent_id=agent_id))

    def fail_agent(self, agent_id: str, reason: str = "agent failed") -> None:
        """Declare an agent dead: its running attempts are abandoned and retried elsewhere."""
        for key, (agent, handle) in list(self._running.items()):
            if agent == agent_id:
                del self._running[key]
                handle.cancel()
        self._post(AgentFailed(agent_id=agent_id, reason=reason))

    def _post(self, ev: Event) -> None:
        ev.time = self.clock.now()
        self._pending.append(ev)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        # Drain until quiet (bounded, so the loop still gets its turn): tasks that
        # finish synchronously post their completions while we apply instructions.
        self._flushing = True
        try:
            for _ in range(FLUSH_ROUNDS):
                if not self._pending:
                    break
                events, self._pending = self._pending, []
                self.apply(self.core.handle(*events))
        finally:
            self._flushing = False
            if self._pending:
                self._flushing = True
                asyncio.get_running_loop().call_soon(self._flush)

    # ------------------------------------------------------------------ instructions

    def apply(self, out: list[Instruction]) -> None:
        """Carry out the core's instructions (also used by the coordinator)."""
        for ins in out:
            typ = type(ins)
            if typ is Dispatch:
                self._start(ins)  # type: ignore[arg-type]
            elif typ is Complete:
                job = self._jobs.pop(ins.task_id)  # type: ignore[attr-defined]
                if not job.future.done():
                    job.future.set_result(job.results.pop(ins.attempt, None))  # type: ignore[attr-defined]
            elif typ is Fail or typ is Reject:
                tid, code, reason = ins.task_id, ins.code, ins.reason  # type: ignore[attr-defined]
                job = self._jobs.pop(tid)
                if typ is Reject:
                    exc: AllocatorError = TaskRejectedError(tid, code, reason)
                    if code is Code.SHUTDOWN:
                        self._returned.append(tid)
                else:
                    exc = TaskFailedError(tid, code, reason)
                    exc.__cause__ = job.error
                if not job.future.done():
                    job.future.set_exception(exc)
            elif typ is Cancel:
                hit = self._running.pop((ins.task_id, ins.attempt), None)  # type: ignore[attr-defined]
                if hit is not None:
                    hit[1].cancel()
            elif typ is SetTimer:
                self._arm(ins.at)  # type: ignore[attr-defined]
        if not self._jobs and self._idle is not None:
            self._idle.set()

    def _start(self, ins: Dispatch) -> None:
        job = self._jobs[ins.task_id]
        key = (ins.task_id, ins.attempt)
        if job.is_coro:
            # Eager start (what Python 3.12's eager tasks do): run the coroutine up
            # to its first suspension now; one that finishes there needs no Task.
            coro = job.fn(*job.args)
            t0 = self.clock.now()
            try:
                first = coro.send(None)
            except StopIteration as stop:
                self._report(ins.task_id, ins.agent, ins.attempt, t0, stop.value, None)
                return
            except BaseException as exc:  # the attempt failed synchronously
                self._report(ins.task_id, ins.agent, ins.attempt, t0, None, exc)
                return
            handle: Any = asyncio.get_running_loop().create_task(_resume(coro, first))
            self._running[key] = (ins.agent, handle)
            handle.add_done_callback(functools.partial(
                self._attempt_done, ins.task_id, ins.agent, ins.attempt, t0))
            return
        # Threads: submit to the pool directly; completions come back through one
        # queue and at most one loop wake-up per batch (not one per task).
        self._loop = asyncio.get_running_loop()
        cf = self._pool.submit(job.fn, *job.args)
        self._running[key] = (ins.agent, cf)
        cf.add_done_callback(functools.partial(
            self._thread_done, ins.task_id, ins.agent, ins.attempt, self.clock.now()))

    def _thread_done(self, task_id: str, agent: str, attempt: int, t0: float,
                     cf: Any) -> None:  # runs in the worker thread
        self._done_q.append((task_id, agent, attempt, t0, cf))
        if not self._wake_pending:
            self._wake_pending = True
            # A closed loop means nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drain_threads)

    def _drain_threads(self) -> None:
        self._wake_pending = False
        q = self._done_q
        while q:
            self._attempt_done(*q.popleft())
        self._flush()  # same loop turn: the freed slots get work without another wake-up

    def _attempt_done(self, task_id: str, agent: str, attempt: int, t0: float,
                      handle: Any) -> None:
        if self._running.pop((task_id, attempt), None) is None:
            return  # cancelled or abandoned by the core: nothing to report
        if handle.cancelled():
            self._post(TaskFailed(task_id=task_id, agent=agent, attempt=attempt,
                                  reason="cancelled", retryable=False,
                                  duration=self.clock.now() - t0))
            return
        exc = handle.exception()
        self._report(task_id, agent, attempt, t0, None if exc is not None else handle.result(),
                     exc)

    def _report(self, task_id: str, agent: str, attempt: int, t0: float, value: Any,
                exc: BaseException | None) -> None:
        job = self._jobs.get(task_id)
        dur = self.clock.now() - t0
        if exc is not None:
            if job is not None:
                job.error = exc
            self._post(TaskFailed(task_id=task_id, agent=agent, attempt=attempt,
                                  reason=repr(exc), duration=dur,
                                  retryable=not isinstance(exc, asyncio.CancelledError)))
            return
        usage = None
        if isinstance(value, Reported):
            value, usage = value.value, value.usage
        if job is not None:
            job.results[attempt] = value
        self._post(TaskCompleted(task_id=task_id, agent=agent, attempt=attempt, duration=dur,
                                 usage=usage))

    def _cancelled(self, task_id: str) -> None:
        if task_id in self._jobs:
            self._post(TaskCancelled(task_id=task_id))

    def _arm(self, at: float) -> None:
        if at >= self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        delay = max(0.0, at - self.clock.now())
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick, at)

    def _tick(self, at: float) -> None:
        self._timer = None
        self._timer_at = float("inf")
        self._post(Tick())
        # The loop's timer may fire a hair before the clock reaches `at`.
        self._pending[-1].time = max(self._pending[-1].time, at)

    # ------------------------------------------------------------------ shutdown

    async def join(self) -> None:
        """Wait until every submitted task has ended."""
        if not self._jobs:
            return
        self._idle = asyncio.Event()
        while self._jobs:
            self._idle.clear()
            await self._idle.wait()

    async def shutdown(self, *, drain: bool = True, cancel_running: bool = False) -> list[str]:
        """Stop accepting work; drain, or return queued tasks unrun. Returns their ids."""
        self.closed = True
        self._post(Shutdown(drain=drain, cancel_running=cancel_running))
        await self.join()
        if self._timer is not None:
            self._timer.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        returned, self._returned = self._returned, []
        return returned
