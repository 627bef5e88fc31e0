"""The live service: agents register, heartbeat and pull; clients submit and watch tasks.

Thin: parse (pydantic models from models.live), call allocator.live's
LiveService on the event loop, format. Docs: docs/live.md.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from allocator.errors import InvalidInputError, NotFoundError
from allocator.io import strict_json
from api.bodies import StrictJsonRoute
from api.deps import Authorized
from api.routers.errors import errors
from models.live import (
    LIVE_ID_PATTERN,
    Completion,
    Heartbeat,
    LiveAgent,
    LiveTask,
    PullRequest,
    TaskBatch,
)

router = APIRouter(prefix="/v1", tags=["live"], dependencies=[Authorized],
                   route_class=StrictJsonRoute)

AgentId = Annotated[str, Path(pattern=LIVE_ID_PATTERN, description="Agent id")]
TaskId = Annotated[str, Path(pattern=LIVE_ID_PATTERN, description="Task id")]
StateQ = Annotated[Literal["queued", "deferred", "assigned", "running", "completed", "failed",
                           "rejected", "cancelled"] | None,
                   Query(description="Only tasks in this state")]


async def live_service(request: Request) -> Any:
    """(async: a plain function would cost a thread hop per request)"""
    return request.app.state.live


Live = Annotated[Any, Depends(live_service)]


try:  # optional: faster JSON when installed
    import orjson

    def _dumps(data: Any) -> bytes:
        return orjson.dumps(data)
except ImportError:  # pragma: no cover - depends on the extras installed
    def _dumps(data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode()


def _json(data: Any, status: int = 200) -> Response:
    return Response(_dumps(data), status_code=status, media_type="application/json")


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` substituted in place (no refs to resolve)."""
    defs = schema.pop("$defs", {})

    def sub(x: Any) -> Any:
        if isinstance(x, dict):
            ref = x.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return sub(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: sub(v) for k, v in x.items()}
        if isinstance(x, list):
            return [sub(v) for v in x]
        return x

    return sub(schema)  # type: ignore[no-any-return]


#: The body of POST /v1/tasks as documented (parsed by hand for one clear error per field).
SUBMIT_SCHEMA = {"anyOf": [_inline(LiveTask.model_json_schema()),
                           _inline(TaskBatch.model_json_schema())]}


def _invalid(e: ValidationError, prefix: tuple[Any, ...] = ()) -> RequestValidationError:
    errs: list[dict[str, Any]] = []
    for x in e.errors(include_url=False):
        d: dict[str, Any] = dict(x)
        d["loc"] = ("body", *prefix, *d.get("loc", ()))
        d.pop("ctx", None)
        errs.append(d)
    return RequestValidationError(errs)


# ---------------------------------------------------------------------------- agents


@router.post("/agents", status_code=201, responses=errors(401, 422),
             summary="Register (or re-register) an agent")
async def register(body: LiveAgent, live: Live, request: Request) -> Response:
    out = await live.register(body.model_dump(exclude_defaults=True))
    # The agent sizes its pulls' acks under it (a body over it is refused 413 as a whole).
    out["max_body_bytes"] = request.app.state.settings.max_body_bytes
    return _json(out, 201)


@router.get("/agents", responses=errors(401),
            summary="Agents with their live loads, leases and usage")
async def agents(live: Live) -> Response:
    return _json({"agents": live.c.agent_views()})


@router.post("/agents/{agent_id}/heartbeat", responses=errors(401, 404, 422),
             summary="Renew the agent's leases; learn which attempts to cancel")
async def heartbeat(agent_id: AgentId, live: Live,
                    body: Annotated[Heartbeat | None, Body()] = None) -> Response:
    hb = body or Heartbeat()
    return _json(await live.heartbeat(agent_id, draining=hb.status == "draining"))


@router.post("/agents/{agent_id}/pull", responses=errors(401, 404, 422),
             summary="Long-poll for up to `max` leased tasks (acks complete earlier ones)")
async def pull(agent_id: AgentId, live: Live,
               body: Annotated[PullRequest | None, Body()] = None) -> Response:
    req = body or PullRequest()
    acks = [a.model_dump(exclude_none=True) for a in req.acks]
    return _json(await live.pull(agent_id, limit=req.max, wait=req.wait, acks=acks,
                                 held=req.held))


@router.delete("/agents/{agent_id}", responses=errors(401, 404, 422),
               summary="The agent leaves gracefully (its queue moves, running work finishes)")
async def leave(agent_id: AgentId, live: Live) -> Response:
    return _json(await live.leave(agent_id))


# ---------------------------------------------------------------------------- tasks


@router.post("/tasks", status_code=202, responses=errors(401, 422),
             summary="Submit a task, or {\"tasks\": [...]}; admission answers per task",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": SUBMIT_SCHEMA}}}})
async def submit(request: Request, live: Live) -> Response:
    raw = await request.body()
    try:
        data = strict_json.loads(raw)
    except strict_json.DuplicateKeyError as e:
        raise InvalidInputError(f"duplicate key {e.key!r} (a JSON object must not repeat a "
                                "key)", field=e.path) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                       "msg": "malformed JSON", "input": None,
                                       "ctx": {"error": str(e)}}]) from None
    try:
        if isinstance(data, dict) and "tasks" in data:
            tasks = TaskBatch.model_validate(data).tasks
        elif isinstance(data, list):
            tasks = TaskBatch.model_validate({"tasks": data}).tasks
        else:
            tasks = [LiveTask.model_validate(data)]
    except ValidationError as e:
        raise _invalid(e) from None
    out = await live.submit([t.model_dump(exclude_defaults=True) for t in tasks])
    return _json({"tasks": out}, 202)


@router.get("/tasks", responses=errors(401, 422),
            summary="Tasks (id, state, attempts, agent ...), oldest first, paged")
async def list_tasks(live: Live, state: StateQ = None,
                     tenant: Annotated[str | None, Query(max_length=100)] = None,
                     limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
                     offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0) -> Response:
    total, views = live.c.task_views(state=state, tenant=tenant, limit=limit, offset=offset)
    return _json({"total": total, "tasks": views})


@router.get("/tasks/{task_id}", responses=errors(401, 404, 422),
            summary="One task: state, attempts, agent, result and history")
async def get_task(task_id: TaskId, live: Live) -> Response:
    return _json(live.c.task_view(task_id))


@router.delete("/tasks/{task_id}", responses=errors(401, 404, 422),
               summary="Cancel a task (a running attempt is told to stop)")
async def cancel_task(task_id: TaskId, live: Live) -> Response:
    return _json(await live.cancel(task_id))


@router.post("/tasks/{task_id}/complete", responses=errors(401, 404, 422),
             summary="Report the end of an attempt (late attempts are ignored and counted)")
async def complete(task_id: TaskId, body: Completion, live: Live) -> Response:
    if task_id not in live.c.tasks:
        raise NotFoundError(f"no task {task_id!r}", field="task_id")
    return _json(await live.complete(task_id, body.model_dump(exclude_none=True)))


@router.get("/queues", responses=errors(401),
            summary="Queue depths per class and tenant, agents, counters, waits, usage")
async def queues(live: Live) -> Response:
    return _json(live.c.queues())
