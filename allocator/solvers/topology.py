"""`topology`: the machine-reassignment search (allocator.roadef) as a snapshot backend.

For snapshots with zones, groups and topology rules (models.topology): the
snapshot becomes a RoadefInstance (allocator.roadef.convert, which refuses
what the model cannot express with the reason), the local search + LNS of
allocator.roadef.solver improves the current placement, and the result is
an ordinary Plan (migrations, terms, validated rules). A current placement
that breaks a hard rule is repaired first (allocator.roadef.repair); when it
cannot be, the plan keeps it and leaves out the tasks that break a rule, each
with its reason. The instance's cost
equals the plan's objective, so the search's incumbents go to the solve
context as they are (progress, stop and time limit are the engine's).
"""

from __future__ import annotations

from allocator.errors import InfeasibleError
from allocator.problem import Problem
from allocator.solvers.base import Budget, WarmStart, make_plan, register
from models import Plan, PlanStatus

#: LNS rounds of a deterministic solve (`deterministic=True` or one worker): bounded
#: by a count, not the clock, so a seed gives one plan; about a second on set A.
DETERMINISTIC_ITERATIONS = 50


@register("topology", "improve the current placement under zones, groups and topology rules "
                      "(local search + LNS, allocator.roadef); every task placed")
def solve_topology(problem: Problem, *, budget: Budget, seed: int,
                   warm: WarmStart | None = None) -> Plan:
    """Convert, search from the current placement, and build the plan.

    A warm start is not used: the current placement is the start and the
    reference of every move cost.
    """
    from allocator.roadef.convert import problem_to_instance
    from allocator.roadef.solver import solve_roadef

    inst = problem_to_instance(problem)
    rounds = DETERMINISTIC_ITERATIONS if budget.is_deterministic else None
    try:
        res = solve_roadef(inst, time_limit=max(budget.remaining(), 1e-3), seed=seed,
                           iterations=rounds, ctx=budget)
    except InfeasibleError as exc:
        # the current placement breaks a rule that the repair could not mend: the
        # plan keeps it, and make_plan leaves out the tasks that break a rule, each
        # with its reason
        return make_plan(problem, inst.initial, solver="topology",
                         status=PlanStatus.FEASIBLE, budget=budget,
                         message=f"current placement not repaired: {exc.message}")
    message = (f"cost {res.initial_cost} -> {res.cost.total} with {res.moved} move(s) "
               f"(load {res.cost.load}, balance {res.cost.balance}, process moves "
               f"{res.cost.process_move}, service moves {res.cost.service_move}, "
               f"machine moves {res.cost.machine_move})")
    return make_plan(problem, res.assignment, solver="topology", status=PlanStatus.FEASIBLE,
                     budget=budget, message=message)
