"""A test-only backend that kills its own process, loaded via ALLOCATOR_PLUGINS."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from allocator.problem import Problem
from allocator.solvers.base import Budget, WarmStart, register
from models import Plan


@register("test:crash", "test only: the worker process dies mid-solve")
def solve_crash(problem: Problem, *, budget: Budget, seed: int = 0,
                warm: WarmStart | None = None) -> Plan:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@register("test:bug", "test only: the backend raises an unexpected exception")
def solve_bug(problem: Problem, *, budget: Budget, seed: int = 0,
              warm: WarmStart | None = None) -> Plan:
    raise ZeroDivisionError("a bug in a backend")


@register("test:stubborn", "test only: ignores every stop and interrupt (the pool must kill)")
def solve_stubborn(problem: Problem, *, budget: Budget, seed: int = 0,
                   warm: WarmStart | None = None) -> Plan:
    while True:
        with contextlib.suppress(BaseException):  # swallows the worker's TimeUp on purpose
            time.sleep(0.05)


@register("test:sleep", "test only: sleeps ten times its time limit (interruptible)")
def solve_sleep(problem: Problem, *, budget: Budget, seed: int = 0,
                warm: WarmStart | None = None) -> Plan:
    time.sleep(budget.time_limit * 10)
    raise AssertionError("should have been interrupted")
