"""OR-Tools CP-SAT backend.

Two models over the same variables `x[i, j]` (task j on agent i, eligible
pairs only) and `u[j]` (task j unassigned):

* **assignment** (GAP-like): exactly one of x[:, j], u[j]; multi-resource
  capacity per agent; loads for makespan and imbalance; migrations.
* **scheduling**, used when releases or deadlines matter: in addition an
  optional interval per (i, j) with presence x[i, j], no-overlap per agent
  (cumulative when an agent runs several tasks at once), end times and
  weighted tardiness.

CP-SAT needs integers: times are scaled to integer ticks and costs to
integer coefficients; a plan's reported numbers are always recomputed exactly
by objectives.py from the solution, and `optimal` is claimed only when the
scaling was exact. The greedy plan (or a given warm start) is a full hint.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from ortools.sat.python import cp_model

from allocator.objectives import build_schedule
from allocator.problem import Problem
from allocator.solvers import cp_core
from allocator.solvers.base import (
    Budget,
    WarmStart,
    make_plan,
    no_solution_plan,
    register,
)
from allocator.solvers.cp_core import BuildOutOfTime, CpCore, build_core, int_scale
from allocator.solvers.greedy import construct, construct_with_order, warm_or_fresh
from models import Plan, PlanStatus, SolutionPoint

#: Largest tick count of the scheduling horizon; keeps CP-SAT's domains and
#: propagation cheap while giving sub-per-mille resolution on durations.
MAX_TICKS = 100_000

#: Largest integer objective coefficient after scaling. Unassigned penalties
#: (up to 1e6 by default) and per-tick tardiness weights (1e-5) share one
#: objective, so the range is wide; int64 sums still have ample headroom.
MAX_COEF = 1e12

#: Largest lcm of the up agents' concurrencies for which imbalance is modelled
#: exactly (in 1 / lcm ticks); beyond it the model rounds and claims no optimum.
MAX_LANES_LCM = 10_000


class _Collector(cp_model.CpSolverSolutionCallback):
    """Collects improving solutions (anytime curve) without printing."""

    def __init__(self, scale: float, budget: Budget, stop: threading.Event,
                 extract: Callable[[cp_model.CpSolverSolutionCallback],
                                   tuple[np.ndarray, np.ndarray | None]] | None = None):
        super().__init__()
        self.points: list[SolutionPoint] = []
        self._scale, self._budget, self._stop = scale, budget, stop
        self._extract = extract

    def on_solution_callback(self) -> None:
        self.points.append(
            SolutionPoint(
                time_s=self._budget.elapsed(),
                objective=self.objective_value / self._scale,
                bound=self.best_objective_bound / self._scale,
            )
        )
        if self._extract is not None and self._budget.on_improve is not None:
            # Someone listens: hand the incumbent over (objective recomputed
            # in floats by the context, not CP-SAT's scaled integers).
            agent_of, order_key = self._extract(self)
            self._budget.improve(agent_of, source="cpsat", order_key=order_key)
        if self._stop.is_set() or self._budget.stopped():
            self.stop_search()


class CpsatResult(NamedTuple):
    """Outcome of one CP-SAT run (a typed tuple: unpacks as before)."""

    agent_of: np.ndarray | None
    order_key: np.ndarray | None
    status: PlanStatus
    bound: float | None
    points: list[SolutionPoint]
    message: str


def solve_cpsat_arrays(
    problem: Problem,
    *,
    budget: Budget,
    seed: int,
    warm: WarmStart | None = None,
    scheduling: bool | None = None,
    stop: threading.Event | None = None,
    deterministic: bool = False,
) -> CpsatResult:
    """Build and solve; returns (agent_of, order_key, status, bound, points, message).

    The build is bounded by the budget (:func:`_build_deadline`): when it
    would leave too little to solve, no model is solved and the result is
    ``TIMEOUT`` with no assignment, its message saying why ("not solved").
    """
    sched = problem.needs_schedule if scheduling is None else scheduling
    kind = "scheduling" if sched else "assignment"
    rate = cp_core.BUILD_PAIRS_PER_S
    if not deterministic:
        # The static pairs (skills, lists: from the eligibility groups, no tasks x
        # agents array) bound the model from above. Far over what the time left
        # can build, nothing is built: counting the exact pairs alone takes a dense
        # [m, n] pass (300 x 20,000: 1.9 s of a 3 s limit, then 6 s to give up).
        g_of, g_agents = problem.skill_groups
        static = int(g_agents.sum(axis=1)[g_of].sum()) if problem.n else 0
        if static > 2 * rate * max(budget.remaining() - _reserve(budget), 0.0):
            return CpsatResult(None, None, PlanStatus.TIMEOUT, None, [],
                               f"model={kind} vars<={static} not solved: building the "
                               f"model would take about {static / rate:.3g} s, more than "
                               f"the {budget.remaining():.3g} s left ({rate:.0f} pairs/s)")
    npairs = problem.eligible_pairs
    if deterministic and npairs > rate * (budget.remaining() - _reserve(budget)):
        # Same input, same answer: decide by size, not by the clock.
        return CpsatResult(None, None, PlanStatus.TIMEOUT, None, [],
                           f"model={kind} vars={npairs} not solved: building the model "
                           f"would take more than the {budget.remaining():.3g} s left "
                           f"(deterministic mode decides by size: "
                           f"{rate:.0f} pairs/s)")
    out_of_time = _build_deadline(budget)
    try:
        built = _build(problem, budget=budget, warm=warm, sched=sched,
                       out_of_time=None if deterministic else out_of_time)
    except BuildOutOfTime as cut:
        made = (f"{cut.built} of {cut.total} pair variables made" if cut.built < cut.total
                else "its pair variables made, not its rows")
        return CpsatResult(None, None, PlanStatus.TIMEOUT, None, [],
                           f"model={kind} vars={npairs} not solved: building the model "
                           f"took {budget.elapsed():.3g} s of the {budget.time_limit:g} s "
                           f"limit ({made}), too little was left to solve it")
    return _solve_built(problem, built, budget=budget, seed=seed, stop=stop,
                        deterministic=deterministic)


#: Share of the time limit the build leaves for CP-SAT and the plan: a build
#: still running when less than this is left stops (:class:`BuildOutOfTime`).
BUILD_RESERVE = 0.2


def _reserve(budget: Budget) -> float:
    return BUILD_RESERVE * budget.time_limit


def _build_deadline(budget: Budget) -> Callable[[], bool]:
    """True once less than ``BUILD_RESERVE`` of the time limit is left (or a stop)."""
    reserve = _reserve(budget)
    return lambda: budget.remaining() < reserve


class _Built(NamedTuple):
    """A built model and what reading its solution needs."""

    core: CpCore
    starts: dict[tuple[int, int], cp_model.IntVar]
    scale: float  # objective coefficients = weights x scale
    exact: bool  # every scaling exact
    sched: bool


def _build(problem: Problem, *, budget: Budget, warm: WarmStart | None, sched: bool,
           out_of_time: Callable[[], bool] | None) -> _Built:
    """The model with its objective and hint (raises BuildOutOfTime, see build_core)."""
    snap = problem.snapshot
    w = snap.weights
    m, n = problem.m, problem.n

    def check() -> None:
        if out_of_time is not None and out_of_time():
            raise BuildOutOfTime(len(core.x), len(core.x))  # every pair made, not the rest

    elig = problem.eligible
    # Variables, exactly-one, capacity, migrations and their cap: the shared core.
    core = build_core(problem, out_of_time=out_of_time)
    model, x, u, by_agent = core.model, core.x, core.u, core.by_agent
    pi, pj = core.pair_i, core.pair_j

    # Time ticks.
    dur = problem.duration
    finite_dur = dur[elig] if elig.any() else np.zeros(1)
    horizon = float(problem.release.max() - problem.now if n else 0.0) + float(
        np.where(elig, dur, 0).max(axis=0, initial=0.0).sum() if n else 0.0)
    horizon = max(horizon, 1e-9)
    tvals = np.concatenate([finite_dur, problem.release - problem.now,
                            np.where(np.isfinite(problem.deadline),
                                     problem.deadline - problem.now, 0.0)])
    # Limit on max|t| * factor equivalent to horizon * factor <= MAX_TICKS.
    tsc = int_scale(tvals, MAX_TICKS / horizon * (float(np.max(np.abs(tvals))) or 1.0))
    tick = tsc.factor
    H = math.ceil(horizon * tick) + 1
    need_loads = w.makespan > 0 or w.imbalance > 0
    d_int: dict[tuple[int, int], int] = {}
    if need_loads or sched:
        d_arr = np.round(dur[pi, pj] * tick).astype(np.int64)
        d_int = dict(zip(zip(pi.tolist(), pj.tolist(), strict=True), d_arr.tolist(),
                         strict=True))

    # The objective as (variable index, float weight) arrays, in the order the terms
    # were once summed (one Python sum over 400k terms took seconds).
    obj_idx: list[np.ndarray] = []
    obj_w: list[np.ndarray] = []

    def term(v: cp_model.IntVar, c: float) -> None:
        obj_idx.append(np.array([v.index], dtype=np.int64))
        obj_w.append(np.array([c], dtype=float))

    if w.cost:
        c = problem.cost[pi, pj] * w.cost
        obj_idx.append(core.x_index[c != 0])
        obj_w.append(c[c != 0])
    obj_idx.append(np.array([v.index for v in u], dtype=np.int64))
    obj_w.append(problem.unassigned_penalty.astype(float))
    check()

    loads: list[cp_model.LinearExprT | None] = [None] * m
    if need_loads:
        for i in range(m):
            if by_agent[i]:
                js = by_agent[i]
                loads[i] = cp_model.LinearExpr.weighted_sum([x[i, j] for j in js],
                                                            [d_int[i, j] for j in js])
        check()
    lanes_exact = True
    if w.imbalance > 0:
        up = np.flatnonzero(problem.up)
        # Busy time is load / k: in units of 1 / K tick (K the lanes' lcm) it is an
        # integer. With integer ticks, k * load_max >= load rounded 1 tick on 3
        # lanes up to 1, and the model's optimum (and bound) above the true one.
        K = math.lcm(*(int(problem.concurrency[i]) for i in up.tolist())) if up.size else 1
        lanes_exact = K <= MAX_LANES_LCM
        if not lanes_exact:
            K = 1
        lmax = model.new_int_var(0, H * max(1, m) * K, "load_max")
        lmin = model.new_int_var(0, H * max(1, m) * K, "load_min")
        for i in up.tolist():
            k = int(problem.concurrency[i])
            load_i = loads[i]
            li: cp_model.LinearExprT = load_i if load_i is not None else 0
            if lanes_exact:
                model.add(lmax >= (K // k) * li)
                model.add(lmin <= (K // k) * li)
            else:
                model.add(k * lmax >= li)
                model.add(k * lmin <= li)
        term(lmax, w.imbalance / (tick * K))
        term(lmin, -w.imbalance / (tick * K))

    if w.migrations and core.moved:
        mig = problem.migration_matrix
        cur = problem.current[pj]
        away = (cur >= 0) & (pi != cur)
        c = w.migrations * mig[pi, pj]
        keep = away & (c != 0)
        obj_idx.append(core.x_index[keep])
        obj_w.append(c[keep])

    starts: dict[tuple[int, int], cp_model.IntVar] = {}
    if sched:
        rel = np.round((problem.release - problem.now) * tick).astype(np.int64)
        # Durations are rounded to the nearest tick; with a lossy tick a deadline floored
        # instead put a task that ends exactly at its hard deadline a tick past it, and
        # the model left out a task that fits. Rounded the same way, the model may be a
        # tick optimistic: the plan's schedule is recomputed exactly and enforced.
        dl_ticks = (problem.deadline - problem.now) * tick
        dl = np.where(np.isfinite(problem.deadline),
                      np.floor(dl_ticks + 1e-6) if tsc.exact else np.round(dl_ticks),
                      H).astype(np.int64)
        ends = [model.new_int_var(0, H, f"end{j}") for j in range(n)]
        for i in range(m):
            ivs = []
            for j in by_agent[i]:
                lo = int(rel[j])
                hi = H - d_int[i, j]
                if problem.hard_deadline[j]:
                    hi = min(hi, int(dl[j]) - d_int[i, j])
                if hi < lo:  # rounding made it unreachable; keep consistent
                    model.add(x[i, j] == 0)
                    hi = lo
                s = model.new_int_var(lo, hi, f"s{i}_{j}")
                starts[i, j] = s
                ivs.append(model.new_optional_fixed_size_interval_var(
                    s, d_int[i, j], x[i, j], f"iv{i}_{j}"))
                model.add(ends[j] == s + d_int[i, j]).only_enforce_if(x[i, j])
            if not ivs:
                continue
            k = int(problem.concurrency[i])
            if k == 1:
                model.add_no_overlap(ivs)
            elif k < len(ivs):
                model.add_cumulative(ivs, [1] * len(ivs), k)
            check()
        if w.tardiness > 0:
            for j in range(n):
                if np.isfinite(problem.deadline[j]):
                    # A deadline before `now` (dl < 0): lateness reaches past the
                    # horizon, and a task left out is not late at all.
                    t = model.new_int_var(0, H + max(0, -int(dl[j])), f"tard{j}")
                    model.add(t >= ends[j] - int(dl[j])).only_enforce_if(~u[j])
                    term(t, w.tardiness * float(problem.tardiness_weight[j]) / tick)
        if w.makespan > 0:
            mk = model.new_int_var(0, H, "makespan")
            for j in range(n):
                model.add(mk >= ends[j])
            term(mk, w.makespan / tick)
    elif w.makespan > 0:
        mk = model.new_int_var(0, H * max(1, n), "makespan")
        for i in range(m):
            load_i = loads[i]
            if load_i is not None:
                model.add(int(problem.concurrency[i]) * mk >= load_i)
        term(mk, w.makespan / tick)

    idx = np.concatenate(obj_idx)
    wts = np.concatenate(obj_w)
    osc = int_scale(wts, MAX_COEF)
    ints = np.round(wts * osc.factor)
    keep = ints != 0
    # One entry per variable (cost and migration weigh the same x), as a sum would.
    var, where = np.unique(idx[keep], return_inverse=True)
    coef = np.zeros(var.size)
    np.add.at(coef, where, ints[keep])
    model.clear_objective()
    objective = model.proto.objective
    objective.vars.extend(var.tolist())
    objective.coeffs.extend(coef.astype(np.int64).tolist())
    objective.scaling_factor = 1.0
    check()

    # Hints: the warm start, else the greedy plan.
    hint = warm.agent_of if warm is not None else construct(problem)
    core.add_hint(hint)
    if sched and starts:
        sch = build_schedule(problem, hint, warm.order_key if warm is not None else None)
        for (i, j), s in starts.items():
            if hint[j] == i:
                model.add_hint(s, round((sch.start[j] - problem.now) * tick))
    check()
    exact = (core.exact and osc.exact and lanes_exact
             and (tsc.exact or not (sched or need_loads)))
    return _Built(core, starts, osc.factor, exact, sched)


def _solve_built(problem: Problem, built: _Built, *, budget: Budget, seed: int,
                 stop: threading.Event | None, deterministic: bool) -> CpsatResult:
    """Run CP-SAT on a built model and read its answer."""
    core, starts, sched = built.core, built.starts, built.sched
    model, x, n = core.model, core.x, problem.n
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.random_seed = int(seed)
    p.log_search_progress = False
    if deterministic:
        p.num_workers = 1
        p.max_deterministic_time = max(budget.remaining(), 0.01)
        p.max_time_in_seconds = max(budget.remaining() * 4, 0.05)
    else:
        p.num_workers = max(1, budget.workers)
        p.max_time_in_seconds = max(budget.remaining(), 0.01)
    def extract(cb: cp_model.CpSolverSolutionCallback) -> tuple[np.ndarray, np.ndarray | None]:
        a = np.full(n, -1, dtype=np.int64)
        for (i, j), v in x.items():
            if cb.boolean_value(v):
                a[j] = i
        key = None
        if sched:
            key = np.full(n, np.inf)
            for (i, j), st in starts.items():
                if a[j] == i:
                    key[j] = cb.value(st)
        return a, key

    collector = _Collector(built.scale, budget, stop or threading.Event(), extract)
    unhook = budget.on_stop(solver.stop_search)  # a stop reaches the search in C++ at once
    try:
        code = solver.solve(model, collector)
    finally:
        unhook()

    exact = built.exact
    msg = f"model={'scheduling' if sched else 'assignment'} vars={len(x)}"
    if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        agent_of = core.read(solver)
        order_key = None
        if sched:
            order_key = np.full(n, np.inf)
            for (i, j), s in starts.items():
                if agent_of[j] == i:
                    order_key[j] = solver.value(s)
        bound = solver.best_objective_bound / built.scale
        proven = code == cp_model.OPTIMAL and exact
        status = PlanStatus.OPTIMAL if proven else PlanStatus.FEASIBLE
        if code == cp_model.OPTIMAL and not exact:
            msg += " (optimal for the integer-scaled model)"
        return CpsatResult(agent_of, order_key, status, (bound if exact else None),
                           collector.points, msg)
    if code == cp_model.INFEASIBLE:
        return CpsatResult(None, None, PlanStatus.INFEASIBLE, None, [], msg + " infeasible")
    return CpsatResult(None, None, PlanStatus.TIMEOUT, None, [],
                       msg + " no solution within the time limit")


def _with_lp_bound(problem: Problem, bound: float | None) -> float | None:
    """The LP-relaxation bound (milliseconds up to 20k pairs) when it is stronger."""
    if problem.m * problem.n > 20_000:
        return bound
    from allocator.bounds import best_bound, lp_bound

    return best_bound(bound, lp_bound(problem, time_limit=0.5))


@register("cpsat", "OR-Tools CP-SAT: assignment model, or scheduling model with deadlines")
def solve_cpsat(
    problem: Problem, *, budget: Budget, seed: int = 0, warm: WarmStart | None = None
) -> Plan:
    deterministic = budget.is_deterministic
    if warm is not None:  # the hint: the better of the previous plan and a fresh greedy one
        warm = warm_or_fresh(problem, warm)
    else:  # the greedy plan: CP-SAT's hint, and the answer if it finds nothing in time
        # (with its sequencing key: scheduled in another order, a hard deadline broke).
        # Its one pass (large problems) and its repair stop at the plan-building
        # reserve, as the greedy backend's do; deterministic solves when stopped.
        reserve = min(0.3 * budget.time_limit, 0.2 + 2.5e-5 * problem.n)

        def stop() -> bool:
            return budget.stopped() if deterministic else budget.remaining() <= reserve

        warm = WarmStart(*construct_with_order(problem, stop if problem.large else None,
                                               repair_stop=stop))
    agent_of, order_key, status, bound, points, msg = solve_cpsat_arrays(
        problem, budget=budget, seed=seed, warm=warm, deterministic=deterministic
    )
    if agent_of is None:
        if warm is not None and status == PlanStatus.TIMEOUT:
            # No solution in time (a cold first solve at load 60 with 0.5 s), but a
            # complete start (the hint): keep it rather than dropping every task.
            return make_plan(problem, warm.agent_of, solver="cpsat", status=PlanStatus.FEASIBLE,
                             budget=budget, order_key=warm.order_key,
                             bound=_with_lp_bound(problem, None),
                             message=msg + "; the hint kept")
        return no_solution_plan(problem, status=status, solver="cpsat", budget=budget,
                                message=msg)
    if status != PlanStatus.OPTIMAL:
        bound = _with_lp_bound(problem, bound)
        if warm is not None:
            # An unproven incumbent can be worse than the hint it started from (20 x 200,
            # hard deadlines, 1 s: a task more left out): then the hint is the answer.
            from allocator.constraints import enforce
            from allocator.solvers.base import plan_objective

            hint = enforce(problem, warm.agent_of, warm.order_key)
            hint_key = warm.order_key if np.array_equal(hint, warm.agent_of) else None
            if plan_objective(problem, hint, hint_key) < plan_objective(
                    problem, agent_of, order_key):
                agent_of, order_key = hint, hint_key
                msg += "; the hint kept (better than CP-SAT's incumbent)"
    return make_plan(problem, agent_of, solver="cpsat", status=status, budget=budget,
                     order_key=order_key, bound=bound, solutions=points, message=msg)
