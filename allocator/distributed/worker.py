"""The agent actor. Standard library only, on purpose.

The driver ships this module to Ray *by value* (cloudpickle's
`register_pickle_by_value`), so an actor process starts without importing
the `allocator` package (whose engine and solvers take seconds to import on
a busy machine). Task functions are pickled as usual: an actor imports
their modules when it first runs one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import sys
import time
from collections.abc import Callable
from typing import Any

#: Environment variable holding the agent id inside an actor's process.
AGENT_ENV = "ALLOCATOR_AGENT_ID"


def current_agent() -> str | None:
    """Inside a task: the id of the agent (actor) running it; None elsewhere."""
    return os.environ.get(AGENT_ENV)


class AgentWorker:
    """One agent as a Ray actor (wrapped with `ray.remote` by the driver).

    `run` never raises for a task's own error (any BaseException but a
    cancellation): it returns `("error", reason, duration, None, incarnation)`, so an
    exception out of `ray.get` means the actor, the transport or the pickling
    of the result failed, never the task's code.
    """

    def __init__(self, agent_id: str, concurrency: int) -> None:
        os.environ[AGENT_ENV] = agent_id  # one actor per worker process
        self.agent_id = agent_id
        # Which process this is: a restart Ray made while no call was in flight shows
        # to the driver only as a new incarnation on the next answer.
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"
        self.concurrency = concurrency
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, concurrency), thread_name_prefix=f"agent-{agent_id}")
        self.running = 0
        self.peak = 0
        self.done = 0

    async def run(self, payload: tuple[Callable[..., Any], tuple[Any, ...]], task_id: str,
                  attempt: int) -> tuple[str, Any, float, dict[str, float] | None, str]:
        fn, args = payload
        self.running += 1
        self.peak = max(self.peak, self.running)
        t0 = time.monotonic()
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(*args)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(self.pool, fn, *args)
        except asyncio.CancelledError:  # ray.cancel of this attempt: Ray's to handle
            raise
        except BaseException as e:
            # BaseException too: a SystemExit or KeyboardInterrupt escaping `run` stopped
            # the actor's event loop without killing the actor, so it never answered again
            # (the executor waited for ever on everything sent to it).
            return "error", _describe(e), time.monotonic() - t0, None, self.incarnation
        finally:
            self.running -= 1
            self.done += 1
        usage = None
        runtime = sys.modules.get("allocator.online.runtime")  # loaded iff fn used Reported
        if runtime is not None and isinstance(value, runtime.Reported):
            value, usage = value.value, value.usage  # the driver checks it
        return "ok", value, time.monotonic() - t0, usage, self.incarnation

    async def ping(self) -> str:
        return self.incarnation

    async def stats(self) -> dict[str, Any]:
        return {"agent": self.agent_id, "concurrency": self.concurrency, "peak": self.peak,
                "done": self.done, "running": self.running, "incarnation": self.incarnation}


def _describe(e: BaseException) -> str:
    """`Type: message`, even when the exception's own `__str__` raises."""
    try:
        text = str(e)
    except Exception:
        text = "(its message could not be read)"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
