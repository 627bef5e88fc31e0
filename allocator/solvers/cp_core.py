"""The CP-SAT core shared by the cpsat backend, rebalancing and the exact front.

One builder for what every CP-SAT model here starts with: a Boolean
``x[i, j]`` per eligible (agent, task) pair, ``u[j]`` for leaving task j
out, exactly one of them per task, capacity rows, the migration indicators
and the ``options.max_migrations`` cap (allocator.constraints' rules, in
integers). Each user adds its own objective and extra structure.

CP-SAT needs integers. :func:`int_scale` finds the smallest power of ten
that makes a set of numbers integral within a limit, else the smallest such
power times a highly composite number (durations work / speed with a speed
of 3 are thirds); when none does, a lossy
factor is used and ``exact`` is False, and callers then never claim
optimality. Capacity rows round demands up and capacities down, so an
integer-feasible solution is float-feasible whatever the factor.

Building is Python work per pair (400k pairs: seconds), so a caller with a
budget passes `out_of_time`: the build looks at it every
``BUILD_CHECK_PAIRS`` pairs and raises :class:`BuildOutOfTime` when it says
so (cpsat then answers with its hint instead of overrunning its limit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from allocator.problem import Problem

#: Largest power of ten tried when making numbers integral.
MAX_POW10 = 6

#: Multipliers of the powers of ten tried when no power alone makes numbers integral:
#: durations work / speed with speeds such as 3, 6, 7, 9 or 12 are thirds, sevenths,
#: ninths, and a lossy factor then rounded a task that ends exactly at its hard
#: deadline one tick past it (cpsat left it out: 100,000 in penalties on a plan that
#: fits every task).
RATIONAL_BASES = (2, 3, 4, 6, 8, 9, 12, 24, 36, 60, 120, 360, 840, 2520, 27720)

#: Largest scaled capacity or demand: int64 sums keep ample headroom.
MAX_CAPACITY_COEF = 1e12

#: Pairs the build makes between two looks at `out_of_time`.
BUILD_CHECK_PAIRS = 2_000

#: Pairs per second a model build is assumed to reach, for callers that must
#: decide by size rather than by the clock (deterministic solves). Measured
#: on a shared core at load ~2 (docs/benchmarks/cpsat-build.md): about
#: 120k pairs/s for the assignment model; the figure is kept below that.
BUILD_PAIRS_PER_S = 100_000.0


class BuildOutOfTime(Exception):
    """The model build ran past its caller's budget (`built` of `total` pairs made)."""

    def __init__(self, built: int, total: int) -> None:
        super().__init__(f"model build stopped after {built} of {total} pairs")
        self.built, self.total = built, total


@dataclass(frozen=True)
class IntScale:
    """A scaling factor and whether it makes every value an exact integer."""

    factor: float
    exact: bool


def int_scale(values: np.ndarray, limit: float, *, of_sum: bool = False) -> IntScale:
    """The smallest power of ten (up to 10**MAX_POW10) making `values` integral, else the
    smallest such power times one of RATIONAL_BASES.

    The scaled maximum (or sum, with `of_sum`) stays within `limit`; when no
    power of ten does both, the factor ``limit / max`` is returned with
    ``exact=False``.
    """
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    if v.size == 0 or float(v.max()) == 0.0:
        return IntScale(1.0, True)
    total = float(v.sum()) if of_sum else float(v.max())

    def integral(f: float) -> bool:
        s = v * f
        return bool(np.all(np.abs(s - np.round(s)) <= 1e-9 * np.maximum(1.0, s)))

    for p in range(MAX_POW10 + 1):
        f = 10.0**p
        if total * f > limit:
            break
        if integral(f):
            return IntScale(f, True)
    v = np.unique(v)
    for f in sorted(float(b) * 10.0**p for b in RATIONAL_BASES for p in range(MAX_POW10 + 1)):
        if total * f > limit:
            break
        if integral(f):
            return IntScale(f, True)
    return IntScale(limit / total, False)


@dataclass
class CpCore:
    """The shared variables of a CP-SAT assignment model (see the module docstring)."""

    problem: Problem
    model: cp_model.CpModel
    x: dict[tuple[int, int], cp_model.IntVar]
    u: list[cp_model.IntVar]
    pairs: list[list[int]]  # eligible agents of each task
    by_agent: list[list[int]]  # tasks each agent may take
    exact: bool  # the capacity rows are the float rows exactly
    #: Per task with a current agent: the 0/1 expression "placed elsewhere".
    moved: dict[int, cp_model.LinearExprT] = field(default_factory=dict)
    #: The pairs as arrays, in the order of `x`: agent, task, CP-SAT variable index.
    pair_i: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    pair_j: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    x_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def add_hint(self, agent_of: np.ndarray) -> None:
        """A full hint from an assignment (the model's hints are replaced).

        Written to the proto in two extends: one ``add_hint`` call per pair
        took 2.6 s at 400k pairs.
        """
        self.model.clear_hints()
        agent_of = np.asarray(agent_of, dtype=np.int64)
        on = agent_of[self.pair_j] == self.pair_i
        placed = np.zeros(self.problem.n, dtype=bool)
        placed[self.pair_j[on]] = True  # on an agent it may take (else: hinted out)
        hint = self.model.proto.solution_hint
        hint.vars.extend(self.x_index.tolist())
        hint.values.extend(on.astype(np.int64).tolist())
        hint.vars.extend([v.index for v in self.u])
        hint.values.extend((~placed).astype(np.int64).tolist())

    def read(self, solver: cp_model.CpSolver) -> np.ndarray:
        """The assignment of the solver's solution."""
        agent_of = np.full(self.problem.n, -1, dtype=np.int64)
        for (i, j), v in self.x.items():
            if solver.boolean_value(v):
                agent_of[j] = i
        return agent_of


def build_core(problem: Problem, *, cap_migrations: bool = True,
               all_placed: bool = False,
               out_of_time: Callable[[], bool] | None = None) -> CpCore:
    """Variables, exactly-one, capacity, migration indicators (+ the options cap).

    `cap_migrations=False` leaves ``options.max_migrations`` to the caller
    (rebalancing caps only voluntary moves). `all_placed` forbids leaving
    out a task that has an eligible agent. `out_of_time` is asked every
    ``BUILD_CHECK_PAIRS`` pairs (and per capacity row); True raises
    :class:`BuildOutOfTime`.
    """
    m, n = problem.m, problem.n
    elig = problem.eligible
    pair_j, pair_i = np.nonzero(elig.T)  # by task, then agent (the order of x)
    total = int(pair_j.size)
    ptr = np.searchsorted(pair_j, np.arange(n + 1))

    def check(built: int) -> None:
        if out_of_time is not None and out_of_time():
            raise BuildOutOfTime(built, total)

    model = cp_model.CpModel()
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    u = [model.new_bool_var(f"u{j}") for j in range(n)]
    check(0)
    pairs: list[list[int]] = []
    by_agent: list[list[int]] = [[] for _ in range(m)]
    x_index = np.empty(total, dtype=np.int64)
    next_check = BUILD_CHECK_PAIRS
    for j in range(n):
        lo, hi = int(ptr[j]), int(ptr[j + 1])
        agents = pair_i[lo:hi].tolist()
        pairs.append(agents)
        row = []
        for k, i in enumerate(agents, start=lo):
            v = model.new_bool_var(f"x{i}_{j}")
            x[i, j] = v
            x_index[k] = v.index
            row.append(v)
            by_agent[i].append(j)
        model.add_exactly_one([*row, u[j]])
        if all_placed and agents:
            model.add(u[j] == 0)
        if hi >= next_check:
            next_check = hi + BUILD_CHECK_PAIRS
            check(hi)

    exact = True
    demand = problem.demand
    for r in range(problem.n_resources):
        sc = int_scale(np.concatenate([demand[:, :, r].ravel(), problem.capacity[:, r]]),
                       MAX_CAPACITY_COEF)
        exact &= sc.exact
        for i in range(m):
            js = by_agent[i]
            if not js:
                continue
            d = demand[i, js, r]
            if not np.any(d > 0):
                continue
            cap = math.floor(problem.capacity[i, r] * sc.factor + 1e-6)
            coefs = [math.ceil(v * sc.factor - 1e-6) for v in d]
            if sum(coefs) <= cap:
                continue  # can never bind
            row_vars = [x[i, j] for c, j in zip(coefs, js, strict=True) if c]
            model.add(cp_model.LinearExpr.weighted_sum(row_vars, [c for c in coefs if c])
                      <= cap)
            check(total)

    core = CpCore(problem, model, x, u, pairs, by_agent, exact,
                  pair_i=pair_i.astype(np.int64), pair_j=pair_j.astype(np.int64),
                  x_index=x_index)
    for j in np.flatnonzero(problem.current >= 0).tolist():
        c = int(problem.current[j])
        # A migration is a placement away from home (allocator.constraints).
        core.moved[j] = sum(x[i, j] for i in pairs[j] if i != c)
    cap = problem.snapshot.options.max_migrations
    # A cap of at least as many moves as there are movable tasks never binds (and one
    # beyond int64, valid in a snapshot, is no CP-SAT bound).
    if cap_migrations and cap is not None and cap < len(core.moved):
        model.add(sum(core.moved.values()) <= cap)
    return core
