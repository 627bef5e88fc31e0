"""One error hierarchy: everything the engine raises on purpose is an AllocatorError.

The CLI turns these into one-line messages and the API into 4xx responses;
anything else escaping is a bug.
"""

from __future__ import annotations


class AllocatorError(Exception):
    """Base of every error the engine raises on purpose."""

    #: HTTP status the API maps this error to.
    http_status: int = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class InvalidInputError(AllocatorError):
    """The input (snapshot, plan, file) is malformed or inconsistent."""

    http_status = 422


class InfeasibleError(AllocatorError):
    """Hard constraints cannot all hold (raised only where a plan cannot express it)."""

    http_status = 422


class UnknownSolverError(AllocatorError):
    """A solver name that is not in the registry."""

    http_status = 422


class SolverFailedError(AllocatorError):
    """A backend failed in a way the caller cannot fix by changing the input."""

    http_status = 503


class NotFoundError(AllocatorError):
    http_status = 404


class CapacityError(AllocatorError):
    """Too much work queued; retry later."""

    http_status = 429
