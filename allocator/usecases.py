"""The engine's use cases with typed parameters: the one entry point of the CLI, API and MCP.

Each use case takes a snapshot (or a workload) and a frozen parameter object
and returns a typed outcome; callers only translate (command-line options,
HTTP bodies, MCP arguments) into these parameters and the outcome into their
format. Input that a use case cannot work with is an `InvalidInputError`
naming the field, never a bare `ValueError`.

* `solve_uc`       -> Plan                       (allocator.engine.solve)
* `rebalance_uc`   -> RebalanceOutcome           (allocator.rebalance.rebalance)
* `pareto_front`   -> ParetoOutcome              (NSGA-II, or the exact front)
* `bottlenecks_uc` -> BottlenecksOutcome         (a supplied plan checked first)
* `simulate_uc`    -> SimulateOutcome            (policies side by side, time-limited)
* `topology_uc`    -> TopologyReport             (zones, shadow prices, what-if re-solves)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from allocator.errors import InvalidInputError
from allocator.limits import check_time_limit
from models import Plan, Snapshot, Weights


class TimeUp(BaseException):
    """Raised by a caller's alarm (the API worker's) when a use case's time is up.

    A BaseException so that no `except Exception` inside the engine swallows it.
    """


#: Simulated tasks x policies one simulate call may run (about a minute of work).
MAX_SIM_TASK_POLICIES = 2_000_000


def budget_s(override: float | None, snapshot: Snapshot) -> float:
    """The solve budget: the caller's override (checked: 0 and NaN were silently the
    snapshot's or passed on) or the snapshot's own."""
    return snapshot.options.time_limit if override is None else check_time_limit(override)


@dataclass(frozen=True)
class SolveParams:
    solver: str | None = None
    time_limit: float | None = None
    seed: int | None = None


def solve_uc(snapshot: Snapshot, params: SolveParams,
             clock: Callable[[], float] | None = None) -> Plan:
    """Solve a snapshot with the named backend (defaults from `snapshot.options`)."""
    from allocator.engine import solve

    return solve(snapshot, solver=params.solver, time_limit=params.time_limit,
                 seed=params.seed, clock=clock)


# -- rebalance ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RebalanceParams:
    max_migrations: int | None = None
    threshold: float = 0.0
    time_limit: float | None = None
    seed: int | None = None


@dataclass
class RebalanceOutcome:
    plan: Plan
    summary: dict[str, Any]
    #: allocator.rebalance.RebalanceResult: loads before/after, moves undone (the CLI's tables).
    result: Any = None
    valid: bool = True


def rebalance_uc(snapshot: Snapshot, params: RebalanceParams) -> RebalanceOutcome:
    """Re-plan for balance with few migrations; the plan and a before/after summary."""
    from allocator.rebalance import rebalance
    from allocator.validate import validate

    if params.max_migrations is not None and params.max_migrations > max(snapshot.n_tasks, 0):
        # More moves than tasks means no cap; CP-SAT needs 64-bit integers anyway.
        params = RebalanceParams(None, params.threshold, params.time_limit, params.seed)
    try:
        res = rebalance(snapshot, max_migrations=params.max_migrations,
                        threshold=params.threshold,
                        time_limit=params.time_limit,  # rebalance() checks it
                        seed=params.seed)
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
    valid = not validate(snapshot, res.plan)
    return RebalanceOutcome(res.plan, res.summary(valid=valid), res, valid)


# -- pareto ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParetoParams:
    objectives: Sequence[str] = ("cost", "makespan")
    exact: bool = False
    time_limit: float | None = None
    seed: int | None = None
    generations: int | None = None
    pick: str = "knee"
    #: Validate every point of the front (the outcome's `valid`); off for the API's answer.
    check: bool = False


@dataclass
class ParetoOutcome:
    front: Any  # models.pareto.ParetoFront
    picked_index: int
    picked_rule: str
    picked_detail: str
    #: Per point, whether it passes allocator.validate (only with `ParetoParams.check`).
    valid: list[bool] = field(default_factory=list)


def pareto_front(snapshot: Snapshot, params: ParetoParams,
                 progress: Callable[[Any], None] | None = None) -> ParetoOutcome:
    """A front of plans trading the objectives off, and the one `params.pick` chooses."""
    from allocator.pareto import parse_objectives, pick
    from allocator.problem import compile_snapshot
    from allocator.solvers.base import Budget
    from allocator.solvers.exact_front import exact_front
    from allocator.solvers.nsga2 import Nsga2Config, nsga2_front

    try:
        names = parse_objectives(list(params.objectives))
    except ValueError as e:
        raise InvalidInputError(str(e), field="objectives") from None
    problem = compile_snapshot(snapshot)
    budget = Budget(budget_s(params.time_limit, snapshot), workers=snapshot.options.workers)
    seed = snapshot.options.seed if params.seed is None else params.seed
    try:
        if params.exact:
            front = exact_front(problem, names, budget=budget, seed=seed)
        else:
            kw: dict[str, Any] = {} if progress is None else {"progress": progress}
            front = nsga2_front(problem, names, budget=budget, seed=seed,
                                config=Nsga2Config(generations=params.generations), **kw)
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
    if not front.points:
        raise InvalidInputError(front.message or "no plan found", field="snapshot")
    try:
        chosen = pick(front, params.pick or "knee")
    except ValueError as e:
        raise InvalidInputError(str(e), field="pick") from None
    valid: list[bool] = []
    if params.check:
        from allocator.validate import validate

        valid = [not validate(snapshot, p.plan) for p in front.points]
    return ParetoOutcome(front, chosen.index, chosen.rule, chosen.detail, valid)


# -- bottlenecks ----------------------------------------------------------------------------

@dataclass(frozen=True)
class BottlenecksParams:
    plan: Plan | None = None
    solver: str | None = None
    time_limit: float | None = None
    seed: int | None = None


@dataclass
class BottlenecksOutcome:
    plan: Plan
    report: Any  # models.bottlenecks.BottleneckReport


def _non_finite(obj: Any, path: str) -> str | None:
    """Path of the first NaN or infinite number in a dumped model, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else path
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (p := _non_finite(v, f"{path}.{k}")) is not None:
                return p
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if (p := _non_finite(v, f"{path}.{i}")) is not None:
                return p
    return None


def check_plan_for(snapshot: Snapshot, plan: Plan, prefix: str = "plan") -> None:
    """A supplied plan: finite numbers, known ids, each task once, no violated constraint."""
    from allocator.validate import validate

    bad = _non_finite(plan.model_dump(mode="python"), prefix)
    if bad is not None:
        raise InvalidInputError("must be a finite number", field=bad)
    tasks = {t.id for t in snapshot.tasks}
    agents = {a.id for a in snapshot.agents}
    seen: set[str] = set()
    for i, a in enumerate(plan.assignments):
        where = f"{prefix}.assignments.{i}"
        if a.task not in tasks:
            raise InvalidInputError(f"unknown task {a.task!r}", field=f"{where}.task")
        if a.agent not in agents:
            raise InvalidInputError(f"unknown agent {a.agent!r}", field=f"{where}.agent")
        if a.task in seen:
            raise InvalidInputError(f"task {a.task!r} assigned twice", field=f"{where}.task")
        seen.add(a.task)
    for i, u in enumerate(plan.unassigned):
        if u.task not in tasks or u.task in seen:
            raise InvalidInputError(f"task {u.task!r} unknown or also assigned",
                                    field=f"{prefix}.unassigned.{i}.task")
        seen.add(u.task)
    violations = validate(snapshot, plan)
    if violations:
        v = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise InvalidInputError(f"the plan violates {v.kind}: {v.message}{more}", field=prefix)


def bottlenecks_uc(snapshot: Snapshot, params: BottlenecksParams) -> BottlenecksOutcome:
    """What limits a plan (supplied and checked, or solved now) and the value of capacity."""
    from allocator.bottlenecks import bottleneck_report
    from allocator.engine import solve
    from allocator.problem import compile_snapshot

    limit = budget_s(params.time_limit, snapshot)
    if params.plan is not None:
        check_plan_for(snapshot, params.plan)
        plan = params.plan
    else:
        plan = solve(snapshot, solver=params.solver, time_limit=limit, seed=params.seed)
    report = bottleneck_report(compile_snapshot(snapshot), plan, time_limit=limit)
    return BottlenecksOutcome(plan, report)


# -- simulate -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulateParams:
    #: WorkloadConfig fields (`flaky` as "K:P:UNTIL"), or a built WorkloadConfig.
    workload: Mapping[str, Any] | Any = field(default_factory=dict)
    policies: Sequence[str] = ("fifo", "jsq", "edf")
    seed: int = 0
    time_limit: float | None = None
    #: allocator.online.options.OnlineOptions fields (tenant/class weights, aging, ...),
    #: or an OnlineOptions.
    options: Mapping[str, Any] | Any = field(default_factory=dict)
    max_retries: int = 2
    #: Solve interval of the coordinator (0: off); `intervals` adds more (one run each).
    coordinate_every: float = 0.0
    intervals: Sequence[float] = ()
    #: online | batch | coordinated (allocator.online.scenarios); empty: coordinated
    #: when an interval is given, else online.
    modes: Sequence[str] = ()
    #: Policies under the plans in coordinated mode (default: `policies`).
    plan_policies: Sequence[str] = ()
    #: allocator.online.scenarios.CoordinatorSettings, or its fields (solver, budget, ...).
    coordinator: Mapping[str, Any] | Any = field(default_factory=dict)
    #: Weights of weighted_objective and of the coordinator's solves (models.Weights or
    #: its fields); None: allocator.online.scenarios.FLEET_WEIGHTS.
    weights: Mapping[str, Any] | Any = None
    #: Central dispatcher time per decision (0: free).
    decision_latency: float = 0.0
    #: Keep the event history of this task id (the outcome's `histories`).
    history: str | None = None
    #: Cap on tasks x policies (a service's guard); None: no cap (the CLI).
    max_task_policies: int | None = MAX_SIM_TASK_POLICIES


@dataclass
class SimulateOutcome:
    rows: list[dict[str, Any]]
    complete: bool = True
    #: policy -> event history of `SimulateParams.history` ("" when the id is unknown).
    histories: dict[str, str] = field(default_factory=dict)


def check_policies(policies: Sequence[str], prefix: str = "policies") -> list[str]:
    """Known, distinct policy names (a duplicate would only repeat the same run)."""
    from allocator.online.policies import policy_names

    known = policy_names()
    seen: set[str] = set()
    for i, name in enumerate(policies):
        if name not in known:
            raise InvalidInputError(f"unknown policy {name!r}; known: {', '.join(known)}",
                                    field=f"{prefix}.{i}")
        if name in seen:
            raise InvalidInputError(f"policy {name!r} listed twice", field=f"{prefix}.{i}")
        seen.add(name)
    return list(policies)


def simulate_uc(params: SimulateParams, *,
                clock: Callable[[], float] = time.monotonic) -> SimulateOutcome:
    """Simulate policies one after the other on one generated workload.

    With a time limit, no policy starts after it has passed: the rows of the
    policies not run say so (`skipped: "time_limit"`) and `complete` is False.
    A policy that is running when the limit passes is stopped by the caller
    (the API worker's alarm), not here.
    """
    from allocator.online.coordinator import Coordinator
    from allocator.online.options import OnlineOptions, parse_flaky
    from allocator.online.scenarios import (
        FLEET_WEIGHTS,
        MODES,
        CoordinatorSettings,
        batch_policy,
    )
    from allocator.online.simulator import Simulator
    from allocator.online.workload import WorkloadConfig, generate

    policies = check_policies(params.policies)
    planned = (check_policies(params.plan_policies, "plan_policies") if params.plan_policies
               else policies)
    for x in (params.coordinate_every, *params.intervals):
        if not (isinstance(x, int | float) and math.isfinite(x) and x >= 0):
            raise InvalidInputError(f"a solve interval must be a finite number >= 0 (0: off), "
                                    f"got {x!r}", field="coordinate_every")
    intervals = [x for x in (params.coordinate_every, *params.intervals) if x > 0]
    modes = list(params.modes) or (["coordinated"] if intervals else ["online"])
    for i, m in enumerate(modes):
        if m not in MODES:
            raise InvalidInputError(f"unknown mode {m!r}; known: {', '.join(MODES)}",
                                    field=f"modes.{i}")
    try:
        base = (params.coordinator if isinstance(params.coordinator, CoordinatorSettings)
                else CoordinatorSettings(**params.coordinator))
        weights = (FLEET_WEIGHTS if params.weights is None else params.weights
                   if isinstance(params.weights, Weights) else Weights(**params.weights))
    except TypeError as e:
        raise InvalidInputError(str(e), field="coordinator") from None
    if not intervals and any(m != "online" for m in modes):
        intervals = [base.every]
    runs: list[tuple[str, str | None, float | None]] = []
    for m in modes:
        if m == "online":
            runs += [(m, name, None) for name in policies]
        elif m == "batch":
            runs += [(m, None, t) for t in intervals]
        else:
            runs += [(m, name, t) for t in intervals for name in planned]
    if isinstance(params.options, OnlineOptions):
        opts = params.options
    else:
        try:
            opts = OnlineOptions(**params.options)
        except TypeError as e:
            raise InvalidInputError(str(e), field="options") from None
    if isinstance(params.workload, WorkloadConfig):
        cfg = params.workload
    else:
        wl = dict(params.workload)
        flaky = wl.pop("flaky", None)
        if flaky:
            wl["flaky"], wl["flaky_p"], wl["flaky_until"] = parse_flaky(flaky)
        if opts.tenants:
            wl["tenants"] = len(opts.tenants)
        try:
            cfg = WorkloadConfig(**wl, seed=params.seed)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(str(e), field="workload") from None
    if cfg.flaky > cfg.agents:
        raise InvalidInputError(f"{cfg.flaky} flaky agents but only {cfg.agents} agents",
                                field="flaky")
    cap = params.max_task_policies
    if cap is not None and cfg.tasks * len(runs) > cap:
        raise InvalidInputError(
            f"{cfg.tasks} tasks x {len(runs)} runs is more simulation than one call "
            f"runs (at most {cap} task-policies)", field="policies")
    deadline = None if params.time_limit is None else clock() + params.time_limit
    out = SimulateOutcome([])
    for mode, pname, every in runs:
        pol = batch_policy() if pname is None else opts.policy(pname)
        name = ("batch" if pname is None
                else f"{pol.name}+plans" if every is not None else pol.name)
        head = {"policy": name, "mode": mode, "interval": every}
        if deadline is not None and clock() >= deadline:
            out.rows.append({**head, "skipped": "time_limit"})
            out.complete = False
            continue
        try:
            sim = Simulator(generate(cfg), pol, seed=params.seed,
                            max_retries=params.max_retries,
                            log=None if params.history else 0,
                            admission=opts.admission_config(),
                            decision_latency=params.decision_latency, weights=weights)
            if every is not None:
                c = CoordinatorSettings(**{**base.__dict__, "every": every})
                coordinated = mode == "coordinated"
                sim.coordinator = Coordinator(
                    sim.executor, every=every, imbalance=c.imbalance if coordinated else None,
                    queue_growth=c.queue_growth if coordinated else None,
                    min_interval=min(every, max(c.budget, every / 10)), solver=c.solver,
                    time_limit=c.budget, weights=weights, delay_factor=c.delay_factor,
                    pick=c.pick, seed=params.seed, deadline_margin=c.deadline_margin)
                sim.coordinate_every = c.check_every or min(every, max(c.budget, 0.5)) / 2
            res = sim.run()
        except TimeUp:
            out.rows.append({**head, "skipped": "time_limit"})
            out.complete = False
            deadline = clock()  # the remaining runs are skipped too
            continue
        row = {k: v for k, v in res.row.items()
               if isinstance(v, int | float | str | bool | list) or v is None}
        row.update(head)
        out.rows.append(row)
        if params.history:
            key = name if every is None else f"{name}@{every:g}"
            out.histories[key] = res.executor.history(params.history) or ""
    return out


# -- topology -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TopologyParams:
    #: Placement to analyse (checked first); None: the tasks' current agents.
    plan: Plan | None = None
    #: Machines added / removed / moved per what-if.
    k: int = 1
    #: Budget and seed of each what-if re-solve (and of the baseline re-solve).
    time_limit: float = 2.0
    seed: int = 0
    solver: str | None = None
    what_if: bool = True


def topology_uc(snapshot: Snapshot, params: TopologyParams) -> Any:
    """Per zone and neighbourhood load, hot / cold zones, LP shadow prices, binding
    rules and priced what-ifs (allocator.topology.TopologyReport)."""
    from allocator.topology import analyse_topology

    check_time_limit(params.time_limit)
    if params.plan is not None:
        check_plan_for(snapshot, params.plan)
    return analyse_topology(snapshot, params.plan, k=params.k, what_if=params.what_if,
                            time_limit=params.time_limit, seed=params.seed,
                            solver=params.solver)
