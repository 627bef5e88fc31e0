"""A pool of solver worker processes (spawn context) driven from the event loop.

Each worker runs one solve at a time (see api.worker for the pipe protocol).
A reader thread per worker forwards its messages to the event loop; when a
worker dies (crash, OOM kill, or killed after a cancel's grace period) the
work it held gets a ("crash", exitcode) event and a fresh worker takes its
place, so one bad solve never takes the service down.

Time limits are hard: work with a `hard_limit` whose worker has not answered
that many seconds after dispatch is killed (the worker's own alarm should
have ended it already; this is for code stuck in C) and gets a ("timeout",
exitcode) event instead of a crash; a fresh worker takes the place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from api.worker import worker_main
from models import Snapshot

log = logging.getLogger(__name__)

#: Callback receiving (kind, args) for one piece of work, in the event-loop thread.
EventSink = Callable[[str, tuple[Any, ...]], None]


@dataclass
class Work:
    """One solve for the pool: a job (initial=True: report a greedy plan first) or a sync call."""

    id: str
    snapshot: Snapshot | str | None
    solver: str
    time_limit: float
    seed: int
    initial: bool
    sink: EventSink
    kind: str = "solve"
    params: dict[str, Any] | None = None
    #: Seconds after dispatch past which the worker is killed (time limit + grace).
    hard_limit: float | None = None
    #: When the caller asked (time.monotonic()); synchronous work counts its limit from it.
    arrived: float = 0.0


@dataclass
class _Worker:
    proc: BaseProcess
    conn: Connection
    ready: bool = False
    work: Work | None = None
    reserved: bool = False
    gone: bool = False
    kill_timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    limit_timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    overdue: bool = False

    @property
    def idle(self) -> bool:
        return self.ready and not self.gone and self.work is None and not self.reserved


class WorkerPool:
    """`size` spawned worker processes; `on_idle` is called whenever one becomes free."""

    def __init__(self, size: int, *, plugins: list[str] | None = None,
                 on_idle: Callable[[], None] | None = None) -> None:
        self.size = size
        self.plugins = list(plugins or [])
        self.on_idle = on_idle or (lambda: None)
        self.crashes = 0
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main, args=(child, self.plugins),
                                 name="allocator-solver", daemon=True)
        proc.start()
        child.close()
        w = _Worker(proc, parent)
        self._workers.append(w)
        threading.Thread(target=self._read, args=(w,), name=f"pool-read-{proc.pid}",
                         daemon=True).start()

    def _read(self, w: _Worker) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                msg = w.conn.recv()
            except (EOFError, OSError):
                break
            try:
                loop.call_soon_threadsafe(self._on_message, w, msg)
            except RuntimeError:  # loop closed during shutdown
                return
        w.proc.join(timeout=10)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_exit, w, w.proc.exitcode)

    async def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.conn.send(("stop",))
            # A running solve would hold up shutdown, and a worker still importing
            # (not ready: 2-5 s of imports on a busy machine) holds no work to finish.
            if w.work is not None or not w.ready:
                w.proc.kill()
        deadline = asyncio.get_running_loop().time() + timeout
        for w in self._workers:
            while w.proc.is_alive() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            if w.proc.is_alive():
                w.proc.kill()
            w.proc.join(timeout=1)
        self._workers.clear()

    # -- state ------------------------------------------------------------------------

    @property
    def ready_count(self) -> int:
        return sum(1 for w in self._workers if w.ready and not w.gone)

    @property
    def busy_count(self) -> int:
        return sum(1 for w in self._workers if w.work is not None or w.reserved)

    def reserve(self) -> _Worker | None:
        """An idle worker, marked reserved until `dispatch` or `release`."""
        for w in self._workers:
            if w.idle:
                w.reserved = True
                return w
        return None

    def release(self, w: _Worker) -> None:
        w.reserved = False
        self.on_idle()

    def dispatch(self, w: _Worker, work: Work) -> None:
        w.reserved = False
        if w.gone:
            work.sink("crash", (None,))
            return
        w.work = work
        if work.hard_limit is not None:
            assert self._loop is not None
            w.limit_timer = self._loop.call_later(work.hard_limit, self._kill_overdue, w,
                                                  work.id)
        with contextlib.suppress(OSError):  # a dead worker is reported by its reader thread
            w.conn.send(("run", work.id, work.kind, work.snapshot, work.solver,
                         work.time_limit, work.seed, work.initial, work.params))

    def cancel(self, work_id: str, grace: float) -> bool:
        """Ask the worker holding `work_id` to stop; kill it if it has not after `grace` s."""
        for w in self._workers:
            if w.work is not None and w.work.id == work_id:
                try:
                    w.conn.send(("cancel", work_id))
                except OSError:
                    return True
                assert self._loop is not None
                w.kill_timer = self._loop.call_later(grace, self._kill_if_still, w, work_id)
                return True
        return False

    def _kill_if_still(self, w: _Worker, work_id: str) -> None:
        if w.work is not None and w.work.id == work_id and w.proc.is_alive():
            log.warning("worker %s did not stop within the grace period; killing it",
                        w.proc.pid)
            w.proc.kill()

    def _kill_overdue(self, w: _Worker, work_id: str) -> None:
        if w.work is not None and w.work.id == work_id and w.proc.is_alive():
            log.warning("worker %s passed the hard time limit of %s; killing it",
                        w.proc.pid, work_id)
            w.overdue = True
            w.proc.kill()

    @staticmethod
    def _stop_timers(w: _Worker) -> None:
        for t in (w.kill_timer, w.limit_timer):
            if t is not None:
                t.cancel()
        w.kill_timer = w.limit_timer = None

    # -- events -----------------------------------------------------------------------

    def _on_message(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready = True
            self.on_idle()
            return
        work = w.work
        if work is None or msg[1] != work.id:
            return  # a late message for work already settled
        if kind in ("done", "error"):
            w.work = None
            self._stop_timers(w)
        work.sink(kind, tuple(msg[2:]))
        if w.work is None:
            self.on_idle()

    def _on_exit(self, w: _Worker, exitcode: int | None) -> None:
        w.gone = True
        if w in self._workers:
            self._workers.remove(w)
        self._stop_timers(w)
        if self._closing:
            return
        self.crashes += 1
        work, w.work = w.work, None
        log.error("solver worker %s exited with code %s%s", w.proc.pid, exitcode,
                  f" while solving {work.id}" if work else "")
        self._spawn()
        if work is not None:
            work.sink("timeout" if w.overdue else "crash", (exitcode,))
