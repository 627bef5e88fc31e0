"""OpenAPI descriptions of the error answers, shared by the routers."""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorBody

_DESC = {401: "Missing or invalid API key", 404: "Unknown job", 409: "Not available yet",
         413: "Request body too large", 422: "Invalid input (field names the culprit)",
         429: "Over capacity; retry after the Retry-After header's seconds"}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody, "description": _DESC[c]} for c in codes}
