"""`auto`: an anytime portfolio that picks its method by size and structure.

The choice (documented with measurements in docs/solvers.md):

1. **Scheduling snapshots** (start times matter: deadlines with tardiness or
   hard deadlines, releases or multi-lane agents with makespan): greedy, then
   CP-SAT's scheduling model hinted with it when the model is small enough
   (``CPSAT_MAX_SCHED_PAIRS`` eligible pairs); the better plan wins. The LP
   bound of the assignment relaxation is reported.
2. **Huge or load-only snapshots** (more than ``LINEAR_MAX_CELLS`` agent x
   task cells, or makespan / imbalance the only weighted terms above
   ``BALANCE_MIN_CELLS``): the structure-aware balancer
   (:mod:`allocator.solvers.balance`) - skill groups, agent-independent
   demand, no tasks x agents matrix.
3. **Everything else** (the assignment model): LP relaxation (the bound, and
   a rounding for the start), greedy, the LPT plan when load terms count,
   vectorised local search (shift, swap, ejection chains), then two threads
   until the budget ends - a *primary* search at normal priority and a
   *helper* at nice ``HELPER_NICE`` that only takes idle CPU:

   * small models (``MILP_PORTFOLIO_PAIRS``): primary = the full MILP in
     HiGHS exactly as `milp` runs it; helper = LNS;
   * larger models: primary = a second compiled penalty walk where the walk
     applies (``LARGE_PRIMARY``), else LNS (free the tasks of a few related agents,
     or scattered tasks, re-optimise that sub-MILP with HiGHS hinted with
     the incumbent, accept when not worse; neighbourhood size adapts);
     helper = the full MILP warm from the LNS incumbents, only when the
     budget can hold its root LP (``MILP_HELPER_S_PER_PAIR``).

   Incumbents flow both ways through HiGHS's improving-solution and
   user-solution callbacks (HiGHS releases the GIL while it runs). The best
   plan by the shared objective is returned; there is always one (the greedy
   plan at worst), so `auto` is never empty-handed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from allocator.bounds import best_bound, guarded, lp_relaxation
from allocator.problem import LINEAR_MAX_CELLS, Problem
from allocator.solvers.base import Budget, WarmStart, make_plan, register, use_scheduling_model
from allocator.solvers.greedy import greedy_assign, greedy_schedule, warm_or_fresh
from allocator.solvers.lagrange import Lagrangian, lagrangian, loaded_kernel
from allocator.solvers.linear import (
    LinearModel,
    build_highs,
    build_linear,
    new_highs,
    read_assignment,
    run_highs,
    set_start,
    start_vector,
)
from allocator.solvers.localsearch import local_search
from models import Plan, PlanStatus, SolutionPoint

#: Optional intervals are far heavier than booleans: above this many eligible
#: pairs the CP-SAT scheduling model is not built at all.
CPSAT_MAX_SCHED_PAIRS = 30_000
#: Above LINEAR_MAX_CELLS (task, agent) cells (defined in allocator.problem, so the
#: API's memory estimate reads it without importing the solvers) the assignment
#: model's dense helpers cost too much memory: the structure-aware path runs.
#: Load-only objectives (makespan / imbalance, no cost or migrations) above
#: this many cells go to the balancer: LPT is within 0.1 % of the bound there
#: and the pair model only costs time.
BALANCE_MIN_CELLS = 200_000
#: Free tasks per LNS sub-problem at the start; adapted within [MIN, MAX].
LNS_START_TASKS, LNS_MIN_TASKS, LNS_MAX_TASKS = 90, 20, 400
#: Up to this many pairs the primary search is HiGHS on the full model (it
#: proves most such GAP instances within seconds); above it, LNS.
MILP_PORTFOLIO_PAIRS = 20_000
#: Nice value of the helper thread (LNS next to HiGHS on small models, HiGHS
#: next to LNS on large ones): on a shared machine it takes idle CPU only.
HELPER_NICE = 10
#: Share of LNS neighbourhoods made of scattered tasks (the rest: whole related agents).
LNS_TASK_MODE = 0.35
#: Per sub-problem time limit (s): sub-problems that need longer are too big.
LNS_SUB_LIMIT = 0.5
#: Target solve time of one sub-problem (s): many quick ones beat a few slow ones.
LNS_FAST_S = 0.08
#: The full-MILP helper of large models starts only when the budget left is
#: at least this many seconds per pair (16 s at 40 x 800, 64 s at 80 x 1600):
#: HiGHS's root LP alone took 4-24 s at 128k pairs on the shared 2-core
#: machine, so a shorter run only takes CPU from LNS and outlives the
#: deadline (measured: same plan, 1.6 s late at 10 s; on one generated
#: D 40 x 800 instance HiGHS ignored its time limit for minutes, which held
#: the process's exit).
MILP_HELPER_S_PER_PAIR = 5e-4
#: Target length (s) of one call into the compiled penalty walk between clock checks.
WALK_CHUNK_S = 0.03
#: The walk (and the first load of its compiled kernel) only when this many seconds are
#: left at the start; it waits for the kernel while this many are left.
WALK_MIN_S = 1.5
#: Up to this many agents the walk covers the whole model; above, blocks of
#: WALK_BLOCK_AGENTS related agents, WALK_BLOCK_S seconds each.
WALK_WHOLE_AGENTS, WALK_BLOCK_AGENTS, WALK_BLOCK_S = 24, 16, 0.05
#: Length (s) of one phase of the walk in one mode (whole model or blocks).
WALK_PHASE_S = 0.25
#: Primary search of large models beside the walk: "walk" (a second penalty walk, seed + 1;
#: LNS where the walk does not apply) or "lns". LNS improved 0 of 2-55 sub-problems in every
#: 40x800 / 80x1600 trace of 2026-12-01, while a second walk used that core: paired at
#: 10 s, tuning seeds 501 / 601, load 8-10, mean 0.325 -> 0.310 % over twelve C/D/E
#: instances, better on 8, worse on 2 (docs/benchmarks/anytime.md).
LARGE_PRIMARY = "walk"
SECOND_WALK_MODE = "mixed"
#: Seconds kept back at the end for building the plan.
RESERVE_S = 0.15
#: The caller waits for the first Lagrangian plan (the plans before it are several
#: times the LP bound on GAP type E) until the deadline plus a tenth of the limit,
#: within these bounds (placed_grace).
PLACED_GRACE_MIN_S = 0.25
PLACED_GRACE_MAX_S = 1.0
#: The caller's thread stops waiting for the search this long before the deadline at
#: full speed, longer in proportion when it has been getting less CPU than that
#: (at most FINISH_MAX_S): building the plan from the incumbent takes ~5 ms of CPU at
#: 80 x 1600, the engine's final steps about as much, and the walks' threads compete for
#: the GIL then (0.04 s left three solves at once at load 7-9 up to 0.3 s late; 0.07 s:
#: 9.74-10.08 s).
FINISH_S, FINISH_MAX_S = 0.07, 1.0
#: The Lagrangian phase stops when this share of the budget is left (or it converges).
LAGRANGE_UNTIL = 0.25
#: Subgradient iterations at most (about 1 ms each at 80 x 1600).
LAGRANGE_MAX_ITER = 500


@dataclass
class _Shared:
    """Incumbent shared by the LNS thread and the full-MILP thread."""

    lm: LinearModel
    agent_of: np.ndarray
    obj: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    points: list[SolutionPoint] = field(default_factory=list)
    source: str = "construction"
    version: int = 0
    ctx: Budget | None = None  # incumbents are handed over to the solve context too
    #: The plan has been built: later offers (a search thread that outlived the
    #: deadline) are refused, so no improvement is reported after the final plan.
    closed: bool = False
    #: Set once the construction's first Lagrangian plan is in (or the search ended
    #: without one): the first plan with capacity priced - the feasibility-first plan
    #: before it places every task but was 78-605 % above the LP bound at 80 x 1600.
    placed: threading.Event = field(default_factory=threading.Event)

    def offer(self, agent_of: np.ndarray, t: float, source: str) -> bool:
        if self.closed or not self.lm.feasible(agent_of):
            return False
        obj = self.lm.objective(agent_of)
        with self.lock:
            if self.closed:
                better = False
            elif obj < self.obj - 1e-9 * max(1.0, abs(self.obj)):
                self.agent_of, self.obj, self.source = agent_of.copy(), obj, source
                self.version += 1
                self.points.append(SolutionPoint(time_s=t, objective=obj))
                better = True
            else:
                better = False
        if better and self.ctx is not None:
            # The assignment model's objective is the plan's own number.
            self.ctx.improve(agent_of, source=f"auto:{source}", objective=obj)
        return better

    def get(self) -> tuple[np.ndarray, float]:
        with self.lock:
            return self.agent_of.copy(), self.obj


def _niced(fn: Callable[..., None]) -> Callable[..., None]:
    """Run `fn` in a thread with a higher nice value (Linux: per thread; elsewhere a no-op)."""

    def run(*args: object, **kwargs: object) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HELPER_NICE)
        fn(*args, **kwargs)

    return run


def _warm_up_highs() -> None:
    """Solve a one-column LP in this thread so HiGHS's worker pool is created at normal priority.

    HiGHS creates its worker threads once per process, from the thread that
    first runs it; threads inherit the creator's nice value.
    """
    import highspy

    h = new_highs()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = 1, 0
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = np.ones(1), np.zeros(1), np.ones(1)
    h.passModel(lp)  # type: ignore[attr-defined]
    h.run()  # type: ignore[attr-defined]


def load_only(problem: Problem) -> bool:
    """Makespan / imbalance are the only weighted terms besides unassigned penalties."""
    w = problem.snapshot.weights
    return (w.makespan > 0 or w.imbalance > 0) and not (w.cost or w.migrations or w.tardiness)


def _related(lm: LinearModel, rank: np.ndarray | None = None) -> np.ndarray:
    """[m, m] how many tasks of agent a have agent b among their three best alternatives
    (by cost, or by `rank` [m, n], e.g. Lagrangian-adjusted cost)."""
    S = lm.score[: lm.m] if rank is None else np.where(np.isfinite(lm.score[: lm.m]), rank,
                                                       np.inf)
    k = min(3, lm.m)
    best = np.argsort(S, axis=0)[:k]  # [k, n]
    rel = np.zeros((lm.m, lm.m))
    for r in range(1, k):
        np.add.at(rel, (best[0], best[r]), 1.0)
    rel = rel + rel.T
    np.fill_diagonal(rel, 0.0)
    return rel


def _lns(shared: _Shared, budget: Budget, stop: threading.Event, seed: int,
         stats: dict[str, int], lb: float | None) -> None:
    lm = shared.lm
    m, n = lm.m, lm.n
    rng = np.random.default_rng(seed)
    rel = _related(lm) + 0.5
    per_agent = max(1.0, n / max(m, 1))
    target = float(np.clip(2.5 * per_agent, LNS_MIN_TASKS, LNS_START_TASKS))
    since_ls = 0
    while not stop.is_set() and budget.remaining() > RESERVE_S + 0.05:
        cur, obj = shared.get()
        if rng.random() < LNS_TASK_MODE:
            # Scattered: random tasks from every agent, free to go anywhere.
            agents = np.arange(m)
            pick = rng.choice(n, size=min(n, int(target)), replace=False)
            free = np.union1d(pick, np.flatnonzero(cur < 0))
        else:
            # Agents: a random agent, then related ones until ~target tasks.
            k_agents = int(np.clip(round(target / per_agent), 2, m))
            a0 = int(rng.integers(m))
            chosen = [a0]
            weight = rel[a0].copy()
            while len(chosen) < k_agents:
                weight[chosen] = 0.0
                if weight.sum() <= 0:
                    break
                b = int(rng.choice(m, p=weight / weight.sum()))
                chosen.append(b)
                weight += rel[b]
            agents = np.array(sorted(chosen))
            in_s = np.zeros(m + 1, dtype=bool)
            in_s[agents] = True
            rows = np.where(cur >= 0, cur, m)
            free = np.flatnonzero(in_s[rows] | (cur < 0))
        fixed = cur.copy()
        fixed[free] = -1
        fixed_used = lm.used(fixed)
        fixed_loads = lm.loads(fixed)
        on = np.flatnonzero(fixed >= 0)
        fixed_moved = int(lm.moved[lm.pos[fixed[on], on]].sum()) if on.size else 0
        hm = build_highs(lm, tasks=free, agents=agents, fixed_used=fixed_used,
                         fixed_loads=fixed_loads, fixed_moved=fixed_moved)
        h = hm.highs
        limit = min(LNS_SUB_LIMIT, budget.remaining() - RESERVE_S)
        if limit <= 0.02:
            break
        h.setOptionValue("time_limit", float(limit))  # type: ignore[attr-defined]
        h.setOptionValue("random_seed", int(rng.integers(1 << 30)))  # type: ignore[attr-defined]
        h.setOptionValue("mip_rel_gap", 0.0)  # type: ignore[attr-defined]
        set_start(lm, hm, cur)
        t_sub = time.perf_counter()
        h.run()  # type: ignore[attr-defined]
        stats["lns_subproblems"] += 1
        info = h.getInfo()  # type: ignore[attr-defined]
        import highspy

        solved = h.getModelStatus() == highspy.HighsModelStatus.kOptimal  # type: ignore[attr-defined]
        if info.primal_solution_status == 2:
            cand = read_assignment(lm, hm, np.asarray(h.getSolution().col_value), cur)  # type: ignore[attr-defined]
            if shared.offer(cand, budget.elapsed(), "lns"):
                stats["lns_improvements"] += 1
                since_ls += 1
            elif lm.feasible(cand) and lm.objective(cand) <= obj + 1e-9 * max(1.0, abs(obj)):
                with shared.lock:  # equal objective: move along the plateau
                    if shared.obj >= lm.objective(cand) - 1e-9 * max(1.0, abs(obj)):
                        shared.agent_of = cand
        if solved and free.size == n and agents.size == m:
            stop.set()  # the sub-problem was the whole problem: proven optimal
            stats["proven"] = 1
            break
        if lb is not None and shared.obj <= lb + 1e-9 * max(1.0, abs(shared.obj)):
            stop.set()  # the bound proves the incumbent optimal
            break
        # Adapt: grow while sub-problems are solved to optimality quickly,
        # shrink when they are not solved or take long.
        took = time.perf_counter() - t_sub
        if solved and took < LNS_FAST_S:
            target = min(LNS_MAX_TASKS, target * 1.1)
        elif not solved or took > 3 * LNS_FAST_S:
            target = max(LNS_MIN_TASKS, target * 0.8)
        if since_ls >= 10:
            since_ls = 0
            cur, _ = shared.get()
            better = local_search(lm, cur, seed=int(rng.integers(1 << 30)), max_passes=3,
                                  deadline=lambda: budget.remaining() < RESERVE_S + 0.1)
            shared.offer(better, budget.elapsed(), "local search")


def _walk(shared: _Shared, budget: Budget, stop: threading.Event, seed: int,
          stats: dict[str, int], mode: str = "mixed", rank: np.ndarray | None = None) -> None:
    """The compiled penalty walk (allocator.solvers.gap_kernel) until the budget ends.

    Two modes: the whole model, and blocks of ``WALK_BLOCK_AGENTS`` related
    agents with their tasks (the rest fixed), ``WALK_BLOCK_S`` each, from the
    shared incumbent. Up to ``WALK_WHOLE_AGENTS`` agents only the whole
    model; above, phases of ``WALK_PHASE_S`` pick a mode with a probability
    that follows each mode's recent gain per second (`mode` "whole" or
    "blocks" forces one). Measured at seed 101, 10 s: C 40x800 0.28 % with
    blocks only, 0.21 % whole only, 0.24 % mixed; E 40x800 0.39 / 0.57 /
    0.41 %; E 80x1600 0.39 % blocks only, 0.45 % mixed (whole-model rounds
    take 0.1-0.2 s there).
    Plans go both ways through `shared`: this thread's better plans are
    offered (and checked against the model there); a better plan from the
    other threads restarts the whole-model walk from it. Does nothing until
    the kernel is compiled.
    """
    if budget.remaining() < WALK_MIN_S:
        return  # before the import: importing numba alone holds the GIL for ~0.3 s
    from allocator.solvers.gap_kernel import PenaltySearch, kernel_ready

    lm = shared.lm
    if not PenaltySearch.applies(lm):
        return
    # A fresh process loads the compiled kernel in a warm-up thread (started
    # by solve_linear): wait for it while enough of the budget is left.
    while not kernel_ready():
        if stop.is_set() or budget.remaining() < WALK_MIN_S:
            return
        time.sleep(0.02)
    if budget.remaining() < WALK_MIN_S / 2:
        return
    cur, obj = shared.get()
    if not np.isfinite(obj) or not lm.feasible(cur):
        return
    rng = np.random.default_rng(seed + 7)
    whole = PenaltySearch.of_model(lm, cur, seed, rank=rank)
    seen = [shared.version]
    blocks = _Blocks(lm, rng, rank) if lm.m > WALK_WHOLE_AGENTS and mode != "whole" else None
    gain = [1.0, 1.0]  # recent relative gain per second: whole, blocks
    rounds = [1]

    def whole_phase(until: float) -> None:
        while (not stop.is_set() and time.perf_counter() < until
               and budget.remaining() > RESERVE_S + 0.02):
            if shared.version != seen[0]:
                seen[0] = shared.version
                best, best_obj = shared.get()
                whole.adopt(best, best_obj)
            t = time.perf_counter()
            if whole.run(rounds[0]) and shared.offer(whole.best_agent_of(), budget.elapsed(),
                                                     "penalty walk"):
                stats["walk_improvements"] += 1
            took = time.perf_counter() - t
            if took < WALK_CHUNK_S / 2:
                rounds[0] *= 2
            elif took > 2 * WALK_CHUNK_S and rounds[0] > 1:
                rounds[0] //= 2

    while not stop.is_set() and budget.remaining() > RESERVE_S + 0.05:
        end = time.perf_counter() + max(0.0, min(WALK_PHASE_S, budget.remaining() - RESERVE_S))
        if blocks is None:
            whole_phase(end)
            continue
        p_whole = float(np.clip(gain[0] / (gain[0] + gain[1]), 0.15, 0.85))
        if mode != "mixed":
            p_whole = 1.0 if mode == "whole" else 0.0
        pick = 0 if rng.random() < p_whole else 1
        before, t0 = shared.get()[1], time.perf_counter()
        if pick == 0:
            whole_phase(end)
        else:
            blocks.phase(shared, budget, stop, seed, stats, end)
        after = shared.get()[1]
        rate = max(0.0, before - after) / max(abs(before), 1e-9) / max(
            time.perf_counter() - t0, 1e-3) * 1e4  # basis points per second
        gain[pick] = 0.5 * gain[pick] + 0.5 * (rate + 1e-3)
    stats["walk_rounds"] += whole.rounds_done


class _Blocks:
    """Block mode of the walk: related agents, their tasks, a short walk each."""

    def __init__(self, lm: LinearModel, rng: np.random.Generator,
                 rank: np.ndarray | None = None) -> None:
        self.lm, self.rng, self.rank = lm, rng, rank
        self.rel = _related(lm, rank) + 0.5

    def phase(self, shared: _Shared, budget: Budget, stop: threading.Event, seed: int,
              stats: dict[str, int], until: float) -> None:
        from allocator.solvers.gap_kernel import PenaltySearch

        lm, rng, m = self.lm, self.rng, self.lm.m
        g = min(WALK_BLOCK_AGENTS, m)
        while not stop.is_set() and time.perf_counter() < until:
            cur, _ = shared.get()
            a0 = int(rng.integers(m))
            chosen = [a0]
            weight = self.rel[a0].copy()
            while len(chosen) < g:
                weight[chosen] = 0.0
                b = int(rng.choice(m, p=weight / weight.sum()))
                chosen.append(b)
                weight += self.rel[b]
            agents = np.array(sorted(chosen))
            ps, tasks = PenaltySearch.block(lm, cur, agents, int(rng.integers(1 << 62)),
                                            rank=self.rank)
            stats["walk_blocks"] += 1
            if tasks.size < 2 or not np.isfinite(ps.best_cost):
                continue
            t_end = min(until, time.perf_counter() + WALK_BLOCK_S)
            while time.perf_counter() < t_end and not stop.is_set():
                ps.run(2, chains=False)
            stats["walk_rounds"] += ps.rounds_done
            if ps.best_cost < ps.start_cost - 1e-9 * max(1.0, abs(ps.start_cost)):
                cand = cur.copy()
                cand[tasks] = agents[ps.best_agent_of()]
                if shared.offer(cand, budget.elapsed(), "penalty walk"):
                    stats["walk_improvements"] += 1


def _full_milp(shared: _Shared, budget: Budget, seed: int, out: dict[str, object],
               stop: threading.Event, tag: str = "milp", heuristic_effort: float | None = None,
               warm: bool = False) -> None:
    """The full MILP in HiGHS, passing its incumbents to the other thread through `shared`.

    With `warm`, it starts from the shared incumbent and takes newer ones
    through the user-solution callback. Without, it runs as HiGHS alone would
    (measured: handing HiGHS a start slows its bound and search on C/D GAP).
    """
    lm = shared.lm
    hm = build_highs(lm)
    h = hm.highs
    if heuristic_effort is not None:
        h.setOptionValue("mip_heuristic_effort", heuristic_effort)  # type: ignore[attr-defined]
    h.setOptionValue("time_limit", float(max(budget.remaining() - RESERVE_S, 0.01)))  # type: ignore[attr-defined]
    h.setOptionValue("random_seed", int(seed) % 2_147_483_647)  # type: ignore[attr-defined]
    h.setOptionValue("mip_rel_gap", 0.0)  # type: ignore[attr-defined]
    if warm:
        start, _ = shared.get()
        set_start(lm, hm, start)

    def on_improve(e) -> None:  # type: ignore[no-untyped-def]
        try:
            col = np.asarray(e.data_out.mip_solution)
            cand = read_assignment(lm, hm, col, np.full(lm.n, -1, dtype=np.int64))
            shared.offer(cand, budget.elapsed(), tag)
        except Exception:  # a callback must never take the solver down
            pass
        if stop.is_set() or budget.remaining() < RESERVE_S:
            e.interrupt()

    injected = [shared.version]
    calls = [0]

    def on_user_solution(e) -> None:  # type: ignore[no-untyped-def]
        # HiGHS asks for user solutions at a few points of its search: hand it
        # the other thread's incumbent when it is newer (and not its own).
        calls[0] += 1
        if stop.is_set() or budget.remaining() < RESERVE_S:
            e.interrupt()  # HiGHS's own time limit can lag on a busy machine
            return
        try:
            with shared.lock:
                version, source = shared.version, shared.source
                cand = shared.agent_of.copy() if version > injected[0] else None
            if warm and cand is not None and source != tag:
                e.data_in.setSolution(start_vector(lm, hm, cand))
            injected[0] = version
        except Exception:  # a callback must never take the solver down
            pass

    # No interrupt callbacks: HiGHS calls them constantly and each would take
    # the GIL from the LNS thread.
    h.cbMipImprovingSolution.subscribe(on_improve)  # type: ignore[attr-defined]
    h.cbMipUserSolution.subscribe(on_user_solution)  # type: ignore[attr-defined]
    run_highs(h, budget)
    import highspy

    out["user_solution_calls"] = int(out.get("user_solution_calls", 0)) + calls[0]  # type: ignore[call-overload]
    info = h.getInfo()  # type: ignore[attr-defined]
    if np.isfinite(info.mip_dual_bound):
        out["dual"] = max(float(info.mip_dual_bound), float(out.get("dual") or -np.inf))  # type: ignore[arg-type]
    optimal = h.getModelStatus() == highspy.HighsModelStatus.kOptimal  # type: ignore[attr-defined]
    if info.primal_solution_status == 2:
        col = np.asarray(h.getSolution().col_value)  # type: ignore[attr-defined]
        cand = read_assignment(lm, hm, col, np.full(lm.n, -1, dtype=np.int64))
        shared.offer(cand, budget.elapsed(), tag)
    if optimal:
        out["optimal"] = True
        stop.set()  # proven: nothing left for the other thread to find


def _construct(problem: Problem, lm: LinearModel, budget: Budget, seed: int,
               shared: _Shared, *, deterministic: bool = False,
               stop: threading.Event | None = None
               ) -> tuple[float | None, np.ndarray | None]:
    """Anytime construction without the LP: starts, Lagrangian heuristic, local search.

    Every plan found goes to `shared` at once (so a stop or an early deadline
    keeps it). The Lagrangian multipliers price capacity, so its heuristic
    places every task where some placement fits even when cheap means heavy
    (GAP type E), and its bound is within hundredths of a per cent of the
    LP bound. Returns that bound and the Lagrangian-adjusted costs [m, n]
    (cost + multiplier x demand: which agents suit a task once capacity is
    priced; the penalty walk draws its candidate agents from them).

    `deterministic` bounds the heuristics by iteration and pass counts
    instead of the wall clock, so the same seed gives the same start on a
    loaded machine too.
    """
    def clock_deadline(share: float) -> Callable[[], bool] | None:
        if deterministic:
            return None
        halt = stop if stop is not None else threading.Event()
        return lambda: (budget.remaining() < share * budget.time_limit + RESERVE_S
                        or halt.is_set())

    if lm.has_load_terms:
        from allocator.solvers.balance import balance_assign

        lpt = balance_assign(problem, deadline=clock_deadline(0.8) or (lambda: False))
        shared.offer(lpt, budget.elapsed(), "lpt")
    if lm.P == 0:  # nothing can go anywhere: leaving every task out is the only plan
        return lm.objective(np.full(lm.n, -1, dtype=np.int64)), None

    lg = Lagrangian(lm)
    ff = lg.feasibility_first()
    shared.offer(ff, budget.elapsed(), "feasibility-first greedy")

    kernel = None if deterministic else loaded_kernel()

    def polish(x: np.ndarray) -> np.ndarray:
        # compiled when loaded (solve_linear starts loading it for budgets that hold the
        # walk): the same shifts, 60 % of the construction's CPU in numpy at 80x1600
        y = kernel.polish(lm, x, 5) if kernel is not None else None
        return y if y is not None else local_search(lm, x, seed=seed, max_passes=5, pairs=False)

    def on_incumbent(x: np.ndarray, _obj: float) -> None:
        shared.offer(x, budget.elapsed(), "lagrangian")
        shared.placed.set()

    cur, obj = shared.get()
    res = lagrangian(
        lm, deadline=clock_deadline(LAGRANGE_UNTIL), max_iter=LAGRANGE_MAX_ITER,
        upper=obj if lm.feasible(cur) and not np.any(cur < 0) else None,
        on_incumbent=on_incumbent, improve=polish,
    )
    shared.placed.set()
    cur, _ = shared.get()
    best = local_search(lm, cur, seed=seed, deadline=clock_deadline(0.1))
    shared.offer(best, budget.elapsed(), "local search")
    rank = lg.adjusted(res.lam) if res.lam.size else None
    return (res.bound if np.isfinite(res.bound) else None), rank


def _first(problem: Problem, lm: LinearModel, budget: Budget,
           warm: WarmStart | None) -> _Shared:
    """The shared incumbent, seeded with the fast greedy (and the warm start when better).

    On large models without load terms the greedy is skipped: it takes a
    tenth of a second there and the feasibility-first construction that
    follows at once is better on every GAP type (the greedy leaves tasks
    out on tight ones).
    """
    skip = lm.P > MILP_PORTFOLIO_PAIRS and not lm.has_load_terms
    starts = ([] if skip else [greedy_assign(problem)]) + (
        [warm.agent_of] if warm is not None else [])
    feasible = [s for s in starts if lm.feasible(s)]
    first = min(feasible, key=lm.objective) if feasible else np.full(lm.n, -1, dtype=np.int64)
    shared = _Shared(lm, first, lm.objective(first), ctx=budget)
    shared.points.append(SolutionPoint(time_s=budget.elapsed(), objective=shared.obj))
    budget.improve(first, source="auto:greedy", objective=shared.obj)
    return shared


def _load_kernels(walk: bool) -> None:
    """Import numba and start loading the compiled kernels, in a background thread.

    Importing numba is ~0.25 s of CPU; in the solving thread it came before the first
    Lagrangian plan (three solves at once at load 7-9: ~2 s of wall time)."""

    def load() -> None:
        from allocator.solvers import lagrange_kernel
        from allocator.solvers.gap_kernel import kernel_ready

        lagrange_kernel.ready()  # starts loading the construction's kernels
        if walk:
            kernel_ready()  # the walk's, while the construction runs

    # not a daemon: interpreter exit waits for the import (and then for the warm-up it
    # starts, jit.WarmUp) rather than finalising inside numba
    threading.Thread(target=load, name="auto-kernel-import", daemon=False).start()


def placed_grace(budget: Budget) -> float:
    """How long past its deadline a solve waits for its first Lagrangian plan: a tenth
    of the limit, at least PLACED_GRACE_MIN_S and at most PLACED_GRACE_MAX_S."""
    return min(PLACED_GRACE_MAX_S, max(PLACED_GRACE_MIN_S, 0.1 * budget.time_limit))


def _finish_margin(budget: Budget) -> float:
    """Seconds before the deadline at which the caller's thread stops waiting for the
    search: what building and returning the plan takes, scaled by how slowly the
    caller's thread has run so far (compiling the snapshot and the model: CPU-bound),
    since the same steps at the end will run as slowly."""
    return float(np.clip(FINISH_S / max(budget.cpu_share(), 1e-3), FINISH_S, FINISH_MAX_S))


@dataclass
class _Result:
    """What the search leaves for the plan: the bound and the MILP's last word."""

    lagr_raw: float | None = None
    out: dict[str, object] = field(default_factory=dict)
    left_running: bool = False
    done: bool = False


def solve_linear(problem: Problem, *, budget: Budget, seed: int,
                 warm: WarmStart | None, parallel: bool = True) -> Plan:
    """Strategy 3 of the module docstring.

    With `parallel`, the search (construction, then the portfolio) runs in its own
    thread and this one only waits for it, until a margin before the deadline: then
    the best plan handed over so far is the answer, whatever the search is doing (a
    Lagrangian repair, an LNS sub-problem, HiGHS past its time limit). Three solves at
    once at load 9 returned 0.5-2 s late while this thread ran those steps itself.
    """
    lm = build_linear(problem)
    if parallel and budget.remaining() >= WALK_MIN_S:
        _load_kernels(not lm.has_load_terms and lm.max_migrations is None)
    shared = _first(problem, lm, budget, warm)
    stats = {"lns_subproblems": 0, "lns_improvements": 0, "walk_rounds": 0,
             "walk_blocks": 0, "walk_improvements": 0}
    stop = threading.Event()
    res = _Result()
    if not parallel:
        _search(problem, lm, budget, seed, shared, stats, stop, res, parallel=False)
    else:
        # Not a daemon: the search may be inside HiGHS, and interpreter exit must wait
        # for HiGHS to stop (killing it mid-run aborted the process).
        margin = _finish_margin(budget)
        th = threading.Thread(target=_search, name="auto-search",
                              args=(problem, lm, budget, seed, shared, stats, stop, res))
        th.start()
        th.join(timeout=max(0.0, budget.remaining() - margin))
        # Never without the first Lagrangian plan (~0.1 s of CPU at 80 x 1600 after the
        # feasibility-first one): on a starved machine compiling the snapshot alone can
        # take a 1 s budget, and the plan before it is several times the LP bound on E.
        # But not for long past the deadline: on an over-full snapshot the first
        # Lagrangian repair took 1.9 s of CPU (100 x 2,000 on a 2 s limit: 7.2 s
        # at load 5); past PLACED_GRACE the best plan so far is the answer.
        shared.placed.wait(timeout=max(0.0, budget.remaining()) + placed_grace(budget))
        stop.set()
        th.join(timeout=0.01)
    with shared.lock:  # nothing is handed over after this: the plan is final
        shared.closed = True
        agent_of, obj = shared.agent_of.copy(), shared.obj
        points, source = list(shared.points), shared.source
    late = not res.done
    done = {} if res.left_running or late else res.out  # a bound / proof not final yet
    dual = done.get("dual")
    dual = dual if isinstance(dual, float) else None
    lagr_raw = res.lagr_raw
    if lagr_raw is None and dual is None:  # no CPU for the Lagrangian (a starved machine)
        lagr_raw = separable_bound(lm)
    lb = guarded(lagr_raw) if lagr_raw is not None else None
    bound = best_bound(lb, dual)
    status = PlanStatus.FEASIBLE
    raw = best_bound(lagr_raw, dual)
    if raw is not None and obj <= raw + 1e-9 * max(1.0, abs(obj)):
        status = PlanStatus.OPTIMAL  # the bound proves it
    if done.get("optimal") or (stats.get("proven") and not late):
        status = PlanStatus.OPTIMAL
    msg = (f"assignment model: pairs={lm.P}; best from {source}; "
           f"lns {stats['lns_subproblems']} sub-problems, {stats['lns_improvements']} improved; "
           f"penalty walk {stats['walk_rounds']} rounds in {stats['walk_blocks']} blocks, "
           f"{stats['walk_improvements']} improved; "
           f"milp asked for user solutions {done.get('user_solution_calls', 0)} times"
           + ("; full MILP still busy at the deadline, not waited for" if res.left_running
              else "")
           + ("; search still busy at the deadline, not waited for" if late else ""))
    return make_plan(problem, agent_of, solver="auto", status=status, budget=budget,
                     bound=bound, solutions=points, message=msg)


def separable_bound(lm: LinearModel) -> float | None:
    """Each task at its cheapest eligible agent (or left out at its penalty), capacities
    and migration limits dropped: a lower bound in O(pairs) that needs no solver, for a
    plan whose search never reached its Lagrangian. The load terms are non-negative."""
    best = lm.pen.astype(float).copy()
    if lm.P:
        np.minimum.at(best, lm.J, lm.c)
    total = float(best.sum())
    return total if np.isfinite(total) else None


def _search(problem: Problem, lm: LinearModel, budget: Budget, seed: int, shared: _Shared,
            stats: dict[str, int], stop: threading.Event, res: _Result, *,
            parallel: bool = True) -> None:
    """Construction, then the portfolio of the module docstring, until the budget ends or
    `stop`; every plan goes to `shared`, the bound and the MILP's word to `res`."""
    try:
        _search_body(problem, lm, budget, seed, shared, stats, stop, res, parallel)
        res.done = True
    finally:
        stop.set()
        shared.placed.set()


def _search_body(problem: Problem, lm: LinearModel, budget: Budget, seed: int,
                 shared: _Shared, stats: dict[str, int], stop: threading.Event,
                 res: _Result, parallel: bool) -> None:
    out = res.out
    workers = max(1, budget.workers) if parallel else 1
    small = lm.P <= MILP_PORTFOLIO_PAIRS
    # The construction runs first, at normal priority, on every path: it is
    # what the plan rests on when the machine is busy or the budget short.
    lagr_raw, rank = _construct(problem, lm, budget, seed, shared, deterministic=not parallel,
                                stop=stop)
    res.lagr_raw = lagr_raw
    proven = lagr_raw is not None and shared.obj <= lagr_raw + 1e-9 * max(1.0, abs(shared.obj))
    if stop.is_set():
        return
    if small and workers >= 2 and lm.P > 0 and not proven and budget.remaining() > RESERVE_S:
        # Small model: HiGHS on the full model in this thread (it proves most
        # such instances within seconds); LNS in the niced helper.
        _warm_up_highs()

        def helper() -> None:
            if lm.m >= 2 and not stop.is_set():
                _lns(shared, budget, stop, seed, stats, lagr_raw)

        th = threading.Thread(target=_niced(helper), daemon=False)
        th.start()
        tw = threading.Thread(target=_walk, args=(shared, budget, stop, seed, stats),
                              kwargs={"rank": rank}, daemon=True)
        tw.start()
        try:
            _full_milp(shared, budget, seed, out, stop)
        finally:
            stop.set()
            # neither holds the plan: a niced LNS step or a walk round can outlast the
            # deadline on a busy machine (they only offer to `shared`)
            th.join(timeout=max(0.0, budget.remaining() - RESERVE_S / 3))
            tw.join(timeout=max(0.0, budget.remaining() - RESERVE_S / 3))
    elif not small and lm.P > 0 and budget.remaining() > RESERVE_S + 0.1 and not proven:
        th2 = None
        if workers >= 2 and budget.remaining() > MILP_HELPER_S_PER_PAIR * lm.P:
            # helper (niced): HiGHS warm from the LNS incumbents; primary: LNS
            th2 = threading.Thread(target=_niced(_full_milp),
                                   args=(shared, budget, seed, out, stop),
                                   kwargs={"warm": True}, daemon=False)
            th2.start()
        tw = threading.Thread(target=_walk, args=(shared, budget, stop, seed, stats),
                              kwargs={"rank": rank}, daemon=True)
        tw.start()
        try:
            if lm.m >= 2 and LARGE_PRIMARY == "walk":
                _walk(shared, budget, stop, seed + 1, stats, mode=SECOND_WALK_MODE, rank=rank)
            if lm.m >= 2 and not stop.is_set() and budget.remaining() > RESERVE_S + 0.1:
                _lns(shared, budget, stop, seed, stats, lagr_raw)
        finally:
            stop.set()
            # a walk round can outlast the deadline at 80 x 1600 on a busy
            # machine: the plan is not held for it (it only offers to `shared`)
            tw.join(timeout=max(0.0, budget.remaining() - RESERVE_S / 3))
            if th2 is not None:
                # HiGHS checks its clock rarely while it works on the root of
                # a large model (17 checks in 5 s at 64k columns), so it can
                # run a second past its limit; the plan is not held for it.
                # The thread is not a daemon: interpreter exit waits for
                # HiGHS to stop (killing it mid-run aborts the process).
                th2.join(timeout=max(0.0, budget.remaining() - RESERVE_S / 3))
                res.left_running = th2.is_alive()
    elif small and workers < 2 and lm.P > 0 and not proven and budget.remaining() > 0.2:
        # Single worker: the full MILP only, from the constructed incumbent.
        _full_milp(shared, budget, seed, out, stop, warm=True)


def _solve_scheduling(problem: Problem, *, budget: Budget, seed: int,
                      warm: WarmStart | None) -> Plan:
    """Strategy 1 of the module docstring."""
    fresh, fresh_order = greedy_schedule(problem)
    base: np.ndarray = fresh
    base_order: np.ndarray | None = fresh_order
    if warm is not None:  # a re-solve starts from the better of the two
        start = warm_or_fresh(problem, warm, (fresh, fresh_order))
        base, base_order = start.agent_of, start.order_key
    lb = None
    if problem.m * problem.n <= LINEAR_MAX_CELLS:
        lp = lp_relaxation(problem, time_limit=max(0.05, 0.1 * budget.remaining()))
        lb = None if lp is None else guarded(lp.bound)
    fallback = make_plan(problem, base, solver="auto:greedy", status=PlanStatus.FEASIBLE,
                         budget=budget, order_key=base_order, bound=lb)
    # CP-SAT's scheduling model reads dense [m, n] arrays: only where they are small
    # (there the pairs are counted on the dense mask; never an [m, n] mask at scale).
    dense_ok = problem.m * problem.n <= LINEAR_MAX_CELLS
    pairs = problem.eligible_pairs if dense_ok else -1
    if pairs == 0 or pairs > CPSAT_MAX_SCHED_PAIRS or not dense_ok or budget.remaining() < 0.1:
        why = ("no eligible pairs" if pairs == 0 else f"{pairs} eligible pairs"
               if dense_ok else f"{problem.m} x {problem.n} cells")
        return fallback.model_copy(update={"message": f"scheduling model; {why}: greedy"})
    from allocator.solvers.cpsat import solve_cpsat_arrays  # ortools, loaded on use

    agent_of, order_key, status, bound, points, msg = solve_cpsat_arrays(
        problem, budget=budget, seed=seed, warm=WarmStart(base, base_order),
        deterministic=budget.is_deterministic,
    )
    if agent_of is None:
        return fallback.model_copy(update={"message": f"cpsat: {msg}; greedy plan"})
    plan = make_plan(problem, agent_of, solver="auto:cpsat", status=status, budget=budget,
                     order_key=order_key, bound=best_bound(bound, lb), solutions=points,
                     message=msg)
    if fallback.objective is not None and plan.objective is not None and (
        fallback.objective < plan.objective - 1e-9 * max(1.0, abs(plan.objective))
    ):
        return fallback
    return plan


@register("auto", "portfolio: LP + local search + LNS/MILP in parallel, or CP-SAT scheduling, "
                  "or the structure-aware balancer at scale")
def solve_auto(
    problem: Problem, *, budget: Budget, seed: int = 0, warm: WarmStart | None = None
) -> Plan:
    if use_scheduling_model(problem):
        return _solve_scheduling(problem, budget=budget, seed=seed, warm=warm)
    cells = problem.m * problem.n
    if cells > LINEAR_MAX_CELLS or (load_only(problem) and cells > BALANCE_MIN_CELLS):
        from allocator.solvers.balance import solve_balance

        plan = solve_balance(problem, budget=budget, seed=seed, warm=warm)
        return plan.model_copy(update={"solver": "auto"})
    deterministic = budget.is_deterministic
    plan = solve_linear(problem, budget=budget, seed=seed, warm=warm,
                        parallel=not deterministic)
    return plan
