"""The online executor: one pure scheduling core, a simulator and an asyncio runtime.

See docs/online.md. The core (`Executor`) takes events and returns
instructions; `Simulator` drives it on a virtual clock, `Runtime` on asyncio
with real callables, and `Coordinator` re-solves snapshots between them.
"""

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
from allocator.online.metrics import register, summary
from allocator.online.policies import Policy, StealConfig, make_policy, policy_names
from allocator.online.queues import PriorityConfig

__all__ = [
    "AdmissionConfig",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "Executor",
    "MonotonicClock",
    "Policy",
    "PriorityConfig",
    "StealConfig",
    "VirtualClock",
    "make_policy",
    "policy_names",
    "register",
    "summary",
    *_events_all,
]
