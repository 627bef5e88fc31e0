"""Small builders shared by the online tests."""

from __future__ import annotations

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
