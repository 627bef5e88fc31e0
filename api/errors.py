"""One error shape for every failure: ``{"type", "message", "field"}``.

Domain errors (AllocatorError) get their HTTP status here and only here
(`HTTP_STATUS` by class, `HTTP_STATUS_BY_NAME` for optional engine modules;
the nearest listed base class decides); the engine's errors carry no HTTP
knowledge. Request validation
errors are 422 with the field path; HTTP errors keep their status. Anything
else is a bug: logged with its traceback and answered 500 without details.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from allocator import errors as engine_errors
from allocator.errors import AllocatorError
from allocator.io.strict_json import DuplicateKeyError

log = logging.getLogger(__name__)


class UnauthorizedError(AllocatorError):
    """Missing or wrong API key."""


class BodyTooLargeError(AllocatorError):
    """A request body over max_body_bytes."""


class NotReadyError(AllocatorError):
    """The resource exists but is not in a state that has what was asked for."""


class BusyError(AllocatorError):
    """The server could not start the work in time (overload): 503 + Retry-After."""


class SolveFailed(AllocatorError):
    """A backend raised an unexpected exception (a bug, reported with its message)."""


#: HTTP status of each error class; a class not listed takes its nearest listed base's.
#: 503 means only "try again later" (a worker died under the call); the time limit and
#: the memory estimate are the client's to change (a smaller input, or a job): 4xx.
HTTP_STATUS: dict[type[BaseException], int] = {
    AllocatorError: 422,
    engine_errors.InvalidInputError: 422,
    engine_errors.InfeasibleError: 422,
    engine_errors.UnknownSolverError: 422,
    engine_errors.UnsupportedError: 422,
    engine_errors.TimeLimitError: 422,
    engine_errors.ResourceLimitError: 413,
    engine_errors.SolverFailedError: 503,
    engine_errors.NotFoundError: 404,
    engine_errors.CapacityError: 429,
    UnauthorizedError: 401,
    BodyTooLargeError: 413,
    NotReadyError: 409,
    SolveFailed: 500,
    BusyError: 503,
}


#: Errors of optional engine modules (the online runtime, the Ray backend), by qualified
#: name so the API does not import those modules to map them. A task that ran and
#: failed is the work's failure, not the server's: 422 (never a 500).
HTTP_STATUS_BY_NAME: dict[str, int] = {
    "allocator.online.runtime.TaskRejectedError": 429,
    "allocator.online.runtime.TaskFailedError": 422,
    "allocator.online.breaker.CircuitOpenError": 503,
    "allocator.distributed.session.RayUnavailableError": 501,
    "allocator.roadef.instance.RoadefFormatError": 422,
    # The live client's view of another service's error (this server never raises it).
    "allocator.client.LiveError": 502,
}


def status_of_class(cls: type[BaseException]) -> int | None:
    """The status listed for exactly this class (by class or qualified name), or None."""
    if cls in HTTP_STATUS:
        return HTTP_STATUS[cls]
    return HTTP_STATUS_BY_NAME.get(f"{cls.__module__}.{cls.__qualname__}")


def http_status(exc: AllocatorError) -> int:
    """The status `exc` answers with: its class's entry, else its nearest base's."""
    for cls in type(exc).__mro__:
        if (status := status_of_class(cls)) is not None:
            return status
    return 422


_STATUS_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "body_too_large",
                 415: "unsupported_media_type", 422: "invalid_input", 429: "over_capacity",
                 503: "unavailable"}


def error_type(exc: AllocatorError | str) -> str:
    """`InvalidInputError` -> `invalid_input`, `NotFoundError` -> `not_found` ..."""
    name = (exc if isinstance(exc, str) else type(exc).__name__).removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "error"


def error_response(status: int, type_: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"type": type_, "message": message, "field": field},
                        status_code=status, headers=headers)


def _loc(loc: Any) -> str | None:
    parts = [str(x) for x in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] if parts[0] == "body" else parts
    return ".".join(parts) or None


def _where(loc: Any) -> tuple[Any, ...]:
    parts = tuple(loc)
    return parts[1:] if parts[:1] == ("body",) else parts


def validation_message(errors: list[Any], body: Any = None) -> tuple[str, str | None]:
    """The error a reader should fix first, as (message, field).

    A missing top-level field comes first: posting a bare snapshot (the usual
    slip) is missing `snapshot`, and pydantic lists that after the snapshot's own
    fields, which are all unknown at the top level.
    """
    if not errors:
        return "invalid request", None
    missing = [str(_where(e.get("loc", ()))[0]) for e in errors
               if e.get("type") == "missing" and len(_where(e.get("loc", ()))) == 1]
    if missing:
        shape = ", ".join(f'"{m}": ...' for m in missing)
        msg = f"body must be {{{shape}}}: field {missing[0]!r} is missing"
        if isinstance(body, dict) and {"agents", "tasks"} & set(body) and "snapshot" in missing:
            msg += " (this looks like a bare snapshot: put it under \"snapshot\")"
        return msg, missing[0]
    first = errors[0]
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more error(s))"
    return msg, _loc(first.get("loc", ()))


def json_position(doc: str | bytes, pos: int) -> tuple[int, int]:
    """(line, column), both from 1, of a character offset in a JSON document."""
    text = doc.decode(errors="replace") if isinstance(doc, bytes) else doc
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _request_error(request: Request, exc: RequestValidationError) -> tuple[str, str | None]:
    cause = exc.__cause__
    if isinstance(cause, DuplicateKeyError):  # StrictJsonRequest: a key repeated in an object
        return f"duplicate key {cause.key!r} (a JSON object must not repeat a key)", cause.path
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        loc = _where(first.get("loc", ()))
        why = (first.get("ctx") or {}).get("error", "invalid JSON")
        if loc and isinstance(loc[0], int) and isinstance(exc.body, str | bytes):
            line, col = json_position(exc.body, loc[0])
            return f"malformed JSON at line {line}, column {col}: {why}", None
        return f"malformed JSON: {why}", None
    ctype = request.headers.get("content-type", "")
    if "json" not in ctype.lower() and not _where(first.get("loc", ())):
        got = f"content-type {ctype.split(';')[0]!r}" if ctype else "no content-type"
        return ("send the body as JSON with the header 'content-type: application/json' "
                f"(got {got})"), None
    if not _where(first.get("loc", ())) and first.get("type") in ("model_attributes_type",
                                                                   "dict_type"):
        return 'the body must be a JSON object: {"snapshot": ..., ...}', None
    return validation_message(errors, exc.body)


def install_error_handlers(app: FastAPI) -> None:
    def retry_headers(status: int) -> dict[str, str] | None:
        if status not in (429, 503):
            return None
        return {"Retry-After": str(app.state.settings.retry_after_s)}

    @app.exception_handler(AllocatorError)
    async def _domain(_: Request, exc: AllocatorError) -> JSONResponse:
        status = http_status(exc)
        return error_response(status, error_type(exc), exc.message, exc.field,
                              headers=retry_headers(status))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        msg, field = _request_error(request, exc)
        return error_response(422, "invalid_input", msg, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, type_, str(exc.detail),
                              headers=dict(exc.headers or {}) or retry_headers(exc.status_code))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")
