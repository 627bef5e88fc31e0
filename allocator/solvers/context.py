"""SolveContext: what every backend gets from its caller, the same for all of them.

One object carries the wall-clock budget, the worker count, the seed, a stop
signal, the on-improvement callback and the determinism flag through the
solver protocol (``solve(problem, *, budget=ctx, seed, warm)``). So a caller
- the CLI, the engine, the HTTP worker - can stop any backend, and sees every
improving solution as it is found, whichever backend found it.

* ``remaining()`` is 0 once ``stop`` is set, so every loop that honours the
  budget honours a stop too. Backends whose search runs in native code
  register a hook (``on_stop``) that interrupts it: CP-SAT's ``stop_search``,
  HiGHS's ``cancelSolve``.
* ``improve(agent_of, ...)`` is how a backend hands over an incumbent. Only
  strictly improving ones reach ``on_improve``, so the reported objectives
  are monotone; ``best`` keeps the best assignment, and the engine never
  returns a plan worse than it (a stopped solve returns its best plan).
* ``deterministic``: the backend bounds its heuristics by counts instead of
  the clock and runs single-threaded where its solver needs that for
  reproducibility; same seed, same plan on a loaded machine too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: How often the stop watcher looks at the `stop` event (s).
_WATCH_S = 0.05


@dataclass(frozen=True)
class Improvement:
    """An incumbent handed over by a backend (objective in the plan's own units)."""

    time_s: float
    objective: float
    source: str
    agent_of: np.ndarray
    order_key: np.ndarray | None = None
    bound: float | None = None


@dataclass
class SolveContext:
    """Budget, seed, stop signal, on-improvement callback and determinism of one solve."""

    time_limit: float
    workers: int = 2
    clock: Callable[[], float] = time.perf_counter
    started: float = field(default=0.0)
    started_cpu: float = field(default=0.0, init=False, repr=False)
    seed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    on_improve: Callable[[Improvement], Any] | None = None
    #: None: deterministic exactly when ``workers == 1`` (the historical rule).
    deterministic: bool | None = None
    #: Objective of an assignment exactly as the plan will report it (set by
    #: the engine); when None the backend's own figure is taken.
    evaluate: Callable[[np.ndarray, np.ndarray | None], float] | None = None
    #: A caller may stop this solve from outside (it passed `stop`): backends then
    #: also arm interrupts that cost a little speed (HiGHS's interrupt callbacks).
    stoppable: bool = False
    best: Improvement | None = field(default=None, init=False)
    #: (assignments list, agent_of) of the last plan built for this solve, so the
    #: engine reads a plan's assignment back without a pass over its objects.
    last_plan: tuple[Any, np.ndarray] | None = field(default=None, init=False,
                                                            repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop_hooks: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)
    _watcher: threading.Thread | None = field(default=None, init=False, repr=False)
    _closed: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.started_cpu = time.thread_time()
        if self.deterministic is None:
            self.deterministic = self.workers == 1

    def __deepcopy__(self, memo: dict[int, Any]) -> SolveContext:
        # One solve, one context: libraries that deep-copy their state (pymoo
        # copies its termination objects) share it rather than copy its locks.
        return self

    def __copy__(self) -> SolveContext:
        return self

    # -- the budget ---------------------------------------------------------

    def elapsed(self) -> float:
        return self.clock() - self.started

    def cpu_share(self) -> float:
        """CPU time the creating thread got per second of the budget so far (call it
        from that thread while it has been busy): 1 on an idle core, ~0.15 for one of
        three solves at once on two cores at load 9. 1 when too little time has passed."""
        wall = self.elapsed()
        if not wall > 0.05:
            return 1.0
        return float(min(1.0, max(0.0, (time.thread_time() - self.started_cpu) / wall)))

    def remaining(self) -> float:
        if self.stop.is_set():
            return 0.0
        return max(0.0, self.time_limit - self.elapsed())

    @property
    def is_deterministic(self) -> bool:
        return bool(self.deterministic)

    def stopped(self) -> bool:
        return self.stop.is_set()

    # -- stopping -----------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the solve to return its best plan now (thread-safe, idempotent)."""
        with self._lock:
            self.stop.set()
            hooks = list(self._stop_hooks)
        for hook in hooks:
            try:
                hook()
            except Exception:  # a hook must never take the caller down
                log.exception("stop hook failed")

    def on_stop(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Run `hook` when a stop is requested (at once if it already was); returns an
        unregister function. For searches in native code that do not poll `remaining()`.

        A caller may also just set the `stop` event (from any thread): a small
        watcher thread, started with the first hook, runs the hooks then.
        """
        with self._lock:
            already = self.stop.is_set()
            if not already:
                self._stop_hooks.append(hook)
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="solve-stop",
                                                     daemon=True)
                    self._watcher.start()
        if already:
            hook()

        def unregister() -> None:
            with self._lock:
                if hook in self._stop_hooks:
                    self._stop_hooks.remove(hook)

        return unregister

    def _watch(self) -> None:
        while not self._closed.is_set():
            if self.stop.wait(_WATCH_S):
                self.request_stop()
                return

    def close(self) -> None:
        """The solve is over: end the stop watcher (idempotent)."""
        self._closed.set()

    # -- incumbents ---------------------------------------------------------

    def improve(self, agent_of: np.ndarray, *, source: str, objective: float | None = None,
                order_key: np.ndarray | None = None, bound: float | None = None) -> bool:
        """Hand over an incumbent; True when it improves on the best so far.

        A backend passes `objective` when its model computes exactly the
        plan's number (the assignment model does); otherwise it is computed
        with `evaluate`, which the engine sets to the plan's own objective.
        """
        agent_of = np.asarray(agent_of, dtype=np.int64)
        if objective is None and self.evaluate is not None:
            objective = self.evaluate(agent_of, order_key)
        if objective is None or not np.isfinite(objective):
            return False
        with self._lock:
            best = self.best
            if best is not None and not objective < best.objective - 1e-9 * max(
                    1.0, abs(best.objective)):
                return False
            imp = Improvement(time_s=self.elapsed(), objective=float(objective), source=source,
                              agent_of=agent_of.copy(),
                              order_key=None if order_key is None else order_key.copy(),
                              bound=bound)
            self.best = imp
            callback = self.on_improve
        if callback is not None:
            try:
                callback(imp)
            except Exception:  # the caller's callback must never take the solver down
                log.exception("on_improve callback failed")
        return True
