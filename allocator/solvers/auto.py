"""`auto`: pick a backend by size and structure, and never come back empty-handed.

Rules (documented in docs/solvers.md):

* Greedy first, always: it is the fallback and the warm start.
* CP-SAT next when the model is small enough to be worth it: at most
  ``CPSAT_MAX_PAIRS`` eligible (task, agent) pairs for the assignment model,
  ``CPSAT_MAX_SCHED_PAIRS`` when the scheduling model (intervals) is needed.
* The better of the two by the shared objective is returned.
"""

from __future__ import annotations

from allocator.problem import Problem
from allocator.solvers.base import Budget, WarmStart, make_plan, register
from allocator.solvers.cpsat import solve_cpsat_arrays, use_scheduling_model
from allocator.solvers.greedy import construct
from models import Plan, PlanStatus

#: Beyond this many eligible pairs the CP-SAT assignment model costs more to
#: build (seconds) than it returns within typical budgets.
CPSAT_MAX_PAIRS = 400_000
#: Optional intervals are far heavier than booleans.
CPSAT_MAX_SCHED_PAIRS = 30_000


@register("auto", "greedy, then CP-SAT when the model is small enough; best plan wins")
def solve_auto(
    problem: Problem, *, budget: Budget, seed: int = 0, warm: WarmStart | None = None
) -> Plan:
    base = warm.agent_of if warm is not None else construct(problem)
    base_order = warm.order_key if warm is not None else None
    pairs = int(problem.eligible.sum())
    sched = use_scheduling_model(problem)
    limit = CPSAT_MAX_SCHED_PAIRS if sched else CPSAT_MAX_PAIRS
    if pairs == 0 or pairs > limit or budget.remaining() < 0.05:
        why = "no eligible pairs" if pairs == 0 else f"{pairs} eligible pairs > {limit}"
        return make_plan(problem, base, solver="auto:greedy", status=PlanStatus.FEASIBLE,
                         budget=budget, order_key=base_order, message=why)
    agent_of, order_key, status, bound, points, msg = solve_cpsat_arrays(
        problem, budget=budget, seed=seed, warm=WarmStart(base, base_order),
        deterministic=problem.snapshot.options.workers == 1,
    )
    if agent_of is None:
        return make_plan(problem, base, solver="auto:greedy", status=PlanStatus.FEASIBLE,
                         budget=budget, order_key=base_order, message=msg)
    plan = make_plan(problem, agent_of, solver="auto:cpsat", status=status, budget=budget,
                     order_key=order_key, bound=bound, solutions=points, message=msg)
    fallback = make_plan(problem, base, solver="auto:greedy", status=PlanStatus.FEASIBLE,
                         budget=budget, order_key=base_order, bound=bound)
    if fallback.objective is not None and plan.objective is not None and (
        fallback.objective < plan.objective - 1e-9 * max(1.0, abs(plan.objective))
    ):
        return fallback
    return plan


