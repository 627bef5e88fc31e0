"""The one entry point for solving a snapshot: `solve(snapshot) -> Plan`."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from allocator.errors import InvalidInputError, UnsupportedError
from allocator.limits import check_time_limit
from allocator.problem import LINEAR_MAX_CELLS, Problem, compile_snapshot
from allocator.solvers import get_solver
from allocator.solvers.base import Solver, make_plan, plan_objective
from allocator.solvers.context import Improvement, SolveContext
from models import Plan, PlanStatus, Snapshot, SolveOptions

log = logging.getLogger(__name__)


#: What an on-improvement callback receives: the incumbent, and a function
#: that builds its complete Plan (call it off the solver's hot path).
ImproveCallback = Callable[[Improvement, Callable[[], Plan]], object]


#: Backends that never touch HiGHS / scipy (no import before their clock).
_NO_LP_STACK = frozenset({"greedy"})


def _preload() -> None:
    """Import the LP/MIP stack at the start of a solve, before any backend's own clock checks.

    Backends import highspy and scipy.sparse on first use (so `import
    allocator` stays light); that first import takes 0.3-2 s on a busy
    machine. It counts in the budget (the time limit bounds the whole call:
    three fresh 10 s solves at once at load 9 returned 0.9-1.1 s late when it
    did not), but it happens here, once, not inside a backend's timed step.
    """
    import highspy  # noqa: F401
    import scipy.sparse  # noqa: F401


#: Backends that model the hard topology rules (models.topology) themselves.
TOPOLOGY_SOLVERS = frozenset({"topology"})
#: Backends that place under the hard topology rules themselves (allocator.solvers.greedy).
RULE_AWARE_SOLVERS = frozenset({"greedy"})


def _topology_route(problem: Problem, name: str, backend: Solver) -> tuple[str, Solver]:
    """`auto` takes topology snapshots to the topology backend when that model can hold
    them (a full placement to improve, every agent up, no skills or deadlines: see
    allocator.roadef.convert.unsupported_reason), else, with hard topology rules, to the
    greedy, which places under them (new tasks, agents down, deadlines, a migration
    cap); the other backends refuse a snapshot whose hard topology rules they do not
    model."""
    topo = problem.topology
    rules = topo.hard_rules() if topo is not None else []
    if topo is None or name in TOPOLOGY_SOLVERS or name in RULE_AWARE_SOLVERS:
        return name, backend
    if name == "auto":
        from allocator.solvers.base import solver_available

        fits = _topology_fits(problem)
        if solver_available("topology") and fits:
            return "topology", get_solver("topology")
        if rules:
            return "greedy", get_solver("greedy")
    if rules:
        raise UnsupportedError(
            f"solver {name!r} does not model the topology rule(s) {', '.join(rules)} "
            "(snapshot topology.groups / transient); use solver 'topology' or 'greedy' "
            "(or 'auto', which picks one)", field="options.solver")
    return name, backend


def _topology_fits(problem: Problem) -> bool:
    """Whether the topology backend can take this snapshot (soft topology terms only)."""
    from allocator.roadef.convert import unsupported_reason

    return unsupported_reason(problem.snapshot) is None


#: From this many tasks the cyclic garbage collector pauses during a solve.
GC_PAUSE_TASKS = 100_000


@contextlib.contextmanager
def _gc_paused(tasks: int) -> Iterator[None]:
    """Pause the cyclic GC while a huge solve allocates millions of small objects.

    Compiling and building the Plan of a million tasks allocate millions of
    lists, floats and model objects; each allocation burst triggers
    collections that walk every live object, the snapshot's million Task
    models included (measured: 3.4 s against 1.2 s CPU to build 1M plan
    rows). The solve creates no reference cycles worth collecting early, so
    the collector runs again as usual afterwards.
    """
    if tasks < GC_PAUSE_TASKS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _plan_assignment(problem: Problem, plan: Plan, ctx: SolveContext) -> np.ndarray:
    """[n] agent index of each task in `plan` (-1: unassigned)."""
    built = ctx.last_plan
    if built is not None and built[0] is plan.assignment_table:
        return built[1]  # make_plan's own array: no pass over a million rows
    placed = plan.agent_of()
    return np.asarray([problem.agent_index[placed[t]] if t in placed else -1
                       for t in problem.task_ids], dtype=np.int64)


def _needs_lp_stack(snapshot: Snapshot, name: str) -> bool:
    """Whether the backend may import HiGHS / scipy (then they load before the clock).

    `auto` and `balance` above ``LINEAR_MAX_CELLS`` cells stay on the
    structure-aware paths, whose bound needs no LP solver for a few dozen
    rule groups: they skip the ~0.5 s import.
    """
    if name in _NO_LP_STACK:
        return False
    cells = len(snapshot.agents) * snapshot.n_tasks
    return not (name in ("auto", "balance") and cells > LINEAR_MAX_CELLS)


def _check_seed(seed: int) -> None:
    """A seed given to `solve` meets SolveOptions' own rule (0 to 2**31 - 1): one past
    int32 reached CP-SAT and came back as ortools' TypeError. (The time limit is checked
    by allocator.limits.check_time_limit.)"""
    from pydantic import ValidationError

    try:
        SolveOptions(seed=seed)
    except ValidationError as e:
        err = e.errors()[0]
        raise InvalidInputError(f"{err['msg'].lower()}, got {err['input']!r}",
                                field="seed") from None


def solve(
    snapshot: Snapshot,
    *,
    solver: str | None = None,
    time_limit: float | None = None,
    seed: int | None = None,
    previous: Plan | None = None,
    stability: bool = True,
    clock: Callable[[], float] | None = None,
    stop: threading.Event | None = None,
    on_improve: ImproveCallback | None = None,
    deterministic: bool | None = None,
) -> Plan:
    """Solve a snapshot with the named backend (default: `snapshot.options.solver`).

    Arguments override the snapshot's options. `previous` is a plan for an
    earlier version of the snapshot: its assignment, completed for new tasks,
    is the warm start (full hint, incumbent), and with `stability` (default)
    leaving a task's previous agent costs a little, so small edits of the
    snapshot change few assignments (see allocator.rebalance.stabilize).

    `stop` (set from any thread) makes the backend return its best plan now;
    `on_improve(improvement, to_plan)` sees every strictly improving
    incumbent (objectives in the plan's own units, so they are monotone);
    the returned plan is never worse than the best one reported.
    `deterministic` (default: ``options.workers == 1``) makes the backend
    bound its heuristics by counts, not the clock: same seed, same plan.
    """
    with _gc_paused(snapshot.n_tasks):
        return _solve(snapshot, solver=solver, time_limit=time_limit, seed=seed,
                      previous=previous, stability=stability, clock=clock, stop=stop,
                      on_improve=on_improve, deterministic=deterministic)


def _solve(
    snapshot: Snapshot,
    *,
    solver: str | None = None,
    time_limit: float | None = None,
    seed: int | None = None,
    previous: Plan | None = None,
    stability: bool = True,
    clock: Callable[[], float] | None = None,
    stop: threading.Event | None = None,
    on_improve: ImproveCallback | None = None,
    deterministic: bool | None = None,
) -> Plan:
    """:func:`solve` (the garbage collector may be paused around it)."""
    opts = snapshot.options
    name = solver or opts.solver
    backend = get_solver(name)
    limit = opts.time_limit if time_limit is None else time_limit
    check_time_limit(limit)  # a caller's override skips the model's check
    the_seed = opts.seed if seed is None else seed
    if seed is not None:
        _check_seed(seed)
    ctx = SolveContext(limit, workers=opts.workers, clock=clock or time.perf_counter,
                       seed=the_seed, stop=stop if stop is not None else threading.Event(),
                       deterministic=deterministic, stoppable=stop is not None)
    if _needs_lp_stack(snapshot, name):
        _preload()
    if previous is not None:  # rebalance (and CP-SAT) load only when re-planning
        from allocator.rebalance import stabilize, warm_start

        if stability:
            snapshot = stabilize(snapshot, previous)
    problem = compile_snapshot(snapshot)
    name, backend = _topology_route(problem, name, backend)
    warm = warm_start(problem, previous) if previous is not None else None

    def build(imp: Improvement, bound: float | None = None) -> Plan:
        return make_plan(problem, imp.agent_of, solver=name, status=PlanStatus.FEASIBLE,
                         budget=ctx, order_key=imp.order_key,
                         bound=imp.bound if bound is None else bound,
                         message=f"best plan so far (from {imp.source})")

    ctx.evaluate = lambda a, k: plan_objective(problem, a, k)
    if on_improve is not None:
        ctx.on_improve = lambda imp: on_improve(imp, lambda: build(imp))
    try:
        if problem.n == 0:  # nothing to decide: the empty plan is optimal for every backend
            plan = make_plan(problem, np.empty(0, dtype=np.int64), solver=name,
                             status=PlanStatus.OPTIMAL, budget=ctx, message="no tasks")
        else:
            plan = backend(problem, budget=ctx, seed=the_seed, warm=warm)
            best = ctx.best
            if best is not None and (plan.objective is None or best.objective < plan.objective
                                     - 1e-9 * max(1.0, abs(best.objective))):
                # Stopped, or a backend whose last word was worse than an incumbent
                # it handed over: the best reported plan is the answer.
                plan = build(best, plan.bound)
        if plan.objective is not None:
            # The final plan is an improvement too (monotone: only if strictly better).
            final = _plan_assignment(problem, plan, ctx)
            ctx.improve(final, source=plan.solver, objective=plan.objective, bound=plan.bound)
    finally:
        ctx.close()
    log.info("solved %s with %s: %s objective=%s in %.3fs", snapshot.name or "snapshot", name,
             plan.status, plan.objective, plan.wall_time_s)
    return plan
