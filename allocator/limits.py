"""Limits every front end applies to a caller's override the same way as the snapshot model."""

from __future__ import annotations

from functools import cache
from typing import Any

from allocator.errors import InvalidInputError
from models.domain import MAX_TIME_LIMIT, TimeLimit

__all__ = ["MAX_TIME_LIMIT", "check_time_limit"]


@cache
def _adapter() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(TimeLimit)


def check_time_limit(limit: float, field: str = "time_limit") -> float:
    """A solve budget override checked by options.time_limit's own pydantic type: in
    (0, MAX_TIME_LIMIT] seconds. NaN, 0 and inf are refused (the anytime backends run
    until their budget)."""
    from pydantic import ValidationError

    try:
        return float(_adapter().validate_python(limit))
    except ValidationError as e:
        msg = e.errors()[0]["msg"]
        raise InvalidInputError(f"{msg}, got {limit!r} (a time limit is in (0, "
                                f"{MAX_TIME_LIMIT:g}] seconds)", field=field) from None
