"""A test-only backend that kills its own process, loaded via ALLOCATOR_PLUGINS."""

from __future__ import annotations

import os
import signal

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
