"""The MCP server: the same service calls as the HTTP routes, as typed tools.

`build_mcp(get_service)` returns an MCPServer whose tools call the `Service`
returned by `get_service()` (the app's, or the one `allocator mcp` starts).
Served over stdio by `allocator mcp` (solves run in worker processes whose
stdout points at stderr, so nothing but protocol messages reaches stdout) and
over streamable HTTP under /mcp in the app.

Extension point: rebalance, pareto, simulate and bottlenecks tools register
here the way `solve` does once their engine modules exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from allocator.errors import AllocatorError
from api.errors import error_type
from api.schemas import JobOut, SolveRequest, SolversResponse, ValidateRequest, ValidateResponse
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
