"""One place that decides whether the compiled kernels are compiled.

The search kernels (GAP penalty walk and tabu search, the knapsack pricing
table, the ROADEF annealing) are written once as plain numeric Python and
decorated with :func:`njit`. With numba importable that is ``numba.njit``;
without it the decorator returns the function unchanged, so the kernels still
run (slowly) and callers read :data:`HAVE_NUMBA` to decide whether to use them.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["HAVE_NUMBA", "WarmUp", "cache_fresh", "nice_if_compiling", "njit"]

try:  # pragma: no cover - exercised by whichever import succeeds
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False

    def njit(*args: Any, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[no-redef]
        """Stand-in for ``numba.njit(...)``: leaves the function as it is."""

        def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
            return f

        return wrap


def cache_fresh(module_file: str, kernel: str) -> bool:
    """Whether numba's on-disk cache of `kernel` (a function of the module at
    `module_file`) looks newer than the module: then a warm-up only loads it
    (~0.4 s of CPU) instead of compiling (10-25 s)."""
    here = os.path.abspath(module_file)
    stem = os.path.splitext(os.path.basename(here))[0]
    pattern = os.path.join(os.path.dirname(here), "__pycache__", f"{stem}.{kernel}-*.nbi")
    try:
        src = os.path.getmtime(here)
        return any(os.path.getmtime(f) >= src for f in glob.glob(pattern))
    except OSError:
        return False


def nice_if_compiling(module_file: str, kernel: str) -> None:
    """Lower the calling (warm-up) thread to nice 10 when its kernels must compile.

    A compile then takes idle CPU only; a cache load keeps normal priority (under a
    load of 10+ on two cores a niced load did not finish within a 10 s solve)."""
    if not cache_fresh(module_file, kernel):
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class WarmUp:
    """A module's kernels loaded from numba's cache (or compiled) once, in a background thread.

    A cold cache compiles for 10-30 s of CPU on a loaded machine, which must never
    happen inside a timed solve: callers ask :meth:`ready` and do without the
    kernels until the thread has run them once (its function calls
    :meth:`mark_ready` when every kernel has run).
    """

    #: How long interpreter exit waits for a compile still running (a cold cache: 10-30 s).
    EXIT_WAIT_S = 120.0

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        self._name = name
        self._lock = threading.Lock()
        self._started = False
        self._ready = False
        self._thread: threading.Thread | None = None

    def _join_at_exit(self) -> None:
        # A daemon thread still inside numba's compiler when the interpreter finalises
        # crashed the process (SIGSEGV after a 2 s solve had printed its plan): exit
        # waits for the compile, which also leaves the on-disk cache complete.
        if self._thread is not None:
            self._thread.join(self.EXIT_WAIT_S)

    def mark_ready(self) -> None:
        self._ready = True

    def ready(self) -> bool:
        """Whether the kernels run now without compiling; the first call starts the thread."""
        if not HAVE_NUMBA:
            return False
        if self._ready:
            return True
        with self._lock:
            if not self._started:
                self._started = True
                self._thread = threading.Thread(target=self._target, name=self._name,
                                                daemon=True)
                atexit.register(self._join_at_exit)
                self._thread.start()
        return self._ready
