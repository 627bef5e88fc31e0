"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Authorized, ServiceDep
from api.routers.errors import errors

router = APIRouter(tags=["metrics"], dependencies=[Authorized])


@router.get("/metrics", response_class=Response, responses=errors(401),
            summary="Prometheus metrics")
async def metrics(service: ServiceDep) -> Response:
    service.metrics.refresh_live()  # on the loop: the live coordinator is not thread-safe
    body = await asyncio.to_thread(generate_latest, service.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
