"""Small task functions for demos, tests and benchmarks.

Standard library only: the Ray driver ships this module by value, so running
these on an actor does not import the `allocator` package there.
"""

from __future__ import annotations

import asyncio
import os
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


def wait_for_file(path: str, value: object = None, timeout: float = 60.0,
                  started: str | None = None) -> object:
    """Blocks until `path` exists (or `timeout` s pass): holds a task on its agent until
    the caller opens the gate, so a fault can be injected while the task surely runs.
    Creates the file `started` first, if given, to say that it runs."""
    if started is not None:
        open(started, "a").close()
    end = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)
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
