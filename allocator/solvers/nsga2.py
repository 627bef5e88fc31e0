"""NSGA-II (pymoo) over assignments: a Pareto front of valid plans.

Encoding: one integer gene per task that has at least one eligible agent;
gene value `g` in `0..k_j-1` means the task's g-th eligible agent and `k_j`
means "unassigned". Tasks no agent is eligible for are left out of the genome
and out of every plan. Operators keep eligibility by construction: uniform
crossover copies genes from a parent, mutation resets a gene to a random
*eligible* agent (never to "unassigned"); the repair moves tasks off agents
whose capacity is exceeded, and only when no agent has room leaves a task
unassigned, then applies the shared repair of allocator.constraints (the
migration cap, hard deadlines under the list schedule), so every genome
after repair meets every hard constraint; local-search moves are kept only
if they still do. When the snapshot has releases, deadlines or several
lanes, makespan and tardiness are read from the list schedule.

Unassigned tasks are a **constraint**, not an objective: the genome's
unassigned penalty (allocator.objectives.term_unassigned) is pymoo's
inequality constraint `G <= 0`. Constraint-domination makes a plan that
leaves out less penalty win over any other; when no plan places everything,
the front is the one among the plans with the least penalty found. The
objective values are the raw (unweighted) terms of allocator.objectives.

Bi-objective untimed snapshots with a time budget are seeded by a time-boxed
epsilon-constraint sweep (allocator.solvers.exact_front.epsilon_assignments).
Otherwise the initial population is seeded with the greedy construction and CP-SAT's
weighted model (`solve_cpsat_arrays`, deterministic mode) at several
weightings: each objective alone (with a tiny weight on the others, so the
extremes are non-dominated) and balanced mixes, weights normalised by the
spread of the greedy solutions. The rest is random eligible assignments,
repaired. A run is deterministic for a seed and a generation budget; with a
time budget it stops at whatever generation the clock allows. An external
archive keeps every non-dominated plan seen (up to `archive_size`, thinned
by crowding distance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.callback import Callback
from pymoo.core.mating import Mating
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem as MooProblem
from pymoo.core.repair import NoRepair, Repair
from pymoo.core.termination import TerminateIfAny, Termination
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.optimize import minimize
from pymoo.termination.max_gen import MaximumGenerationTermination

from allocator.constraints import (
    assignment_feasible,
    enforce,
    migration_cap,
    used_capacity,
)
from allocator.objectives import (
    build_schedule,
    busy_time,
    term_cost,
    term_imbalance,
    term_makespan,
    term_migrations,
    term_tardiness,
    term_unassigned,
)
from allocator.pareto import build_front, nondominated, parse_objectives
from allocator.problem import Problem, capacity_limit, compile_snapshot
from allocator.solvers.base import Budget, WarmStart, register
from allocator.solvers.greedy import construct
from models import PARETO_OBJECTIVES, ParetoFront, Plan

#: Small weight (relative, after normalising by spread) on the other objectives
#: when seeding an extreme point: any positive weight makes the seed
#: non-dominated; too small a one (1e-3 was tried) and a time-limited CP-SAT
#: ignores those objectives, leaving the extreme far from the front's end.
_EXTREME_EPS = 0.05

#: CP-SAT seeds run in deterministic mode; its time unit took 1.5 to 2.5 s of
#: wall time on a loaded 2-core machine, so each seed gets this share of its
#: wall-clock slice as deterministic time.
_DET_PER_WALL = 0.5

#: Min-max objective terms (their linear models are weak).
_MINMAX = frozenset({"makespan", "imbalance"})

#: Share of a time budget given to the epsilon-constraint seeding sweep
#: (bi-objective, untimed snapshots); the rest goes to evolution and polish. On
#: 10x80 type-D GAP the 10 s fronts were the sweep's plans (the generations never
#: improved them), so the sweep got 0.92 instead of 0.85 (more time for its levels).
_SWEEP_SHARE = 0.92

#: The sweep's model is built in Python at about this many (task, agent) pairs a
#: second (200 x 5,000, 773k pairs: 5.2 s of a 3 s budget before its first level);
#: a sweep whose build would take more than _SWEEP_BUILD_SHARE of its time is not run.
_SWEEP_BUILD_PAIRS_PER_S = 150_000.0
_SWEEP_BUILD_SHARE = 0.25

#: NSGA-II's encoding and repair tables are tasks x agents arrays: about this
#: many seconds a cell to set up (1,000 x 20,000: 10 s before the first seed).
#: A timed run whose set-up alone would take over _SETUP_MAX_SHARE of the budget
#: returns the greedy plan's one-point front instead, and says so.
_SETUP_S_PER_CELL = 5e-7
_SETUP_MAX_SHARE = 0.5

#: Time of an extreme HiGHS seed relative to a mixed weighting's.
_EXTREME_SHARE = 3.0

#: Time-budgeted runs skip the CP-SAT/HiGHS seeds when each would get less
#: wall time than this: such seeds are no better than the greedy ones, and
#: loading ortools alone took about 1 s on the shared 2-core machine, twice
#: a 0.5 s budget (`allocator pareto ... --time-limit 0.5`).
_MIN_SOLVER_SEED_S = 0.2

#: Seconds (per second of a budget under 1 s) kept at the end for polishing
#: and building the plans of the front (about 2 ms a point on a small snapshot).
_BUILD_RESERVE_S = 0.15


@dataclass
class Nsga2Config:
    """Knobs of one NSGA-II run (the defaults suit 10 to 200 tasks)."""

    pop_size: int = 60
    #: Stop after this many generations (None: only the time budget stops it).
    generations: int | None = None
    #: Share of the time budget given to the exact seeds (HiGHS or CP-SAT).
    seed_time_share: float = 0.5
    #: Seed with CP-SAT weighted solutions (greedy seeds are always added).
    cpsat_seeds: bool = True
    #: Expected number of genes a mutation changes.
    genes_per_mutation: float = 2.0
    crossover_prob: float = 0.9
    archive_size: int = 100
    #: Share of offspring given a few Pareto local-search steps after repair.
    local_search_prob: float = 0.2
    local_search_steps: int = 3
    #: Share of the time budget kept for polishing the archive with local search.
    polish_share: float = 0.05
    #: Most local-search rounds per archive point when polishing.
    polish_steps: int = 500


@dataclass(frozen=True)
class Nsga2Progress:
    """Reported after every generation through the `progress` callback."""

    generation: int
    evaluations: int
    elapsed_s: float
    front_size: int
    ideal: list[float]


class Encoding:
    """Genome <-> assignment (see the module docstring)."""

    def __init__(self, problem: Problem):
        elig = problem.eligible
        self.n = problem.n
        self.tasks = np.flatnonzero(elig.any(axis=0))  # genome position -> task
        self.choices = [np.flatnonzero(elig[:, j]) for j in self.tasks]
        self.k = np.array([c.size for c in self.choices], dtype=np.int64)  # code of unassigned
        kmax = int(self.k.max()) if self.k.size else 0
        self.table = np.full((self.tasks.size, kmax + 1), -1, dtype=np.int64)
        self.code = np.empty((problem.m + 1, self.tasks.size), dtype=np.int64)  # agent -> gene
        self.code[:] = self.k  # row m (agent -1) and ineligible agents -> unassigned
        for p, c in enumerate(self.choices):
            self.table[p, : c.size] = c
            self.code[c, p] = np.arange(c.size)

    @property
    def n_var(self) -> int:
        return int(self.tasks.size)

    def decode(self, x: np.ndarray) -> np.ndarray:
        """Gene vector -> agent_of[n] (-1 unassigned)."""
        agent_of = np.full(self.n, -1, dtype=np.int64)
        agent_of[self.tasks] = self.table[np.arange(self.n_var), np.asarray(x, dtype=np.int64)]
        return agent_of

    def encode(self, agent_of: np.ndarray) -> np.ndarray:
        """agent_of[n] -> gene vector (ineligible placements become unassigned)."""
        a = np.asarray(agent_of, dtype=np.int64)[self.tasks]
        return self.code[np.where(a >= 0, a, self.code.shape[0] - 1), np.arange(self.n_var)]


class Evaluator:
    """Objective vector and constraint of an assignment, from allocator.objectives.

    When nothing is timed and every agent runs one task at a time, the list
    schedule runs each agent's tasks back to back from `now`, so makespan is
    the largest busy time (objectives.busy_time) and tardiness is 0; the
    schedule is built only otherwise. Front values are recomputed by
    make_plan in any case.
    """

    def __init__(self, problem: Problem, objectives: Sequence[str]):
        self.problem = problem
        self.objectives = list(objectives)
        self.simple = not problem.has_time_constraints and bool(np.all(problem.concurrency == 1))
        self.timed = bool({"makespan", "tardiness"} & set(objectives))
        self.fixed_penalty = float(problem.unassigned_penalty[~problem.eligible.any(axis=0)].sum())

    def values(self, agent_of: np.ndarray) -> np.ndarray:
        p = self.problem
        schedule = None
        if self.timed and not self.simple:
            schedule = build_schedule(p, agent_of)
        out = []
        for name in self.objectives:
            if name == "cost":
                out.append(term_cost(p, agent_of))
            elif name == "imbalance":
                out.append(term_imbalance(p, agent_of))
            elif name == "migrations":
                out.append(term_migrations(p, agent_of))
            elif name == "makespan":
                if schedule is not None:
                    out.append(term_makespan(p, schedule))
                else:
                    out.append(float(busy_time(p, agent_of).max()) if np.any(agent_of >= 0)
                               else 0.0)
            elif name == "tardiness":
                out.append(term_tardiness(p, schedule) if schedule is not None else 0.0)
        return np.array(out)

    def penalty(self, agent_of: np.ndarray) -> float:
        """Unassigned penalty of the genome's tasks (0 when all placeable tasks are placed)."""
        return max(0.0, term_unassigned(self.problem, agent_of) - self.fixed_penalty)


def proxy_scores(problem: Problem, objectives: Sequence[str]) -> np.ndarray:
    """[K, m, n] per-objective cost of placing j on i, each scaled to mean 1 on eligible pairs.

    The repair uses a random mix of these to decide where a displaced task goes.
    """
    out = []
    elig = problem.eligible
    for name in objectives:
        if name == "cost":
            s = problem.cost.copy()
        elif name == "migrations":
            moved = (problem.current[None, :] >= 0) & (
                np.arange(problem.m)[:, None] != problem.current[None, :])
            s = moved * problem.migration_cost[None, :]
        else:  # makespan, imbalance, tardiness: the time it adds to the agent
            s = problem.duration / problem.concurrency[:, None]
        mean = float(np.abs(s[elig]).mean()) if elig.any() else 1.0
        out.append(s / (mean if mean > 0 else 1.0))
    return np.array(out)


class ParetoLocalSearch:
    """Moves that improve one objective without worsening any other (a memetic step).

    Candidates come from a cheap proxy of the chosen objective: for cost, the
    shifts and swaps that save the most; for makespan, imbalance and
    tardiness, shifts off the busiest agent (and onto the idlest); for
    migrations, moving a task back home. Only moves that keep every capacity
    are generated; the best `CANDIDATES` are evaluated exactly (Evaluator)
    and the first that weakly dominates the current vector is taken.
    """

    #: Exactly evaluated candidates per step: enough to get past proxy errors,
    #: few enough that a step costs well under a millisecond on 100 tasks.
    CANDIDATES = 6

    def __init__(self, problem: Problem, ev: Evaluator, cap: np.ndarray):
        self.p, self.ev, self.cap = problem, ev, cap
        self.cap_migrations = migration_cap(problem)

    def _step(self, a: np.ndarray, f: np.ndarray, used: np.ndarray, name: str
              ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Take the first candidate move for `name` that dominates `f` (updates `used`)."""
        for move in self._candidates(a, used, name):
            b = a.copy()
            for j, i in move:
                b[j] = i
            g = self.ev.values(b)
            if np.all(g <= f + 1e-12) and np.any(g < f - 1e-12) and self._keeps_hard(b):
                for j, i in move:
                    used[a[j]] -= self.p.demand[a[j], j]
                    used[i] += self.p.demand[i, j]
                return b, g, True
        return a, f, False

    def _keeps_hard(self, b: np.ndarray) -> bool:
        """Capacity and eligibility hold by construction of the moves; the rest is checked."""
        if self.cap_migrations is None and not self.p.hard_deadline.any():
            return True
        return assignment_feasible(self.p, b)

    def improve(self, a: np.ndarray, used: np.ndarray, rng: np.random.Generator,
                steps: int) -> np.ndarray:
        """`steps` random-objective steps (offspring after repair)."""
        f = self.ev.values(a)
        for _ in range(steps):
            k = int(rng.integers(len(self.ev.objectives)))
            a, f, _ = self._step(a, f, used, self.ev.objectives[k])
        return a

    def polish(self, a: np.ndarray, used: np.ndarray, budget: Budget,
               max_steps: int) -> np.ndarray:
        """Steepest use of `improve`: every objective in turn until none moves."""
        f = self.ev.values(a)
        for _ in range(max_steps):
            if budget.remaining() <= 0:
                break
            moved = False
            for name in self.ev.objectives:
                a, f, step_moved = self._step(a, f, used, name)
                moved = moved or step_moved
            if not moved:
                break
        return a

    def _room(self, a: np.ndarray, used: np.ndarray, js: np.ndarray) -> np.ndarray:
        """[m, |js|] the task could move to the agent: eligible, another agent, fits."""
        p = self.p
        room = p.eligible[:, js] & np.all(
            used[:, None, :] + p.demand[:, js, :] <= self.cap[:, None, :], axis=2)
        room[a[js], np.arange(js.size)] = False
        return room

    def _candidates(self, a: np.ndarray, used: np.ndarray,
                    name: str) -> list[list[tuple[int, int]]]:
        p, C = self.p, self.CANDIDATES
        placed = np.flatnonzero(a >= 0)
        if placed.size == 0:
            return []
        out: list[tuple[float, list[tuple[int, int]]]] = []
        if name == "cost":
            js = placed
            room = self._room(a, used, js)
            delta = np.where(room, p.cost[:, js] - p.cost[a[js], js][None, :], np.inf)
            for flat in _smallest(delta, C):
                i, k = np.unravel_index(int(flat), delta.shape)
                if delta[i, k] < 0:
                    out.append((float(delta[i, k]), [(int(js[k]), int(i))]))
            out += self._swaps(a, used, js, C)
            out += self._ejections(a, used, js, C)
        elif name == "migrations":
            js = placed[(p.current[placed] >= 0) & (a[placed] != p.current[placed])]
            for j in js[:C * 4]:
                h = int(p.current[j])
                if p.eligible[h, j] and np.all(used[h] + p.demand[h, j] <= self.cap[h]):
                    out.append((-float(p.migration_cost[j]), [(int(j), h)]))
        else:  # time-like: relieve the busiest agent, feed the idlest
            load = busy_time(p, a)
            top = int(np.argmax(load))
            js = placed[a[placed] == top]
            room = self._room(a, used, js)
            new = load[:, None] + p.duration[:, js] / p.concurrency[:, None]
            ok = room & (new < load[top] - 1e-12)
            score = np.where(ok, new, np.inf)
            for flat in _smallest(score, C):
                i, k = np.unravel_index(int(flat), score.shape)
                if np.isfinite(score[i, k]):
                    out.append((float(score[i, k]), [(int(js[k]), int(i))]))
            if name == "imbalance":
                up = np.flatnonzero(p.up)
                low = int(up[np.argmin(load[up])])
                js = placed[a[placed] != low]
                fits = p.eligible[low, js] & np.all(used[low] + p.demand[low, js] <= self.cap[low],
                                                    axis=1)
                for j in js[fits][:C]:
                    out.append((0.0, [(int(j), low)]))
        out.sort(key=lambda t: t[0])
        return [mv for _, mv in out[: 2 * C]]

    def _ejections(self, a: np.ndarray, used: np.ndarray, js: np.ndarray,
                   C: int) -> list[tuple[float, list[tuple[int, int]]]]:
        """Ejection chains of length two: j1 takes j2's place, j2 moves where it fits.

        Starts from the cheapest shifts that capacity blocks (the moves a
        GAP's cost optimum needs and single shifts or swaps cannot make).
        """
        p, cap, dem = self.p, self.cap, self.p.demand
        ai = a[js]
        delta = p.cost[:, js] - p.cost[ai, js][None, :]
        blocked = p.eligible[:, js] & ~np.all(used[:, None, :] + dem[:, js, :] <= cap[:, None, :],
                                              axis=2)
        blocked[ai, np.arange(js.size)] = False
        delta = np.where(blocked & (delta < 0), delta, np.inf)
        out = []
        for flat in _smallest(delta, C):
            i2, k = np.unravel_index(int(flat), delta.shape)
            if not np.isfinite(delta[i2, k]):
                break
            j1, i1 = int(js[k]), int(ai[k])
            on = np.flatnonzero(a == i2)
            # j2 on i2 whose leaving makes room for j1.
            fits = np.all(used[i2][None, :] - dem[i2, on] + dem[i2, j1][None, :] <= cap[i2],
                          axis=1)
            for j2 in on[fits]:
                free = used.copy()
                free[i1] -= dem[i1, j1]
                room = p.eligible[:, j2] & np.all(free + dem[:, j2, :] <= cap, axis=1)
                room[i2] = False
                if not room.any():
                    continue
                cand = np.flatnonzero(room)
                i3 = int(cand[np.argmin(p.cost[cand, j2])])
                total = float(delta[i2, k] + p.cost[i3, j2] - p.cost[i2, j2])
                if total < 0:
                    out.append((total, [(j1, int(i2)), (int(j2), i3)]))
        out.sort(key=lambda t: t[0])
        return out[:C]

    def _swaps(self, a: np.ndarray, used: np.ndarray, js: np.ndarray,
               C: int) -> list[tuple[float, list[tuple[int, int]]]]:
        """Cost-saving swaps of two tasks on different agents that keep both capacities."""
        p = self.p
        ai = a[js]
        c_own = p.cost[ai, js]
        # delta[x, y]: j_x to agent of j_y and j_y to agent of j_x.
        delta = p.cost[ai[None, :], js[:, None]] + p.cost[ai[:, None], js[None, :]]
        delta = delta - c_own[:, None] - c_own[None, :]
        delta = np.where(ai[:, None] != ai[None, :], delta, np.inf)
        delta = np.where(p.eligible[ai[None, :], js[:, None]] & p.eligible[ai[:, None],
                                                                            js[None, :]],
                         delta, np.inf)
        out = []
        for flat in _smallest(delta, 4 * C):
            x, y = np.unravel_index(int(flat), delta.shape)
            if not delta[x, y] < 0:
                break
            jx, jy, ix, iy = int(js[x]), int(js[y]), int(ai[x]), int(ai[y])
            dem = p.demand
            if np.all(used[iy] - dem[iy, jy] + dem[iy, jx] <= self.cap[iy]) and np.all(
                    used[ix] - dem[ix, jx] + dem[ix, jy] <= self.cap[ix]):
                out.append((float(delta[x, y]), [(jx, iy), (jy, ix)]))
                if len(out) >= C:
                    break
        return out


def _smallest(values: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of the `count` smallest entries, in increasing order (ties by index)."""
    flat = values.ravel()
    if flat.size > count:
        part = np.argpartition(flat, count)[:count]
        return part[np.lexsort((part, flat[part]))]
    return np.argsort(flat, kind="stable")


class CapacityRepair(Repair):
    """Move tasks off over-full agents (to the cheapest agent with room under a random
    mix of the objectives), leave a task unassigned only when no agent has room, then
    place unassigned tasks wherever they fit; then, with probability `ls_prob`, a few
    Pareto local-search steps."""

    def __init__(self, problem: Problem, enc: Encoding, ev: Evaluator, seed: int,
                 ls_prob: float = 0.0, ls_steps: int = 0, budget: Budget | None = None):
        super().__init__()
        #: Once `budget` has run out only the (required) repair is done, no local search.
        self.budget = budget
        self.p = problem
        self.enc = enc
        self.proxy = proxy_scores(problem, ev.objectives)
        self.rng = np.random.default_rng(seed)
        self.cap = capacity_limit(problem.capacity)
        self.ls = ParetoLocalSearch(problem, ev, self.cap)
        self.ls_prob, self.ls_steps = ls_prob, ls_steps

    def _do(self, problem: Any, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        X = np.asarray(X).astype(np.int64)
        for r in range(X.shape[0]):
            X[r] = self.repair_one(X[r])
        return X

    def repair_one(self, x: np.ndarray, local_search: bool = True) -> np.ndarray:
        p, enc = self.p, self.enc
        a = enc.decode(x)
        lam = self.rng.dirichlet(np.ones(self.proxy.shape[0]))
        score = np.tensordot(lam, self.proxy, axes=1)  # [m, n]
        demand, cap, elig = p.demand, self.cap, p.eligible
        used = np.zeros_like(p.capacity)
        placed = np.flatnonzero(a >= 0)
        np.add.at(used, a[placed], demand[a[placed], placed])
        over = np.flatnonzero(np.any(used > cap, axis=1))
        for i in over:
            while np.any(used[i] > cap[i]):
                js = np.flatnonzero(a == i)
                # Destinations with room for each task on i: [m, |js|].
                room = elig[:, js] & np.all(used[:, None, :] + demand[:, js, :] <= cap[:, None, :],
                                            axis=2)
                room[i] = False
                if room.any():
                    delta = np.where(room, score[:, js] - score[i, js][None, :], np.inf)
                    dest, k = np.unravel_index(int(np.argmin(delta)), delta.shape)
                    j = int(js[k])
                    a[j] = int(dest)
                    used[dest] += demand[dest, j]
                else:  # nowhere to go: leave out the task using most of the over-full resource
                    excess = (used[i] - cap[i]) > 0
                    share = (demand[i, js][:, excess] / np.maximum(cap[i, excess], 1e-12)).max(
                        axis=1)
                    j = int(js[int(np.argmax(share))])
                    a[j] = -1
                used[i] -= demand[i, j]
        # Place what is unassigned (in the genome) where it fits, cheapest first.
        left = enc.tasks[a[enc.tasks] < 0]
        for j in left[self.rng.permutation(left.size)]:
            ok = elig[:, j] & np.all(used + demand[:, j, :] <= cap, axis=1)
            if ok.any():
                to = int(np.flatnonzero(ok)[np.argmin(score[ok, j])])
                a[j] = to
                used[to] += demand[to, j]
        # Migration cap and hard deadlines (list schedule in default order, as
        # the Evaluator and the plan builder schedule it): the shared repair.
        b = enforce(p, a)
        if not np.array_equal(a, b):
            a = b
            used = used_capacity(p, a)
        if (local_search and self.ls_steps and self.rng.random() < self.ls_prob
                and (self.budget is None or self.budget.remaining() > 0)):
            a = self.ls.improve(a, used, self.rng, self.ls_steps)
        return enc.encode(a)


class ReassignMutation(Mutation):
    """Reset each gene with probability `rate` to a uniformly random eligible agent."""

    def __init__(self, enc: Encoding, rate: float):
        super().__init__()
        self.enc = enc
        self.rate = rate

    def _do(self, problem: Any, X: np.ndarray, *args: Any, random_state: Any = None,
            **kwargs: Any) -> np.ndarray:
        rs = random_state if random_state is not None else np.random.default_rng(0)
        X = np.asarray(X).astype(np.int64)
        hit = rs.random(X.shape) < self.rate
        new = np.floor(rs.random(X.shape) * self.enc.k[None, :]).astype(np.int64)
        X[hit] = new[hit]
        return X


class _Moo(MooProblem):
    def __init__(self, enc: Encoding, ev: Evaluator):
        super().__init__(n_var=enc.n_var, n_obj=len(ev.objectives), n_ieq_constr=1,
                         xl=np.zeros(enc.n_var), xu=enc.k.astype(float), vtype=int)
        self.enc, self.ev = enc, ev

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        F, G = [], []
        for x in np.asarray(X).astype(np.int64):
            a = self.enc.decode(x)
            F.append(self.ev.values(a))
            G.append([self.ev.penalty(a)])
        out["F"] = np.array(F)
        out["G"] = np.array(G)


class _BudgetTermination(Termination):
    """Stop when the Budget's (injectable) clock reaches `share` of the time limit.

    A generation is not started when the previous one's duration would carry
    it past that point (pymoo checks only between generations).
    """

    def __init__(self, budget: Budget, share: float = 1.0):
        super().__init__()
        self.budget, self.share = budget, share
        self._last: float | None = None

    def _update(self, algorithm: Any) -> float:
        now = self.budget.elapsed()
        step = 0.0 if self._last is None else now - self._last
        self._last = now
        return (now + step) / max(self.budget.time_limit * self.share, 1e-9)


class _BudgetMating(Mating):
    """pymoo's mating, whose rounds stop once the budget's clock passes `share` of it.

    pymoo mates (and repairs) again until it has enough distinct children, up to
    100 rounds per generation; a genome space with fewer distinct plans than a
    population (one agent, three tasks) ran all 100 in one generation, seconds
    past the time limit. A round now starts only while the budget allows one.
    """

    def __init__(self, mating: Mating, budget: Budget, share: float) -> None:
        super().__init__(mating.selection, mating.crossover, mating.mutation,
                         repair=mating.repair, eliminate_duplicates=mating.eliminate_duplicates,
                         n_max_iterations=mating.n_max_iterations)
        self.budget, self.share = budget, share

    def do(self, problem: Any, pop: Any, n_offsprings: int, random_state: Any = None,
           n_max_iterations: int | None = None, **kwargs: Any) -> Any:
        off = Population.create()
        until = self.share * self.budget.time_limit
        for _ in range(n_max_iterations or self.n_max_iterations):
            if len(off) >= n_offsprings or self.budget.elapsed() >= until:
                break
            new = super().do(problem, pop, n_offsprings - len(off), random_state=random_state,
                             n_max_iterations=1, **kwargs)
            off = Population.merge(off, self.eliminate_duplicates.do(new, off))
        return off


class Archive:
    """Every non-dominated genome seen among those with the least penalty."""

    def __init__(self, limit: int):
        self.limit = limit
        self.X = np.zeros((0, 0), dtype=np.int64)
        self.F = np.zeros((0, 0))
        self.penalty = np.inf

    def add(self, X: np.ndarray, F: np.ndarray, G: np.ndarray) -> None:
        g = np.asarray(G, dtype=float).reshape(len(X), -1)[:, 0]
        if len(g) == 0:
            return
        best = float(g.min())
        tol = 1e-9 * max(1.0, abs(best))
        if best < self.penalty - tol:
            self.X, self.F, self.penalty = X[:0].astype(np.int64), F[:0], best
        elif best > self.penalty + tol:
            return
        sel = g <= self.penalty + tol
        allX = np.vstack([self.X.reshape(-1, X.shape[1]), X[sel].astype(np.int64)])
        allF = np.vstack([self.F.reshape(-1, F.shape[1]), F[sel]])
        keep = nondominated(allF)
        self.X, self.F = allX[keep], allF[keep]
        if len(self.F) > self.limit:
            idx = _crowding_truncate(self.F, self.limit)
            self.X, self.F = self.X[idx], self.F[idx]


def _crowding_truncate(F: np.ndarray, size: int) -> np.ndarray:
    """Indices of `size` rows of a non-dominated set, dropping the most crowded one at a time."""
    idx = np.arange(len(F))
    while idx.size > size:
        sub = F[idx]
        d = np.zeros(idx.size)
        for k in range(sub.shape[1]):
            order = np.argsort(sub[:, k], kind="stable")
            span = sub[order[-1], k] - sub[order[0], k] or 1.0
            d[order[0]] = d[order[-1]] = np.inf
            d[order[1:-1]] += (sub[order[2:], k] - sub[order[:-2], k]) / span
        idx = np.delete(idx, int(np.argmin(d)))
    return idx


class _Watch(Callback):
    def __init__(self, archive: Archive, budget: Budget,
                 progress: Callable[[Nsga2Progress], None] | None):
        super().__init__()
        self.archive, self.budget, self.progress = archive, budget, progress
        self.generations = 0

    def notify(self, algorithm: Any) -> None:
        self.generations = int(algorithm.n_gen)
        pop = algorithm.pop
        self.archive.add(pop.get("X"), pop.get("F"), pop.get("G"))
        if self.progress is not None:
            F = self.archive.F
            self.progress(Nsga2Progress(
                generation=int(algorithm.n_gen), evaluations=int(algorithm.evaluator.n_eval),
                elapsed_s=self.budget.elapsed(), front_size=len(F),
                ideal=F.min(axis=0).tolist() if len(F) else []))


def _weighted(problem: Problem, weights: dict[str, float]) -> Problem:
    """The problem with its objective weights replaced (unassigned penalties kept)."""
    w = problem.snapshot.weights.model_copy(
        update={k: float(weights.get(k, 0.0)) for k in PARETO_OBJECTIVES})
    return compile_snapshot(problem.snapshot.model_copy(update={"weights": w}))


def weightings(objectives: Sequence[str], scale: np.ndarray) -> list[dict[str, float]]:
    """Seed weightings: each objective alone (others at a tiny weight), then mixes.

    Weights are divided by `scale` (the spread of each objective) so a mix
    means the same thing whatever the units.
    """
    k = len(objectives)
    mixes: list[np.ndarray] = []
    for e in range(k):
        v = np.full(k, _EXTREME_EPS)
        v[e] = 1.0
        mixes.append(v)
    mixes.append(np.ones(k))
    if k == 2:
        mixes += [np.array([3.0, 1.0]), np.array([1.0, 3.0])]
    return [{o: float(v[i] / scale[i]) for i, o in enumerate(objectives)} for v in mixes]


def seed_assignments(problem: Problem, objectives: Sequence[str], ev: Evaluator, *,
                     budget: Budget, seed: int, cpsat: bool, seed_time: float,
                     adapt: bool = False) -> list[np.ndarray]:
    """Greedy and CP-SAT solutions at several weightings (see the module docstring).

    CP-SAT runs in deterministic mode; with `adapt` the deterministic limit of
    each solve is rescaled from the wall time the previous ones took, so the
    seeds keep to `seed_time` on a loaded machine (at the price of
    determinism, which a time budget does not give anyway).
    """
    seeds: list[np.ndarray] = []
    greedy_vals = []
    # Timed runs cut the greedy seeds' repair (and the one pass of large problems)
    # at the seeding time: 100 x 2,000 with half the tasks left over spent 12 s of
    # a 2 s budget in five repairs. Generation-limited runs repeat (no clock).
    seed_until = budget.elapsed() + seed_time

    def stop() -> bool:
        return budget.elapsed() >= seed_until

    cut = stop if adapt else None
    for e in range(len(objectives)):
        unit = {o: (1.0 if i == e else _EXTREME_EPS) for i, o in enumerate(objectives)}
        a = construct(_weighted(problem, unit), cut)
        seeds.append(a)
        greedy_vals.append(ev.values(a))
    G = np.array(greedy_vals)
    scale = G.max(axis=0) - G.min(axis=0)
    # A spread at float noise (1e-16 between equal plans) would make weights of
    # 1e15 and more, which compile_snapshot refuses: treat it as no spread.
    size = np.maximum(np.abs(G).max(axis=0), 1.0)
    scale = np.where(scale > 1e-9 * size, scale, size)
    ws = weightings(objectives, scale)
    for w in ws[len(objectives):]:
        if cut is not None and cut():
            break
        seeds.append(construct(_weighted(problem, w), cut))
    if not cpsat:
        return seeds
    if adapt and seed_time / len(ws) < _MIN_SOLVER_SEED_S:
        return seeds
    pairs = int(problem.eligible.sum()) if adapt else 0
    sweep_time = min(budget.remaining(), _SWEEP_SHARE * budget.time_limit)
    if adapt and len(objectives) == 2 and (
            pairs <= _SWEEP_BUILD_SHARE * sweep_time * _SWEEP_BUILD_PAIRS_PER_S):
        # Bi-objective, untimed: a time-boxed epsilon-constraint sweep with
        # HiGHS reaches every level of a coarse objective (makespan with unit
        # work has a handful), where weighted sums only find the supported
        # points. Its plans are seeds like any other.
        from allocator.solvers.exact_front import epsilon_assignments

        found = epsilon_assignments(problem, objectives, seed=seed,
                                    budget=Budget(sweep_time, workers=budget.workers,
                                                  deterministic=budget.is_deterministic,
                                                  clock=budget.clock))
        seeds += found
        if len(found) >= 2:
            return seeds
    # Imported only here: ortools' import ran inside the first 10 s front of a process
    # (1.1 s of wall time at load 8; 0.2-0.5 s after the CLI's own imports), and the
    # fronts the sweep above seeds never need it.
    from allocator.solvers.cpsat import solve_cpsat_arrays
    from allocator.solvers.linear import build_linear, is_linear
    from allocator.solvers.milp import HIGHS_MIP_S_PER_NNZ, model_nonzeros, solve_highs_arrays

    per = seed_time / len(ws)
    seed_end = budget.elapsed() + seed_time
    ratio = _DET_PER_WALL  # deterministic time per wall second
    for k, w in enumerate(ws):
        if budget.remaining() <= 0:
            break
        det = min(per, budget.remaining()) * ratio
        sub = Budget(det, workers=1, clock=budget.clock)
        wp = _weighted(problem, w)
        # Hint: the best seed so far under this weighting (least penalty first).
        wv = np.array([w[o] for o in objectives])
        hint = min(seeds, key=lambda a: (ev.penalty(a), float(ev.values(a) @ wv)))
        if adapt and is_linear(wp):
            # Time-budgeted runs: HiGHS reaches the extremes of assignment-level
            # objectives (cost, load makespan, imbalance, migrations) far sooner
            # than CP-SAT on GAP-like data; a generation budget keeps CP-SAT's
            # deterministic mode instead.
            # The extremes (the first len(objectives) weightings) anchor the
            # front's ends and are the hardest solves: they get _EXTREME_SHARE
            # times a mix's time. Time a seed proves early goes to the rest.
            wts = [_EXTREME_SHARE if q < len(objectives) else 1.0 for q in range(k, len(ws))]
            share = max(seed_end - budget.elapsed(), 0.05) * wts[0] / sum(wts)
            if k < len(objectives):
                # At an extreme the other min-max terms get weight 0: they
                # weaken the LP badly; the archive's local search trims them
                # afterwards at that cost.
                wp = _weighted(problem, {o: (w[o] if i == k or o not in _MINMAX else 0.0)
                                         for i, o in enumerate(objectives)})
            # HiGHS does not read its limit in presolve (allocator.solvers.milp): a
            # model it cannot start in this seed's time is not built.
            limit = min(share, budget.remaining())
            if pairs * (2 + problem.n_resources) * HIGHS_MIP_S_PER_NNZ > 0.7 * limit:
                continue
            lm = build_linear(wp)
            blind = model_nonzeros(lm) * HIGHS_MIP_S_PER_NNZ
            if blind > 0.7 * limit:
                continue
            sol, _, _, _ = solve_highs_arrays(lm, seed=seed, start=hint,
                                              time_limit=limit - blind)
            if sol is not None:
                seeds.append(sol)
            continue
        sol, _, _, _, _, _ = solve_cpsat_arrays(wp, budget=sub, seed=seed,
                                                warm=WarmStart(agent_of=hint),
                                                deterministic=True)
        if sol is not None:
            seeds.append(sol)
        if adapt and sub.elapsed() > 0:
            # Learn how much wall time a deterministic unit takes on this machine now.
            ratio = min(1.0, max(0.05, ratio * per / max(sub.elapsed(), 1e-3)))
    return seeds


def nsga2_front(
    problem: Problem,
    objectives: Sequence[str] | str,
    *,
    budget: Budget,
    seed: int = 0,
    config: Nsga2Config | None = None,
    progress: Callable[[Nsga2Progress], None] | None = None,
    extra_seeds: Sequence[np.ndarray] = (),
) -> ParetoFront:
    """Run NSGA-II and return the front of valid, mutually non-dominated plans.

    Parameters
    ----------
    problem : the compiled snapshot.
    objectives : 2 to 4 of cost, makespan, imbalance, tardiness, migrations.
    budget : wall-clock budget (seeding included); `config.generations` adds
        a generation limit, which makes the run deterministic for a seed.
    progress : called after every generation with an Nsga2Progress.
    extra_seeds : further assignments (agent_of arrays) for the first population.
    """
    cfg = config or Nsga2Config()
    objectives = parse_objectives(objectives)
    cells = problem.m * problem.n
    if cfg.generations is None and (
            cells * _SETUP_S_PER_CELL > _SETUP_MAX_SHARE * budget.time_limit):
        reserve = min(0.3 * budget.time_limit, 0.2 + 2.5e-5 * problem.n)
        a = construct(problem, lambda: budget.remaining() <= reserve)
        return build_front(problem, objectives,
                           [a, *(np.asarray(x, dtype=np.int64) for x in extra_seeds)],
                           method="nsga2", budget=budget, seed=seed,
                           message=(f"not run: {problem.m} agents x {problem.n} tasks need "
                                    f"about {cells * _SETUP_S_PER_CELL:.0f} s of set-up, "
                                    f"more than half the {budget.time_limit:g} s limit; "
                                    f"the greedy plan"))
    enc = Encoding(problem)
    ev = Evaluator(problem, objectives)
    if enc.n_var == 0:  # nothing can be placed: one plan, everything unassigned
        return build_front(problem, objectives, [np.full(problem.n, -1)], method="nsga2",
                           budget=budget, seed=seed, message="no task has an eligible agent")
    seeds = seed_assignments(problem, objectives, ev, budget=budget, seed=seed,
                             cpsat=cfg.cpsat_seeds,
                             seed_time=cfg.seed_time_share * budget.time_limit,
                             adapt=cfg.generations is None)
    seeds += [np.asarray(s, dtype=np.int64) for s in extra_seeds]
    repair = CapacityRepair(problem, enc, ev, seed, ls_prob=cfg.local_search_prob,
                            ls_steps=cfg.local_search_steps, budget=budget)
    rng = np.random.default_rng(seed)
    rows = [repair.repair_one(enc.encode(a)) for a in seeds]
    # The time kept for polishing is also the point past which no generation
    # starts (a short budget can be spent by the seeds alone).
    evolve_until = budget.time_limit - max(cfg.polish_share * budget.time_limit,
                                           _BUILD_RESERVE_S * min(budget.time_limit, 1.0))
    while len(rows) < cfg.pop_size and (len(rows) < 2 or budget.elapsed() < evolve_until):
        rows.append(repair.repair_one(np.floor(rng.random(enc.n_var) * enc.k).astype(np.int64)))
    X0 = np.unique(np.array(rows), axis=0, return_index=True)[1]
    X0 = np.array(rows)[np.sort(X0)]
    archive = Archive(cfg.archive_size)
    if budget.elapsed() >= evolve_until and cfg.generations is None:
        # No time left for a generation: the front of the seeds (repaired) and polish.
        archive.add(X0, np.array([ev.values(enc.decode(x)) for x in X0]),
                    np.array([[ev.penalty(enc.decode(x))] for x in X0]))
        return _finish(problem, objectives, enc, ev, repair, archive, budget, seed, cfg,
                       gens=0, n_eval=len(X0), n_seeds=len(seeds))
    moo = _Moo(enc, ev)
    algo = NSGA2(
        pop_size=cfg.pop_size,
        sampling=X0,
        crossover=UniformCrossover(prob=cfg.crossover_prob),
        mutation=ReassignMutation(enc, rate=min(1.0, cfg.genes_per_mutation / enc.n_var)),
        repair=repair,
        eliminate_duplicates=True,
    )
    # The rows are repaired already: pymoo would repair (and local-search) them again.
    algo.initialization.repair = NoRepair()
    share = evolve_until / max(budget.time_limit, 1e-9)
    algo.mating = _BudgetMating(algo.mating, budget, share)
    term: Termination = _BudgetTermination(budget, share)
    if cfg.generations is not None:
        term = TerminateIfAny(term, MaximumGenerationTermination(cfg.generations))
    watch = _Watch(archive, budget, progress)
    res = minimize(moo, algo, term, seed=seed, callback=watch, verbose=False,
                   copy_algorithm=False)
    gens = watch.generations
    n_eval = int(res.algorithm.evaluator.n_eval) if res.algorithm is not None else 0
    return _finish(problem, objectives, enc, ev, repair, archive, budget, seed, cfg,
                   gens=gens, n_eval=n_eval, n_seeds=len(seeds))


def _finish(problem: Problem, objectives: list[str], enc: Encoding, ev: Evaluator,
            repair: CapacityRepair, archive: Archive, budget: Budget, seed: int,
            cfg: Nsga2Config, *, gens: int, n_eval: int, n_seeds: int) -> ParetoFront:
    """Polish the archive (local search from every point, merged back) and build the front."""
    polished = []
    for x in archive.X:
        if budget.remaining() <= 0:
            break
        a = enc.decode(x)
        used = np.zeros_like(problem.capacity)
        placed = np.flatnonzero(a >= 0)
        np.add.at(used, a[placed], problem.demand[a[placed], placed])
        polished.append(enc.encode(repair.ls.polish(a, used, budget, cfg.polish_steps)))
    if polished:
        P = np.array(polished)
        archive.add(P, np.array([ev.values(enc.decode(x)) for x in P]),
                    np.array([[ev.penalty(enc.decode(x))] for x in P]))
    assignments = [enc.decode(x) for x in archive.X]
    front = build_front(problem, objectives, assignments, method="nsga2", budget=budget,
                        seed=seed, message=f"{gens} generations, {n_eval} evaluations, "
                                           f"{n_seeds} seeds")
    return front.model_copy(update={"generations": gens, "evaluations": n_eval})


def pareto_objectives_of(problem: Problem) -> list[str]:
    """Objectives a single-plan nsga2 solve trades off: the weighted ones (2 to 4)."""
    w = problem.snapshot.weights
    named = [o for o in PARETO_OBJECTIVES if getattr(w, o) > 0][:4]
    for o in ("cost", "makespan", "imbalance"):
        if len(named) >= 2:
            break
        if o not in named:
            named.append(o)
    return [o for o in PARETO_OBJECTIVES if o in named]


@register("nsga2", "pymoo NSGA-II front; returns the plan best under the snapshot's weights")
def solve_nsga2(
    problem: Problem, *, budget: Budget, seed: int = 0, warm: WarmStart | None = None
) -> Plan:
    objectives = pareto_objectives_of(problem)
    extra = [warm.agent_of] if warm is not None else []
    front = nsga2_front(problem, objectives, budget=budget, seed=seed, extra_seeds=extra)
    best = min(front.points, key=lambda p: p.plan.objective if p.plan.objective is not None
               else np.inf)
    note = f"; {front.message}" if front.message and front.message.startswith("not run") else ""
    return best.plan.model_copy(update={
        "wall_time_s": budget.elapsed(),
        "message": f"best of {len(front.points)} Pareto points ({', '.join(objectives)}) "
                   f"under the snapshot's weights{note}"})
