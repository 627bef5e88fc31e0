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

import contextlib
import io
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, Literal, TextIO, TypeVar, cast

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allocator.errors import AllocatorError
from allocator.io.strict_json import DUPLICATE_MARK, mark_duplicate_arguments
from api.capabilities import available
from api.errors import error_type
from api.schemas import (
    BottlenecksRequest,
    BottlenecksResponse,
    CoordinatorIn,
    JobOut,
    OnlineOptionsIn,
    ParetoRequest,
    ParetoResponse,
    RebalanceRequest,
    RebalanceResponse,
    Seed,
    SimulateRequest,
    SimulateResponse,
    SolveRequest,
    SolversResponse,
    TimeLimit,
    ValidateRequest,
    ValidateResponse,
    WorkloadIn,
)
from api.service import Service
from models import Plan, Snapshot
from models.live import LiveTask

T = TypeVar("T")

INSTRUCTIONS = """Task allocation and load balancing across agents.
Call `solve` with a snapshot (agents with capacities, tasks with work and demands) to get
a plan: which agent runs each task and when, the objective with its breakdown, and a
reason for every task left unassigned. `validate` checks a plan against a snapshot.
Long solves: `submit_job`, then `job_status`."""


def _field(loc: Any) -> str:
    return ".".join(str(x) for x in loc) or "(arguments)"


def _invalid(e: ValidationError, prefix: str = "") -> ToolError:
    """A ValidationError as one line: `invalid_input: message (field path)`."""
    errors = e.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid arguments"}
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    where = _field((*([prefix] if prefix else []), *first.get("loc", ())))
    return ToolError(f"invalid_input: {msg}{more} (field {where})")


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a tool's body; engine and validation errors become `type: message (field f)`."""
    try:
        return await fn()
    except AllocatorError as e:
        where = f" (field {e.field})" if e.field else ""
        raise ToolError(f"{error_type(e)}: {e.message}{where}") from None
    except ValidationError as e:
        raise _invalid(e) from None


class _Server(MCPServer):
    """MCPServer whose argument errors name the field in one line.

    The framework validates a tool's arguments against its signature and
    reports pydantic's multi-line text; checking them here first gives the
    same `invalid_input: message (field path)` as every other error.
    """

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Any = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        dup = arguments.get(DUPLICATE_MARK) if isinstance(arguments, dict) else None
        if dup is not None:  # the transport found a repeated key (mark_duplicate_arguments)
            raise ToolError(f"invalid_input: duplicate key {str(dup).rsplit('.', 1)[-1]!r} "
                            f"(a JSON object must not repeat a key) (field {dup})")
        if tool is not None:
            try:
                tool.fn_metadata.validate_arguments(arguments)
            except ValidationError as e:
                raise _invalid(e) from None
        return await super().call_tool(name, arguments, context)


def build_mcp(get_service: Callable[[], Service]) -> MCPServer:
    mcp = _Server(name="allocator", instructions=INSTRUCTIONS, log_level="WARNING")

    @mcp.tool()
    async def solve(
        snapshot: Snapshot,
        solver: Annotated[str | None, Field(description="backend; see `solvers`")] = None,
        time_limit: Annotated[TimeLimit | None, Field(description="seconds (capped)")] = None,
        seed: Seed | None = None,
    ) -> Plan:
        """Solve a snapshot and return the plan (time limit capped by the server)."""
        text = await _call(lambda: get_service().solve(SolveRequest(
            snapshot=snapshot, solver=solver, time_limit=time_limit, seed=seed)))
        return Plan.model_validate_json(text)

    @mcp.tool()
    async def validate(snapshot: Snapshot, plan: Plan) -> ValidateResponse:
        """List every hard constraint the plan violates (empty when valid)."""
        return await _call(lambda: get_service().validate(
            ValidateRequest(snapshot=snapshot, plan=plan)))

    @mcp.tool()
    async def submit_job(
        snapshot: Snapshot,
        solver: Annotated[str, Field(min_length=1, max_length=64)] | None = None,
        time_limit: TimeLimit | None = None,
        seed: Seed | None = None,
    ) -> JobOut:
        """Queue a long solve; poll it with `job_status`."""
        return await _call(lambda: get_service().submit(SolveRequest(
            snapshot=snapshot, solver=solver, time_limit=time_limit, seed=seed)))

    @mcp.tool()
    async def job_status(job_id: Annotated[str, Field(min_length=1, max_length=64)]) -> JobOut:
        """State, progress, best objective and bound of a job."""
        return await _call(lambda: get_service().job(job_id))

    @mcp.tool()
    async def solvers() -> SolversResponse:
        """The solver backends this server offers."""
        return get_service().solvers()

    async def capability(kind: str, build: Callable[[], Any]) -> str:
        """Build the request (its checks name the field) and run `kind` in a worker."""

        async def go() -> str:
            req = build()
            service = get_service()
            if getattr(req, "solver", None) is not None:
                service.check_solver(req.solver)
            return await service.run_capability(
                kind, getattr(req, "snapshot", None),
                req.model_dump(mode="json", by_alias=True, exclude={"snapshot"}))

        return await _call(go)

    have = available()
    if "rebalance" in have:

        @mcp.tool()
        async def rebalance(
            snapshot: Snapshot,
            max_migrations: Annotated[int, Field(ge=0, le=1_000_000)] | None = None,
            threshold: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] = 0.0,
            time_limit: TimeLimit | None = None,
            seed: Seed | None = None,
        ) -> RebalanceResponse:
            """Move tasks off overloaded agents with few migrations; before/after summary."""
            return RebalanceResponse.model_validate_json(await capability(
                "rebalance", lambda: RebalanceRequest(
                    snapshot=snapshot, max_migrations=max_migrations, threshold=threshold,
                    time_limit=time_limit, seed=seed)))

    if "pareto" in have:

        @mcp.tool()
        async def pareto(
            snapshot: Snapshot,
            objectives: list[str] | None = None,
            exact: bool = False,
            time_limit: TimeLimit | None = None,
            pick: Annotated[str, Field(min_length=1, max_length=200)] = "knee",
            seed: Seed | None = None,
            generations: Annotated[int, Field(ge=1, le=100_000)] | None = None,
        ) -> ParetoResponse:
            """Plans trading objectives off (e.g. cost vs makespan) and the one picked."""
            return ParetoResponse.model_validate_json(await capability(
                "pareto", lambda: ParetoRequest(
                    snapshot=snapshot, objectives=objectives or ["cost", "makespan"],
                    exact=exact, time_limit=time_limit, pick=pick, seed=seed,
                    generations=generations)))

    if "simulate" in have:

        @mcp.tool()
        async def simulate(workload: WorkloadIn | None = None,
                           policies: list[str] | None = None,
                           options: OnlineOptionsIn | None = None,
                           seed: Seed | None = None,
                           time_limit: TimeLimit | None = None,
                           modes: list[Literal["online", "batch", "coordinated"]] | None = None,
                           coordinator: CoordinatorIn | None = None) -> SimulateResponse:
            """Simulate online scheduling policies side by side on a generated workload.

            `options` are the executor's knobs (stealing, admission, breakers,
            aging...), the same object as the HTTP body's `options`; `modes` and
            `coordinator` compare the policies alone with periodic plans.
            """
            return SimulateResponse.model_validate_json(await capability(
                "simulate", lambda: SimulateRequest(
                    workload=workload or WorkloadIn(), policies=policies,
                    options=options or OnlineOptionsIn(), seed=seed,
                    time_limit=time_limit, modes=modes, coordinator=coordinator)))

    if "bottlenecks" in have:

        @mcp.tool()
        async def bottlenecks(
            snapshot: Snapshot,
            plan: Plan | None = None,
            solver: Annotated[str, Field(min_length=1, max_length=64)] | None = None,
            time_limit: TimeLimit | None = None,
        ) -> BottlenecksResponse:
            """What limits the plan and what one more unit of capacity would be worth."""
            return BottlenecksResponse.model_validate_json(await capability(
                "bottlenecks", lambda: BottlenecksRequest(
                    snapshot=snapshot, plan=plan, solver=solver, time_limit=time_limit)))

    def live() -> Any:
        svc = get_service().live_service
        if svc is None or svc.coord is None:
            raise AllocatorError("the live service runs inside `allocator serve` (its /mcp "
                                 "endpoint); this MCP server has none", field=None)
        return svc

    async def _live_call(fn: Callable[[], Any]) -> Any:
        async def go() -> Any:
            return fn()
        return await _call(go)

    @mcp.tool()
    async def live_loads() -> dict[str, Any]:
        """Live agents: status, running and queued tasks, estimated load, breaker, usage."""
        return await _live_call(lambda: {"agents": live().c.agent_views()})

    @mcp.tool()
    async def live_queues() -> dict[str, Any]:
        """Live queues: depth per priority class and tenant, per agent, counters, waits."""
        return await _live_call(lambda: live().c.queues())

    @mcp.tool()
    async def live_kpis() -> dict[str, Any]:
        """A KPI summary of the live service: tasks by state, wait percentiles per class,
        late completions, lease expiries, steals, tokens per tenant."""
        def kpis() -> dict[str, Any]:
            q = live().c.queues()
            return {"states": q["states"], "waits": q["waits"], "stats": q["stats"],
                    "tokens_by_tenant": q["tokens_by_tenant"],
                    "agents_up": sum(1 for a in q["agents"].values() if a["status"] == "up"),
                    "queued": sum(q["queued_by_class"].values())}
        return await _live_call(kpis)

    @mcp.tool()
    async def live_submit(tasks: Annotated[list[LiveTask], Field(min_length=1,
                                                                 max_length=5000)]
                          ) -> dict[str, Any]:
        """Submit tasks to the live service; per task its admission (state, code, reason)."""
        async def go() -> dict[str, Any]:
            out = await live().submit([t.model_dump(exclude_defaults=True) for t in tasks])
            return {"tasks": out}
        return await _call(go)

    if "bottlenecks" in have:

        @mcp.tool()
        async def live_bottlenecks(
            solver: Annotated[str, Field(min_length=1, max_length=64)] | None = "greedy",
            time_limit: TimeLimit | None = None,
        ) -> BottlenecksResponse:
            """The bottlenecks of the live service's current snapshot (queued and running
            tasks on the agents as they are now)."""
            def snap() -> Snapshot:
                return live().c.core.snapshot(name="live")  # type: ignore[no-any-return]
            current = await _live_call(snap)
            return BottlenecksResponse.model_validate_json(await capability(
                "bottlenecks", lambda: BottlenecksRequest(
                    snapshot=current, solver=solver, time_limit=time_limit)))

    return mcp


def _rpc(item: object) -> tuple[str | None, Any]:
    """(method, id) of a stream item (a SessionMessage); method None for an answer."""
    msg = getattr(item, "message", None)
    return getattr(msg, "method", None), getattr(msg, "id", None)


class _Drain:
    """Answer every request read before stdin closed, then end the session.

    The SDK's dispatcher cancels its in-flight handlers when the read stream ends,
    so a client that writes its last requests and closes stdin at once lost their
    answers (5 tools/call then EOF: 2 or 3 never answered). The read stream's end
    is held back until each request read has been answered (or cancelled by the
    client), for at most `limit` seconds.
    """

    def __init__(self, read: Any, write: Any, limit: float) -> None:
        import anyio

        self._read = read
        self._write = write
        self._limit = limit
        self._pending: dict[Any, int] = {}
        self._settled = anyio.Event()

    # -- the read side (ReadStream protocol)
    @property
    def last_context(self) -> Any:
        return getattr(self._read, "last_context", None)

    async def receive(self) -> Any:
        import anyio

        try:
            item = await self._read.receive()
        except anyio.EndOfStream:
            with anyio.move_on_after(self._limit):
                while self._pending:
                    self._settled = anyio.Event()
                    await self._settled.wait()
            raise
        method, rid = _rpc(item)
        if method is not None and rid is not None:
            self._pending[rid] = self._pending.get(rid, 0) + 1
        elif method == "notifications/cancelled":  # the SDK must not answer it
            params = getattr(getattr(item, "message", None), "params", None) or {}
            self._done(params.get("requestId") if isinstance(params, dict) else None)
        return item

    def _done(self, rid: Any) -> None:
        n = self._pending.pop(rid, 0)
        if n > 1:
            self._pending[rid] = n - 1
        self._settled.set()

    async def aclose(self) -> None:
        await self._read.aclose()

    def __aiter__(self) -> _Drain:
        return self

    async def __anext__(self) -> Any:
        import anyio

        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _Drain:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the write side (WriteStream protocol)
    @property
    def writer(self) -> _DrainWriter:
        return _DrainWriter(self)


class _DrainWriter:
    def __init__(self, drain: _Drain) -> None:
        self._d = drain

    async def send(self, item: Any, /) -> None:
        await self._d._write.send(item)
        method, rid = _rpc(item)
        if method is None and rid is not None:
            self._d._done(rid)

    async def aclose(self) -> None:
        await self._d._write.aclose()

    async def __aenter__(self) -> _DrainWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _StrictLines:
    """stdin of the stdio transport: a tool call whose arguments repeat a key is marked
    (:func:`allocator.io.strict_json.mark_duplicate_arguments`) before the SDK reads it,
    which would keep the last value; the tool then refuses it naming the field."""

    def __init__(self, fp: TextIO) -> None:
        self._fp = fp

    def readline(self, size: int = -1) -> str:
        line = self._fp.readline(size)
        if '"arguments"' in line:  # only tool calls carry arguments
            marked = mark_duplicate_arguments(line)
            if isinstance(marked, str):
                return marked + "\n"
        return line

    def close(self) -> None:
        self._fp.close()


@contextlib.contextmanager
def _private_stdin() -> Iterator[TextIO]:
    """The wire on a private duplicate of fd 0, fd 0 itself on the null device while
    serving (what the SDK does for its own stdin: children read EOF, not the wire)."""
    try:
        private = os.dup(0)
    except OSError:
        yield sys.stdin
        return
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # closefd=False: the reading thread may still block on it after the session ends.
    raw = os.fdopen(private, "rb", closefd=False)
    try:
        yield io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
    finally:
        with contextlib.suppress(OSError):
            os.dup2(private, 0)


def strict_mcp_app(app: ASGIApp) -> ASGIApp:
    """The streamable HTTP MCP app behind the same duplicate-key check as stdio: a POST
    body whose tool arguments repeat a key is rewritten with the mark first."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await app(scope, receive, send)  # disconnected: let the app see it
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if b'"arguments"' in body:
            marked = await anyio.to_thread.run_sync(mark_duplicate_arguments, body)
            if isinstance(marked, bytes):
                body = marked
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await app(scope, replay, send)

    return wrapped


async def serve_stdio(settings: object) -> None:
    """Run the service (store + workers) and answer MCP over stdin/stdout until EOF
    (and until every request read before it is answered)."""
    from mcp.server.stdio import stdio_server

    from api.settings import Settings

    assert isinstance(settings, Settings)
    service = Service(settings)
    mcp = build_mcp(lambda: service)
    await service.start()
    await service.wait_ready()  # stdio has no readiness probe: answer once a worker is up
    try:
        # MCPServer.run_stdio_async with our stdin (the SDK takes an explicit one).
        with _private_stdin() as fp:
            stdin = anyio.wrap_file(cast(TextIO, _StrictLines(fp)))
            async with stdio_server(stdin=stdin) as (read, write):
                await run_draining(mcp, read, write, limit=max(settings.sync_time_limit,
                                                               settings.job_time_limit) + 60)
    finally:
        await service.close()


async def run_draining(mcp: MCPServer, read: Any, write: Any, *, limit: float) -> None:
    """Serve one session over (read, write); at the read side's end, answer what was
    read first (`_Drain`)."""
    server = mcp._lowlevel_server
    drain = _Drain(read, write, limit)
    await server.run(drain, drain.writer, server.create_initialization_options())
