"""Liveness and readiness probes (never behind an API key)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServiceDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the event loop answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health,
            responses={503: {"model": Health, "description": "Not ready"}},
            summary="Readiness: the store is migrated and a solver worker is up")
async def readyz(service: ServiceDep) -> JSONResponse:
    body = Health(status="ready" if service.ready else "starting",
                  workers=service.pool.ready_count,
                  queue_depth=len(service.queue) + len(service.sync_queue))
    return JSONResponse(body.model_dump(), status_code=200 if service.ready else 503)
