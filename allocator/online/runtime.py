"""Asyncio runtime: the executor core driving real callables.

Coroutine functions run as asyncio tasks; plain functions run on the
runtime's worker threads (see `Runtime`). The core decides what runs where
(its agents are logical workers with a concurrency limit each); the runtime
carries out Dispatch, Cancel and SetTimer, and reports completions and
failures back as events. Events are batched: everything posted in one loop
iteration goes to `core.handle` at once.

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
import contextvars
import functools
import heapq
import inspect
import itertools
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from allocator.clock import Clock, MonotonicClock
from allocator.errors import AllocatorError, InvalidInputError
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
    TaskFailed,
    TaskSpec,
    Tick,
)
from allocator.online.policies import Policy
from models import Agent, Priority

log = logging.getLogger(__name__)

#: Rounds of handle/apply per flush before yielding to the event loop: enough
#: to run a burst of instantly-finishing tasks in one turn, few enough that
#: timers and I/O callbacks are not starved.
FLUSH_ROUNDS = 64

#: How long a worker whose report waits in the queue lets the lock's holder take
#: it before reporting it itself (only a holder from outside, e.g. a coordinator
#: taking a snapshot, leaves reports behind).
_REPORT_WAIT = 0.005

#: Tells a worker thread to exit.
_STOP = object()

_get_ident = threading.get_ident
_monotonic = time.monotonic
_Context = contextvars.Context


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


_INF = float("inf")


def _real(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _names(field: str, v: object) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, tuple | list) or not all(
            isinstance(s, str) for s in v):
        raise InvalidInputError(f"need a tuple of names, got {v!r}", field=field)
    return tuple(v)


def _check_fields(work: object, priority: object, deadline: object, skills: object,
                  allowed: object, forbidden: object, demand: object, tokens: object,
                  migration_cost: object, timeout: object, max_retries: object,
                  ) -> tuple[Priority, tuple[str, ...], tuple[str, ...] | None,
                             tuple[str, ...], tuple[tuple[str, float], ...]]:
    """`Runtime.submit`'s fields checked (a typed error naming the first bad one).

    Returns the ones it normalises: the priority as a Priority (its value is
    accepted), the name lists and the demand as tuples.
    """
    for name, v in (("work", work), ("tokens", tokens), ("migration_cost", migration_cost)):
        if not (_real(v) and v >= 0):  # type: ignore[operator]
            raise InvalidInputError(f"need a finite number >= 0, got {v!r}", field=name)
    try:
        prio = Priority(priority)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidInputError(f"unknown priority {priority!r}; known: "
                                f"{', '.join(p.value for p in Priority)}",
                                field="priority") from None
    if deadline is not None and not _real(deadline):
        raise InvalidInputError(f"need a finite time or None, got {deadline!r}",
                                field="deadline")
    if timeout is not None and not (_real(timeout) and timeout > 0):  # type: ignore[operator]
        raise InvalidInputError(f"need a finite number > 0 or None, got {timeout!r}",
                                field="timeout")
    if max_retries is not None and not (
            isinstance(max_retries, int) and not isinstance(max_retries, bool)
            and max_retries >= 0):
        raise InvalidInputError(f"need an integer >= 0 or None, got {max_retries!r}",
                                field="max_retries")
    try:
        pairs = tuple((r, q) for r, q in demand)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise InvalidInputError(f"need (resource, amount) pairs, got {demand!r}",
                                field="demand") from None
    for r, q in pairs:
        if not (isinstance(r, str) and r and _real(q) and q >= 0):
            raise InvalidInputError(f"need a resource name and a finite amount >= 0, got "
                                    f"{(r, q)!r}", field="demand")
    return (prio, _names("skills", skills),
            None if allowed is None else _names("allowed", allowed),
            _names("forbidden", forbidden), tuple((r, float(q)) for r, q in pairs))


def _bad_usage(usage: object) -> InvalidInputError | None:
    """Why a task's reported usage cannot be taken (None: it can): a mapping of
    names to finite amounts >= 0 (the core charges `tokens` to the agent's quota)."""
    if not isinstance(usage, dict):
        return InvalidInputError(f"need a dict of amounts, got {usage!r}", field="usage")
    for k, v in usage.items():
        if not (isinstance(k, str) and _real(v) and v >= 0):
            return InvalidInputError(f"need a finite amount >= 0, got {v!r}",
                                     field=f"usage.{k}")
    return None


@dataclass(slots=True)
class Reported:
    """A task's return value plus the usage it reports (e.g. {"tokens": 812})."""

    value: Any
    usage: dict[str, float] = field(default_factory=dict)


#: `_TaskFuture._cb` once its first done callback has run or was removed: later
#: callbacks go to asyncio's own list (so the order of registration holds).
_USED = object()


class _TaskFuture(asyncio.Future):  # type: ignore[type-arg]
    """The future `submit` returns, carrying its job; cancelling it cancels the task.

    One object per task holds the callable, its arguments, and the value and
    error of its latest attempt (no separate job record, no done-callback).

    Its first done callback (typically `gather`'s or an awaiting Task's wake-up)
    is held here rather than in asyncio's list, and the runtime runs the first
    callbacks of every future it resolves in one loop callback (`_run_done`),
    in the order it resolved them: asyncio would schedule one loop handle per
    future. Further callbacks, and callbacks added once the future is done,
    take asyncio's own path after the first one. One ordering differs from
    plain asyncio: a loop callback that a coroutine started eagerly in the same
    batch schedules runs after the first callbacks of every future resolved in
    that batch, not between them.
    """

    __slots__ = ("_cb", "_cb_ctx", "args", "at", "error", "fn", "is_coro", "runtime", "spec",
                 "t_agent", "t_attempt", "task_id", "value", "value_attempt")

    runtime: Runtime
    task_id: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    is_coro: bool
    value: Any
    value_attempt: int
    #: The task and its submission time, until the loop hands them to the core.
    spec: TaskSpec | None
    at: float
    error: BaseException | None
    #: A blocking task's current attempt on a worker thread (-1: none) and its agent:
    #: a call whose attempt is no longer current never starts, and its result is stale.
    t_attempt: int
    t_agent: str

    _cb: Any
    _cb_ctx: contextvars.Context | None

    def add_done_callback(self, fn: Callable[[Any], object], *,  # type: ignore[override]
                          context: contextvars.Context | None = None) -> None:
        if self._cb is None and not self.done():
            self._cb = fn
            if context is None:
                context = contextvars.copy_context()
                if not len(context):
                    # An empty snapshot (the common case): `_run_done` runs the callback
                    # in a fresh empty context, the same thing, so no Context object per
                    # future outlives the call (20k futures held 20k of them, which
                    # lengthened every full collection of the garbage collector).
                    context = None
            self._cb_ctx = context
        elif context is None:  # (an explicit None would not copy the current context)
            super().add_done_callback(fn)
        else:
            super().add_done_callback(fn, context=context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:  # type: ignore[override]
        n = 0
        cb = self._cb
        if cb is not None and cb is not _USED and cb == fn:
            self._cb = _USED
            self._cb_ctx = None
            n = 1
        return n + super().remove_done_callback(fn)

    def cancel(self, msg: Any = None) -> bool:
        if self.done():
            return False
        self.runtime._resolving(self)
        done = super().cancel(msg)
        if done:
            self.runtime._cancelled(self.task_id)
        return done


#: What a worker may leave in the loop's inbox that ends a task (a Complete as its future).
_TERMINAL = (_TaskFuture, Complete, Fail, Reject)


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

    Threads: blocking callables run on the runtime's own worker threads (one
    per agent slot unless `threads` says otherwise). A worker that finishes a
    call queues its report; whichever thread holds `lock` hands the queued
    reports to the core in one batch (see `_combine`), and the worker runs
    the oldest blocking task the core dispatches next at once; only what
    needs the event loop (resolving futures, starting coroutines, timers,
    cancelling coroutines) goes back to the loop, batched: one loop wake-up
    for however many instructions piled up meanwhile. So a stream of short
    blocking calls costs no thread hand-off per task. Everything that touches
    the core holds `lock` (the core itself stays single-threaded and
    deterministic); code outside that takes `lock` (a coordinator's
    snapshot) delays reports by at most a few milliseconds.
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
        #: `clock.now`, bound once (read per task on the hot paths); for a MonotonicClock
        #: its origin, so the worker threads read `monotonic() - origin` without a call.
        self._now = self.clock.now
        self._origin: float | None = (
            self.clock.origin if type(self.clock) is MonotonicClock else None)
        executor_kwargs.setdefault("log", 10_000)
        agents = list(agents)
        self.core = Executor(policy, **executor_kwargs)
        #: Guards the core and the hand-over between the loop and the worker threads.
        self.lock = threading.Lock()
        self._jobs: dict[str, _TaskFuture] = {}
        #: Current coroutine attempts: (task id, attempt) -> (agent, their asyncio Task);
        #: a blocking task's current attempt is on its job (`t_attempt`, `t_agent`).
        self._running: dict[tuple[str, int], tuple[str, Any]] = {}
        #: Blocking attempts dispatched and not yet picked up by a worker (oldest first).
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: Finished blocking calls not yet reported to the core (see `_combine`).
        self._reports: deque[tuple[Any, ...]] = deque()
        #: Instructions the workers leave for the loop (a Complete as its job's future),
        #: and whether a wake-up is pending.
        self._inbox: list[Any] = []
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._coro_fns: dict[Any, bool] = {}
        #: The one time `submit_many` stamps its submissions with (None: each reads the clock).
        self._batch_at: float | None = None
        #: What the loop hands to the core next, in order: Events, submitted futures
        #: (their spec and time) and completions as `Executor.feed`'s compact tuples.
        self._pending: list[Any] = []
        self._flushing = False
        #: Futures resolved since `_run_done` was scheduled, whose first done callback
        #: it runs (see `_TaskFuture`).
        self._done_batch: list[_TaskFuture] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        #: Requested Tick times behind the armed one (see `_arm`), a heap.
        self._later: list[float] = []
        self._ids = itertools.count()
        self._idle: asyncio.Event | None = None
        self._returned: list[str] = []
        self._stopping = False
        #: Why the core can no longer be trusted, once it raised (see `_fail_everything`).
        self._broken: str | None = None
        #: `_fail_everything` is scheduled or ran.
        self._failing = False
        self.closed = False
        total = 0
        joins: list[Event] = []
        for a in agents:
            spec, limit = a if isinstance(a, tuple) else (a, None)
            total += spec.concurrency
            joins.append(AgentJoined(agent=spec, rate_limit=limit, time=self.clock.now()))
        self.core.handle(*joins)
        self._n_threads = threads or max(total, 1)
        self._threads: list[threading.Thread] = []

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown(drain=True)

    # ------------------------------------------------------------------ submitting

    def submit(self, fn: Callable[..., Any], /, *args: Any, id: str | None = None,
               work: float = 1.0, priority: Priority = Priority.NORMAL,
               deadline: float | None = None, hard_deadline: bool = False,
               tenant: str | None = None, skills: tuple[str, ...] = (),
               allowed: tuple[str, ...] | None = None, forbidden: tuple[str, ...] = (),
               demand: tuple[tuple[str, float], ...] = (), tokens: float = 0.0,
               home: str | None = None, migration_cost: float = 0.0,
               timeout: float | None = None, max_retries: int | None = None,
               kind: str | None = None) -> asyncio.Future[Any]:
        """Submit `fn(*args)`; the keyword arguments are the TaskSpec's fields (`deadline`
        absolute, on `self.clock`; `id` made up when None).

        They are spelled out (same names and defaults as TaskSpec's, a test keeps
        them so) so the spec is built with a positional call: building it from a
        `**fields` dict cost a third of `submit`.
        """
        # The running loop each time (a Runtime may outlive one asyncio.run); the
        # worker threads wake the loop that submitted last. The loop we know is the
        # running one when it runs in this thread (`_thread_id`, asyncio's own
        # record), which is read without get_running_loop's getpid() system call.
        loop = self._loop
        if loop is None or getattr(loop, "_thread_id", None) != _get_ident():
            loop = asyncio.get_running_loop()
            if loop is not self._loop:
                # A new loop (a Runtime may outlive one asyncio.run): a batch of done
                # callbacks scheduled on the old one will not run there any more.
                self._loop = loop
                self._done_batch = []
        task_id = id or f"task-{next(self._ids)}"
        if self._broken is not None:
            failed: asyncio.Future[Any] = loop.create_future()
            failed.set_exception(TaskRejectedError(task_id, Code.INTERNAL_ERROR, self._broken))
            return failed
        core = self.core
        if task_id in self._jobs or task_id in core.tasks or task_id in core.finished:
            # (A finished id is still known to the core: fed to it, it would raise, and
            # a raising core fails every task of this runtime.)
            raise InvalidInputError(f"duplicate task id {task_id!r}", field="id")
        if not (type(work) is float and 0.0 <= work < _INF and type(tokens) is float
                and tokens == 0.0 and type(priority) is Priority and deadline is None
                and timeout is None and max_retries is None and not demand
                and migration_cost == 0.0 and type(skills) is tuple):
            # Anything but the common case is checked here, before the core sees it: a
            # bad field would make the core raise (failing every task) or, worse, be
            # taken (a negative demand frees capacity other tasks then over-use).
            priority, skills, allowed, forbidden, demand = _check_fields(
                work, priority, deadline, skills, allowed, forbidden, demand, tokens,
                migration_cost, timeout, max_retries)
            work, tokens, migration_cost = float(work), float(tokens), float(migration_cost)
        spec = TaskSpec(task_id, work, priority, deadline, hard_deadline, tenant, skills,
                        allowed, forbidden, demand, tokens, home, migration_cost, timeout,
                        max_retries, kind)
        fut = _TaskFuture(loop=loop)
        fut.runtime = self
        fut.task_id = task_id
        fut.fn = fn
        fut.args = args
        fut.value_attempt = fut.t_attempt = -1
        fut.error = None
        fut._cb = None
        is_coro = self._coro_fns.get(fn)
        if is_coro is None:
            target = fn.func if isinstance(fn, functools.partial) else fn
            is_coro = inspect.iscoroutinefunction(target)
            if not isinstance(fn, functools.partial):
                self._coro_fns[fn] = is_coro
        fut.is_coro = is_coro
        self._jobs[task_id] = fut
        # The future stands for its submission in `_pending` (no event or tuple that
        # would outlive a burst of submissions: see `_flush`).
        fut.spec = spec
        at = self._batch_at
        if at is None:
            origin = self._origin
            at = self._now() if origin is None else _monotonic() - origin
        fut.at = at
        self._pending.append(fut)
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        return fut

    def submit_many(self, calls: Iterable[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Submit several calls at one instant: each `(fn, args)` or `(fn, args, fields)`
        (`fields`: `submit`'s keywords). The futures, in order.

        They carry one clock reading, so the core queues them all before it
        dispatches any (`Executor.submit_many_at`): EDF starts the earliest
        deadline among them, a priority queue the critical one, WFQ the smallest
        finish tag, not whichever came first in the list. Checked whole: a bad
        field or a duplicate id (in the list or known) raises before any of them
        is submitted.
        """
        items = [c if len(c) == 3 else (*c, {}) for c in calls]
        seen: set[str] = set()
        for k, c in enumerate(items):
            if len(c) != 3 or not callable(c[0]) or not isinstance(c[1], tuple) \
                    or not isinstance(c[2], dict):
                raise InvalidInputError("need (fn, args) or (fn, args, fields) with args a "
                                        "tuple and fields a dict", field=f"calls[{k}]")
            tid = c[2].get("id")
            if tid is not None:
                if tid in seen:
                    raise InvalidInputError(f"duplicate task id {tid!r}", field="id")
                seen.add(tid)
        origin = self._origin
        self._batch_at = self._now() if origin is None else _monotonic() - origin
        futs: list[asyncio.Future[Any]] = []
        try:
            for fn, args, fields in items:
                futs.append(self.submit(fn, *args, **fields))
        except BaseException:
            # Nothing reached the core yet (it is fed from the loop, after this
            # returns): the batch is withdrawn whole.
            gone = {id(f) for f in futs}
            self._pending = [x for x in self._pending if id(x) not in gone]
            for f in futs:
                self._jobs.pop(f.task_id, None)  # type: ignore[attr-defined]
            raise
        finally:
            self._batch_at = None
        return futs

    def add_agent(self, agent: Agent, rate_limit: RateLimit | None = None) -> None:
        self._post(AgentJoined(agent=agent, rate_limit=rate_limit))

    def remove_agent(self, agent_id: str) -> None:
        """Graceful leave: queued work moves, running work finishes."""
        self._post(AgentLeft(agent_id=agent_id))

    def fail_agent(self, agent_id: str, reason: str = "agent failed") -> None:
        """Declare an agent dead: its running attempts are abandoned and retried elsewhere."""
        with self.lock:
            hit = [(k, h) for k, (agent, h) in self._running.items() if agent == agent_id]
            for key, _ in hit:
                del self._running[key]
            for job in self._jobs.values():  # its threads' calls (a scan: agents rarely fail)
                if job.t_attempt >= 0 and job.t_agent == agent_id:
                    job.t_attempt = -1
        self._combine(False)
        for _, handle in hit:
            handle.cancel()
        self._post(AgentFailed(agent_id=agent_id, reason=reason))

    def _post(self, ev: Event) -> None:
        ev.time = self.clock.now()
        self._pending.append(ev)
        if not self._flushing:
            self._flushing = True
            loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        # Drain until quiet (bounded, so the loop still gets its turn): tasks that
        # finish synchronously post their completions while we apply instructions.
        self._flushing = True
        if self._broken is not None:  # the core raised: nothing may reach it any more
            self._pending = []
            self._flushing = False
            return
        try:
            for _ in range(FLUSH_ROUNDS):
                if not self._pending:
                    break
                events, self._pending = self._pending, []
                # A submission as `feed`'s (time, spec), built as the core reaches it:
                # each tuple dies before the next one is made (a list of them, over a
                # burst of submissions, would outlive collections and be promoted to
                # the old generations, where every full collection scans it again).
                items = ((x.at, x.spec) if type(x) is _TaskFuture else x for x in events)
                with self.lock:
                    try:
                        out = self.core.feed(items)
                    except Exception as err:
                        self._mark_broken(err)  # before a worker can take the lock
                        raise
                if self._reports:
                    self._combine(False)
                self.apply(out)
        except Exception as err:
            # A fault in the core is a bug, but it must not leave every caller awaiting a
            # future that nothing will resolve: each task ends failed, with the reason.
            self._core_raised(err)
        finally:
            self._flushing = False
            if self._pending and self._broken is None:
                self._flushing = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _mark_broken(self, err: Exception) -> None:
        """(Under `lock`, as the core raises.) Nothing calls the core after this."""
        if self._broken is None:
            self._broken = f"the executor core raised {type(err).__name__}: {err}"

    def _core_raised(self, err: Exception) -> None:
        """(Any thread, `lock` not held.) The core raised: nothing calls it again, and
        the loop fails every outstanding task with the error (`_fail_everything`), once."""
        with self.lock:
            self._mark_broken(err)
            failing, self._failing = self._failing, True
        if failing:
            return
        loop = self._loop
        if loop is None or getattr(loop, "_thread_id", None) == _get_ident():
            self._fail_everything(err)
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(self._fail_everything, err)

    def _fail_everything(self, err: Exception) -> None:
        """(The loop's thread, once `_broken` is set.) End every outstanding task exactly
        once: what the core decided before it raised stands (completions and failures
        the worker threads left in the inbox), every other task fails with the error
        (code internal_error); later submissions are rejected with it (the core's state
        can no longer be trusted)."""
        log.error("the executor core raised; failing %d outstanding tasks", len(self._jobs),
                  exc_info=err)
        reason = self._broken or f"the executor core raised {type(err).__name__}: {err}"
        self._pending = []
        with self.lock:  # no worker reports to the core or fills the inbox any more
            inbox, self._inbox = self._inbox, []
            self._wake_pending = False
            self._reports.clear()
            running = dict(self._running)
            self._running.clear()
            for job in self._jobs.values():  # queued calls never start, results are stale
                job.t_attempt = -1
        self.apply([x for x in inbox if type(x) in _TERMINAL])
        for _, handle in running.values():  # coroutines: their tasks are about to fail
            handle.cancel()
        jobs, self._jobs = self._jobs, {}
        for tid, job in jobs.items():
            if not job.done():
                exc = TaskFailedError(tid, Code.INTERNAL_ERROR, reason)
                exc.__cause__ = err
                self._resolving(job)
                job.set_exception(exc)
        if self._idle is not None:
            self._idle.set()

    def handle(self, *events: Event) -> None:
        """Feed events to the core (under the lock) and carry out its instructions.

        If the core raises, every outstanding task fails with the error (code
        internal_error; see `_fail_everything`) and the error propagates.
        """
        if self._broken is not None:
            raise AllocatorError(self._broken)
        try:
            with self.lock:
                try:
                    out = self.core.handle(*events)
                except Exception as err:
                    self._mark_broken(err)
                    raise
        except Exception as err:
            self._core_raised(err)
            raise
        self._combine(False)
        self.apply(out)

    # ------------------------------------------------------------------ instructions

    def apply(self, out: list[Instruction]) -> None:
        """Carry out the core's instructions in the loop's thread (also used by the coordinator)."""
        threads: list[tuple[_TaskFuture, str, int]] | None = None
        jobs = self._jobs
        batch = self._done_batch
        now = -1.0
        clock = self.clock
        pending: list[Any] | None = None
        for ins in out:
            typ = type(ins)
            if typ is Dispatch:
                job = jobs[ins.task_id]  # type: ignore[attr-defined]
                if job.is_coro:
                    if now < 0:
                        now = clock.now()
                    # Eager start (what Python 3.12's eager tasks do): run the coroutine
                    # up to its first suspension now; one that finishes there needs no
                    # Task, and its completion is posted here (`_outcome` inlined for
                    # the common case).
                    coro = job.fn(*job.args)
                    try:
                        first = coro.send(None)
                    except StopIteration as stop:
                        value = stop.value
                        if isinstance(value, Reported):
                            self._post_outcome(job, ins, now, value, None)  # type: ignore[arg-type]
                            continue
                        job.value = value
                        job.value_attempt = attempt = ins.attempt  # type: ignore[attr-defined]
                        end = clock.now()
                        if pending is None:
                            pending = self._pending
                        pending.append((end, job.task_id, ins.agent,  # type: ignore[attr-defined]
                                        attempt, end - now, None))  # completed(...), compactly
                        continue
                    except BaseException as err:  # the attempt failed synchronously
                        self._post_outcome(job, ins, now, None, err)  # type: ignore[arg-type]
                        continue
                    self._resume_later(job, ins, now, coro, first)  # type: ignore[arg-type]
                else:
                    if threads is None:
                        threads = []
                    threads.append((job, ins.agent, ins.attempt))  # type: ignore[attr-defined]
            elif typ is Complete:
                job = jobs.pop(ins.task_id)  # type: ignore[attr-defined]
                if not job.done():
                    if job._cb is not None:  # _resolving(job), inlined
                        if not batch:
                            job.get_loop().call_soon(self._run_done)
                        batch.append(job)
                    job.set_result(job.value if job.value_attempt == ins.attempt  # type: ignore[attr-defined]
                                   else None)
            elif typ is Fail or typ is Reject:
                tid, code, reason = ins.task_id, ins.code, ins.reason  # type: ignore[attr-defined]
                job = jobs.pop(tid)
                if typ is Reject:
                    exc: AllocatorError = TaskRejectedError(tid, code, reason)
                    if code is Code.SHUTDOWN:
                        self._returned.append(tid)
                else:
                    exc = TaskFailedError(tid, code, reason)
                    exc.__cause__ = job.error
                if not job.done():
                    self._resolving(job)
                    job.set_exception(exc)
            elif typ is _TaskFuture:  # a Complete the worker threads left (see _drain_reports)
                del jobs[ins.task_id]  # type: ignore[attr-defined]
                if not ins.done():  # type: ignore[attr-defined]
                    if ins._cb is not None:  # type: ignore[attr-defined]
                        if not batch:
                            ins.get_loop().call_soon(self._run_done)  # type: ignore[attr-defined]
                        batch.append(ins)  # type: ignore[arg-type]
                    ins.set_result(ins.value)  # type: ignore[attr-defined]
            elif typ is Cancel:
                hit = self._running.pop((ins.task_id, ins.attempt), None)  # type: ignore[attr-defined]
                if hit is not None:
                    hit[1].cancel()
                else:
                    tj = jobs.get(ins.task_id)  # type: ignore[attr-defined]
                    if tj is not None:
                        with self.lock:  # (a worker may be reporting it right now)
                            if tj.t_attempt == ins.attempt:  # type: ignore[attr-defined]
                                tj.t_attempt = -1  # a thread's call
            elif typ is SetTimer:
                self._arm(ins.at)  # type: ignore[attr-defined]
        if threads:
            self._hand_to_threads(threads)
        if pending is not None and not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)
        if not jobs and self._idle is not None:
            self._idle.set()

    def _hand_to_threads(self, items: list[tuple[_TaskFuture, str, int]]) -> None:
        with self.lock:
            put = self._work.put
            for job, agent, attempt in items:
                job.t_agent = agent
                job.t_attempt = attempt
                put((job, attempt))
            idle = len(self._threads) < self._n_threads
        self._combine(False)
        if idle:
            self._spawn(len(items))

    def _spawn(self, wanted: int) -> None:
        """Start worker threads lazily, up to `threads` (an idle runtime holds none)."""
        while wanted > 0 and len(self._threads) < self._n_threads:
            th = threading.Thread(target=self._worker, name="allocator-agent", daemon=True)
            self._threads.append(th)
            th.start()
            wanted -= 1

    def _post_outcome(self, job: _TaskFuture, ins: Dispatch, t0: float, value: Any,
                      exc: BaseException | None) -> None:
        """Report an attempt that ended at its eager start (error, or a Reported value)."""
        self._report(job, ins.agent, ins.attempt, t0, value, exc)

    def _resume_later(self, job: _TaskFuture, ins: Dispatch, t0: float, coro: Any,
                      first: Any) -> None:
        """A coroutine suspended at its eager start: an asyncio Task runs the rest."""
        tid, agent, attempt = ins.task_id, ins.agent, ins.attempt
        handle: Any = asyncio.get_running_loop().create_task(_resume(coro, first))
        self._running[(tid, attempt)] = (agent, handle)
        handle.add_done_callback(functools.partial(self._coro_done, job, agent, attempt, t0))

    def _coro_done(self, job: _TaskFuture, agent: str, attempt: int, t0: float,
                   handle: Any) -> None:
        if self._running.pop((job.task_id, attempt), None) is None:
            return  # cancelled or abandoned by the core: nothing to report
        if handle.cancelled():
            self._post(TaskFailed(task_id=job.task_id, agent=agent, attempt=attempt,
                                  reason="cancelled", retryable=False,
                                  duration=self.clock.now() - t0))
            return
        exc = handle.exception()
        self._report(job, agent, attempt, t0, None if exc is not None else handle.result(),
                     exc)

    def _report(self, job: _TaskFuture, agent: str, attempt: int, t0: float, value: Any,
                exc: BaseException | None) -> None:
        """Post the outcome of a coroutine attempt (loop thread; the event has its time)."""
        self._pending.append(self._outcome(job, agent, attempt, t0, value, exc))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _outcome(self, job: _TaskFuture, agent: str, attempt: int, t0: float, value: Any,
                 exc: BaseException | None) -> Any:
        """The event (a completion as `Executor.feed`'s tuple) reporting one attempt;
        keeps its value (or error) on the job."""
        now = self.clock.now()
        if exc is not None:
            job.error = exc
            return TaskFailed(task_id=job.task_id, agent=agent, attempt=attempt,
                              reason=repr(exc), duration=now - t0, time=now,
                              retryable=not isinstance(exc, asyncio.CancelledError))
        usage = None
        if isinstance(value, Reported):
            bad = _bad_usage(value.usage)
            if bad is not None:
                # The task's own report, not the agent, is at fault: fail it (not
                # retryable) before the core sees the usage. Taken, a string made the
                # core raise and inf, NaN or a negative broke the agent's token quota.
                job.error = bad
                return TaskFailed(task_id=job.task_id, agent=agent, attempt=attempt,
                                  reason=str(bad), duration=now - t0, time=now,
                                  retryable=False)
            value, usage = value.value, value.usage
        job.value = value
        job.value_attempt = attempt
        return (now, job.task_id, agent, attempt, now - t0, usage)

    # ------------------------------------------------------------------ worker threads

    def _worker(self) -> None:
        """Run blocking attempts; report each to the core and run what it dispatches next.

        Reports are flat-combined: a finished call is queued in `_reports`, and
        whichever thread holds `lock` hands every queued report to the core in
        one batch. A worker that finds the lock taken leaves its report to the
        holder and goes on, instead of sleeping on the lock: a lock handed
        between threads that each need the GIL back forms a convoy that costs
        more than the calls themselves once the machine has a free core.

        A work item is `(job, attempt)`; the attempt is current while it is the
        job's `t_attempt` (the core cancelled, abandoned or re-dispatched it
        otherwise: a call not started yet never starts, a late result is stale).
        """
        work = self._work
        reports = self._reports
        now = self._now
        origin = self._origin  # MonotonicClock's now() without the method call
        mono = _monotonic
        lock = self.lock
        core = self.core
        jobs = self._jobs
        place = self._place
        reported = Reported
        while True:
            # A report left to a holder that does not drain (a coordinator holding
            # `lock` from outside) is picked up by its worker after a short wait.
            try:
                item: Any = work.get(timeout=_REPORT_WAIT if reports else None)
            except queue.Empty:
                item = self._combine(True, block=True)
                if item is None:
                    continue
            if item is _STOP:
                return
            while item is not None:
                job, attempt = item
                item = None
                if job.t_attempt != attempt:
                    break  # cancelled or abandoned before it started
                ev: Any = None
                t0 = now() if origin is None else mono() - origin
                value: Any = None
                exc: BaseException | None = None
                if job.done():
                    # The submitter cancelled its future and the loop has not told the
                    # core yet: tell it now, and never start the call.
                    ev = TaskCancelled(task_id=job.task_id, time=t0)
                else:
                    try:
                        value = job.fn(*job.args)
                    except BaseException as e:
                        exc = e
                plain = ev is None and exc is None and not isinstance(value, reported)
                if plain:  # _outcome(...) inlined, its clock read outside the lock
                    end = now() if origin is None else mono() - origin
                    if not reports and lock.acquire(False):
                        # Nothing else queued and the lock free (the common case): report
                        # it straight away, with no report record.
                        err: Exception | None = None
                        try:
                            if job.t_attempt == attempt and self._broken is None:
                                job.t_attempt = -1
                                job.value = value
                                job.value_attempt = attempt
                                out = core.complete_at(job.task_id, job.t_agent, attempt, end,
                                                       end - t0, None)
                                # The common outcome, without `_place`'s loop: this task's
                                # Complete (the core reports it first) and the next blocking
                                # call for the agent, which this thread runs at once unless
                                # an older one waits.
                                if (len(out) == 2 and type(out[0]) is Complete
                                        and type(d := out[1]) is Dispatch
                                        and (nxt := jobs.get(d.task_id)) is not None
                                        and not nxt.is_coro and work.empty()):
                                    nxt.t_agent = d.agent
                                    nxt.t_attempt = a = d.attempt
                                    item = (nxt, a)
                                    self._inbox.append(job)
                                    if not self._wake_pending:
                                        self._wake_pending = True
                                        self._wake_loop()
                                else:
                                    item = place(out, True)
                        except Exception as e:
                            err = e
                            self._mark_broken(e)
                        finally:
                            lock.release()
                        if err is not None:
                            self._core_raised(err)
                            continue
                        if reports:  # left by others while we held the lock
                            got = self._combine(item is None)
                            if item is None:
                                item = got
                        if item is _STOP:
                            return
                        continue
                    ev = (end, job.task_id, job.t_agent, attempt, end - t0, None)  # for feed
                reports.append((job, attempt, ev, value, exc, t0, plain))
                item = self._combine(True)
                if item is _STOP:
                    return

    def _combine(self, take: bool, *, block: bool = False) -> Any:
        """Hand the queued reports to the core while the lock is free (any thread).

        Returns the oldest dispatched blocking call for the caller to run when
        `take` (a worker), else None. The lock is only tried, unless `block`:
        a holder drains what is queued before it lets go, and every thread
        checks again after releasing, so no report is left behind.
        """
        reports = self._reports
        lock = self.lock
        mine: Any = None
        if block:
            lock.acquire()
        elif not (reports and lock.acquire(False)):
            return None
        err: Exception | None = None
        while True:
            try:
                got = self._drain_reports(take and mine is None)
                if got is not None:
                    mine = got
            except Exception as e:
                err = e
                self._mark_broken(e)
            finally:
                lock.release()
            if err is not None:
                self._core_raised(err)
                return None
            if not (reports and lock.acquire(False)):
                return mine

    def _drain_reports(self, take: bool) -> Any:
        """(Under `lock`.) Report the queued calls in one batch and place what follows."""
        reports = self._reports
        if self._broken is not None:  # the core raised: the loop fails these tasks
            reports.clear()
            return None
        events: list[Any] = []
        while reports:
            job, attempt, ev, value, exc, t0, plain = reports.popleft()
            if job.t_attempt != attempt:
                continue  # timed out, cancelled or its agent failed: a stale result
            job.t_attempt = -1
            if plain:  # (the job keeps the value of its current attempt only)
                job.value = value
                job.value_attempt = attempt
            elif ev is None:
                ev = self._outcome(job, job.t_agent, attempt, t0, value, exc)
            events.append(ev)
        if not events:
            return None
        if len(events) == 1 and type(ev) is tuple:  # one completion (the common case)
            out = self.core.complete_at(ev[1], ev[2], ev[3], ev[0], ev[4], ev[5])
        else:
            out = self.core.feed(events)
        return self._place(out, take)

    def _place(self, out: list[Instruction], take: bool) -> Any:
        """(Under `lock`.) Carry out what the core decided on a worker's report.

        Blocking dispatches go to the work queue, and a worker takes the oldest
        waiting one at once (nothing starves behind a chain); everything else is
        the loop's job (one wake-up for everything that piles up meanwhile).
        Returns the call for the caller to run when `take`, else None.
        """
        work = self._work
        jobs = self._jobs
        inbox = self._inbox
        mine: Any = None
        added = 0
        for ins in out:
            typ = type(ins)
            if typ is Dispatch:
                nxt = jobs.get(ins.task_id)  # type: ignore[attr-defined]
                if nxt is not None and not nxt.is_coro:
                    nxt.t_agent = ins.agent  # type: ignore[attr-defined]
                    nxt.t_attempt = attempt = ins.attempt  # type: ignore[attr-defined]
                    if take and mine is None and work.empty():
                        mine = (nxt, attempt)
                    else:
                        work.put((nxt, attempt))
                        added += 1
                    continue
            elif typ is Complete:
                # The loop resolves the job itself: the inbox holds the (long-lived)
                # future rather than the instruction, so nothing made per task waits
                # there for the loop's turn (and ages into the collector's old
                # generations meanwhile).
                job = jobs.get(ins.task_id)  # type: ignore[attr-defined]
                if job is not None:
                    if job.value_attempt != ins.attempt:  # type: ignore[attr-defined]
                        job.value = None
                    inbox.append(job)  # type: ignore[arg-type]
                    continue
            elif typ is Cancel:
                job = jobs.get(ins.task_id)  # type: ignore[attr-defined]
                if job is not None and not job.is_coro:
                    if job.t_attempt == ins.attempt:  # type: ignore[attr-defined]
                        job.t_attempt = -1  # a thread's call: forget it now (not started
                    continue  # yet: never starts; running: its result is stale)
            inbox.append(ins)
        if take and mine is None and added:
            with contextlib.suppress(queue.Empty):
                mine = work.get_nowait()
                added -= 1
        if inbox and not self._wake_pending:
            self._wake_pending = True
            self._wake_loop()
        if added > 0 and len(self._threads) < self._n_threads:
            self._spawn_threadsafe(added)
        return mine

    def _wake_loop(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(self._drain_inbox)

    def _spawn_threadsafe(self, wanted: int) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._spawn, wanted)

    def _drain_inbox(self) -> None:
        with self.lock:
            out, self._inbox = self._inbox, []
            self._wake_pending = False
        self._combine(False)
        self.apply(out)
        self._flush()  # same loop turn: posted completions get handled without another wake-up

    def _resolving(self, fut: _TaskFuture) -> None:
        """`fut` is about to be resolved: its first done callback joins the batch."""
        if fut._cb is not None and fut._cb is not _USED:
            batch = self._done_batch
            if not batch:
                fut.get_loop().call_soon(self._run_done)
            batch.append(fut)

    def _run_done(self) -> None:
        """Run the first done callback of each future resolved since the last call.

        What asyncio's Handle does per callback: in the context captured when
        it was added, an exception goes to the loop's handler and the rest run.
        """
        batch, self._done_batch = self._done_batch, []
        empty: contextvars.Context | None = None
        for fut in batch:
            fn = fut._cb
            fut._cb = _USED
            if fn is _USED:
                continue  # removed meanwhile
            ctx = fut._cb_ctx
            if ctx is None:
                # A fresh empty context, or the last one if its callback left it empty
                # (the same thing: a callback sees only the context's variables).
                if empty is None or len(empty):
                    empty = _Context()
                ctx = empty
            try:
                ctx.run(fn, fut)
            except (SystemExit, KeyboardInterrupt):
                rest = batch[batch.index(fut) + 1:]
                if rest:  # the others still run, on the loop's next turn
                    if not self._done_batch:
                        fut.get_loop().call_soon(self._run_done)
                    self._done_batch[:0] = rest
                raise
            except BaseException as exc:
                fut.get_loop().call_exception_handler({
                    "message": f"Exception in callback {fn!r}", "exception": exc,
                    "future": fut})

    def _cancelled(self, task_id: str) -> None:
        if task_id in self._jobs:
            self._post(TaskCancelled(task_id=task_id))

    def _arm(self, at: float) -> None:
        """Carry out a SetTimer: a Tick at `at`, whatever else is armed.

        One loop timer runs, the earliest; a later request waits in `_later`
        until then. It may not be dropped: the core asks for a later time while
        an earlier request is pending when its clock has passed that one first
        (a worker's completion), and after that earlier Tick it asks nothing
        more (its latest request is still ahead).
        """
        if self._timer is not None:
            if at >= self._timer_at:
                if at > self._timer_at:
                    heapq.heappush(self._later, at)
                return
            # (The replaced time needs no keeping: after this earlier Tick the core
            # asks again for its next timer, its request being due.)
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
        later = self._later
        while later and later[0] <= at:  # due now: this Tick serves them
            heapq.heappop(later)
        if later:
            self._arm(heapq.heappop(later))

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
        with self.lock:  # idle workers exit; one still inside a call exits after it
            self._stopping = True
            for _ in self._threads:
                self._work.put(_STOP)
        returned, self._returned = self._returned, []
        return returned
