"""The online executor: one pure scheduling core, a simulator and an asyncio runtime.

See docs/online.md. The core (`Executor`) takes events and returns
instructions; `Simulator` drives it on a virtual clock, `Runtime` on asyncio
with real callables, and `Coordinator` re-solves snapshots between them.

The core's hot modules may run compiled with mypyc (setup.py); which build
is in use, and why, is `native_build()`.
"""
# ruff: noqa: E402
# (the build guard below runs before the core's first import)

from allocator import _native
from allocator._native import NativeBuild

# Before any module of the compiled group is imported: the compiled build only
# if its sources are unchanged since it was built (allocator/_native.py).
_native.activate()

from allocator.clock import Clock, MonotonicClock, VirtualClock
from allocator.online.admission import AdmissionConfig
from allocator.online.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from allocator.online.core import Executor
from allocator.online.events import *  # noqa: F403
from allocator.online.events import __all__ as _events_all
from allocator.online.metrics import summary
from allocator.online.policies import Policy, StealConfig, make_policy, policy_names
from allocator.online.prom import register
from allocator.online.queues import PriorityConfig


def native_build() -> NativeBuild:
    """The online core's build in use: ("mypyc" | "pure", why). See docs/online.md."""
    return _native.active()


__all__ = [
    "AdmissionConfig",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "Executor",
    "MonotonicClock",
    "NativeBuild",
    "Policy",
    "PriorityConfig",
    "StealConfig",
    "VirtualClock",
    "make_policy",
    "native_build",
    "policy_names",
    "register",
    "summary",
    *_events_all,
]
