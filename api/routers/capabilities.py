"""Rebalance, Pareto fronts, simulation, bottlenecks: one route each, when the engine has them.

`router` holds only the routes whose capability `api.capabilities.available()`
reports; the rest are simply absent from the app and its OpenAPI schema.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.bodies import OffloopBodyRoute
from api.capabilities import available
from api.deps import Authorized, ServiceDep, until_disconnect
from api.routers.errors import errors
from api.schemas import (
    BottlenecksRequest,
    BottlenecksResponse,
    ParetoRequest,
    ParetoResponse,
    RebalanceRequest,
    RebalanceResponse,
    SimulateRequest,
    SimulateResponse,
)
from api.service import plan_payload

router = APIRouter(prefix="/v1", tags=["capabilities"], dependencies=[Authorized],
                   route_class=OffloopBodyRoute)
HAVE = available()
ERRORS = errors(401, 413, 422, 429)


if "rebalance" in HAVE:

    @router.post("/rebalance", response_class=Response,
                 responses={200: {"model": RebalanceResponse}, **ERRORS},
                 summary="Re-plan for balance with few migrations (time limit capped)")
    async def rebalance(body: RebalanceRequest, service: ServiceDep, request: Request) -> Response:
        params = body.model_dump(exclude={"snapshot"})
        text = await until_disconnect(
            request, service.run_capability("rebalance", body.snapshot, params))
        return Response(text, media_type="application/json")


if "pareto" in HAVE:

    @router.post("/pareto", response_class=Response,
                 responses={200: {"model": ParetoResponse}, **ERRORS},
                 summary="A Pareto front of plans and the one picked (time limit capped)")
    async def pareto(body: ParetoRequest, service: ServiceDep, request: Request) -> Response:
        params = body.model_dump(exclude={"snapshot"})
        text = await until_disconnect(
            request, service.run_capability("pareto", body.snapshot, params))
        return Response(text, media_type="application/json")


if "simulate" in HAVE:

    @router.post("/simulate", response_class=Response,
                 responses={200: {"model": SimulateResponse}, **ERRORS},
                 summary="Online policies side by side on a generated workload")
    async def simulate(body: SimulateRequest, service: ServiceDep, request: Request) -> Response:
        text = await until_disconnect(
            request, service.run_capability("simulate", None, body.model_dump()))
        return Response(text, media_type="application/json")


if "bottlenecks" in HAVE:

    @router.post("/bottlenecks", response_class=Response,
                 responses={200: {"model": BottlenecksResponse}, **ERRORS},
                 summary="Binding resources, marginal value of capacity, blocked tasks")
    async def bottlenecks(body: BottlenecksRequest, service: ServiceDep,
                          request: Request) -> Response:
        if body.solver is not None:
            service.check_solver(body.solver)
        params = {**body.model_dump(mode="json", by_alias=True, exclude={"snapshot", "plan"}),
                  "plan": plan_payload(body.plan)}
        text = await until_disconnect(
            request, service.run_capability("bottlenecks", body.snapshot, params))
        return Response(text, media_type="application/json")
