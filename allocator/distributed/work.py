"""Small task functions for demos, tests and benchmarks.

Standard library only: the Ray driver ships this module by value, so running
these on an actor does not import the `allocator` package there.
"""

from __future__ import annotations

import asyncio
import time

from allocator.distributed.worker import current_agent


def noop(i: int = 0) -> int:
    return i


def sleep_for(seconds: float, value: object = None) -> object:
    """Blocking sleep (runs in the actor's thread pool)."""
    time.sleep(seconds)
    return value


async def async_sleep_for(seconds: float, value: object = None) -> object:
    await asyncio.sleep(seconds)
    return value


def fail_on(bad_agent: str, seconds: float = 0.0, value: object = None) -> object:
    """Raises when run by agent `bad_agent` (a task error, not an actor failure)."""
    time.sleep(seconds)
    if current_agent() == bad_agent:
        raise RuntimeError(f"task error on {bad_agent}")
    return value


def reported(value: object, tokens: float) -> object:
    """Returns `value` with a usage report (settles the agent's token bucket)."""
    from allocator.online.runtime import Reported

    return Reported(value, usage={"tokens": tokens})
