"""The solver protocol, the budget, the registry and the shared Plan builder.

A backend is a callable `solve(problem, *, budget, seed, warm) -> Plan` where
`budget` is the :class:`SolveContext` (budget, stop signal, on-improvement
callback, determinism). It never mutates its input and never prints; it
hands incumbents over with `budget.improve(...)` as it finds them. Backends register by name; an
unknown name raises UnknownSolverError listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from allocator.constraints import enforce
from allocator.errors import UnknownSolverError
from allocator.explain import capacity_used, explain_many
from allocator.metrics import plan_metrics
from allocator.objectives import (
    Schedule,
    build_schedule,
    evaluate,
    relative_gap,
    term_weights,
    terms_of,
)
from allocator.problem import Problem, capacity_limit
from allocator.solvers.context import SolveContext
from models import (
    Assignment,
    AssignmentTable,
    Migration,
    ObjectiveTerm,
    Plan,
    PlanStatus,
    SolutionPoint,
    Unassigned,
    UnassignedReason,
)

#: The budget of a solve *is* its context (the name most backends use for it):
#: time limit, workers, clock, seed, stop signal, on-improvement callback and
#: determinism flag; see allocator/solvers/context.py.
Budget = SolveContext


@dataclass
class WarmStart:
    """A known assignment to start from (previous plan, or a faster backend's result)."""

    agent_of: np.ndarray
    order_key: np.ndarray | None = None


class Solver(Protocol):
    def __call__(
        self, problem: Problem, *, budget: Budget, seed: int, warm: WarmStart | None = None
    ) -> Plan: ...


_REGISTRY: dict[str, Solver] = {}
_DESCRIPTIONS: dict[str, str] = {}
#: Backends whose module (and heavy dependency) loads on first use, by name.
_LAZY: dict[str, str] = {
    "auto": "allocator.solvers.auto",
    "balance": "allocator.solvers.balance",
    "greedy": "allocator.solvers.greedy",
    "milp": "allocator.solvers.milp",  # highspy / pulp
    "cpsat": "allocator.solvers.cpsat",  # ortools
    "nsga2": "allocator.solvers.nsga2",  # pymoo
    "topology": "allocator.solvers.topology",  # allocator.roadef (ortools / highspy)
}


def register(name: str, description: str) -> Callable[[Solver], Solver]:
    def deco(fn: Solver) -> Solver:
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return deco


def _load(module: str) -> None:
    import importlib

    importlib.import_module(module)


def _lazy_module(name: str) -> str | None:
    """The module that registers ``name`` (``milp:highs`` is registered by milp's)."""
    return _LAZY.get(name) or _LAZY.get(name.split(":", 1)[0])


def get_solver(name: str) -> Solver:
    module = None if name in _REGISTRY else _lazy_module(name)
    if module is not None:
        _load(module)
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(set(_REGISTRY) | set(_LAZY)))
        raise UnknownSolverError(f"unknown solver {name!r}; known: {known}",
                                 field="options.solver") from None


def solver_available(name: str) -> bool:
    """Whether a backend of this name is registered or loads lazily (base names import nothing)."""
    if name in _REGISTRY or name in _LAZY:
        return True
    module = _lazy_module(name)
    if module is None:
        return False
    _load(module)  # a variant name (milp:highs): only its module knows
    return name in _REGISTRY


def solver_names() -> dict[str, str]:
    """Registered solver names with a one-line description each (loads lazy backends)."""
    for module in set(_LAZY.values()):
        _load(module)
    return dict(sorted(_DESCRIPTIONS.items()))


def use_scheduling_model(problem: Problem) -> bool:
    """Whether start times change the objective or feasibility (:attr:`Problem.needs_schedule`)."""
    return problem.needs_schedule


def assignment_table(problem: Problem, order: np.ndarray, agent_of: np.ndarray,
                     schedule: Schedule) -> AssignmentTable:
    """The plan's assignments for tasks `order` (in that order) as columns.

    The id lists are the problem's own (shared, not copied): a million rows
    take 32 MB instead of ~270 MB of Assignment objects.
    """
    return AssignmentTable(task_ids=problem.task_ids, agent_ids=problem.agent_ids,
                           task=np.asarray(order, dtype=np.int64),
                           agent=np.asarray(agent_of[order], dtype=np.int64),
                           start=schedule.start[order], end=schedule.end[order])


def assignment_rows(problem: Problem, order: np.ndarray, agent_of: np.ndarray,
                    schedule: Schedule) -> list[Assignment]:
    """The plan's Assignment objects for tasks `order` (in that order), built column-wise.

    Ids and times are gathered with numpy and turned into Python objects in
    bulk; a million assignments take well under a second and ~270 bytes each.
    """
    if order.size == 0:
        return []
    return list(assignment_table(problem, order, agent_of, schedule).rows())


def make_plan(
    problem: Problem,
    agent_of: np.ndarray,
    *,
    solver: str,
    status: PlanStatus,
    budget: Budget,
    order_key: np.ndarray | None = None,
    bound: float | None = None,
    solutions: list[SolutionPoint] | None = None,
    message: str | None = None,
    unreached: np.ndarray | None = None,
) -> Plan:
    """Turn an assignment into a full Plan: schedule, objective terms, metrics, reasons.

    `unreached` ([n] bool) marks tasks the backend never looked at before its
    time ran out: they are unassigned with `solver_limit` without running the
    explainer on each.

    The assignment first goes through :func:`allocator.constraints.enforce`,
    so no plan breaks a hard rule whatever the backend; a backend whose
    assignment needed it loses any optimality claim and the message says so.
    """
    agent_of = np.asarray(agent_of, dtype=np.int64)
    kept = enforce(problem, agent_of, order_key)
    if not np.array_equal(kept, agent_of):
        changed = int((kept != agent_of).sum())
        note = f"{changed} task(s) moved or left out to keep the hard constraints"
        message = f"{message}; {note}" if message else note
        if status == PlanStatus.OPTIMAL:
            status = PlanStatus.FEASIBLE
        agent_of = kept
    schedule = build_schedule(problem, agent_of, order_key)
    values = evaluate(problem, schedule)
    weights = term_weights(problem)
    breakdown = [
        ObjectiveTerm(name=k, value=values[k], weight=weights[k], weighted=weights[k] * values[k])
        for k in terms_of(problem)
    ]
    objective = float(sum(t.weighted for t in breakdown))
    gap = None
    if bound is not None:  # every term is >= 0: so is the bound (a solver's rounding aside)
        bound = max(bound, 0.0)
    if status == PlanStatus.OPTIMAL:
        bound, gap = objective if bound is None else min(bound, objective), 0.0
    if bound is not None and gap is None:
        bound = min(bound, objective)
        gap = relative_gap(objective, bound)

    order = np.flatnonzero(agent_of >= 0)
    order = order[np.lexsort((schedule.start[order], agent_of[order]))]
    table = assignment_table(problem, order, agent_of, schedule)
    ids, aids = problem.task_ids, problem.agent_ids
    left = np.flatnonzero(agent_of < 0)
    cut = unreached[left] if unreached is not None else np.zeros(left.size, dtype=bool)
    told = iter(explain_many(problem, left[~cut], agent_of))
    unassigned = [
        Unassigned(task=ids[j], code=UnassignedReason.SOLVER_LIMIT,
                   reason="the time limit ended before the solver reached this task")
        if c else next(told) for j, c in zip(left.tolist(), cut.tolist(), strict=True)]
    migrations = [
        Migration(task=ids[j], source=aids[problem.current[j]], target=aids[agent_of[j]],
                  cost=float(problem.pair_migration(agent_of[j], j)))
        for j in np.flatnonzero(
            (problem.current >= 0) & (agent_of >= 0) & (agent_of != problem.current)
        )
    ]
    plan = Plan.from_table(
        table,
        status=status,
        solver=solver,
        unassigned=unassigned,
        migrations=migrations,
        objective=objective,
        breakdown=breakdown,
        bound=bound,
        gap=gap,
        metrics=plan_metrics(problem, schedule),
        wall_time_s=budget.elapsed(),
        solutions=solutions or [],
        message=message,
    )
    # Copies of the plan share its table: remember it with the array it came from.
    budget.last_plan = (table, agent_of)
    return plan


def plan_objective(problem: Problem, agent_of: np.ndarray,
                   order_key: np.ndarray | None = None) -> float:
    """Weighted objective of an assignment, exactly as make_plan reports it."""
    schedule = build_schedule(problem, np.asarray(agent_of, dtype=np.int64), order_key)
    values = evaluate(problem, schedule)
    w = term_weights(problem)
    return float(sum(w[k] * values[k] for k in terms_of(problem)))


#: Most (task, agent) tries of a fill pass: each is a full rule check and objective.
FILL_MAX_TRIES = 2_000
#: Heuristics end with a fill pass up to this many (agent, task) pairs.
FILL_MAX_PAIRS = 20_000


def fill_left_out(problem: Problem, agent_of: np.ndarray, order_key: np.ndarray | None = None,
                  *, stop: Callable[[], bool] | None = None) -> np.ndarray:
    """`agent_of` with the hard rules enforced, then every task left out placed where the
    whole plan still keeps every hard rule and the objective drops (the best such agent,
    dearest penalty first; agents without room for it are not tried). A heuristic's last
    step: a task its order left out often fits once the plan is whole. At most
    FILL_MAX_TRIES tries, and none once `stop` says so."""
    a = enforce(problem, agent_of, order_key)
    left = np.flatnonzero(a < 0)
    if left.size == 0:
        return a
    best = plan_objective(problem, a, order_key)
    room = problem.capacity - capacity_used(problem, a)
    tries = 0
    for j in left[np.argsort(-problem.unassigned_penalty[left], kind="stable")].tolist():
        cands = np.flatnonzero(problem.col_eligible(j))
        need = problem.pair_demand(cands, np.full(cands.size, j))
        cands = cands[np.all(need <= capacity_limit(room[cands]), axis=1)]
        pick: tuple[float, np.ndarray, int] | None = None
        for i in cands.tolist():
            if tries >= FILL_MAX_TRIES or (stop is not None and stop()):
                break
            tries += 1
            b = a.copy()
            b[j] = i
            if not np.array_equal(enforce(problem, b, order_key), b):
                continue
            value = plan_objective(problem, b, order_key)
            if value < best and (pick is None or value < pick[0]):
                pick = (value, b, i)
        if pick is not None:
            best, a = pick[0], pick[1]
            room[pick[2]] -= problem.pair_demand(np.array([pick[2]]), np.array([j]))[0]
    return a


def assignment_from_plan(problem: Problem, plan: Plan) -> WarmStart:
    """Read a (previous) plan back as arrays; tasks or agents no longer present are ignored."""
    agent_of = np.full(problem.n, -1, dtype=np.int64)
    order = np.full(problem.n, np.inf)
    for a in plan.assignments:
        j = problem.task_index.get(a.task)
        i = problem.agent_index.get(a.agent)
        if j is not None and i is not None:
            agent_of[j] = i
            order[j] = a.start
    return WarmStart(agent_of=agent_of, order_key=order)


def no_solution_plan(problem: Problem, *, status: PlanStatus, solver: str, budget: Budget,
                     message: str) -> Plan:
    """A plan for a run that found nothing: every task accounted for as unassigned."""
    return Plan(
        status=status,
        solver=solver,
        unassigned=[Unassigned(task=t, code=UnassignedReason.SOLVER_LIMIT, reason=message)
                    for t in problem.task_ids],
        wall_time_s=budget.elapsed(),
        message=message,
    )
