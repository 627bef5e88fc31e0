"""Large request bodies are parsed and validated off the event loop, counting first.

FastAPI parses a JSON body and validates it with pydantic in the event-loop
thread; for a snapshot of tens of thousands of tasks that is seconds during
which `/healthz` does not answer (pydantic holds the GIL, so a thread does
not help). Routes built with `OffloopBodyRoute` hand bodies over
`INLINE_BODY_BYTES` to a parser process instead, which

1. decodes the JSON (malformed or deeply nested JSON is a 422),
2. counts agents, tasks and plan entries before building any model, so an
   oversized snapshot is refused in milliseconds with the limit named,
3. validates the request model and the snapshot's magnitudes, and
4. sends back only the small fields plus the snapshot (and plan) as JSON text.

The endpoint then gets a request model whose `snapshot` is a `SnapshotText`
(and `plan`, if any, a `PlanText`): the service passes their text to the
workers unchanged and never builds the model in the server process.
Bodies up to `INLINE_BODY_BYTES` take FastAPI's usual path (a process hop
would cost more than the parse). The OpenAPI schema is FastAPI's, from the
endpoint's typed signature, either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import inspect
import json
import logging
import multiprocessing as mp
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from allocator.errors import InvalidInputError
from models import SolveOptions

log = logging.getLogger(__name__)

#: Bodies up to this size are parsed by FastAPI in the event loop (a few ms at most).
INLINE_BODY_BYTES = 128 * 1024
#: Longest a parse may take before the parser process is replaced (seconds).
PARSE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SnapshotText:
    """A validated snapshot as JSON text, with what the server needs to know about it."""

    json: str
    n_agents: int
    n_tasks: int
    options: SolveOptions
    n_resources: int = 0
    demand_overrides: bool = False


@dataclass(frozen=True)
class PlanText:
    """A validated plan as JSON text."""

    json: str


def _count(data: Any, key: str) -> int:
    if isinstance(data, dict) and isinstance(data.get(key), list):
        return len(data[key])
    return 0


def _loc_str(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(x) for x in loc) or None


def parse_body(model_path: str, raw: bytes, max_agents: int, max_tasks: int
               ) -> tuple[str, Any]:
    """In the parser process: ("ok", (fields, snapshot, plan)) or ("error", (msg, field)).

    Returns plain tuples, never exceptions or models, so nothing heavy is
    unpickled in the server.
    """
    import importlib

    from api.limits import check_magnitudes, shape

    module, _, name = model_path.rpartition(".")
    model: type[BaseModel] = getattr(importlib.import_module(module), name)
    try:
        data = json.loads(raw)
    except RecursionError:
        return "error", ("JSON nested too deeply", None)
    except (ValueError, UnicodeDecodeError) as e:
        return "error", (f"malformed JSON: {e}", None)
    if not isinstance(data, dict):
        return "error", ("the body must be a JSON object", None)
    snap = data.get("snapshot")
    for key, cap in (("agents", max_agents), ("tasks", max_tasks)):
        n = _count(snap, key)
        if n > cap:
            return "error", (f"{n} {key}; this server accepts at most {cap}",
                             f"snapshot.{key}")
    plan = data.get("plan")
    for key in ("assignments", "unassigned"):
        n = _count(plan, key)
        if n > max_tasks:
            return "error", (f"{n} plan {key}; this server accepts at most {max_tasks}",
                             f"plan.{key}")
    try:
        req = model.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        first = errors[0]
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if len(errors) > 1:
            msg += f" (and {len(errors) - 1} more error(s))"
        return "error", (msg, _loc_str(tuple(first.get("loc", ()))))
    except RecursionError:
        return "error", ("JSON nested too deeply", None)
    snapshot = getattr(req, "snapshot", None)
    snap_out = None
    if snapshot is not None:
        try:
            check_magnitudes(snapshot)
        except InvalidInputError as e:
            return "error", (e.message, e.field)
        snap_out = (snapshot.model_dump_json(by_alias=True), len(snapshot.agents),
                    len(snapshot.tasks), snapshot.options.model_dump(), *shape(snapshot))
    plan_obj = getattr(req, "plan", None)
    plan_out = plan_obj.model_dump_json(by_alias=True) if plan_obj is not None else None
    fields = req.model_dump(mode="json", by_alias=True, exclude={"snapshot", "plan"})
    return "ok", (fields, snap_out, plan_out)


class BodyParser:
    """One spawned process that parses large bodies (replaced if a parse hangs)."""

    def __init__(self, max_agents: int, max_tasks: int) -> None:
        self.max_agents = max_agents
        self.max_tasks = max_tasks
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(max_workers=1,
                                                mp_context=mp.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _replace(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for p in list(getattr(pool, "_processes", {}).values()):
                p.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    async def parse(self, model: type[BaseModel], raw: bytes) -> BaseModel:
        """The request model, its snapshot and plan as text; InvalidInputError otherwise."""
        loop = asyncio.get_running_loop()
        path = f"{model.__module__}.{model.__qualname__}"
        try:
            fut = loop.run_in_executor(self._executor(), parse_body, path, raw,
                                       self.max_agents, self.max_tasks)
            status, payload = await asyncio.wait_for(fut, PARSE_TIMEOUT_S)
        except TimeoutError:
            self._replace()
            raise InvalidInputError(f"the body took over {PARSE_TIMEOUT_S:g} s to parse",
                                    field=None) from None
        except cf.process.BrokenProcessPool:
            self._replace()
            raise InvalidInputError("the body could not be parsed (the parser died; "
                                    "is it too large?)") from None
        if status == "error":
            msg, field = payload
            raise InvalidInputError(msg, field=field)
        fields, snap, plan = payload
        values: dict[str, Any] = dict(fields)
        if snap is not None:
            text, n_agents, n_tasks, options, n_resources, overrides = snap
            values["snapshot"] = SnapshotText(text, n_agents, n_tasks,
                                              SolveOptions.model_validate(options),
                                              n_resources, overrides)
        if plan is not None:
            values["plan"] = PlanText(plan)
        # The small fields were validated in the parser (they are scalars and lists of
        # strings in every snapshot-carrying request): construct, do not validate again.
        return model.model_construct(**values)


class OffloopBodyRoute(APIRoute):
    """An APIRoute whose large JSON bodies are parsed in the parser process.

    The endpoint is called with keyword arguments by name: `body` (the model),
    `service`, `request`; it must return a Response (the serialisation is its
    own). Everything else (auth, small bodies) goes FastAPI's usual way.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        usual = super().get_route_handler()
        body_field = self.body_field
        model = body_field.field_info.annotation if body_field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return usual
        endpoint = self.endpoint
        names = set(inspect.signature(endpoint).parameters)
        body_name = body_field.name if body_field is not None else "body"

        async def handler(request: Request) -> Response:
            declared = request.headers.get("content-length")
            if declared is None or not declared.isdigit() or int(declared) <= INLINE_BODY_BYTES:
                try:
                    return await usual(request)
                except (RecursionError, HTTPException) as e:
                    # FastAPI answers 400 for a body json.loads cannot take (nested too
                    # deeply); every other malformed body is 422 invalid_input here.
                    if isinstance(e, HTTPException) and e.status_code != 400:
                        raise
                    raise InvalidInputError("the body is not JSON this server reads "
                                            "(malformed or nested too deeply)") from None
            from api.deps import require_api_key

            require_api_key(request)
            raw = await request.body()
            service = request.app.state.service
            body = await service.parser.parse(model, raw)
            kwargs: dict[str, Any] = {body_name: body}
            if "service" in names:
                kwargs["service"] = service
            if "request" in names:
                kwargs["request"] = request
            result = await endpoint(**kwargs)
            assert isinstance(result, Response), "an OffloopBodyRoute endpoint returns a Response"
            return result

        return handler
