"""GET /v1/solvers: the registered backends."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Authorized, ServiceDep
from api.routers.errors import errors
from api.schemas import SolversResponse

router = APIRouter(prefix="/v1", tags=["solvers"], dependencies=[Authorized])


@router.get("/solvers", response_model=SolversResponse, responses=errors(401),
            summary="Solver backends by name")
async def solvers(service: ServiceDep) -> SolversResponse:
    return service.solvers()
