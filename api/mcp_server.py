"""The MCP server: the same service calls as the HTTP routes, as typed tools.

`build_mcp(get_service)` returns an MCPServer whose tools call the `Service`
returned by `get_service()` (the app's, or the one `allocator mcp` starts).
Served over stdio by `allocator mcp` (solves run in worker processes whose
stdout points at stderr, so nothing but protocol messages reaches stdout) and
over streamable HTTP under /mcp in the app.

Rebalance, pareto, simulate and bottlenecks tools are registered when their
engine modules exist (api.capabilities.available()).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from allocator.errors import AllocatorError
from api.capabilities import available
from api.errors import error_type
from api.schemas import (
    BottlenecksRequest,
    BottlenecksResponse,
    JobOut,
    ParetoRequest,
    ParetoResponse,
    RebalanceRequest,
    RebalanceResponse,
    SimulateRequest,
    SimulateResponse,
    SolveRequest,
    SolversResponse,
    ValidateRequest,
    ValidateResponse,
    WorkloadIn,
)
from api.service import Service
from models import Plan, Snapshot

T = TypeVar("T")

INSTRUCTIONS = """Task allocation and load balancing across agents.
Call `solve` with a snapshot (agents with capacities, tasks with work and demands) to get
a plan: which agent runs each task and when, the objective with its breakdown, and a
reason for every task left unassigned. `validate` checks a plan against a snapshot.
Long solves: `submit_job`, then `job_status`."""


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await fn()
    except AllocatorError as e:
        where = f" (field {e.field})" if e.field else ""
        raise ToolError(f"{error_type(e)}: {e.message}{where}") from None


def build_mcp(get_service: Callable[[], Service]) -> MCPServer:
    mcp = MCPServer(name="allocator", instructions=INSTRUCTIONS, log_level="WARNING")

    @mcp.tool()
    async def solve(
        snapshot: Snapshot,
        solver: Annotated[str | None, Field(description="backend; see `solvers`")] = None,
        time_limit: Annotated[float | None, Field(gt=0, description="seconds (capped)")] = None,
        seed: Annotated[int | None, Field(ge=0)] = None,
    ) -> Plan:
        """Solve a snapshot and return the plan (time limit capped by the server)."""
        req = SolveRequest(snapshot=snapshot, solver=solver, time_limit=time_limit, seed=seed)
        text = await _call(lambda: get_service().solve(req))
        return Plan.model_validate_json(text)

    @mcp.tool()
    async def validate(snapshot: Snapshot, plan: Plan) -> ValidateResponse:
        """List every hard constraint the plan violates (empty when valid)."""
        req = ValidateRequest(snapshot=snapshot, plan=plan)
        return await _call(lambda: get_service().validate(req))

    @mcp.tool()
    async def submit_job(
        snapshot: Snapshot,
        solver: str | None = None,
        time_limit: Annotated[float | None, Field(gt=0)] = None,
        seed: Annotated[int | None, Field(ge=0)] = None,
    ) -> JobOut:
        """Queue a long solve; poll it with `job_status`."""
        req = SolveRequest(snapshot=snapshot, solver=solver, time_limit=time_limit, seed=seed)
        return await _call(lambda: get_service().submit(req))

    @mcp.tool()
    async def job_status(job_id: str) -> JobOut:
        """State, progress, best objective and bound of a job."""
        return await _call(lambda: get_service().job(job_id))

    @mcp.tool()
    async def solvers() -> SolversResponse:
        """The solver backends this server offers."""
        return get_service().solvers()

    have = available()
    if "rebalance" in have:

        @mcp.tool()
        async def rebalance(
            snapshot: Snapshot,
            max_migrations: Annotated[int | None, Field(ge=0)] = None,
            threshold: Annotated[float, Field(ge=0)] = 0.0,
            time_limit: Annotated[float | None, Field(gt=0)] = None,
            seed: Annotated[int | None, Field(ge=0)] = None,
        ) -> RebalanceResponse:
            """Move tasks off overloaded agents with few migrations; before/after summary."""
            req = RebalanceRequest(snapshot=snapshot, max_migrations=max_migrations,
                                   threshold=threshold, time_limit=time_limit, seed=seed)
            text = await _call(lambda: get_service().run_capability(
                "rebalance", snapshot, req.model_dump(exclude={"snapshot"})))
            return RebalanceResponse.model_validate_json(text)

    if "pareto" in have:

        @mcp.tool()
        async def pareto(
            snapshot: Snapshot,
            objectives: list[str] | None = None,
            exact: bool = False,
            time_limit: Annotated[float | None, Field(gt=0)] = None,
            pick: str = "knee",
        ) -> ParetoResponse:
            """Plans trading objectives off (e.g. cost vs makespan) and the one picked."""
            req = ParetoRequest(snapshot=snapshot, objectives=objectives or ["cost", "makespan"],
                                exact=exact, time_limit=time_limit, pick=pick)
            text = await _call(lambda: get_service().run_capability(
                "pareto", snapshot, req.model_dump(exclude={"snapshot"})))
            return ParetoResponse.model_validate_json(text)

    if "simulate" in have:

        @mcp.tool()
        async def simulate(workload: WorkloadIn | None = None,
                           policies: list[str] | None = None,
                           seed: Annotated[int | None, Field(ge=0)] = None) -> SimulateResponse:
            """Simulate online scheduling policies side by side on a generated workload."""
            req = SimulateRequest(workload=workload or WorkloadIn(), policies=policies, seed=seed)
            text = await _call(lambda: get_service().run_capability(
                "simulate", None, req.model_dump()))
            return SimulateResponse.model_validate_json(text)

    if "bottlenecks" in have:

        @mcp.tool()
        async def bottlenecks(
            snapshot: Snapshot,
            plan: Plan | None = None,
            solver: str | None = None,
            time_limit: Annotated[float | None, Field(gt=0)] = None,
        ) -> BottlenecksResponse:
            """What limits the plan and what one more unit of capacity would be worth."""
            req = BottlenecksRequest(snapshot=snapshot, plan=plan, solver=solver,
                                     time_limit=time_limit)

            async def run() -> str:
                service = get_service()
                if solver is not None:
                    service.check_solver(solver)
                return await service.run_capability(
                    "bottlenecks", snapshot,
                    req.model_dump(mode="json", by_alias=True, exclude={"snapshot"}))

            return BottlenecksResponse.model_validate_json(await _call(run))

    return mcp


async def serve_stdio(settings: object) -> None:
    """Run the service (store + workers) and answer MCP over stdin/stdout until EOF."""
    from api.settings import Settings

    assert isinstance(settings, Settings)
    service = Service(settings)
    mcp = build_mcp(lambda: service)
    await service.start()
    try:
        await mcp.run_stdio_async()
    finally:
        await service.close()
