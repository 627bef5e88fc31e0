"""POST /v1/validate: the independent validator over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.bodies import OffloopBodyRoute
from api.deps import Authorized, ServiceDep, until_disconnect
from api.routers.errors import errors
from api.schemas import ValidateRequest, ValidateResponse

router = APIRouter(prefix="/v1", tags=["validate"], dependencies=[Authorized],
                   route_class=OffloopBodyRoute)


@router.post("/validate", response_class=Response,
             responses={200: {"model": ValidateResponse}, **errors(401, 413, 422)},
             summary="List every hard constraint a plan violates")
async def validate(body: ValidateRequest, service: ServiceDep,
                   request: Request) -> Response:
    out = await until_disconnect(request, service.validate(body))
    return Response(out.model_dump_json(), media_type="application/json")
