"""Limits every front end applies to a caller's override the same way as the snapshot model."""

from __future__ import annotations

from allocator.errors import InvalidInputError
from models.domain import MAX_TIME_LIMIT

__all__ = ["MAX_TIME_LIMIT", "check_time_limit"]


def check_time_limit(limit: float, field: str = "time_limit") -> float:
    """A solve budget override as the snapshot model accepts one: in (0, MAX_TIME_LIMIT]
    seconds. NaN, 0 and inf are refused (the anytime backends run until their budget)."""
    if not (isinstance(limit, int | float) and 0 < limit <= MAX_TIME_LIMIT):
        raise InvalidInputError(f"must be in (0, {MAX_TIME_LIMIT:g}] seconds, got {limit}",
                                field=field)
    return float(limit)
