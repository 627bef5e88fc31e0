"""Engine capabilities beyond `solve`, exposed when their modules exist.

Each capability has a name, the engine modules it needs and a runner that
translates the request parameters into the typed parameters of its use case
(`allocator.usecases`), runs it inside a solver worker process and returns
its JSON answer. The app adds a route (api.routers.capabilities) and an MCP
tool (api.mcp_server) for every capability whose modules import.

Extension point: a new capability = a use case in allocator.usecases, an
entry in `REQUIRES`, a runner in `_RUNNERS`, a request schema in
api.schemas, and a route + tool.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from typing import Any

from allocator import usecases as uc
from allocator.errors import InvalidInputError
from models import Plan, Snapshot

#: capability -> engine modules it needs.
REQUIRES: dict[str, tuple[str, ...]] = {
    "rebalance": ("allocator.rebalance",),
    "pareto": ("allocator.pareto", "allocator.solvers.nsga2"),
    "simulate": ("allocator.online.simulator", "allocator.online.workload"),
    "bottlenecks": ("allocator.bottlenecks", "models.bottlenecks"),
}


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def available() -> set[str]:
    """Capabilities whose engine modules are present (and that have a runner here)."""
    return {c for c, mods in REQUIRES.items() if c in _RUNNERS and all(_has(m) for m in mods)}


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)


def _plan(value: dict[str, Any] | str | None) -> Plan | None:
    """A plan from a worker's params: JSON text (large bodies) or a dict."""
    if value is None:
        return None
    return Plan.model_validate_json(value) if isinstance(value, str) else Plan.model_validate(
        value)


def _rebalance(snapshot: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    assert snapshot is not None
    out = uc.rebalance_uc(snapshot, uc.RebalanceParams(
        max_migrations=p.get("max_migrations"), threshold=p.get("threshold") or 0.0,
        time_limit=p["time_limit"], seed=p.get("seed")))
    return {"plan": _dump(out.plan), "summary": out.summary}


def _pareto(snapshot: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    assert snapshot is not None
    out = uc.pareto_front(snapshot, uc.ParetoParams(
        objectives=p.get("objectives") or ("cost", "makespan"), exact=bool(p.get("exact")),
        time_limit=p["time_limit"], seed=p.get("seed"), generations=p.get("generations"),
        pick=p.get("pick") or "knee"))
    return {"front": _dump(out.front),
            "picked": {"index": out.picked_index, "rule": out.picked_rule,
                       "detail": out.picked_detail}}


def _simulate(_: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    coord = dict(p.get("coordinator") or {})
    out = uc.simulate_uc(uc.SimulateParams(
        workload=dict(p.get("workload") or {}),
        policies=p.get("policies") or ("fifo", "jsq", "edf"), seed=p.get("seed") or 0,
        time_limit=p.get("time_limit"), options=dict(p.get("options") or {}),
        modes=tuple(p.get("modes") or ()), coordinate_every=coord.get("every", 0.0),
        coordinator=coord, decision_latency=p.get("decision_latency") or 0.0,
        max_retries=p.get("max_retries", 2)))
    return {"rows": out.rows, "complete": out.complete}


def _bottlenecks(snapshot: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    assert snapshot is not None
    plan = _plan(p.get("plan"))
    out = uc.bottlenecks_uc(snapshot, uc.BottlenecksParams(
        plan=plan, solver=p.get("solver"), time_limit=p["time_limit"], seed=p.get("seed")))
    return {"plan": _dump(out.plan), "report": _dump(out.report)}


def _validate(snapshot: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    from allocator.validate import validate

    assert snapshot is not None
    plan = _plan(p["plan"])
    assert plan is not None
    violations = validate(snapshot, plan)
    return {"valid": not violations,
            "violations": [{"kind": v.kind, "message": v.message, "task": v.task,
                            "agent": v.agent} for v in violations]}


_RUNNERS: dict[str, Callable[[Snapshot | None, dict[str, Any]], dict[str, Any]]] = {
    "rebalance": _rebalance,
    "pareto": _pareto,
    "simulate": _simulate,
    "bottlenecks": _bottlenecks,
}
#: Work the worker runs that is not an optional capability (no route of its own here).
_INTERNAL: dict[str, Callable[[Snapshot | None, dict[str, Any]], dict[str, Any]]] = {
    "validate": _validate,
}


def finite(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def run(kind: str, snapshot: Snapshot | None, params: dict[str, Any]) -> str:
    """Run a capability (in a worker process); its answer as standard JSON text.

    ValueError raised by an engine function's own argument checks is a bad
    input (422), not a server fault.
    """
    fn = _RUNNERS.get(kind) or _INTERNAL[kind]
    try:
        return json.dumps(finite(fn(snapshot, params)), allow_nan=False)
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
