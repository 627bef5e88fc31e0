"""The service behind the HTTP routes and the MCP tools: jobs, sync solves, validation.

One `Service` per process, created in the app's lifespan (or by `allocator
mcp`). It owns the job store, the worker pool and the two queues:

* synchronous solves (`/v1/solve`, MCP `solve`) wait in `sync_queue` and go
  first, since a caller is holding a connection open;
* jobs wait in `queue` (ids only; the snapshot is read back from the store when
  a worker takes the job, so a restart loses nothing).

Admission control: a job is refused (CapacityError -> 429 + Retry-After) when
`max_queue` jobs are already queued or running; a sync solve when
`max_sync_waiting` are already waiting for a worker.

Every store write goes through one writer task, in order, on a thread: the
event loop never blocks on the database and a job's writes never overtake
each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from allocator import errors as engine_errors
from allocator.errors import (
    AllocatorError,
    CapacityError,
    InvalidInputError,
    NotFoundError,
    SolverFailedError,
    TimeLimitError,
)
from allocator.objectives import relative_gap
from allocator.solvers import get_solver, solver_names
from api.bodies import ARRIVED, BodyParser, PlanText, SnapshotText
from api.errors import NotReadyError, SolveFailed, error_type
from api.limits import check_magnitudes, check_work_bytes, listed_pairs, shape
from api.metrics import Metrics
from api.pool import Work, WorkerPool
from api.schemas import (
    ErrorBody,
    JobOut,
    JobPage,
    JobState,
    SolveRequest,
    SolverInfo,
    SolversResponse,
    ValidateRequest,
    ValidateResponse,
)
from api.settings import Settings
from api.store import JobRecord, JobStore, LeaseHeldError
from models import Plan, Snapshot

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Progress (best objective / bound) of a running job is written to the store at
#: most this often; GET /v1/jobs/{id} reads the live value from memory anyway.
PROGRESS_PERSIST_S = 1.0
#: A synchronous call still waiting for a worker when only this much of its time
#: limit is left answers 503 + Retry-After (overload) instead of running late.
MIN_SYNC_RUN_S = 0.25
#: Finished jobs past job_ttl_s are looked for at most this often (seconds).
PRUNE_EVERY_S = 300.0
#: Threads for store reads (status GETs, pages, plans): SQLite serves reads concurrently.
READ_THREADS = 4
#: Snapshots up to this many tasks are serialised on the event loop (a thread hop
#: costs more than the work); larger ones in a thread.
INLINE_DUMP_TASKS = 2_000


@dataclass
class _Live:
    """A job a worker is running (or about to)."""

    job_id: str
    solver: str
    time_limit: float
    started: float = field(default_factory=time.monotonic)
    best_objective: float | None = None
    best_bound: float | None = None
    cancelling: bool = False
    last_persist: float = 0.0
    finished: asyncio.Event = field(default_factory=asyncio.Event)


#: A snapshot as the service gets it: a model (small bodies) or validated JSON text.
AnySnapshot = Snapshot | SnapshotText


def _dead_here(holder: str) -> bool:
    """Whether a lease holder `host:pid:tag` was a process on this host that is gone."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _sizes(snap: AnySnapshot) -> tuple[int, int]:
    if isinstance(snap, SnapshotText):
        return snap.n_agents, snap.n_tasks
    return len(snap.agents), snap.n_tasks


def _payload(snap: AnySnapshot | None) -> Snapshot | str | None:
    """What a worker gets: the model, or the JSON text it validates itself."""
    return snap.json if isinstance(snap, SnapshotText) else snap


def plan_payload(plan: Plan | PlanText | None) -> dict[str, Any] | str | None:
    """A plan for a worker's params: a JSON-ready dict, or the parser's JSON text."""
    if plan is None:
        return None
    if isinstance(plan, PlanText):
        return plan.json
    return plan.model_dump(mode="json", by_alias=True)


def _gap(objective: float | None, bound: float | None) -> float | None:
    if objective is None or bound is None:
        return None
    return relative_gap(objective, bound)


def _engine_error(type_name: str, message: str, field_: str | None) -> AllocatorError:
    cls = getattr(engine_errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, AllocatorError):
        return cls(message, field=field_)
    return SolveFailed(message, field=field_)


class Service:
    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.store = JobStore(settings.database_url)
        self.pool = WorkerPool(settings.workers, plugins=settings.plugins, on_idle=self._pump)
        self.queue: deque[str] = deque()
        self.sync_queue: deque[Work] = deque()
        self.live: dict[str, _Live] = {}
        #: Jobs taken from `queue` whose launch is still reading the store (not yet in
        #: `live`): admission counts them, or a fifth job slipped in during the gap.
        self.launching: set[str] = set()
        self._writes: asyncio.Queue[tuple[Callable[[], Any], asyncio.Future[Any]]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Reads get their own threads so a status GET never queues behind writes,
        # serialisation or validation work in the default executor.
        self._readers = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="read")
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.parser = BodyParser(settings.max_agents, settings.max_tasks,
                                 settings.max_work_bytes)
        self.started = False
        #: The live coordination service (allocator.live.service.LiveService) or None.
        self.live_service: Any = None

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        version = await asyncio.to_thread(self.store.migrate)
        try:
            await asyncio.to_thread(self.store.acquire_lease, self.owner,
                                    self.settings.lease_ttl_s)
        except LeaseHeldError as e:
            if not _dead_here(e.holder):
                log.error("%s", e)
                raise
            # The holder was a process on this host that is gone (kill -9): take over.
            await asyncio.to_thread(self.store.acquire_lease, self.owner,
                                    self.settings.lease_ttl_s, steal_from=e.holder)
        ids = await asyncio.to_thread(self.store.recover, mode=self.settings.on_restart,
                                      max_attempts=self.settings.max_attempts)
        log.info("job store at schema version %s; %d job(s) queued", version, len(ids))
        self.queue.extend(ids)
        self._writes = asyncio.Queue()
        self._spawn(self._writer())
        self._spawn(self._housekeeping())
        m = self.metrics
        m.queue_depth.labels("jobs").set_function(lambda: len(self.queue))
        m.queue_depth.labels("sync").set_function(lambda: len(self.sync_queue))
        m.workers_busy.set_function(lambda: self.pool.busy_count)
        m.watch_jobs(self.store.counts)
        self.pool.start()
        self.parser.start()
        self.started = True

    async def close(self) -> None:
        """Stop the workers; jobs they were running go back to the queue for the next start."""
        await self.pool.close()
        if self._writes is not None:
            for job_id in list(self.live):
                self._write_nowait(self.store.release, job_id)
            self.live.clear()  # let queued writes land before closing the store
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            await self._writes.put((lambda: None, done))
            await asyncio.wait_for(done, timeout=10)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release_lease, self.owner)
        for t in list(self._tasks):
            t.cancel()
        self.parser.close()
        self._readers.shutdown(wait=False)
        self._writer_thread.shutdown(wait=True)
        self.store.close()

    async def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until a worker is up (a synchronous call's time limit starts on arrival)."""
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.ready

    @property
    def ready(self) -> bool:
        return self.started and self.pool.ready_count > 0

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def _housekeeping(self) -> None:
        """Renew the database lease; delete jobs finished longer than job_ttl_s ago."""
        period = self.settings.lease_ttl_s / 3
        last_prune = 0.0
        while True:
            await asyncio.sleep(period)
            try:
                await self._write(self.store.acquire_lease, self.owner,
                                  self.settings.lease_ttl_s)
            except LeaseHeldError:  # another service took over (we stalled past the ttl)
                log.error("lost the job database's lease to another service; stopping")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except Exception:
                log.exception("could not renew the job database's lease")
            ttl = self.settings.job_ttl_s
            if ttl > 0 and time.monotonic() - last_prune >= min(ttl / 10, PRUNE_EVERY_S):
                last_prune = time.monotonic()
                cutoff = datetime.now(UTC) - timedelta(seconds=ttl)
                with contextlib.suppress(Exception):
                    n = await self._write(self.store.prune, older_than=cutoff)
                    if n:
                        log.info("deleted %d job(s) finished before %s", n, cutoff)

    # -- store writes, in order -------------------------------------------------------

    async def _writer(self) -> None:
        assert self._writes is not None
        while True:
            fn, fut = await self._writes.get()
            try:
                result = await asyncio.get_running_loop().run_in_executor(
                    self._writer_thread, fn)
            except Exception as e:  # reported to whoever awaits; logged otherwise
                if not fut.done():
                    fut.set_exception(e)
                log.exception("job store write failed")
            else:
                if not fut.done():
                    fut.set_result(result)

    def _write_nowait(self, fn: Callable[..., T], *args: Any, **kw: Any) -> asyncio.Future[T]:
        assert self._writes is not None
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # mark retrieved
        self._writes.put_nowait((functools.partial(fn, *args, **kw), fut))
        return fut

    async def _write(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await self._write_nowait(fn, *args, **kw)

    async def _read(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, functools.partial(fn, *args, **kw))

    # -- input checks -----------------------------------------------------------------

    def _prepare(self, req: SolveRequest, cap: float) -> tuple[AnySnapshot, str, float, int]:
        snap: AnySnapshot = req.snapshot
        solver = req.solver or snap.options.solver
        try:
            get_solver(solver)
        except AllocatorError as e:
            e.field = "solver" if req.solver else "snapshot.options.solver"
            raise
        self._check_size(snap, solver)
        limit = min(req.time_limit or snap.options.time_limit, cap)
        seed = snap.options.seed if req.seed is None else req.seed
        return snap, solver, limit, seed

    def check_solver(self, name: str, field: str = "solver") -> None:
        """UnknownSolverError (422) naming `field` unless `name` is registered."""
        try:
            get_solver(name)
        except AllocatorError as e:
            e.field = field
            raise

    # -- scheduling -------------------------------------------------------------------

    def _pump(self) -> None:
        """Hand queued work to idle workers: synchronous solves first, then jobs."""
        while self.sync_queue or self.queue:
            w = self.pool.reserve()
            if w is None:
                return
            if self.sync_queue:
                work = self.sync_queue.popleft()
                # The caller's time limit counts from its arrival: what it waited is
                # taken off the run (an expiry timer answers it if it waits too long).
                waited = time.monotonic() - work.arrived
                work.time_limit = max(MIN_SYNC_RUN_S, work.time_limit - waited)
                work.hard_limit = work.time_limit + self.settings.time_limit_grace_s
                self.pool.dispatch(w, work)
            else:
                job_id = self.queue.popleft()
                self.launching.add(job_id)
                self._spawn(self._launch(w, job_id))

    async def _launch(self, w: Any, job_id: str) -> None:
        try:
            await self._launch_job(w, job_id)
        finally:
            self.launching.discard(job_id)

    async def _launch_job(self, w: Any, job_id: str) -> None:
        try:
            await self._write(self.store.mark_running, job_id)
            rec = await self._read(self.store.get, job_id)
            snap_json = await self._read(self.store.snapshot_json, job_id)
            if rec is None or snap_json is None:
                raise RuntimeError(f"job {job_id} vanished from the store")
        except Exception:
            log.exception("could not start job %s", job_id)
            self.pool.release(w)
            self._write_nowait(self.store.finish, job_id, JobState.FAILED,
                               error=("store_error", "the job could not be read back", None))
            return
        live = self.live.setdefault(job_id, _Live(job_id, rec.solver, rec.time_limit))
        live.started = time.monotonic()
        self.pool.dispatch(w, Work(job_id, snap_json, rec.solver, rec.time_limit, rec.seed,
                                   True, functools.partial(self._job_event, job_id),
                                   hard_limit=rec.time_limit + self.settings.time_limit_grace_s))
        if live.cancelling:
            self.pool.cancel(job_id, self.settings.cancel_grace_s)

    def _job_event(self, job_id: str, kind: str, args: tuple[Any, ...]) -> None:
        live = self.live.get(job_id)
        if live is None:
            return
        store = self.store
        if kind == "progress":
            obj, bound = args
            if live.best_objective is None or obj < live.best_objective:
                live.best_objective = obj
            live.best_bound = bound
            now = time.monotonic()
            if now - live.last_persist >= PROGRESS_PERSIST_S:
                live.last_persist = now
                self._write_nowait(store.record_progress, job_id,
                                   objective=live.best_objective, bound=live.best_bound)
            return
        if kind == "best":
            plan_json, status, obj, bound = args
            if obj is not None and (live.best_objective is None or obj < live.best_objective):
                live.best_objective, live.best_bound = obj, bound
            self._write_nowait(store.save_plan, job_id, plan_json, plan_status=status,
                               objective=obj, bound=bound)
            return
        elapsed = time.monotonic() - live.started
        if kind == "done":
            plan_json, status, obj, bound, cancelled, *rest = args
            timed_out = bool(rest and rest[0])
            state = (JobState.CANCELLED if (cancelled or live.cancelling)
                     else JobState.TIMED_OUT if timed_out else JobState.SUCCEEDED)
            fut = self._write_nowait(store.finish, job_id, state, plan_json=plan_json,
                                     plan_status=status, objective=obj, bound=bound)
            self.metrics.solve_seconds.labels(live.solver, "job").observe(elapsed)
            g = _gap(obj, bound)
            if g is not None:
                self.metrics.solve_gap.labels(live.solver).observe(g)
        elif kind == "error":
            type_name, message, field_ = args
            fut = self._write_nowait(store.finish, job_id, JobState.FAILED,
                                     error=(error_type(type_name), message, field_))
        elif kind == "timeout":  # killed at limit + grace: the best plan so far stays
            fut = self._write_nowait(store.finish, job_id, JobState.TIMED_OUT)
        else:  # crash: the worker process died
            (code,) = args
            if live.cancelling:  # killed after the grace period: keep the best plan so far
                fut = self._write_nowait(store.finish, job_id, JobState.CANCELLED)
            else:
                self.metrics.worker_crashes.inc()
                fut = self._write_nowait(
                    store.finish, job_id, JobState.FAILED,
                    error=("worker_crashed", f"the solver process died (exit code {code}) "
                           "during this job; the server carried on", None))
        del self.live[job_id]
        fut.add_done_callback(lambda _: live.finished.set())

    # -- operations -------------------------------------------------------------------

    def _check_size(self, snap: AnySnapshot, backend: str = "auto") -> None:
        """Size caps, the memory estimate and (for a model built here) the magnitudes."""
        n_agents, n_tasks = _sizes(snap)
        if n_agents > self.settings.max_agents:
            raise InvalidInputError(
                f"{n_agents} agents; this server accepts at most "
                f"{self.settings.max_agents}", field="snapshot.agents")
        if n_tasks > self.settings.max_tasks:
            raise InvalidInputError(
                f"{n_tasks} tasks; this server accepts at most "
                f"{self.settings.max_tasks}", field="snapshot.tasks")
        listed = 0  # a SnapshotText's lists were counted by the parser's estimate
        if isinstance(snap, Snapshot):  # a SnapshotText was checked by the parser
            check_magnitudes(snap)
            n_resources, overrides = shape(snap)
            listed = listed_pairs(snap)
        else:
            n_resources, overrides = snap.n_resources, snap.demand_overrides
        check_work_bytes(n_agents, n_tasks, n_resources, overrides, backend,
                         self.settings.max_work_bytes, listed)

    async def _run_sync(self, *, label: str, snapshot: AnySnapshot | None, solver: str,
                        limit: float, seed: int, kind: str = "solve",
                        params: dict[str, Any] | None = None) -> str:
        """Run one piece of work in a worker now (synchronous solves go first); its JSON."""
        if len(self.sync_queue) >= self.settings.max_sync_waiting:
            self.metrics.rejected.labels("sync_queue_full").inc()
            raise CapacityError(f"{len(self.sync_queue)} synchronous calls are already "
                                "waiting; retry later or submit a job")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        t0 = ARRIVED.get() or time.monotonic()

        best: list[str] = []

        def sink(event: str, args: tuple[Any, ...]) -> None:
            if fut.done() or event == "progress":
                return
            if event == "best":
                best[:] = [args[0]]
                return
            if event == "timeout":  # killed at limit + grace: the best plan so far, if any
                if best:
                    fut.set_result(best[0])
                else:
                    fut.set_exception(TimeLimitError(
                        f"no answer within the time limit of {limit:g} s; use a smaller input "
                        "or submit a job", field="time_limit"))
                return
            if event == "done":
                fut.set_result(args[0])
                self.metrics.solve_seconds.labels(label, "sync").observe(time.monotonic() - t0)
                g = _gap(args[2], args[3])
                if g is not None:
                    self.metrics.solve_gap.labels(label).observe(g)
            elif event == "error":
                fut.set_exception(_engine_error(*args))
            else:
                self.metrics.worker_crashes.inc()
                fut.set_exception(SolverFailedError(
                    f"the solver process died (exit code {args[0]}); the server carried on"))

        work = Work(uuid.uuid4().hex, _payload(snapshot), solver, limit, seed, kind == "solve",
                    sink,
                    kind, params, hard_limit=limit + self.settings.time_limit_grace_s)
        work.arrived = t0
        self.sync_queue.append(work)

        def expire() -> None:  # still queued when only MIN_SYNC_RUN_S would be left
            if work in self.sync_queue and not fut.done():
                self.sync_queue.remove(work)
                self.metrics.rejected.labels("sync_wait_expired").inc()
                fut.set_exception(SolverFailedError(
                    f"every worker stayed busy for the {limit:g} s time limit of this call; "
                    "retry later or submit a job"))

        expiry = loop.call_later(max(0.0, t0 + limit - MIN_SYNC_RUN_S - time.monotonic()),
                                 expire)
        fut.add_done_callback(lambda _: expiry.cancel())
        self._pump()
        try:
            return await fut
        except asyncio.CancelledError:  # the client went away: drop or stop its work
            if work in self.sync_queue:
                self.sync_queue.remove(work)
            else:
                self.pool.cancel(work.id, self.settings.cancel_grace_s)
            raise

    async def solve(self, req: SolveRequest) -> str:
        """Solve now in a worker; returns the Plan as JSON."""
        snap, solver, limit, seed = self._prepare(req, self.settings.sync_time_limit)
        return await self._run_sync(label=solver, snapshot=snap, solver=solver, limit=limit,
                                    seed=seed)

    async def run_capability(self, kind: str, snapshot: AnySnapshot | None,
                             params: dict[str, Any]) -> str:
        """Rebalance, pareto, simulate ... in a worker, time limit capped; the JSON answer."""
        if snapshot is not None:
            backend = kind
            if kind == "bottlenecks" and params.get("plan") is None:
                backend = params.get("solver") or snapshot.options.solver
            self._check_size(snapshot, backend)
        workload = params.get("workload") or {}
        for key, cap in (("tasks", self.settings.max_tasks), ("agents", self.settings.max_agents)):
            if workload.get(key, 0) > cap:
                raise InvalidInputError(f"{workload[key]} {key}; this server accepts at most "
                                        f"{cap}", field=f"workload.{key}")
        limit = min(params.get("time_limit") or (snapshot.options.time_limit if snapshot
                                                 else self.settings.sync_time_limit),
                    self.settings.sync_time_limit)
        params = {**params, "time_limit": limit}
        return await self._run_sync(label=kind, snapshot=snapshot, solver=kind, limit=limit,
                                    seed=params.get("seed") or 0, kind=kind, params=params)

    async def validate(self, req: ValidateRequest) -> ValidateResponse:
        """The independent validator, run in a worker (it is linear but not free)."""
        self._check_size(req.snapshot, "validate")
        limit = self.settings.sync_time_limit
        text = await self._run_sync(label="validate", snapshot=req.snapshot, solver="validate",
                                    limit=limit, seed=0, kind="validate",
                                    params={"plan": plan_payload(req.plan)})
        return ValidateResponse.model_validate_json(text)

    def solvers(self) -> SolversResponse:
        return SolversResponse(solvers=[SolverInfo(name=k, description=v)
                                        for k, v in solver_names().items()])

    async def submit(self, req: SolveRequest) -> JobOut:
        snap, solver, limit, seed = self._prepare(req, self.settings.job_time_limit)
        active = len(self.queue) + len(self.launching) + len(self.live)
        if active >= self.settings.max_queue:
            self.metrics.rejected.labels("job_queue_full").inc()
            raise CapacityError(f"{active} jobs are queued or running (limit "
                                f"{self.settings.max_queue}); retry later")
        n_agents, n_tasks = _sizes(snap)
        if isinstance(snap, SnapshotText):
            snapshot_json = snap.json
        else:
            snapshot_json = (snap.model_dump_json() if n_tasks <= INLINE_DUMP_TASKS
                             else await asyncio.to_thread(snap.model_dump_json))
        rec = await self._write(self.store.create, snapshot_json=snapshot_json, solver=solver,
                                time_limit=limit, seed=seed, n_agents=n_agents,
                                n_tasks=n_tasks)
        self.queue.append(rec.id)
        self._pump()
        return self._out(rec)

    async def _record(self, job_id: str) -> JobRecord:
        rec = await self._read(self.store.get, job_id)
        if rec is None:
            raise NotFoundError(f"no job {job_id!r}", field="job_id")
        return rec

    def _out(self, rec: JobRecord) -> JobOut:
        live = self.live.get(rec.id)
        state = rec.state
        obj, bound = rec.best_objective, rec.best_bound
        progress = 1.0 if state.final else 0.0
        if live is not None and not state.final:
            if state == JobState.RUNNING:
                progress = min(0.99, (time.monotonic() - live.started) / max(live.time_limit,
                                                                            1e-9))
            if live.best_objective is not None:
                obj, bound = live.best_objective, live.best_bound
        error = None
        if rec.error_type:
            error = ErrorBody(type=rec.error_type, message=rec.error_message or "",
                              field=rec.error_field)
        return JobOut(
            id=rec.id, state=state, created_at=rec.created_at, started_at=rec.started_at,
            finished_at=rec.finished_at, solver=rec.solver, time_limit=rec.time_limit,
            seed=rec.seed, agents=rec.n_agents, tasks=rec.n_tasks, attempts=rec.attempts,
            progress=round(progress, 4), best_objective=obj, best_bound=bound,
            gap=_gap(obj, bound), plan_status=rec.plan_status, has_plan=rec.has_plan,
            error=error)

    async def job(self, job_id: str) -> JobOut:
        return self._out(await self._record(job_id))

    async def plan(self, job_id: str) -> str:
        rec = await self._record(job_id)
        text = await self._read(self.store.plan_json, job_id) if rec.has_plan else None
        if text is None:
            raise NotReadyError(f"job {job_id} is {rec.state.value} and has no plan yet",
                                field="job_id")
        return text

    async def page(self, *, limit: int, offset: int, state: JobState | None) -> JobPage:
        recs, total = await self._read(self.store.page, limit=limit, offset=offset,
                                       state=state)
        return JobPage(items=[self._out(r) for r in recs], total=total, limit=limit,
                       offset=offset)

    async def cancel(self, job_id: str) -> JobOut:
        """Cancel a job (a running one stops and keeps its best plan so far); delete a
        finished one (the answer is its last state; it is gone afterwards)."""
        rec = await self._record(job_id)
        if rec.state.final and job_id not in self.live:
            out = self._out(rec)
            await self._write(self.store.delete, job_id)
            return out
        if job_id in self.queue:
            self.queue.remove(job_id)
            await self._write(self.store.finish, job_id, JobState.CANCELLED)
        elif job_id in self.live:
            live = self.live[job_id]
            if not live.cancelling:
                live.cancelling = True
                self.pool.cancel(job_id, self.settings.cancel_grace_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.finished.wait(),
                                       timeout=self.settings.cancel_grace_s + 10)
        elif not rec.state.final:  # being launched right now
            self.live.setdefault(job_id, _Live(job_id, rec.solver, rec.time_limit)
                                 ).cancelling = True
        return await self.job(job_id)
