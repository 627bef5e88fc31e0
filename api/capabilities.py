"""Engine capabilities beyond `solve`, exposed when their modules exist.

Each capability has a name, the engine modules it needs and a function that
runs inside a solver worker process and returns its JSON answer. The app
adds a route (api.routers.capabilities) and an MCP tool (api.mcp_server) for
every capability whose modules import.

Extension point: a new capability = an entry in `REQUIRES`, a runner in
`_RUNNERS`, a request schema in api.schemas, and a route + tool.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from typing import Any

from allocator.errors import InvalidInputError
from models import Snapshot

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


def _rebalance(snapshot: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    from allocator.rebalance import rebalance
    from allocator.validate import validate

    assert snapshot is not None
    res = rebalance(snapshot, max_migrations=p.get("max_migrations"),
                    threshold=p.get("threshold") or 0.0, time_limit=p["time_limit"],
                    seed=p.get("seed"))
    return {"plan": res.plan.model_dump(mode="json", by_alias=True),
            "summary": res.summary(valid=not validate(snapshot, res.plan))}


def _pareto(snapshot: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    from allocator.pareto import exact_front, parse_objectives, pick
    from allocator.problem import compile_snapshot
    from allocator.solvers.base import Budget
    from allocator.solvers.nsga2 import Nsga2Config, nsga2_front

    assert snapshot is not None
    names = parse_objectives(p["objectives"])
    problem = compile_snapshot(snapshot)
    budget = Budget(p["time_limit"], workers=snapshot.options.workers)
    seed = snapshot.options.seed if p.get("seed") is None else p["seed"]
    if p.get("exact"):
        front = exact_front(problem, names, budget=budget, seed=seed)
    else:
        front = nsga2_front(problem, names, budget=budget, seed=seed,
                            config=Nsga2Config(generations=p.get("generations")))
    if not front.points:
        raise InvalidInputError(front.message or "no plan found", field="snapshot")
    chosen = pick(front, p.get("pick") or "knee")
    return {"front": front.model_dump(mode="json", by_alias=True),
            "picked": {"index": chosen.index, "rule": chosen.rule, "detail": chosen.detail}}


def _simulate(_: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    from allocator.online.policies import policy_names
    from allocator.online.simulator import Simulator
    from allocator.online.workload import WorkloadConfig, generate

    known = policy_names()
    policies = p.get("policies") or ["fifo", "jsq", "edf"]
    for name in policies:
        if name not in known:
            raise InvalidInputError(f"unknown policy {name!r}; known: {', '.join(known)}",
                                    field="policies")
    cfg = WorkloadConfig(**p["workload"], seed=p.get("seed") or 0)
    rows = []
    for name in policies:
        res = Simulator(generate(cfg), name, seed=p.get("seed") or 0, log=0).run()
        rows.append({k: v for k, v in res.row.items()
                     if isinstance(v, int | float | str | bool) or v is None})
    return {"rows": rows}


def _bottlenecks(snapshot: Snapshot | None, p: dict[str, Any]) -> dict[str, Any]:
    from allocator.bottlenecks import bottleneck_report
    from allocator.engine import solve
    from allocator.problem import compile_snapshot
    from models import Plan

    assert snapshot is not None
    if p.get("plan") is not None:
        plan = Plan.model_validate(p["plan"])
        tasks = {t.id for t in snapshot.tasks}
        agents = {a.id for a in snapshot.agents}
        for i, a in enumerate(plan.assignments):
            if a.task not in tasks or a.agent not in agents:
                raise InvalidInputError(f"unknown task {a.task!r} or agent {a.agent!r}",
                                        field=f"plan.assignments.{i}")
    else:
        plan = solve(snapshot, solver=p.get("solver"), time_limit=p["time_limit"],
                     seed=p.get("seed"))
    report = bottleneck_report(compile_snapshot(snapshot), plan, time_limit=p["time_limit"])
    return {"plan": plan.model_dump(mode="json", by_alias=True),
            "report": report.model_dump(mode="json", by_alias=True)}


_RUNNERS: dict[str, Callable[[Snapshot | None, dict[str, Any]], dict[str, Any]]] = {
    "rebalance": _rebalance,
    "pareto": _pareto,
    "simulate": _simulate,
    "bottlenecks": _bottlenecks,
}


def run(kind: str, snapshot: Snapshot | None, params: dict[str, Any]) -> str:
    """Run a capability (in a worker process); its answer as JSON text.

    ValueError raised by an engine function's own argument checks is a bad
    input (422), not a server fault.
    """
    try:
        return json.dumps(_RUNNERS[kind](snapshot, params))
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
