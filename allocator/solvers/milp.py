"""MILP backend: the assignment model through HiGHS (default) or any PuLP solver.

* ``milp`` / ``milp:highs`` — HiGHS through highspy, the model passed
  column-wise straight from the compiled numpy arrays
  (:func:`allocator.solvers.linear.build_highs`): 128k columns in tens of
  milliseconds. The warm start (or the greedy plan) is set as the incumbent.
* ``milp:cbc``, ``milp:glpk``, ``milp:<pulp solver name>`` — the same model
  written with PuLP and solved by that solver (CBC bundled with PuLP).

Status is mapped honestly: ``optimal`` only when the solver proved it (HiGHS
with a zero relative gap tolerance; PuLP's *solution* status, since PuLP
reports "Optimal" for a time-limited CBC run that merely found something);
a run that ends with no incumbent returns a ``timeout`` plan with every task
unassigned, never the LP value. Every solution is re-checked against the
model before it becomes a plan.

Snapshots whose objective depends on start times (deadlines with tardiness,
release dates with makespan, multi-lane agents with makespan) need the
scheduling model, which this backend does not have: they are delegated to
`cpsat` and the plan's message says so.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from allocator.bounds import HIGHS_LP_S_PER_NNZ, best_bound, lp_bound
from allocator.constraints import enforce
from allocator.problem import Problem
from allocator.solvers.base import Budget, WarmStart, make_plan, no_solution_plan, register
from allocator.solvers.greedy import greedy_assign
from allocator.solvers.linear import (
    LinearModel,
    build_highs,
    build_linear,
    is_linear,
    read_assignment,
    run_highs,
    set_start,
)
from models import Plan, PlanStatus

#: PuLP solver class names by the short names users type after ``milp:``.
PULP_ALIASES = {"cbc": "PULP_CBC_CMD", "glpk": "GLPK_CMD", "coin": "COIN_CMD",
                "scip": "SCIP_CMD", "pulp-highs": "HiGHS", "highs-cmd": "HiGHS_CMD"}


_REPAIRED = " (its solution broke a hard rule within the solver's tolerance: repaired)"

#: Seconds a HiGHS MIP spends per model nonzero where it does not look at its
#: time limit (presolve, the first node's setup, the teardown after a cut):
#: 300 x 3000 (689k columns, 2.5M nonzeros) returned after 15.9 s on a 7 s limit
#: and 200 x 5000 (777k, 2.8M) after 12.4 s on 7.5 s (idle 2-core machine,
#: 2026-12-03). That much of the budget is kept out of HiGHS's limit; a model
#: whose estimate exceeds MIP_MAX_SHARE of the time left is not run at all.
HIGHS_MIP_S_PER_NNZ = 3e-6
MIP_MAX_SHARE = 0.7


def model_nonzeros(lm: LinearModel) -> int:
    """Nonzeros of the MILP HiGHS would get: assignment, capacity and load rows."""
    return 2 * lm.P + int(np.count_nonzero(lm.a))


def within_rules(lm: LinearModel, agent_of: np.ndarray,
                 start: np.ndarray | None) -> np.ndarray | None:
    """A solver's solution brought within the model's rules, or the start if that is better.

    MIP solvers accept a row or an integer within their tolerance (HiGHS 1e-6):
    a capacity 1e-7 short of its tasks' demand held them all, which the model
    check (the shared 1e-9 relative slack) refuses. Rather than no plan, the
    shared repair leaves out what does not fit. None if even that fails.
    """
    kept = enforce(lm.problem, agent_of)
    best = kept if lm.feasible(kept) else None
    if start is not None and lm.feasible(start) and (
            best is None or lm.objective(start) < lm.objective(best)):
        best = np.asarray(start, dtype=np.int64)
    return best


class HighsResult(NamedTuple):
    """Outcome of a full HiGHS MILP run (a typed tuple: unpacks as before)."""

    agent_of: np.ndarray | None
    status: PlanStatus
    dual: float | None
    message: str


def solve_highs_arrays(
    lm: LinearModel, *, time_limit: float, seed: int, start: np.ndarray | None,
    ctx: Budget | None = None,
) -> HighsResult:
    """Full MILP with HiGHS.

    With `ctx`, every improving solution is handed over as it is found, and a
    stop requested on the context cancels the run (HiGHS then returns its
    incumbent); the interrupt callbacks that needs are armed only for
    solves a caller can stop (`ctx.stoppable`).
    """
    import highspy

    hm = build_highs(lm)
    h = hm.highs
    h.setOptionValue("time_limit", float(max(time_limit, 0.01)))  # type: ignore[attr-defined]
    h.setOptionValue("random_seed", int(seed) % 2_147_483_647)  # type: ignore[attr-defined]
    h.setOptionValue("mip_rel_gap", 0.0)  # type: ignore[attr-defined]
    if start is not None:
        set_start(lm, hm, start)
    if ctx is not None:
        def on_improve(e) -> None:  # type: ignore[no-untyped-def]
            try:
                cand = read_assignment(lm, hm, np.asarray(e.data_out.mip_solution),
                                       np.full(lm.n, -1, dtype=np.int64))
                if lm.feasible(cand):
                    ctx.improve(cand, source="milp", objective=lm.objective(cand))
            except Exception:  # a callback must never take the solver down
                pass
            if ctx.stopped():
                e.interrupt()

        h.cbMipImprovingSolution.subscribe(on_improve)  # type: ignore[attr-defined]
    run_highs(h, ctx)
    ms = h.getModelStatus()  # type: ignore[attr-defined]
    info = h.getInfo()  # type: ignore[attr-defined]
    dual = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
    msg = f"highs {h.modelStatusToString(ms)} cols={hm.n_cols}"  # type: ignore[attr-defined]
    has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
    if not has_sol:
        if ms == highspy.HighsModelStatus.kInfeasible:
            return HighsResult(None, PlanStatus.INFEASIBLE, None, msg)
        return HighsResult(None, PlanStatus.TIMEOUT, dual, msg + " (no incumbent)")
    col = np.asarray(h.getSolution().col_value)  # type: ignore[attr-defined]
    agent_of = read_assignment(lm, hm, col, np.full(lm.n, -1, dtype=np.int64))
    if not lm.feasible(agent_of):
        kept = within_rules(lm, agent_of, start)
        if kept is None:
            return HighsResult(None, PlanStatus.ERROR, dual,
                               msg + " (solution failed the model check)")
        return HighsResult(kept, PlanStatus.FEASIBLE, dual, msg + _REPAIRED)
    status = PlanStatus.OPTIMAL if ms == highspy.HighsModelStatus.kOptimal else (
        PlanStatus.FEASIBLE)
    return HighsResult(agent_of, status, dual, msg)


def solve_pulp(
    lm: LinearModel, solver_name: str, *, time_limit: float, start: np.ndarray | None,
    seed: int = 0,
) -> tuple[np.ndarray | None, PlanStatus, str]:
    """The same model through PuLP; status from PuLP's *solution* status."""
    import pulp

    cls = PULP_ALIASES.get(solver_name.lower(), solver_name)
    try:
        kwargs = {"msg": False, "timeLimit": max(1, round(time_limit))}
        try:
            # Only some PuLP solvers take a warm start (CBC, HiGHS); GLPK refuses it.
            solver = pulp.getSolver(cls, **kwargs, **({"warmStart": True} if start is not None
                                                     else {}))
        except TypeError:
            solver = pulp.getSolver(cls, **kwargs)
    except Exception as e:  # PuLP raises PulpSolverError / KeyError for unknown names
        from allocator.errors import UnknownSolverError

        raise UnknownSolverError(
            f"PuLP solver {solver_name!r} not available ({e}); available: "
            f"{', '.join(pulp.listSolvers(onlyAvailable=True))}", field="options.solver",
        ) from None
    if not solver.available():
        from allocator.errors import UnknownSolverError

        raise UnknownSolverError(
            f"PuLP solver {cls!r} is not installed; available: "
            f"{', '.join(pulp.listSolvers(onlyAvailable=True))}", field="options.solver")

    prob = pulp.LpProblem("allocation", pulp.LpMinimize)
    x = [pulp.LpVariable(f"x{k}", cat="Binary") for k in range(lm.P)]
    u = [pulp.LpVariable(f"u{j}", cat="Binary") for j in range(lm.n)]
    obj = pulp.lpSum(float(c) * v for c, v in zip(lm.c, x, strict=True) if c)
    obj += pulp.lpSum(float(p) * v for p, v in zip(lm.pen, u, strict=True) if p)
    by_task: list[list[int]] = [[] for _ in range(lm.n)]
    by_agent: list[list[int]] = [[] for _ in range(lm.m)]
    for k in range(lm.P):
        by_task[int(lm.J[k])].append(k)
        by_agent[int(lm.I[k])].append(k)
    for j in range(lm.n):
        prob += pulp.lpSum(x[k] for k in by_task[j]) + u[j] == 1, f"assign_{j}"
    for r in np.flatnonzero(lm.binding):
        for i in range(lm.m):
            ks = [k for k in by_agent[i] if lm.a[k, r] > 0]
            if ks and lm.a[ks, r].sum() > lm.cap[i, r]:
                prob += (pulp.lpSum(float(lm.a[k, r]) * x[k] for k in ks)
                         <= float(lm.cap[i, r]), f"cap_{i}_{r}")
    if lm.w_mk > 0:
        mk = pulp.LpVariable("makespan", lowBound=0)
        obj += lm.w_mk * mk
        for i in range(lm.m):
            prob += pulp.lpSum(float(lm.dur[k]) * x[k] for k in by_agent[i]) <= mk
    if lm.w_imb > 0 and lm.up.any():
        lmax = pulp.LpVariable("load_max", lowBound=0)
        lmin = pulp.LpVariable("load_min", lowBound=0)
        obj += lm.w_imb * lmax - lm.w_imb * lmin
        for i in np.flatnonzero(lm.up).tolist():
            load = pulp.lpSum(float(lm.dur[k]) * x[k] for k in by_agent[i])
            prob += load <= lmax
            prob += load >= lmin
    if lm.max_migrations is not None:
        prob += pulp.lpSum(x[k] for k in np.flatnonzero(lm.moved)) <= lm.max_migrations
    prob += obj
    if start is not None:
        for k in range(lm.P):
            x[k].setInitialValue(int(start[lm.J[k]] == lm.I[k]))
        for j in range(lm.n):
            u[j].setInitialValue(int(start[j] < 0))
    prob.solve(solver)
    sol_status = prob.sol_status
    msg = f"pulp {cls}: status={pulp.LpStatus[prob.status]} " \
          f"solution={pulp.LpSolution.get(sol_status, sol_status)}"
    if sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        if sol_status == pulp.LpSolutionInfeasible:
            return None, PlanStatus.INFEASIBLE, msg
        return None, PlanStatus.TIMEOUT, msg + " (no incumbent)"
    xv = np.array([v.varValue or 0.0 for v in x])
    agent_of = lm.agent_of_x(xv)
    if not lm.feasible(agent_of):
        kept = within_rules(lm, agent_of, start)
        if kept is None:
            return None, PlanStatus.ERROR, msg + " (solution failed the model check)"
        return kept, PlanStatus.FEASIBLE, msg + _REPAIRED
    status = PlanStatus.OPTIMAL if sol_status == pulp.LpSolutionOptimal else PlanStatus.FEASIBLE
    return agent_of, status, msg


def _solve(problem: Problem, *, budget: Budget, seed: int, warm: WarmStart | None,
           backend: str) -> Plan:
    name = "milp" if backend == "highs" else f"milp:{backend}"
    if not is_linear(problem):
        from allocator.solvers.cpsat import solve_cpsat

        plan = solve_cpsat(problem, budget=budget, seed=seed, warm=warm)
        note = "start times matter (scheduling model): delegated to cpsat"
        return plan.model_copy(update={"solver": f"{name}->cpsat",
                                       "message": f"{note}; {plan.message or ''}".strip("; ")})
    # Static pairs (skills, lists) bound the model's pairs from above; far too many
    # for HiGHS to start in time and the model is not even built (15M pairs: 9 s).
    g_of, g_agents = problem.skill_groups
    static_pairs = int(g_agents.sum(axis=1)[g_of].sum()) if problem.n else 0
    rough = static_pairs * (2 + problem.n_resources) * HIGHS_MIP_S_PER_NNZ
    if rough > 2 * MIP_MAX_SHARE * budget.remaining():
        start = warm.agent_of if warm is not None else greedy_assign(problem)
        return make_plan(problem, start, solver=name, status=PlanStatus.FEASIBLE, budget=budget,
                         message=(f"not solved: the model (up to {static_pairs} pairs) needs "
                                  f"about {rough:.0f} s of the solver before it reads its "
                                  f"time limit, far more than the time left; the "
                                  f"{'warm start' if warm is not None else 'greedy plan'}"))
    lm = build_linear(problem)
    if lm.P == 0:  # no task can go anywhere (or there is none): leaving all out is optimal
        return make_plan(problem, np.full(problem.n, -1, dtype=np.int64), solver=name,
                         status=PlanStatus.OPTIMAL, budget=budget,
                         message="no eligible (task, agent) pair")
    start = warm.agent_of if warm is not None else greedy_assign(problem)
    if not lm.feasible(start):
        start = greedy_assign(problem)
    nnz = model_nonzeros(lm)
    # The LP bound is cheap next to the MILP; its time comes out of the budget.
    lp_share = max(0.05, 0.2 * budget.remaining())
    lb = (lp_bound(problem, lm, time_limit=lp_share)
          if nnz * HIGHS_LP_S_PER_NNZ <= lp_share else None)
    left, blind = budget.remaining(), nnz * HIGHS_MIP_S_PER_NNZ
    if blind > MIP_MAX_SHARE * left:
        return make_plan(problem, start, solver=name, status=PlanStatus.FEASIBLE,
                         budget=budget, bound=lb,
                         message=(f"not solved: the model ({lm.P} pairs, {nnz} nonzeros) "
                                  f"needs about {blind:.1f} s of the solver before it reads "
                                  f"its time limit, more than the {left:.1f} s left; the "
                                  f"{'warm start' if warm is not None else 'greedy plan'}"))
    if backend == "highs":
        agent_of, status, dual, msg = solve_highs_arrays(
            lm, time_limit=left - blind, seed=seed, start=start, ctx=budget)
    else:
        agent_of, status, msg = solve_pulp(lm, backend, time_limit=left - blind,
                                           start=start, seed=seed)
        dual = None
    bound = best_bound(lb, dual)
    if agent_of is None:
        return no_solution_plan(problem, status=status, solver=name, budget=budget,
                                message=msg)
    return make_plan(problem, agent_of, solver=name, status=status, budget=budget,
                     bound=bound, message=msg)


@register("milp", "MILP assignment model with HiGHS (highspy, built from arrays)")
def solve_milp(problem: Problem, *, budget: Budget, seed: int = 0,
               warm: WarmStart | None = None) -> Plan:
    return _solve(problem, budget=budget, seed=seed, warm=warm, backend="highs")


def _register_pulp(alias: str, cls: str) -> None:
    def fn(problem: Problem, *, budget: Budget, seed: int = 0,
           warm: WarmStart | None = None) -> Plan:
        return _solve(problem, budget=budget, seed=seed, warm=warm, backend=alias)

    register(f"milp:{alias}", f"MILP assignment model through PuLP's {cls}")(fn)


register("milp:highs", "same as milp (HiGHS through highspy)")(solve_milp)
for _alias, _cls in PULP_ALIASES.items():
    _register_pulp(_alias, _cls)
