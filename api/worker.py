"""What runs inside a solver worker process (spawned, one solve at a time).

Protocol over one duplex pipe (tuples, pickled):

parent -> worker
    ("run", work_id, kind, snapshot (Snapshot, JSON str or None), solver, time_limit, seed,
     initial, params)             kind "solve", or a capability of api.capabilities
    ("cancel", work_id)
    ("stop",)
worker -> parent
    ("ready", pid)
    ("best", work_id, plan_json, status, objective, bound)  a complete best-so-far plan
                                  (every improvement, at most every PROGRESS_PERIOD_S)
    ("done", work_id, plan_json, status, objective, bound, cancelled[, timed_out])
    ("error", work_id, type, message, field)

Time limits are hard: `ALARM_MARGIN_S` after the work's time limit a timer
thread sets the solve's stop signal; if the work is still going
`ALARM_INTERRUPT_S` later, SIGALRM raises `TimeUp` in the main thread (a
BaseException, so no `except Exception` in the engine swallows it), and the
best plan so far is the answer, marked timed out. Code stuck in C without
returning to Python is the pool's business: it kills the worker past
limit + grace (api.pool).

Nothing here may write to stdout: fd 1 is pointed at stderr first thing, so a
solver banner (HiGHS) or a stray print can never corrupt an MCP stdio stream.

Progress and stopping go through the engine's SolveContext: `engine.solve(...,
stop=event, on_improve=callback)`. Every backend hands its incumbents to the
callback (CP-SAT, HiGHS and the `auto` portfolio as they find them), a cancel
or the alarm sets the event (which interrupts CP-SAT and HiGHS in native
code), and the engine never returns a plan worse than one it reported. The
worker sends each improvement as a complete plan (`best`), so a job's
reported best objective is always that of a stored plan.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("api.worker")

#: How often improving CP-SAT solutions are reported (seconds).
PROGRESS_PERIOD_S = 0.25
#: The alarm fires this long after the time limit (CP-SAT asked to stop) ...
ALARM_MARGIN_S = 0.25
#: ... and again this long after that (TimeUp raised if the work still runs).
ALARM_INTERRUPT_S = 0.35


@dataclass
class _Current:
    work_id: str
    #: The solve's stop signal (the engine's SolveContext watches it and
    #: interrupts CP-SAT / HiGHS searches running in native code).
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    alarmed: bool = False


_current: _Current | None = None
_send_lock = threading.Lock()
_conn: Connection | None = None


_sending = 0  # > 0 while the main thread writes a message: the alarm must not cut it


@contextlib.contextmanager
def _unbroken() -> Iterator[None]:
    """The alarm waits while the main thread does this: a message, or a plan being serialised.

    A plan's rows may be built lazily by Python code inside pydantic's
    serialiser; a `TimeUp` raised there would come out as a
    `PydanticSerializationError` (a 500), not as the time limit.
    """
    global _sending
    main = threading.current_thread() is threading.main_thread()
    if main:
        _sending += 1
    try:
        yield
    finally:
        if main:
            _sending -= 1


def _send(msg: tuple[Any, ...]) -> None:
    assert _conn is not None
    with _send_lock, _unbroken():
        _conn.send(msg)


class _Reporter:
    """Sends the job's best plan so far, built from the engine's on-improvement callback.

    The callback itself only records the incumbent (it runs on the solver's
    thread); this thread builds the complete plan at most every
    ``PROGRESS_PERIOD_S`` and sends it as ``best``, so the objective the job
    reports is always that of a plan it has stored.
    """

    def __init__(self, work_id: str) -> None:
        self.work_id = work_id
        self._lock = threading.Lock()
        self._latest: tuple[Any, Any] | None = None
        self._sent: Any = None
        self.best_sent: Any = None  # the last plan sent (lowest objective so far)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()

    def on_improve(self, imp: Any, to_plan: Any) -> None:
        with self._lock:
            self._latest = (imp, to_plan)

    def _flush(self) -> None:
        with self._lock:
            latest = self._latest
        if latest is None or latest[0] is self._sent:
            return
        imp, to_plan = latest
        plan = to_plan()
        self._sent = imp
        if self.best_sent is None or (plan.objective is not None
                                      and plan.objective < self.best_sent.objective):
            self.best_sent = plan
            _send(("best", self.work_id, *_plan_tuple(plan)))

    def _run(self) -> None:
        while not self._done.wait(PROGRESS_PERIOD_S):
            try:
                self._flush()
            except Exception:  # progress must never fail the solve
                log.exception("progress report failed")

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=2.0)


def _nudge(cur: _Current) -> None:
    """Time is up: ask the running solve to stop (its context interrupts native searches)."""
    with cur.lock:
        cur.alarmed = True
        cur.cancel.set()


def _on_alarm(signum: int, frame: Any) -> None:
    """Still running after the nudge: interrupt the Python code of the work."""
    from allocator.usecases import TimeUp

    if _current is None:
        return
    if _sending or _importing(frame):
        # Never cut a message in half, nor a module's import: a TimeUp raised in a
        # module body leaves its package half-initialised in sys.modules (numba's, on
        # a worker's first pareto) and every later request of this worker fails. Try
        # again right after; the pool kills a worker whose import outlasts the grace.
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        return
    raise TimeUp


def _importing(frame: Any) -> bool:
    """Whether the main thread is inside an import (importlib's frames on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _alarm(cur: _Current, seconds: float) -> Iterator[None]:
    """Nudge at `seconds` (a thread), interrupt `ALARM_INTERRUPT_S` later (SIGALRM).

    A signal handler runs only when the main thread is back in Python, so code
    in C (a CP-SAT search) is stopped by the nudge, and what neither reaches
    is killed by the pool.
    """
    nudge = threading.Timer(max(seconds, 0.01), _nudge, args=(cur,))
    nudge.daemon = True
    nudge.start()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01) + ALARM_INTERRUPT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        nudge.cancel()


def _plan_tuple(plan: Any) -> tuple[str, str, float | None, float | None]:
    with _unbroken():
        return (plan.model_dump_json(by_alias=True), str(plan.status), plan.objective, plan.bound)


def _run(msg: tuple[Any, ...]) -> None:
    global _current
    from allocator.errors import AllocatorError

    _, work_id, kind, snapshot, solver, time_limit, seed, initial, params = msg
    cur = _Current(work_id)
    _current = cur
    try:
        with _alarm(cur, time_limit + ALARM_MARGIN_S):
            _run_work(cur, work_id, kind, snapshot, solver, time_limit, seed, initial, params)
    except AllocatorError as e:
        _send(("error", work_id, type(e).__name__, e.message, e.field))
    except Exception as e:  # a bug in a backend: fail this solve, keep the worker
        traceback.print_exc(file=sys.stderr)
        _send(("error", work_id, "SolverError", f"{type(e).__name__}: {e}", None))
    except BaseException as e:  # TimeUp outside the guarded parts (parsing, the answer)
        if type(e).__name__ != "TimeUp":
            raise
        _send(("error", work_id, "TimeLimitError",
               f"the work did not finish within its time limit of {time_limit:g} s", None))
    finally:
        _current = None


def _run_work(cur: _Current, work_id: str, kind: str, snapshot: Any, solver: str,
              time_limit: float, seed: int, initial: bool, params: Any) -> None:
    from allocator.engine import solve
    from allocator.errors import TimeLimitError
    from allocator.objectives import relative_gap
    from allocator.usecases import TimeUp
    from models import Snapshot

    snap = snapshot if isinstance(snapshot, Snapshot) or snapshot is None else (
        Snapshot.model_validate_json(snapshot))
    if kind != "solve":
        from api.capabilities import run

        try:
            answer = run(kind, snap, params or {})
        except TimeUp:
            raise TimeLimitError(f"{kind} did not finish within its time limit of "
                                 f"{time_limit:g} s; use a smaller input") from None
        _send(("done", work_id, answer, None, None, None, False))
        return
    assert snap is not None
    t0 = time.perf_counter()
    first = None
    reporter: _Reporter | None = None
    try:
        if solver != "greedy":
            # A complete plan early: what a cancel, a crash or the time limit leaves behind.
            first = solve(snap, solver="greedy", time_limit=time_limit, seed=seed,
                          stop=cur.cancel)
            first = first.model_copy(update={
                "message": "best plan so far (greedy; the solve was stopped early)"})
            if initial:
                _send(("best", work_id, *_plan_tuple(first)))
            if cur.cancel.is_set():  # cancelled, or the time limit passed during greedy
                _send(("done", work_id, *_plan_tuple(first), not cur.alarmed, cur.alarmed))
                return
        remaining = max(0.05, time_limit - (time.perf_counter() - t0))
        reporter = _Reporter(work_id)
        try:
            plan = solve(snap, solver=solver, time_limit=remaining, seed=seed, stop=cur.cancel,
                         on_improve=reporter.on_improve)
        finally:
            if reporter is not None:
                reporter.close()
    except TimeUp:
        sent = reporter.best_sent if reporter is not None else None
        if sent is not None and (first is None or first.objective is None
                                 or (sent.objective is not None
                                     and sent.objective < first.objective)):
            first = sent  # the best plan the job reported
        if first is None:
            raise TimeLimitError(f"no plan within the time limit of {time_limit:g} s; use a "
                                 "smaller input or a longer limit (a job)") from None
        _send(("done", work_id, *_plan_tuple(first), False, True))
        return
    # A search the alarm asked to stop and that then returned on its own is a normal
    # finish with its best plan; only an interrupted one (TimeUp above) timed out.
    cancelled = cur.cancel.is_set() and not cur.alarmed
    if first is not None and first.objective is not None and (
        plan.objective is None or plan.objective > first.objective
    ):  # the early plan is the best there is: the job reported it, so it is the answer
        why = ("cancelled" if cancelled else "time limit" if cur.alarmed
               else f"{solver}: {plan.message or plan.status}")
        update: dict[str, Any] = {"message": f"best plan so far ({why})"}
        if plan.bound is not None and (first.bound is None or plan.bound > first.bound):
            # A lower bound holds for every plan of the snapshot: the answer keeps the
            # backend's (the CLI reports it; the answer had none, gap None).
            bound = min(plan.bound, first.objective)
            update |= {"bound": bound, "gap": relative_gap(first.objective, bound)}
        plan = first.model_copy(update=update)
    _send(("done", work_id, *_plan_tuple(plan), cancelled, False))


def _listen(conn: Connection, inbox: queue.Queue[tuple[Any, ...]]) -> None:
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone: nothing left to do
            os._exit(0)
        if msg[0] == "cancel":
            cur = _current
            if cur is not None and cur.work_id == msg[1]:
                with cur.lock:
                    cur.cancel.set()
        else:
            inbox.put(msg)


def _preload_capabilities() -> None:
    """Import what the capabilities import on first use (the pareto stack brings numba,
    0.4-2 s), before the worker says ready.

    A first import inside a request's short time limit either runs past it (the alarm
    waits for an import to finish, then the pool kills the worker: its replacement
    starts from scratch and the next pareto request fails the same way) or, before the
    alarm waited, was cut in half and broke every later request of that worker.
    """
    import allocator.pareto
    import allocator.solvers.exact_front
    import allocator.solvers.nsga2  # noqa: F401


def worker_main(conn: Connection, plugins: list[str]) -> None:
    """Entry point of a worker process."""
    global _conn
    os.dup2(2, 1)  # stdout belongs to the parent (MCP stdio): solver output goes to stderr
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s worker %(process)d %(name)s: %(message)s")
    _conn = conn
    import allocator.engine
    from allocator.solvers import solver_names

    # Every backend (lazy ones too: ortools, pymoo) and the LP stack before saying
    # ready, so no request's time limit pays for a first import (0.3-2 s on a busy
    # machine, against a sync limit of seconds). The spawned process used to get
    # them by re-importing the `allocator` script's CLI modules; that CLI is light
    # now (issue #21), so the worker asks for them itself.
    solver_names()
    allocator.engine._preload()
    _preload_capabilities()

    for name in plugins:
        importlib.import_module(name)
    inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
    threading.Thread(target=_listen, args=(conn, inbox), name="listen", daemon=True).start()
    _send(("ready", os.getpid()))
    while True:
        msg = inbox.get()
        if msg[0] == "stop":
            break
        if msg[0] == "run":
            _run(msg)
    conn.close()
