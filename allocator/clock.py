"""Clocks: the one source of "now" for everything that is not handed its time.

The online core never reads a clock: every event carries its time. Drivers
and the components that need a clock of their own (a stand-alone circuit
breaker, the asyncio runtime, the Ray driver, the live service, the periodic
re-solve loop of `allocator batch --watch`) take a :class:`Clock`, so tests
move a :class:`VirtualClock` instead of sleeping. A loop that also waits takes
a :class:`SleepingClock` (`sleep(seconds, stop)`, which returns early when the
stop event is set).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

from allocator.errors import InvalidInputError


@runtime_checkable
class Clock(Protocol):
    """Anything with a monotonic `now()` in seconds (or simulation time units)."""

    def now(self) -> float: ...


@runtime_checkable
class SleepingClock(Clock, Protocol):
    """A clock a loop can also wait on; `sleep` returns early once `stop` is set."""

    def sleep(self, seconds: float, stop: threading.Event) -> None: ...


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

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        """Move forward by `seconds` at once (not at all once `stop` is set)."""
        if not stop.is_set():
            self.advance(max(0.0, seconds))


class MonotonicClock:
    """Real elapsed time (time.monotonic) since construction."""

    __slots__ = ("_t0",)

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    @property
    def origin(self) -> float:
        """The time.monotonic() reading `now()` counts from (hot loops inline `now()`)."""
        return self._t0

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        """Wait on the stop event, so a signal ends the wait at once."""
        stop.wait(max(0.0, seconds))


class WallClock:
    """Seconds since `epoch` (Unix time): a time that continues across restarts
    (the live service's core time, durable in its event log)."""

    __slots__ = ("epoch",)

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch

    def now(self) -> float:
        return time.time() - self.epoch
