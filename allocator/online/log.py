"""The executor's event log: every event and instruction, in order, with ids."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from allocator.online.events import Event, Instruction, TaskSubmitted, describe


def task_of(x: Event | Instruction) -> str | None:
    """The task an event or instruction is about, if any."""
    if isinstance(x, TaskSubmitted):
        return x.task.id
    return getattr(x, "task_id", None)


class EventLog:
    """A bounded (or unbounded with `maxlen=None`) record of events and instructions.

    `maxlen=0` disables logging (fast simulations); histories then come back empty.
    """

    def __init__(self, maxlen: int | None = 100_000) -> None:
        self.enabled = maxlen != 0
        self._items: deque[Event | Instruction] = deque(maxlen=maxlen)

    def add(self, x: Event | Instruction) -> None:
        self._items.append(x)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Event | Instruction]:
        return iter(self._items)

    def history(self, task_id: str) -> list[Event | Instruction]:
        """Everything logged about one task, oldest first."""
        return [x for x in self._items if task_of(x) == task_id]

    def format_history(self, task_id: str) -> str:
        return "\n".join(describe(x) for x in self.history(task_id))
