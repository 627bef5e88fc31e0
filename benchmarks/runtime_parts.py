"""What a runtime task costs, part by part, against ThreadPoolExecutor's whole task.

    .venv/bin/python benchmarks/runtime_parts.py [--reps 3] [--tasks 20000]

One process, the parts alternating (CPU µs per task, all threads; medians),
with the cyclic garbage collector on and off:

- the pool's whole no-op task and the runtime's (blocking and coroutine
  modes, priority+stealing, 8 workers: `bench.runtime_overhead`'s runs);
- the core's decisions alone: the same submissions and completions fed to
  an `Executor` directly (no asyncio, no threads);
- asyncio's share: a runtime future, an eagerly run coroutine, `set_result`
  and `gather`, with the runtime's batched done callbacks;
- building the `TaskSpec`s.

The three last ones are what every runtime task needs; their sum against
the pool's whole task says how far rearranging the rest can go
(docs/benchmarks/online-perf.md, round 5).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from allocator.online import bench
from allocator.online import runtime as rt_mod
from allocator.online.core import Executor
from allocator.online.events import AgentJoined, Dispatch, TaskSpec
from models import Agent, Priority


def core_only(n: int, seed: int) -> float:
    """CPU µs per task of the core's decisions over the bench's workload shape."""
    rng = random.Random(seed)
    prios = list(Priority)
    homes = [f"w{i}" for i in range(8)]
    work = [(prios[rng.randrange(4)], homes[rng.randrange(8)]) for _ in range(n)]
    ex = Executor("priority+stealing", log=0, retain_finished=False)
    ex.handle(*[AgentJoined(agent=Agent(id=h)) for h in homes])
    specs = [TaskSpec(f"task-{i}", priority=p, home=h) for i, (p, h) in enumerate(work)]
    c0 = time.process_time()
    t = 0.0
    out = ex.feed((1e-7 * i, s) for i, s in enumerate(specs))
    while out:
        t += 1e-6
        out = ex.feed([(t, d.task_id, d.agent, d.attempt, 1e-6, None)  # type: ignore[attr-defined]
                       for d in out if type(d) is Dispatch])
    if ex.metrics.completed != n:  # pragma: no cover - a broken run
        raise RuntimeError(f"{ex.metrics.completed} of {n} completed")
    return (time.process_time() - c0) / n * 1e6


async def _futures(n: int) -> None:
    loop = asyncio.get_running_loop()
    runtime: Any = rt_mod.Runtime.__new__(rt_mod.Runtime)
    runtime._done_batch = []
    futs = []
    for _ in range(n):
        f = rt_mod._TaskFuture(loop=loop)
        f._cb = None
        f.runtime = runtime
        futs.append(f)

    def resolve() -> None:
        for f in futs:
            coro = bench._anoop()
            try:
                coro.send(None)
            except StopIteration as stop:
                runtime._resolving(f)
                f.set_result(stop.value)

    loop.call_soon(resolve)
    await asyncio.gather(*futs)


def asyncio_part(n: int) -> float:
    c0 = time.process_time()
    asyncio.run(_futures(n))
    return (time.process_time() - c0) / n * 1e6


def spec_part(n: int) -> float:
    c0 = time.process_time()
    specs = [TaskSpec(f"task-{i}", priority=Priority.HIGH, home="w1") for i in range(n)]
    assert len(specs) == n
    return (time.process_time() - c0) / n * 1e6


def _cpu(fn: Callable[..., Any], n: int, *args: Any) -> float:
    c0 = time.process_time()
    fn(*args)
    return (time.process_time() - c0) / n * 1e6


def parts(n: int = 20_000, reps: int = 3) -> dict[str, float]:
    """Median CPU µs per task of each part, collector on and off (`... nogc`)."""
    got: dict[str, list[float]] = {}
    for r in range(reps):
        for off in (False, True):
            sfx = " nogc" if off else ""
            if off:
                gc.disable()
            try:
                got.setdefault("pool" + sfx, []).append(_cpu(bench._tpe, n, n, 8))
                got.setdefault("runtime blocking" + sfx, []).append(
                    _cpu(bench._rt_sync, n, n, 8, False, r))
                got.setdefault("runtime coroutines" + sfx, []).append(
                    _cpu(bench._rt_sync, n, n, 8, True, r))
                got.setdefault("core decisions" + sfx, []).append(core_only(n, r))
                got.setdefault("asyncio future+gather" + sfx, []).append(asyncio_part(n))
                got.setdefault("TaskSpec" + sfx, []).append(spec_part(n))
            finally:
                gc.enable()
    return {k: round(statistics.median(v), 2) for k, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    row = {"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "load": round(os.getloadavg()[0], 1), **parts(a.tasks, a.reps)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
