"""Rebalancing as re-planning, and warm re-solves from a previous plan.

Rebalancing starts from a snapshot whose tasks already sit on agents
(`Task.current_agent`) and returns a Plan whose `migrations` say which tasks
move where and what each move gains. It is lexicographic, solved with CP-SAT
in stages on the compiled arrays:

1. place every task that can be placed (per-priority unassigned penalty);
2. minimise the load variance of the *up* agents (sum of squared busy
   times: the total is fixed once stage 1 is, so this is the variance);
3. among the plans with that variance, the fewest migrations, then the
   cheapest (migration cost = base x pair factor, see models.MigrationPolicy).

`max_migrations` caps the *voluntary* moves (tasks whose current agent is
up) in stages 2 and 3; tasks on draining or down agents always move (or are
reported unassigned with the reason) and do not count against the cap.

The steal threshold is a post-pass: the gain of a move is how much earlier
the busier of its two agents finishes thanks to it (the later finish of
source and target with the move undone minus the same with it, in busy time
units; dask's work-stealing measures a steal the same way). While some
voluntary move gains less than the threshold, the lowest-gain one is undone
(when the source has room for the task again). Moves out of draining or down
agents are forced: their gain is reported as None.

When tasks have hard deadlines the load model cannot see start times, so
rebalancing falls back to the shared CP-SAT scheduling model with balance
weights (see :func:`rebalance`).

Warm re-solves (:func:`stabilize`, :func:`warm_start`): the previous plan is
read back as a complete hint (tasks that are gone are dropped, new ones are
placed greedily where they fit), and, by default, every change of agent
against the previous plan costs a little (a stability preference), so a
re-solve after a small edit changes few assignments.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from allocator.constraints import used_capacity
from allocator.metrics import jain_index, max_mean_ratio, variance
from allocator.objectives import build_schedule, busy_time
from allocator.problem import Problem, capacity_limit, compile_snapshot, default_migration_cost
from allocator.solvers.base import Budget, WarmStart, assignment_from_plan, make_plan
from allocator.solvers.cp_core import build_core, int_scale
from allocator.solvers.cpsat import solve_cpsat_arrays
from allocator.solvers.greedy import construct, repair, task_order
from models import AgentStatus, Plan, PlanStatus, Snapshot, Unassigned

#: Largest total load in ticks of the variance model: squares of loads stay
#: below 1e12, far inside int64, and durations keep 1e-6 relative resolution.
MAX_LOAD_TICKS = 1_000_000

#: Largest integer migration cost after scaling (stage 3 tie-break).
MAX_MIGRATION_COEF = 1_000_000

#: Share of the time budget given to the variance stage; the migration stage
#: is usually proven quickly once the variance is fixed.
VARIANCE_SHARE = 0.6

#: Default stability preference of a warm re-solve: changing the agent of
#: every task of the previous plan would cost this share of the previous
#: plan's objective (without unassigned penalties). Ten per cent keeps real
#: improvements but stops changes that only shuffle equally good options.
STABILITY_SHARE = 0.1

#: Gains closer than this to the threshold count as meeting it (float noise).
GAIN_TOL = 1e-9

#: Beyond this many eligible (task, agent) pairs the CP-SAT variance model
#: (one boolean per pair plus a square per agent) costs more to build and
#: prove than rebalancing is worth; the steal heuristic runs instead.
REBALANCE_MAX_PAIRS = 200_000
#: The model's build (a boolean per pair, a load sum and a square per agent) at
#: about this many pairs a second; with more pairs than REBALANCE_BUILD_SHARE of
#: the limit builds, the steal heuristic runs too (100 x 2,000, 156k pairs, on a
#: 2 s limit: 4 s of build, then 5-8 s in all).
REBALANCE_BUILD_PAIRS_PER_S = 80_000.0
REBALANCE_BUILD_SHARE = 0.15


def model_pairs_limit(time_limit: float) -> int:
    """Most eligible pairs the CP-SAT variance model is built for under `time_limit`."""
    return int(min(REBALANCE_MAX_PAIRS,
                   REBALANCE_BUILD_SHARE * time_limit * REBALANCE_BUILD_PAIRS_PER_S))


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class LoadSummary:
    """Busy time per agent and the balance measures over the up agents."""

    loads: dict[str, float]
    variance: float
    jain: float
    max_mean: float

    @classmethod
    def of(cls, problem: Problem, agent_of: np.ndarray) -> LoadSummary:
        load = busy_time(problem, np.asarray(agent_of, dtype=np.int64))
        up = load[problem.up] if problem.up.any() else load
        return cls(
            loads={a: float(x) for a, x in zip(problem.agent_ids, load, strict=True)},
            variance=variance(up),
            jain=jain_index(up),
            max_mean=max_mean_ratio(up),
        )


@dataclass(frozen=True)
class Stage:
    """One lexicographic stage: what it minimised, its value and whether it is proven."""

    name: str
    value: float | None
    proven: bool
    wall_s: float


@dataclass
class RebalanceResult:
    """The plan plus the before/after view a user asks for."""

    plan: Plan
    before: LoadSummary
    after: LoadSummary
    stages: list[Stage]
    threshold: float
    max_migrations: int | None
    dropped: list[str] = field(default_factory=list)  # moves undone by the threshold
    below_threshold: list[str] = field(default_factory=list)  # kept: source has no room

    @property
    def proven(self) -> bool:
        return self.plan.status == PlanStatus.OPTIMAL

    def summary(self, *, valid: bool | None = None) -> dict[str, Any]:
        """One JSON-friendly object (the `allocator rebalance --json` output)."""
        v_before, v_after = self.before.variance, self.after.variance
        reduction = (1 - v_after / v_before) if v_before > 0 else 0.0
        return {
            "status": str(self.plan.status),
            "migrations": len(self.plan.migrations),
            "migration_cost": float(sum(m.cost for m in self.plan.migrations)),
            "variance_before": v_before,
            "variance_after": v_after,
            "variance_reduction": reduction,
            "jain_before": self.before.jain,
            "jain_after": self.after.jain,
            "max_mean_before": self.before.max_mean,
            "max_mean_after": self.after.max_mean,
            "unassigned": len(self.plan.unassigned),
            "threshold": self.threshold,
            "max_migrations": self.max_migrations,
            "dropped_by_threshold": list(self.dropped),
            "below_threshold_kept": list(self.below_threshold),
            "proven_optimal": self.proven,
            "stages": [{"name": s.name, "value": s.value, "proven": s.proven,
                        "wall_s": s.wall_s} for s in self.stages],
            "loads_before": self.before.loads,
            "loads_after": self.after.loads,
            "moves": [{"task": m.task, "from": m.source, "to": m.target, "cost": m.cost,
                       "gain": m.gain} for m in self.plan.migrations],
            "valid": valid,
            "wall_time_s": self.plan.wall_time_s,
        }


# --------------------------------------------------------------------------- helpers




def _cap(problem: Problem) -> np.ndarray:
    return capacity_limit(problem.capacity)


def _hard_deadlines_ok(problem: Problem, agent_of: np.ndarray,
                       order_key: np.ndarray | None = None) -> bool:
    if not problem.hard_deadline.any():
        return True
    sch = build_schedule(problem, agent_of, order_key)
    j = np.flatnonzero(problem.hard_deadline & (agent_of >= 0))
    return bool(np.all(sch.end[j] <= problem.deadline[j] + 1e-9))


def complete(problem: Problem, agent_of: np.ndarray) -> np.ndarray:
    """Make a partial assignment feasible and complete without moving what can stay.

    Entries on ineligible agents or beyond capacity are cleared (in task
    order, so higher priority keeps its place); then unplaced tasks go, in
    the greedy's order, to the eligible agent with room and the least busy
    time. Tasks that fit nowhere stay -1.
    """
    a = np.asarray(agent_of, dtype=np.int64).copy()
    cap = _cap(problem)
    used = np.zeros_like(problem.capacity)
    order = task_order(problem)
    for j in order:
        i = int(a[j])
        if i < 0:
            continue
        if problem.eligible[i, j] and np.all(used[i] + problem.demand[i, j] <= cap[i]):
            used[i] += problem.demand[i, j]
        else:
            a[j] = -1
    load = busy_time(problem, a)
    for j in order:
        if a[j] >= 0:
            continue
        ok = problem.eligible[:, j] & np.all(used + problem.demand[:, j, :] <= cap, axis=1)
        if not ok.any():
            continue
        new = load + problem.duration[:, j] / problem.concurrency
        i = int(np.argmin(np.where(ok, new, np.inf)))
        a[j] = i
        used[i] += problem.demand[i, j]
        load[i] = new[i]
    return a


def within_cap(problem: Problem, agent_of: np.ndarray, cap_k: int | None) -> np.ndarray:
    """Undo voluntary moves beyond `cap_k` by leaving those tasks out.

    `complete` re-places the tasks an over-full up agent cannot keep, and each
    is a voluntary move: unchecked, the greedy hint broke the cap, stage 1 took
    "everything placed" from it and the capped model had no solution, so the
    cap-breaking hint became the plan. Leaving a task out never breaks a
    capacity, and the CP-SAT stages may still place it within the cap.
    """
    if cap_k is None:
        return agent_of
    a = agent_of.copy()
    cur = problem.current
    on_up = (cur >= 0) & problem.up[np.maximum(cur, 0)]
    kept = 0
    for j in task_order(problem):  # higher priority keeps its move
        if on_up[j] and a[j] >= 0 and a[j] != cur[j]:
            if kept < cap_k:
                kept += 1
            else:
                a[j] = -1
    return a


# --------------------------------------------------------------------------- the model


@dataclass
class _LoadModel:
    model: cp_model.CpModel
    x: dict[tuple[int, int], cp_model.IntVar]
    u: list[cp_model.IntVar]
    sq: list[cp_model.IntVar]
    voluntary: list[cp_model.LinearExprT]  # moved indicator per task on an up agent
    moves: list[cp_model.LinearExprT]  # moved indicator per task with a current agent
    exact: bool


def _build(problem: Problem, max_migrations: int | None) -> _LoadModel:
    n = problem.n
    elig = problem.eligible
    # Variables, exactly-one and capacity: the shared core. The cap here is on
    # voluntary moves only (module docstring), so the core's is left off.
    core = build_core(problem, cap_migrations=False)
    model, x, u, by_agent = core.model, core.x, core.u, core.by_agent
    exact = core.exact

    # Loads in integer ticks, normalised by concurrency with the lcm of the
    # up agents' concurrencies so that every agent's load is an integer.
    up = np.flatnonzero(problem.up).tolist()
    lcm = 1
    for i in up:
        lcm = math.lcm(lcm, int(problem.concurrency[i]))
    dur = problem.duration
    per_task = np.where(elig, dur, 0.0).max(axis=0) if n else np.zeros(0)
    tsc = int_scale(per_task * lcm, MAX_LOAD_TICKS, of_sum=True)
    tick = tsc.factor
    exact &= tsc.exact
    sq: list[cp_model.IntVar] = []
    for i in up:
        k = lcm // int(problem.concurrency[i])
        ticks = {j: round(dur[i, j] * tick) * k for j in by_agent[i]}
        top = max(1, sum(ticks.values()))
        load = model.new_int_var(0, top, f"load{i}")
        model.add(load == sum(c * x[i, j] for j, c in ticks.items()))
        s = model.new_int_var(0, top * top, f"sq{i}")
        model.add_multiplication_equality(s, [load, load])
        sq.append(s)

    moves = list(core.moved.values())
    voluntary = [e for j, e in core.moved.items() if problem.up[int(problem.current[j])]]
    # A cap of at least len(voluntary) never binds (and one beyond int64 is no CP-SAT bound).
    if max_migrations is not None and max_migrations < len(voluntary):
        model.add(sum(voluntary) <= max_migrations)
    return _LoadModel(model, x, u, sq, voluntary, moves, exact)


def _solve_stage(lm: _LoadModel, hint: np.ndarray, *, seconds: float, seed: int,
                 workers: int) -> tuple[np.ndarray | None, float | None, bool]:
    """Solve the current objective; returns (agent_of, objective, proven optimal)."""
    model = lm.model
    model.clear_hints()
    for (i, j), v in lm.x.items():
        model.add_hint(v, int(hint[j] == i))
    for j, v in enumerate(lm.u):
        model.add_hint(v, int(hint[j] < 0 or (int(hint[j]), j) not in lm.x))
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.random_seed = int(seed)
    p.num_workers = max(1, workers)
    p.max_time_in_seconds = max(seconds, 0.05)
    code = solver.solve(model)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, None, False
    agent_of = np.full(len(lm.u), -1, dtype=np.int64)
    for (i, j), v in lm.x.items():
        if solver.boolean_value(v):
            agent_of[j] = i
    return agent_of, float(solver.objective_value), bool(code == cp_model.OPTIMAL)


# --------------------------------------------------------------------------- gains


def move_gains(problem: Problem, agent_of: np.ndarray) -> dict[int, float | None]:
    """Gain of every move in `agent_of` against the current assignment (see module docs).

    None for forced moves (the source agent is not up).
    """
    load = busy_time(problem, agent_of)
    k = problem.concurrency
    out: dict[int, float | None] = {}
    for j in np.flatnonzero((problem.current >= 0) & (agent_of >= 0)
                            & (agent_of != problem.current)):
        a, b = int(problem.current[j]), int(agent_of[j])
        if not problem.up[a]:
            out[int(j)] = None
            continue
        la, lb = load[a] + problem.duration[a, j] / k[a], load[b] - problem.duration[b, j] / k[b]
        out[int(j)] = float(max(la, lb) - max(load[a], load[b]))
    return out


def apply_threshold(problem: Problem, agent_of: np.ndarray, threshold: float
                    ) -> tuple[np.ndarray, list[int], list[int]]:
    """Undo the lowest-gain voluntary move while one gains less than `threshold`.

    Returns (assignment, undone tasks, tasks kept below the threshold because
    their source has no room for them any more).
    """
    a = np.asarray(agent_of, dtype=np.int64).copy()
    cap = _cap(problem)
    dropped: list[int] = []
    stuck: set[int] = set()
    while True:
        gains = move_gains(problem, a)
        low = sorted((g, j) for j, g in gains.items()
                     if g is not None and g < threshold - GAIN_TOL and j not in stuck)
        if not low:
            break
        _, j = low[0]
        src = int(problem.current[j])
        used = used_capacity(problem, a)
        used[a[j]] -= problem.demand[a[j], j]
        trial = a.copy()
        trial[j] = src
        if (problem.eligible[src, j] and np.all(used[src] + problem.demand[src, j] <= cap[src])
                and _hard_deadlines_ok(problem, trial)):
            a = trial
            dropped.append(j)
        else:
            stuck.add(j)
    return a, dropped, sorted(stuck)


# --------------------------------------------------------------------------- rebalance


def rebalance(
    snapshot: Snapshot,
    *,
    max_migrations: int | None = None,
    threshold: float = 0.0,
    time_limit: float | None = None,
    seed: int | None = None,
    workers: int | None = None,
    clock: Callable[[], float] | None = None,
) -> RebalanceResult:
    """Re-plan `snapshot` for balance with few migrations (see the module docstring).

    Parameters
    ----------
    max_migrations
        Hard cap on voluntary moves (default: the snapshot's
        `options.max_migrations`, else none).
    threshold
        Smallest gain (busy-time units) a voluntary move must have.
    time_limit, seed, workers
        Override the snapshot's options.
    clock
        Injectable clock for the budget (tests).
    """
    opts = snapshot.options
    cap_k = opts.max_migrations if max_migrations is None else max_migrations
    if cap_k is not None and cap_k < 0:
        raise ValueError("max_migrations must be >= 0")
    if not math.isfinite(threshold):
        raise ValueError("threshold must be finite")
    if time_limit is None:
        limit = opts.time_limit
    else:
        from allocator.limits import check_time_limit

        limit = check_time_limit(time_limit)
    budget = Budget(limit, workers=opts.workers if workers is None else workers,
                    clock=clock or time.perf_counter)
    rng_seed = opts.seed if seed is None else seed
    problem = compile_snapshot(snapshot)
    before = LoadSummary.of(problem, problem.current)
    rules = problem.topology.hard_rules() if problem.topology is not None else []
    if rules and problem.m > 0:
        return _rebalance_topology(problem, rules, cap_k, threshold, budget, rng_seed, before)

    if problem.m == 0:  # nowhere to place anything: every task unassigned, with its reason
        agent_of = np.full(problem.n, -1, dtype=np.int64)
        stages: list[Stage] = []
        order_key, status, note = None, PlanStatus.OPTIMAL, "no agents"
    elif problem.hard_deadline.any():
        agent_of, order_key, stages, status, note = _rebalance_scheduled(
            problem, cap_k, budget, rng_seed)
    else:
        pairs = int(problem.eligible.sum())
        if pairs > model_pairs_limit(budget.time_limit):
            agent_of, stages, status, note = _rebalance_steal(problem, cap_k, threshold,
                                                              budget)
        else:
            agent_of, stages, status, note = _rebalance_loads(problem, cap_k, budget,
                                                              rng_seed)
        order_key = None

    dropped: list[int] = []
    stuck: list[int] = []
    if threshold > 0 or any(g is not None and g < threshold - GAIN_TOL
                            for g in move_gains(problem, agent_of).values()):
        agent_of, dropped, stuck = apply_threshold(problem, agent_of, threshold)
        if dropped:
            status = PlanStatus.FEASIBLE  # the optimum was for the problem without it
            note += f"; threshold {threshold:g} undid {len(dropped)} move(s)"

    plan = make_plan(problem, agent_of, solver="rebalance", status=PlanStatus.FEASIBLE,
                     budget=budget, order_key=order_key, message=note)
    gains = move_gains(problem, agent_of)
    tid = problem.task_index
    migrations = [mg.model_copy(update={"gain": gains.get(tid[mg.task])})
                  for mg in plan.migrations]
    unassigned = [_evicted_reason(problem, u) for u in plan.unassigned]
    plan = plan.model_copy(update={"status": status, "migrations": migrations,
                                   "unassigned": unassigned, "wall_time_s": budget.elapsed()})
    ids = problem.task_ids
    return RebalanceResult(
        plan=plan, before=before, after=LoadSummary.of(problem, agent_of), stages=stages,
        threshold=threshold, max_migrations=cap_k, dropped=[ids[j] for j in dropped],
        below_threshold=[ids[j] for j in stuck],
    )


def _rebalance_topology(problem: Problem, rules: list[str], cap_k: int | None,
                        threshold: float, budget: Budget, seed: int,
                        before: LoadSummary) -> RebalanceResult:
    """Snapshots with hard topology rules go to the machine-reassignment search.

    The load-variance model knows neither the rules nor the topology costs
    (load above safety capacity, balance, move costs), so it would return a
    do-nothing plan at best; the topology backend improves the current
    placement under the rules and prices every move. What it cannot express
    (a migration cap, a steal threshold, ...) is refused with the reason.
    """
    from allocator.errors import UnsupportedError
    from allocator.roadef.convert import unsupported_reason
    from allocator.solvers.base import get_solver

    named = ", ".join(rules)
    if threshold > 0:
        raise UnsupportedError(
            f"threshold with the topology rule(s) {named}: the topology search weighs each "
            "move by its cost, not by a busy-time gain", field="threshold")
    reason = unsupported_reason(problem.snapshot, problem)
    started = budget.elapsed()
    if cap_k is not None or reason is not None:
        # What the search cannot hold (a migration cap, a draining agent, new tasks,
        # deadlines...): the greedy places under the rules, keeps the current placement
        # where that is the better start, and honours the cap. It was refused, so a
        # cluster with anti-affinity could not be drained for maintenance.
        if cap_k != problem.snapshot.options.max_migrations:
            snap = problem.snapshot
            problem = compile_snapshot(snap.model_copy(update={
                "options": snap.options.model_copy(update={"max_migrations": cap_k})}))
        plan = get_solver("greedy")(problem, budget=budget, seed=seed)
        why = reason or "options.max_migrations"
        plan = plan.model_copy(update={"message": (
            f"greedy under the topology rule(s) {named} (the topology search cannot take "
            f"this snapshot: {why})")})
        name = "greedy"
    else:
        plan = get_solver("topology")(problem, budget=budget, seed=seed)
        name = "topology"
    agent_of = assignment_from_plan(problem, plan).agent_of
    stage = Stage(name=name, value=plan.objective, proven=False,
                  wall_s=budget.elapsed() - started)
    return RebalanceResult(plan=plan.model_copy(update={"wall_time_s": budget.elapsed()}),
                           before=before, after=LoadSummary.of(problem, agent_of),
                           stages=[stage], threshold=threshold, max_migrations=cap_k)


def _evicted_reason(problem: Problem, u: Unassigned) -> Unassigned:
    j = problem.task_index[u.task]
    c = int(problem.current[j])
    if c < 0 or problem.up[c]:
        return u
    status = problem.snapshot.agents[c].status
    return u.model_copy(update={
        "reason": f"must leave {status} agent {problem.agent_ids[c]!r} and cannot be placed: "
                  f"{u.reason}"})


def _rebalance_loads(problem: Problem, cap_k: int | None, budget: Budget, seed: int
                     ) -> tuple[np.ndarray, list[Stage], PlanStatus, str]:
    stay = np.where((problem.current >= 0) & problem.up[np.maximum(problem.current, 0)],
                    problem.current, -1)
    hint = within_cap(problem, complete(problem, stay), cap_k)
    lm = _build(problem, cap_k)
    stages: list[Stage] = []
    workers = budget.workers

    # Stage 1: place what can be placed.
    t0 = budget.elapsed()
    if np.all(hint >= 0):
        for v in lm.u:
            lm.model.add(v == 0)
        stages.append(Stage("unassigned", 0.0, True, 0.0))
    else:
        pen_f = int_scale(problem.unassigned_penalty, 1e15, of_sum=True).factor
        pens = [round(p * pen_f) for p in problem.unassigned_penalty]
        lm.model.minimize(sum(c * v for c, v in zip(pens, lm.u, strict=True)))
        sol, val, proven = _solve_stage(lm, hint, seconds=budget.remaining() * 0.3,
                                              seed=seed, workers=workers)
        if sol is None:
            return hint, [Stage("unassigned", None, False, budget.elapsed() - t0)], \
                PlanStatus.FEASIBLE, "rebalance: no solution from CP-SAT; greedy completion"
        hint = sol
        lm.model.add(sum(c * v for c, v in zip(pens, lm.u, strict=True))
                     <= round(val or 0.0))
        stages.append(Stage("unassigned", float(problem.unassigned_penalty[sol < 0].sum()),
                            proven, budget.elapsed() - t0))

    # Stage 2: load variance (sum of squared loads).
    t0 = budget.elapsed()
    lm.model.minimize(sum(lm.sq))
    sol, val, proven_var = _solve_stage(
        lm, hint, seconds=budget.remaining() * VARIANCE_SHARE, seed=seed, workers=workers)
    if sol is None:
        return hint, [*stages, Stage("variance", None, False, budget.elapsed() - t0)], \
            PlanStatus.FEASIBLE, "rebalance: variance stage found nothing; greedy completion"
    hint = sol
    best_sq = round(val or 0.0)
    stages.append(Stage("variance", variance(busy_time(problem, sol)[problem.up]), proven_var,
                        budget.elapsed() - t0))
    lm.model.add(sum(lm.sq) <= best_sq)

    # Stage 3: fewest migrations, then the cheapest.
    t0 = budget.elapsed()
    mig = problem.migration_matrix
    f = int_scale(mig[:, problem.current >= 0].ravel(), MAX_MIGRATION_COEF, of_sum=True).factor
    cost_terms = [(round(mig[i, j] * f), v) for (i, j), v in lm.x.items()
                  if problem.current[j] >= 0 and i != problem.current[j]]
    big = sum(c for c, _ in cost_terms) + 1
    lm.model.minimize(big * sum(lm.moves) + sum(c * v for c, v in cost_terms if c))
    sol, _, proven_mig = _solve_stage(lm, hint, seconds=budget.remaining(), seed=seed,
                                      workers=workers)
    if sol is None:  # keep the variance solution
        sol, proven_mig = hint, False
    moved = int(np.sum((problem.current >= 0) & (sol >= 0) & (sol != problem.current)))
    stages.append(Stage("migrations", float(moved), proven_mig, budget.elapsed() - t0))
    proven = all(s.proven for s in stages) and lm.exact
    note = (f"rebalance (lexicographic): variance {'optimal' if proven_var else 'best found'}, "
            f"then {moved} migration(s) {'minimal' if proven_mig else 'best found'}")
    if not lm.exact:
        note += " (durations rounded to ticks: not claimed optimal)"
    return sol, stages, PlanStatus.OPTIMAL if proven else PlanStatus.FEASIBLE, note


def _rebalance_steal(problem: Problem, cap_k: int | None, threshold: float, budget: Budget
                     ) -> tuple[np.ndarray, list[Stage], PlanStatus, str]:
    """Large snapshots: repeatedly steal the best task from the busiest up agent.

    Forced tasks are placed first (:func:`complete`); then, while the budget
    lasts and the cap allows, the move from the busiest agent that lowers the
    pair's later finish the most (its gain) is applied, if it gains more than
    `threshold`. Never claims optimality.
    """
    t0 = budget.elapsed()
    stay = np.where((problem.current >= 0) & problem.up[np.maximum(problem.current, 0)],
                    problem.current, -1)
    a = within_cap(problem, complete(problem, stay), cap_k)
    up = np.flatnonzero(problem.up)
    cap = _cap(problem)
    used = used_capacity(problem, a)
    load = busy_time(problem, a)
    k = problem.concurrency.astype(float)
    voluntary = (problem.current >= 0) & problem.up[np.maximum(problem.current, 0)]
    moves = int(np.sum(voluntary & (a >= 0) & (a != problem.current)))
    steps = 0
    while up.size > 1 and budget.remaining() > 0:
        src = int(up[np.argmax(load[up])])
        js = np.flatnonzero(a == src)
        if js.size == 0:
            break
        # All (target, task) options of the busiest agent at once: [m, |js|].
        ok = problem.eligible[:, js] & np.all(
            used[:, None, :] + problem.demand[:, js, :] <= cap[:, None, :], axis=2)
        ok[src] = False
        if cap_k is not None and moves >= cap_k:  # only tasks already moved may re-target
            ok &= ~(voluntary[js] & (problem.current[js] == src))[None, :]
        after_src = load[src] - problem.duration[src, js] / k[src]
        after_dst = load[:, None] + problem.duration[:, js] / k[:, None]
        gain = np.where(ok, load[src] - np.maximum(after_src[None, :], after_dst), -np.inf)
        flat = int(np.argmax(gain))
        i, col = divmod(flat, js.size)
        best = (float(gain[i, col]), int(js[col]), int(i))
        if not np.isfinite(best[0]) or best[0] <= max(threshold, 0.0) + GAIN_TOL:
            break
        _, j, i = best
        used[src] -= problem.demand[src, j]
        used[i] += problem.demand[i, j]
        load[src] -= problem.duration[src, j] / k[src]
        load[i] += problem.duration[i, j] / k[i]
        a[j] = i
        moves = int(np.sum(voluntary & (a >= 0) & (a != problem.current)))
        steps += 1
    stage = Stage("steal", variance(load[problem.up]) if problem.up.any() else 0.0, False,
                  budget.elapsed() - t0)
    return a, [stage], PlanStatus.FEASIBLE, (
        f"rebalance (steal heuristic, {int(problem.eligible.sum())} eligible pairs > "
        f"{model_pairs_limit(budget.time_limit)} for a {budget.time_limit:g} s limit): "
        f"{steps} step(s)")


def _rebalance_scheduled(problem: Problem, cap_k: int | None, budget: Budget, seed: int
                         ) -> tuple[np.ndarray, np.ndarray | None, list[Stage], PlanStatus, str]:
    """Hard deadlines: the shared CP-SAT scheduling model with balance weights."""
    snap = problem.snapshot
    w = snap.weights.model_copy(update={
        "imbalance": max(snap.weights.imbalance, 1.0),
        "migrations": snap.weights.migrations or 1e-3,
    })
    opts = snap.options.model_copy(update={"max_migrations": cap_k})
    update: dict[str, object] = {"weights": w, "options": opts}
    forced = (problem.current >= 0) & ~problem.up[np.maximum(problem.current, 0)]
    if cap_k is not None and forced.any():
        # The cap is on voluntary moves: tasks that must leave a draining or down agent
        # have no home in the model. (A cap of k + the forced moves let a forced task
        # left out hand its allowance to a voluntary move.)
        update["tasks"] = [t.model_copy(update={"current_agent": None}) if forced[j] else t
                           for j, t in enumerate(snap.tasks)]
        update["task_table"] = None
    derived = compile_snapshot(snap.model_copy(update=update))
    stay = np.where((problem.current >= 0) & problem.up[np.maximum(problem.current, 0)],
                    problem.current, -1)
    hint = complete(problem, stay)
    if not _hard_deadlines_ok(problem, hint):
        hint = construct(derived)
    t0 = budget.elapsed()
    agent_of, order_key, status, _, _, msg = solve_cpsat_arrays(
        derived, budget=budget, seed=seed, warm=WarmStart(hint), scheduling=True)
    if agent_of is None:
        agent_of, order_key = hint, None
    stage = Stage("weighted", None, status == PlanStatus.OPTIMAL, budget.elapsed() - t0)
    return (agent_of, order_key, [stage], PlanStatus.FEASIBLE,
            f"rebalance (weighted scheduling model, hard deadlines present): {msg}")


# --------------------------------------------------------------------------- warm re-solves


def stabilize(snapshot: Snapshot, previous: Plan, *, share: float = STABILITY_SHARE) -> Snapshot:
    """A copy of `snapshot` where leaving the previous plan's agent costs a little.

    Tasks without a current agent that the previous plan placed on a still
    existing, up agent get it as their current agent, so the `migrations`
    term and list count changes against the previous plan. Changing the
    agent of every such task costs `share` of the previous objective
    (without unassigned penalties; at least `share`). Tasks that carry a
    real current agent (where they are now: the executor's snapshots, a
    rebalancing input) get the same per-change cost *on top of* their own
    migration cost, so moving them must gain more than it did without the
    preference: with `stability=False` a re-solve moves whatever gains a
    little, with it only what gains more than a share of the objective. If
    the snapshot's migrations weight is 0 it becomes 1 and those tasks cost
    the per-change amount alone, so the user's objective is only perturbed
    by the stability preference.
    """
    status = {a.id: a.status for a in snapshot.agents}
    prev = {a.task: a.agent for a in previous.assignments}
    scale = sum(t.weighted for t in previous.breakdown if t.name != "unassigned")
    n_prev = max(1, sum(1 for t in snapshot.tasks if t.id in prev))
    per_change = share * max(abs(scale), 1.0) / n_prev
    w = snapshot.weights
    weight = w.migrations if w.migrations > 0 else 1.0
    base = default_migration_cost(snapshot)
    tasks = []
    for k, t in enumerate(snapshot.tasks):
        upd: dict[str, Any] = {}
        if t.current_agent is None:
            agent = prev.get(t.id)
            if agent is not None and status.get(agent) == AgentStatus.UP:
                upd = {"current_agent": agent, "migration_cost": per_change / weight,
                       "progress": 0.0}
        elif w.migrations == 0:
            upd = {"migration_cost": per_change / weight}
        else:
            upd = {"migration_cost": float(base[k]) + per_change / weight}
        tasks.append(t.model_copy(update=upd) if upd else t)
    return snapshot.model_copy(update={
        "tasks": tasks, "weights": w.model_copy(update={"migrations": weight})})


def warm_start(problem: Problem, previous: Plan) -> WarmStart:
    """The previous plan as a complete, feasible hint for `problem` (see :func:`complete`).

    When tasks stay out (new tasks where capacity is tight), the greedy's
    ejection repair places what it can; if the fresh greedy construction
    still leaves less unassigned penalty, that is the hint instead, because
    a hint with needless unassigned tasks slows every backend down.
    """
    ws = assignment_from_plan(problem, previous)
    agent_of = complete(problem, ws.agent_of)
    if np.any(agent_of < 0):
        agent_of = repair(problem, agent_of)
        fresh = construct(problem)
        pen = problem.unassigned_penalty
        if pen[fresh < 0].sum() < pen[agent_of < 0].sum():
            return WarmStart(agent_of=fresh)
    order = ws.order_key
    if order is not None:
        order = np.where(np.isfinite(order), order, np.inf)
    return WarmStart(agent_of=agent_of, order_key=order)
