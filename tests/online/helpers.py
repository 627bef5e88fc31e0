"""Small builders shared by the online tests."""

from __future__ import annotations

import random
from typing import Any

from allocator.online import Executor, Instruction, TaskSpec, TaskSubmitted
from allocator.online.events import SetTimer
from models import Agent


def agents(*ids: str, **kw: Any) -> list[Agent]:
    return [Agent(id=i, **kw) for i in ids]


def submit(tid: str, time: float = 0.0, **kw: Any) -> TaskSubmitted:
    return TaskSubmitted(task=TaskSpec(tid, **kw), time=time)


def brief(out: list[Instruction], *, timers: bool = False) -> list[tuple[Any, ...]]:
    """Instructions as comparable tuples (kind, fields...) without ids and times."""
    rows: list[tuple[Any, ...]] = []
    for ins in out:
        if isinstance(ins, SetTimer) and not timers:
            continue
        fields = [getattr(ins, f) for f in ins.__dataclass_fields__
                  if f not in ("id", "time", "cause", "reason", "work", "until", "remote")]
        rows.append((type(ins).__name__, *fields))
    return rows


def run(ex: Executor, *events: Any) -> list[tuple[Any, ...]]:
    return brief(ex.handle(*events))


def probe_violations(log: Any, arrivals: list[float], agents: Any) -> list[tuple[Any, ...]]:
    """Agents of `agents` whose probe came later than the recovery bound allows.

    The bound (docs/online.md): after its breaker's last open timeout, an agent
    goes half-open at a Tick at that time; half-open agents get probes in the
    order they went half-open, one per arrival at the latest. So an agent gets
    a dispatch no later than the (1 + W)-th arrival at or after it went
    half-open, W being the agents already half-open and unprobed then.
    """
    import bisect

    from allocator.online.events import BreakerHalfOpen, BreakerOpened, Dispatch

    entries = [e for e in log if isinstance(e, BreakerOpened | BreakerHalfOpen | Dispatch)]
    half: dict[str, list[float]] = {}
    disp: dict[str, list[float]] = {}
    opened: dict[str, float] = {}
    for e in entries:
        if isinstance(e, BreakerHalfOpen):
            half.setdefault(e.agent, []).append(e.time)
        elif isinstance(e, Dispatch):
            disp.setdefault(e.agent, []).append(e.time)
        else:
            opened[e.agent] = e.until

    def first_dispatch(a: str, t: float) -> float:
        ts = disp.get(a, [])
        j = bisect.bisect_left(ts, t)
        return ts[j] if j < len(ts) else float("inf")

    bad = []
    for a in agents:
        if a not in opened:
            continue
        hs = [t for t in half.get(a, []) if t >= opened[a] - 1e-9]
        if not hs:
            continue  # the run ended before its timeout
        h = hs[0]
        waiting = 0
        for b, times in half.items():
            if b == a:
                continue
            before = [t for t in times if t <= h]
            if before and first_dispatch(b, before[-1]) > h:
                waiting += 1
        k = bisect.bisect_left(arrivals, h) + waiting
        if k >= len(arrivals):
            continue  # not enough arrivals after it to probe with
        got = first_dispatch(a, h)
        if got > arrivals[k] + 1e-9:
            bad.append((a, h, waiting, got, arrivals[k]))
    return bad


def deadline_order_set(seed: int, k: int = 12, *, hard: bool = False
                       ) -> tuple[float, list[TaskSpec]]:
    """One agent's speed and k tasks released together, feasible with zero slack only in
    deadline order, listed in another order (`hard`: hard deadlines)."""
    rng = random.Random(seed)
    speed = rng.choice([0.5, 1.0, 3.0])
    works = [10 ** rng.uniform(-3, 0.7) for _ in range(k)]
    order = list(range(k))
    rng.shuffle(order)
    due, c = {}, 0.0
    for j in order:
        c += works[j] / speed
        due[j] = c * (1 + 1e-12)
    return speed, [TaskSpec(f"t{j}", work=works[j], deadline=due[j], hard_deadline=hard)
                   for j in range(k)]
