"""POST /v1/validate: the independent validator over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import Authorized, ServiceDep, until_disconnect
from api.routers.errors import errors
from api.schemas import ValidateRequest, ValidateResponse

router = APIRouter(prefix="/v1", tags=["validate"], dependencies=[Authorized])


@router.post("/validate", response_model=ValidateResponse, responses=errors(401, 413, 422),
             summary="List every hard constraint a plan violates")
async def validate(body: ValidateRequest, service: ServiceDep,
                   request: Request) -> ValidateResponse:
    return await until_disconnect(request, service.validate(body))
