"""Token buckets for agents behind quotas (tokens/min, requests/min).

A bucket holds at most `capacity` and refills at `rate` per time unit. A task
is charged its *estimated* tokens when dispatched; when it reports its actual
usage the difference is charged (or refunded) afterwards, so a bucket can go
into debt and then blocks until refilled. Time comes from the caller.
"""

from __future__ import annotations

import math

from allocator.online.events import RateLimit


class TokenBucket:
    __slots__ = ("_level", "_t", "capacity", "rate")

    def __init__(self, rate: float, capacity: float, now: float = 0.0) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._level = float(capacity)
        self._t = now

    def level(self, now: float) -> float:
        if now > self._t:
            self._level = min(self.capacity, self._level + (now - self._t) * self.rate)
            self._t = now
        return self._level

    def ready_at(self, amount: float, now: float) -> float:
        """Earliest time `amount` can be taken (more than capacity waits for a full bucket)."""
        need = min(amount, self.capacity) - self.level(now)
        # A shortfall within rounding of the refill counts as none: woken at
        # now + need / rate, the level can still be short by an ulp's worth,
        # and each later wake-up would come an ulp later, forever.
        if need <= 1e-9 * self.capacity:
            return now
        return now + need / self.rate if self.rate > 0 else math.inf

    def take(self, amount: float, now: float) -> None:
        """Charge `amount` (may leave the bucket in debt)."""
        self.level(now)
        self._level -= amount

    def adjust(self, delta: float, now: float) -> None:
        """Charge `delta` more (negative refunds), e.g. actual minus estimated usage."""
        self.level(now)
        self._level = min(self.capacity, self._level - delta)


class AgentLimiter:
    """The buckets of one agent and its usage totals."""

    __slots__ = ("requests", "requests_used", "tokens", "tokens_used")

    def __init__(self, limit: RateLimit, now: float = 0.0) -> None:
        self.requests = (TokenBucket(limit.requests_per_min / 60.0, limit.requests_per_min, now)
                         if limit.requests_per_min else None)
        self.tokens = (TokenBucket(limit.tokens_per_min / 60.0, limit.tokens_per_min, now)
                       if limit.tokens_per_min else None)
        self.tokens_used = 0.0
        self.requests_used = 0

    def ready_at(self, tokens: float, now: float) -> float:
        t = now
        if self.requests is not None:
            t = max(t, self.requests.ready_at(1.0, now))
        if self.tokens is not None:
            t = max(t, self.tokens.ready_at(tokens, now))
        return t

    def take(self, tokens: float, now: float) -> None:
        if self.requests is not None:
            self.requests.take(1.0, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        self.requests_used += 1

    def settle(self, estimated: float, actual: float, now: float) -> None:
        """Record actual usage of a finished call that was charged `estimated`."""
        if self.tokens is not None:
            self.tokens.adjust(actual - estimated, now)
        self.tokens_used += actual
