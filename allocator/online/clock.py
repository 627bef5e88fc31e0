"""Clocks: the only source of "now" for the executor's drivers.

The core never reads a clock: every event carries its time. Drivers and the
components that need a clock of their own (a stand-alone circuit breaker, the
asyncio runtime) take a :class:`Clock` so tests can move a fake one instead of
sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from allocator.errors import InvalidInputError


@runtime_checkable
class Clock(Protocol):
    """Anything with a monotonic `now()` in seconds (or simulation time units)."""

    def now(self) -> float: ...


class VirtualClock:
    """A clock that moves only when told to: simulations and tests."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, dt: float) -> float:
        """Move forward by `dt` (>= 0) and return the new time."""
        if dt < 0:
            raise InvalidInputError(f"cannot move a clock backwards (dt={dt})", field="dt")
        self._now += dt
        return self._now

    def set(self, t: float) -> None:
        """Jump to `t`, which must not be in the past."""
        if t < self._now:
            raise InvalidInputError(f"cannot move a clock backwards ({t} < {self._now})",
                                    field="t")
        self._now = float(t)


class MonotonicClock:
    """Real elapsed time (time.monotonic) since construction."""

    __slots__ = ("_t0",)

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0
