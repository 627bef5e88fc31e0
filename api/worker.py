"""What runs inside a solver worker process (spawned, one solve at a time).

Protocol over one duplex pipe (tuples, pickled):

parent -> worker
    ("run", work_id, kind, snapshot (Snapshot, JSON str or None), solver, time_limit, seed,
     initial, params)             kind "solve", or a capability of api.capabilities
    ("cancel", work_id)
    ("stop",)
worker -> parent
    ("ready", pid)
    ("progress", work_id, objective, bound)       an improving solution was found
    ("best", work_id, plan_json, status, objective, bound)  a complete best-so-far plan
    ("done", work_id, plan_json, status, objective, bound, cancelled)
    ("error", work_id, type, message, field)

Nothing here may write to stdout: fd 1 is pointed at stderr first thing, so a
solver banner (HiGHS) or a stray print can never corrupt an MCP stdio stream.

The engine has no progress or stop hook of its own yet, so this module wraps
``CpSolver.solve`` in the worker process only: it reports the improving
solutions the backends' callbacks collect (their ``points``) and lets a cancel
call ``stop_search()``, which makes CP-SAT return its best solution so far.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("api.worker")

#: How often improving CP-SAT solutions are reported (seconds).
PROGRESS_PERIOD_S = 0.25


@dataclass
class _Current:
    work_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    solvers: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_current: _Current | None = None
_send_lock = threading.Lock()
_conn: Connection | None = None


def _send(msg: tuple[Any, ...]) -> None:
    assert _conn is not None
    with _send_lock:
        _conn.send(msg)


def _install_cpsat_hook() -> None:
    from ortools.sat.python import cp_model

    original = cp_model.CpSolver.solve
    if getattr(original, "_api_hooked", False):
        return

    def solve(self: Any, model: Any, solution_callback: Any = None) -> Any:
        cur = _current
        if cur is None:
            return original(self, model, solution_callback)
        with cur.lock:
            if cur.cancel.is_set():
                self.parameters.max_time_in_seconds = 0.01
            cur.solvers.append(self)
        done = threading.Event()

        def report() -> None:
            seen = 0
            while not done.wait(PROGRESS_PERIOD_S):
                points = getattr(solution_callback, "points", None) or []
                if len(points) > seen:
                    seen = len(points)
                    p = points[-1]
                    _send(("progress", cur.work_id, p.objective, p.bound))

        t = threading.Thread(target=report, name="progress", daemon=True)
        t.start()
        try:
            return original(self, model, solution_callback)
        finally:
            done.set()
            with cur.lock:
                cur.solvers.remove(self)

    solve._api_hooked = True  # type: ignore[attr-defined]
    cp_model.CpSolver.solve = solve  # type: ignore[method-assign]


def _plan_tuple(plan: Any) -> tuple[str, str, float | None, float | None]:
    return (plan.model_dump_json(by_alias=True), str(plan.status), plan.objective, plan.bound)


def _run(msg: tuple[Any, ...]) -> None:
    global _current
    from allocator.engine import solve
    from allocator.errors import AllocatorError
    from models import Snapshot

    _, work_id, kind, snapshot, solver, time_limit, seed, initial, params = msg
    cur = _Current(work_id)
    _current = cur
    try:
        snap = snapshot if isinstance(snapshot, Snapshot) or snapshot is None else (
            Snapshot.model_validate_json(snapshot))
        if kind != "solve":
            from api.capabilities import run

            _send(("done", work_id, run(kind, snap, params or {}), None, None, None, False))
            return
        assert snap is not None
        t0 = time.perf_counter()
        if initial and solver != "greedy":
            # A complete plan early: what a cancel or a crash leaves behind.
            first = solve(snap, solver="greedy", time_limit=time_limit, seed=seed)
            _send(("best", work_id, *_plan_tuple(first)))
            if cur.cancel.is_set():
                _send(("done", work_id, *_plan_tuple(first), True))
                return
        else:
            first = None
        remaining = max(0.05, time_limit - (time.perf_counter() - t0))
        plan = solve(snap, solver=solver, time_limit=remaining, seed=seed)
        cancelled = cur.cancel.is_set()
        if first is not None and first.objective is not None and (
            plan.objective is None or (cancelled and plan.objective > first.objective)
        ):  # the early plan is the best there is: keep it rather than an empty one
            why = "cancelled" if cancelled else f"{solver}: {plan.message or plan.status}"
            plan = first.model_copy(update={"message": f"best plan so far ({why})"})
        _send(("done", work_id, *_plan_tuple(plan), cancelled))
    except AllocatorError as e:
        _send(("error", work_id, type(e).__name__, e.message, e.field))
    except Exception as e:  # a bug in a backend: fail this solve, keep the worker
        traceback.print_exc(file=sys.stderr)
        _send(("error", work_id, "SolverError", f"{type(e).__name__}: {e}", None))
    finally:
        _current = None


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
                    for s in cur.solvers:
                        s.stop_search()
        else:
            inbox.put(msg)


def worker_main(conn: Connection, plugins: list[str]) -> None:
    """Entry point of a worker process."""
    global _conn
    os.dup2(2, 1)  # stdout belongs to the parent (MCP stdio): solver output goes to stderr
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s worker %(process)d %(name)s: %(message)s")
    _conn = conn
    import allocator.engine  # noqa: F401  (import the solvers before saying ready)

    for name in plugins:
        importlib.import_module(name)
    _install_cpsat_hook()
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
