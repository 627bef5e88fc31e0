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
import contextvars
import functools
import inspect
import json
import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from allocator.errors import InvalidInputError, ResourceLimitError
from allocator.io import strict_json
from api.errors import BusyError, validation_message
from models import SolveOptions

log = logging.getLogger(__name__)

#: When the current request's body had arrived (time.monotonic()): synchronous work
#: counts its time limit from here, so time spent parsing it is not free.
ARRIVED: contextvars.ContextVar[float | None] = contextvars.ContextVar("arrived", default=None)

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
        n = len(data[key])
        if key == "tasks":  # tasks given as columns count too (Snapshot.task_table)
            n += _count(data.get("task_table"), "id")
        return n
    if key == "tasks" and isinstance(data, dict):
        return _count(data.get("task_table"), "id")
    return 0


#: The backend whose memory a request's work is estimated with, by request model
#: (None: the request's `solver`, else the snapshot's `options.solver`).
WORK_BACKEND: dict[str, str | None] = {
    "SolveRequest": None, "ValidateRequest": "validate", "RebalanceRequest": "rebalance",
    "ParetoRequest": "pareto", "BottlenecksRequest": None,
}


def _raw_estimate_error(model_name: str, data: dict[str, Any], max_work_bytes: int
                        ) -> tuple[str, Any] | None:
    """The memory estimate from the raw JSON, before any model is built (or None)."""
    from allocator.errors import ResourceLimitError
    from api.limits import check_work_bytes

    snap = data.get("snapshot")
    if not isinstance(snap, dict):
        return None
    agents, tasks = snap.get("agents"), snap.get("tasks") or []
    if not isinstance(agents, list) or not isinstance(tasks, list):
        return None
    n_tasks = _count(snap, "tasks")
    table = snap.get("task_table")
    listed = 0
    if isinstance(table, dict):
        for key in ("allowed_agents", "forbidden_agents"):
            col = table.get(key)
            listed += sum(len(v) for v in col if isinstance(v, list)) if isinstance(
                col, list) else 0
    backend = WORK_BACKEND.get(model_name)
    if backend is None:
        opts = snap.get("options")
        opts = opts if isinstance(opts, dict) else {}
        backend = data.get("solver") or opts.get("solver") or "auto"
    resources = {r for a in agents if isinstance(a, dict)
                 for r in (a.get("capacity") or {}) if isinstance(a.get("capacity"), dict)}
    overrides = any(isinstance(ov, dict) and ov.get("demand")
                    for t in tasks if isinstance(t, dict) and isinstance(t.get("overrides"), dict)
                    for ov in t["overrides"].values())
    for t in tasks:
        if isinstance(t, dict):
            for key in ("allowed_agents", "forbidden_agents", "overrides"):
                v = t.get(key)
                listed += len(v) if isinstance(v, list | dict) else 0
    try:
        check_work_bytes(len(agents), n_tasks, len(resources), overrides, str(backend),
                         max_work_bytes, listed)
    except ResourceLimitError as e:
        return "limit", (e.message, e.field)
    return None


def parse_body(model_path: str, raw: bytes, max_agents: int, max_tasks: int,
               max_work_bytes: int | None = None) -> tuple[str, Any]:
    """In the parser process: ("ok", (fields, snapshot, plan)) or ("error" | "limit",
    (msg, field)).

    Returns plain tuples, never exceptions or models, so nothing heavy is
    unpickled in the server.
    """
    import importlib

    from api.limits import check_magnitudes, shape

    module, _, name = model_path.rpartition(".")
    model: type[BaseModel] = getattr(importlib.import_module(module), name)
    try:
        data = strict_json.loads(raw)
    except strict_json.DuplicateKeyError as e:
        return "error", (f"duplicate key {e.key!r} (a JSON object must not repeat a key)",
                         e.path)
    except RecursionError:
        return "error", ("JSON nested too deeply", None)
    except json.JSONDecodeError as e:
        return "error", (f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}", None)
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
    if max_work_bytes is not None:
        refused = _raw_estimate_error(name, data, max_work_bytes)
        if refused is not None:
            return refused
    plan = data.get("plan")
    for key in ("assignments", "unassigned"):
        n = _count(plan, key)
        if n > max_tasks:
            return "error", (f"{n} plan {key}; this server accepts at most {max_tasks}",
                             f"plan.{key}")
    try:
        req = model.model_validate(data)
    except ValidationError as e:
        return "error", validation_message(list(e.errors()), data)
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
                    snapshot.n_tasks, snapshot.options.model_dump(), *shape(snapshot))
    plan_obj = getattr(req, "plan", None)
    plan_out = plan_obj.model_dump_json(by_alias=True) if plan_obj is not None else None
    fields = req.model_dump(mode="json", by_alias=True, exclude={"snapshot", "plan"})
    return "ok", (fields, snap_out, plan_out)


def warm_up() -> None:
    """In the parser process: import the request models and checks before the first body.

    A first import costs 0.3-1 s on a busy machine, and a synchronous call's time
    limit counts from arrival, parsing included.
    """
    import api.limits
    import api.schemas  # noqa: F401


class StrictJsonRequest(Request):
    """A request whose JSON body refuses a repeated key (allocator.io.strict_json).

    FastAPI reads the body through ``Request.json``; a DuplicateKeyError is a
    JSONDecodeError, which FastAPI turns into a RequestValidationError caused by
    it, and api.errors answers 422 naming the key's path.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json.loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute reading JSON bodies with :class:`StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        usual = super().get_route_handler()

        async def handler(request: Request) -> Response:
            return await usual(StrictJsonRequest(request.scope, request.receive))

        return handler


class BodyParser:
    """One spawned process that parses large bodies (replaced if a parse hangs or it dies)."""

    def __init__(self, max_agents: int, max_tasks: int, max_work_bytes: int | None = None
                 ) -> None:
        self.max_agents = max_agents
        self.max_tasks = max_tasks
        self.max_work_bytes = max_work_bytes
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(max_workers=1,
                                                mp_context=mp.get_context("spawn"))
            self._pool.submit(warm_up)  # a replaced parser too, before its first body
        return self._pool

    def start(self) -> None:
        """Spawn the parser now (it imports the models), not on the first large body."""
        self._executor()

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

    async def parse(self, model: type[BaseModel], raw: bytes,
                    deadline: float | None = None) -> BaseModel:
        """The request model, its snapshot and plan as text; InvalidInputError otherwise.

        With a `deadline` (time.monotonic()), a parse still waiting for the parser
        then is dropped with BusyError (503): a synchronous call's time limit counts
        from its arrival, parsing included.
        """
        loop = asyncio.get_running_loop()
        path = f"{model.__module__}.{model.__qualname__}"
        timeout = PARSE_TIMEOUT_S
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        call = functools.partial(parse_body, path, raw, self.max_agents, self.max_tasks,
                                 self.max_work_bytes)
        try:
            fut = loop.run_in_executor(self._executor(), call)
        except cf.process.BrokenProcessPool:
            # The parser died before this body reached it (killed while idle, or by
            # an earlier body): not this body's fault, so a fresh parser takes it.
            self._replace()
            fut = loop.run_in_executor(self._executor(), call)
        try:
            status, payload = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            if deadline is not None and timeout < PARSE_TIMEOUT_S:
                raise BusyError("the server is busy with other large requests and could not "
                                "read this one within its time limit; retry later") from None
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
        if status == "limit":
            msg, field = payload
            raise ResourceLimitError(msg, field=field)
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


class OffloopBodyRoute(StrictJsonRoute):
    """An APIRoute whose large JSON bodies are parsed in the parser process.

    The endpoint is called with keyword arguments by name: `body` (the model),
    `service`, `request`; it must return a Response (the serialisation is its
    own). Everything else (auth, small bodies) goes FastAPI's usual way.
    """

    #: A synchronous route: its body must be parsed within sync_time_limit of arrival.
    sync = True

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        usual = super().get_route_handler()
        body_field = self.body_field
        model = body_field.field_info.annotation if body_field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return usual
        endpoint = self.endpoint
        sync = self.sync
        names = set(inspect.signature(endpoint).parameters)
        body_name = body_field.name if body_field is not None else "body"

        async def handler(request: Request) -> Response:
            ARRIVED.set(time.monotonic())
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

            await require_api_key(request)
            raw = await request.body()
            service = request.app.state.service
            arrived = ARRIVED.get() or time.monotonic()
            deadline = arrived + service.settings.sync_time_limit if sync else None
            body = await service.parser.parse(model, raw, deadline)
            kwargs: dict[str, Any] = {body_name: body}
            if "service" in names:
                kwargs["service"] = service
            if "request" in names:
                kwargs["request"] = request
            result = await endpoint(**kwargs)
            assert isinstance(result, Response), "an OffloopBodyRoute endpoint returns a Response"
            return result

        return handler


class OffloopJobBodyRoute(OffloopBodyRoute):
    """For job submission: no time limit on the parse beyond PARSE_TIMEOUT_S."""

    sync = False
