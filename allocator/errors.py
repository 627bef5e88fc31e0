"""One error hierarchy: everything the engine raises on purpose is an AllocatorError.

The CLI turns these into one-line messages and the API into 4xx responses
(the HTTP status of each class is the API's business: `api.errors.HTTP_STATUS`);
anything else escaping is a bug.
"""

from __future__ import annotations


class AllocatorError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class InvalidInputError(AllocatorError):
    """The input (snapshot, plan, file) is malformed or inconsistent."""


class InfeasibleError(AllocatorError):
    """Hard constraints cannot all hold (raised only where a plan cannot express it)."""


class UnsupportedError(InvalidInputError):
    """The chosen backend cannot honour a rule the input uses (the message names the
    rule and a backend that can)."""


class UnknownSolverError(AllocatorError):
    """A solver name that is not in the registry."""


class SolverFailedError(AllocatorError):
    """A backend failed in a way the caller cannot fix by changing the input."""


class NotFoundError(AllocatorError):
    """Something named (a job, a file) does not exist."""


class CapacityError(AllocatorError):
    """Too much work queued; retry later."""


class TimeLimitError(AllocatorError):
    """The work did not finish within its (hard) time limit and left nothing to return."""


class ResourceLimitError(AllocatorError):
    """The work would need more memory (or another resource) than the limit allows."""

