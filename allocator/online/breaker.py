"""A per-agent circuit breaker: closed -> open -> half-open -> closed.

Closed: calls pass; the last `window` outcomes are remembered and once at
least `min_calls` are in, a failure share of `failure_rate` or more opens the
breaker. Open: nothing passes until `open_timeout` has elapsed on the injected
clock; then half-open. Half-open: up to `probes` calls pass at a time; one
failure re-opens (with the timeout doubled, up to `max_open_timeout`),
`probe_successes` successes close it and forget the window.

The breaker reads time only from its clock, so tests drive it with a
VirtualClock (pybreaker's state machine, minus the threading).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from allocator.clock import Clock
from allocator.errors import AllocatorError, InvalidInputError

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


class CircuitOpenError(AllocatorError):
    """A call was refused because the breaker is open (or out of probe slots)."""


    def __init__(self, name: str, retry_at: float | None) -> None:
        when = f"; retry after t={retry_at:.4g}" if retry_at is not None else ""
        super().__init__(f"circuit breaker for {name!r} is open{when}")
        self.name = name
        self.retry_at = retry_at


@dataclass(slots=True)
class BreakerConfig:
    #: Outcomes remembered while closed. 20 is enough to tell a 50% failure
    #: rate from bad luck on a few calls, small enough to react within seconds.
    window: int = 20
    #: Never open on fewer outcomes than this (one early failure is not a trend).
    min_calls: int = 5
    failure_rate: float = 0.5
    open_timeout: float = 30.0
    max_open_timeout: float = 600.0
    probes: int = 1
    probe_successes: int = 1

    def __post_init__(self) -> None:
        """A typed error naming the first field out of range (window=0 raised
        IndexError in the core; failure_rate=0 opened on successes)."""
        for name, lo in (("window", 1), ("min_calls", 0), ("probes", 1),
                         ("probe_successes", 1)):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo):
                raise InvalidInputError(f"need an integer >= {lo}, got {v!r}", field=name)
        r = self.failure_rate
        if not (isinstance(r, (int, float)) and 0 < r <= 1):
            raise InvalidInputError(f"need a share in (0, 1], got {r!r}", field="failure_rate")
        for name in ("open_timeout", "max_open_timeout"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InvalidInputError(f"need a finite number >= 0, got {v!r}", field=name)
        if self.max_open_timeout < self.open_timeout:
            raise InvalidInputError(f"need >= open_timeout ({self.open_timeout}), got "
                                    f"{self.max_open_timeout}", field="max_open_timeout")


@dataclass(slots=True)
class Transition:
    time: float
    source: BreakerState
    target: BreakerState
    reason: str


class CircuitBreaker:
    """The state machine; `allow`/`acquire` before a call, `record_*` after it."""

    def __init__(self, name: str, config: BreakerConfig | None = None, *,
                 clock: Clock) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self.clock = clock
        self._state = _CLOSED
        self._window: deque[bool] = deque(maxlen=self.config.window)
        self._failures = 0
        self._timeout = self.config.open_timeout
        self.open_until: float | None = None
        self._probes_in_flight = 0
        self._probe_ok = 0
        self.transitions: list[Transition] = []
        self._reported = 0

    # -- state ---------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose timeout passed turns half-open here."""
        if (self._state is _OPEN and self.open_until is not None
                and self.clock.now() >= self.open_until):
            self._move(_HALF_OPEN, "open timeout elapsed")
            self._probes_in_flight = 0
            self._probe_ok = 0
        return self._state

    def _move(self, target: BreakerState, reason: str) -> None:
        self.transitions.append(Transition(self.clock.now(), self._state, target, reason))
        self._state = target

    def new_transitions(self) -> list[Transition]:
        """Transitions since the last call (the executor turns them into instructions)."""
        out = self.transitions[self._reported:]
        self._reported = len(self.transitions)
        return out

    @property
    def failure_share(self) -> float:
        return self._failures / len(self._window) if self._window else 0.0

    # -- calls ---------------------------------------------------------------

    def allow(self) -> bool:
        """Would a call pass now? (Does not take a probe slot.)"""
        s = self.state
        if s is _CLOSED:
            return True
        if s is _HALF_OPEN:
            return self._probes_in_flight < self.config.probes
        return False

    def acquire(self) -> bool:
        """Take permission for one call; returns True when the call is a probe.

        Raises CircuitOpenError when the call may not pass.
        """
        if not self.allow():
            raise CircuitOpenError(self.name, self.open_until)
        if self._state is _HALF_OPEN:
            self._probes_in_flight += 1
            return True
        return False

    def record_success(self, *, probe: bool = False) -> None:
        s = self.state
        if s is _HALF_OPEN:
            if probe:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._probe_ok += 1
            if self._probe_ok >= self.config.probe_successes:
                self._window.clear()
                self._failures = 0
                self._timeout = self.config.open_timeout
                self.open_until = None
                self._move(_CLOSED, f"{self._probe_ok} probe(s) succeeded")
        elif s is _CLOSED:
            self._push(False)

    def record_failure(self, reason: str = "failure", *, probe: bool = False) -> None:
        s = self.state
        if s is _HALF_OPEN:
            if probe:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._timeout = min(self._timeout * 2, self.config.max_open_timeout)
            self._open(f"probe failed: {reason}")
        elif s is _CLOSED:
            self._push(True)
            n = len(self._window)
            if n >= self.config.min_calls and self._failures / n >= self.config.failure_rate:
                self._open(f"{self._failures}/{n} recent calls failed (last: {reason})")

    def record_inconclusive(self, *, probe: bool = False) -> None:
        """A call whose failure says nothing about this agent (the task's own fault):
        it frees its probe slot, and counts neither way."""
        if probe and self.state is _HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def trip(self, reason: str) -> None:
        """Open at once, whatever the window says (the agent itself failed)."""
        if self.state is not _OPEN:
            self._open(reason)

    def _push(self, failed: bool) -> None:
        w = self._window
        if len(w) == w.maxlen and w[0]:
            self._failures -= 1
        w.append(failed)
        if failed:
            self._failures += 1

    def _open(self, reason: str) -> None:
        self.open_until = self.clock.now() + self._timeout
        self._move(_OPEN, reason)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` through the breaker (synchronous convenience)."""
        probe = self.acquire()
        try:
            result = fn(*args)
        except Exception as e:
            self.record_failure(repr(e), probe=probe)
            raise
        self.record_success(probe=probe)
        return result
