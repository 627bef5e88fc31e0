"""POST /v1/solve: a synchronous solve, for small snapshots."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.bodies import OffloopBodyRoute
from api.deps import Authorized, ServiceDep, until_disconnect
from api.routers.errors import errors
from api.schemas import SolveRequest
from models import Plan

router = APIRouter(prefix="/v1", tags=["solve"], dependencies=[Authorized],
                   route_class=OffloopBodyRoute)


@router.post(
    "/solve",
    response_class=Response,
    responses={200: {"model": Plan, "description": "The plan"}, **errors(401, 413, 422, 429)},
    summary="Solve a snapshot now (time limit capped by sync_time_limit)",
)
async def solve(body: SolveRequest, service: ServiceDep, request: Request) -> Response:
    plan_json = await until_disconnect(request, service.solve(body))
    return Response(plan_json, media_type="application/json")
