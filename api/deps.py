"""`Annotated` dependency aliases shared by the routers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Query, Request

from api.errors import UnauthorizedError
from api.schemas import JobState
from api.security import key_ok
from api.service import Service
from api.settings import Settings

T = TypeVar("T")


async def get_service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def require_api_key(request: Request) -> None:
    """Every route but the health probes: a valid bearer token when keys are configured."""
    keys = request.app.state.settings.api_keys
    if keys and not key_ok(request.headers.get("authorization"), keys):
        raise UnauthorizedError("missing or invalid API key (Authorization: Bearer <key>)")


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Authorized = Depends(require_api_key)

JobId = Annotated[str, Path(min_length=1, max_length=64, description="Job id")]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Jobs to skip")]
StateFilter = Annotated[JobState | None, Query(description="Only jobs in this state")]


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client goes away first.

    Starlette does not cancel an endpoint when its client disconnects; a
    synchronous solve would keep its worker busy for nobody. Once the body is
    read, the next ASGI message can only be `http.disconnect`.
    """
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            msg = await request.receive()
            if msg["type"] == "http.disconnect":
                task.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        return await task
    finally:
        watcher.cancel()
