"""The assignment model as sparse arrays, shared by `milp`, the LP bound, local search and LNS.

When start times do not matter (see :attr:`allocator.problem.Problem.needs_schedule`)
the snapshot's objective is *linear* in the assignment except for two load
terms:

    sum_k c[k] x[k] + sum_j pen[j] u[j] + w_mk * max_i load_i + w_imb * (max - min)_up load_i

with one column `x[k]` per eligible pair `(I[k], J[k])`, `u[j]` for leaving
task j out, `load_i = sum_k dur[k] x[k]` over the pairs of agent i (busy time
divided by concurrency, exactly as :func:`allocator.objectives.busy_time`), and
capacity rows `sum_k a[k, r] x[k] <= cap[i, r]`. `c[k]` already holds the
weighted cost and the weighted migration cost of the pair.

:func:`build_highs` turns the model (or a sub-model with some tasks and
agents fixed, for LNS) into a HiGHS LP/MIP column-wise from numpy arrays, so
128k columns take milliseconds instead of seconds through a modelling layer.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from allocator.problem import Problem, capacity_limit

if TYPE_CHECKING:
    from allocator.solvers.context import SolveContext

#: Above this many eligible pairs the dense helpers (position table, score
#: matrix) would cost too much memory; callers fall back to other paths.
MAX_LINEAR_PAIRS = 20_000_000

_BANNER_LOCK = threading.Lock()
_BANNER_DONE = False


def new_highs() -> object:
    """A silent ``highspy.Highs``.

    HiGHS prints its banner on stdout when the first instance of a process
    is created, before any option can be set; the first construction runs
    with file descriptor 1 pointed at /dev/null so plan JSON on stdout stays
    clean.
    """
    global _BANNER_DONE
    import highspy

    with _BANNER_LOCK:
        if not _BANNER_DONE:
            with _quiet_fd1():
                h = highspy.Highs()
            _BANNER_DONE = True
        else:
            h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    return h


@contextlib.contextmanager
def _quiet_fd1():  # type: ignore[no-untyped-def]
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real fd (embedded), nothing to protect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def is_linear(problem: Problem) -> bool:
    """Whether the assignment model captures the snapshot's objective exactly."""
    return not problem.needs_schedule


@dataclass(eq=False)
class LinearModel:
    """Sparse assignment model of a Problem (see module docstring)."""

    problem: Problem
    I: np.ndarray  # [P] agent of pair k  # noqa: E741
    J: np.ndarray  # [P] task of pair k, pairs sorted by (J, I)
    c: np.ndarray  # [P] weighted cost + weighted migration cost
    pen: np.ndarray  # [n] unassigned penalty
    a: np.ndarray  # [P, R] demand of the pair
    cap: np.ndarray  # [m, R] capacity (with the shared float slack)
    dur: np.ndarray  # [P] busy-time contribution (duration / concurrency)
    moved: np.ndarray  # [P] bool: placing the pair migrates the task
    w_mk: float
    w_imb: float
    up: np.ndarray  # [m] bool
    max_migrations: int | None

    @property
    def m(self) -> int:
        return self.problem.m

    @property
    def n(self) -> int:
        return self.problem.n

    @property
    def P(self) -> int:
        return int(self.I.size)

    @property
    def has_load_terms(self) -> bool:
        return self.w_mk > 0 or self.w_imb > 0

    @cached_property
    def binding(self) -> np.ndarray:
        """[R] resources whose capacity can bind for at least one agent."""
        if self.P == 0:
            return np.zeros(self.cap.shape[1], dtype=bool)
        tot = np.zeros_like(self.cap)
        np.add.at(tot, self.I, self.a)
        return np.any(tot > self.cap, axis=0)

    @cached_property
    def pos(self) -> np.ndarray:
        """[m, n] pair index of (i, j), -1 where ineligible."""
        out = np.full((self.m, self.n), -1, dtype=np.int64)
        out[self.I, self.J] = np.arange(self.P)
        return out

    @cached_property
    def score(self) -> np.ndarray:
        """[m + 1, n] separable cost of j on i (row m: left out); inf if ineligible."""
        s = np.full((self.m + 1, self.n), np.inf)
        s[self.I, self.J] = self.c
        s[self.m] = self.pen
        return s

    @cached_property
    def demand(self) -> np.ndarray:
        """[m + 1, n, R] demand of j on i (0 on the virtual 'unassigned' row and off-pairs)."""
        d = np.zeros((self.m + 1, self.n, self.cap.shape[1]))
        d[self.I, self.J] = self.a
        return d

    @cached_property
    def load_of(self) -> np.ndarray:
        """[m + 1, n] busy-time contribution of j on i (0 off-pairs and on the virtual row)."""
        d = np.zeros((self.m + 1, self.n))
        d[self.I, self.J] = self.dur
        return d

    # -- evaluation ---------------------------------------------------------

    def loads(self, agent_of: np.ndarray) -> np.ndarray:
        on = agent_of >= 0
        return np.bincount(agent_of[on], weights=self.load_of[agent_of[on], np.flatnonzero(on)],
                           minlength=self.m).astype(float)

    def used(self, agent_of: np.ndarray) -> np.ndarray:
        on = np.flatnonzero(agent_of >= 0)
        out = np.zeros_like(self.cap)
        np.add.at(out, agent_of[on], self.demand[agent_of[on], on])
        return out

    def load_term(self, loads: np.ndarray) -> float:
        v = 0.0
        if self.w_mk > 0:
            v += self.w_mk * float(loads.max(initial=0.0))
        if self.w_imb > 0 and self.up.any():
            lu = loads[self.up]
            v += self.w_imb * float(lu.max() - lu.min())
        return v

    def objective(self, agent_of: np.ndarray) -> float:
        """Weighted objective of an assignment under this model."""
        rows = np.where(agent_of >= 0, agent_of, self.m)
        sep = float(self.score[rows, np.arange(self.n)].sum())
        return sep + (self.load_term(self.loads(agent_of)) if self.has_load_terms else 0.0)

    def feasible(self, agent_of: np.ndarray) -> bool:
        on = np.flatnonzero(agent_of >= 0)
        if np.any(self.pos[agent_of[on], on] < 0):
            return False
        if not np.all(self.used(agent_of) <= self.cap):
            return False
        if self.max_migrations is not None:
            moved = int(self.moved[self.pos[agent_of[on], on]].sum())
            if moved > self.max_migrations:
                return False
        return True

    def x_of(self, agent_of: np.ndarray) -> np.ndarray:
        """[P] 0/1 pair vector of an assignment."""
        x = np.zeros(self.P)
        on = np.flatnonzero(agent_of >= 0)
        k = self.pos[agent_of[on], on]
        x[k[k >= 0]] = 1.0
        return x

    def agent_of_x(self, x: np.ndarray) -> np.ndarray:
        """Assignment from a (near-)integral pair vector; the largest x per task wins above 0.5."""
        agent_of = np.full(self.n, -1, dtype=np.int64)
        sel = np.flatnonzero(np.asarray(x[: self.P]) > 0.5)
        agent_of[self.J[sel]] = self.I[sel]
        return agent_of


def build_linear(problem: Problem) -> LinearModel:
    """Extract the assignment model; the caller checks :func:`is_linear` first."""
    w = problem.snapshot.weights
    elig = problem.eligible
    J, I = np.nonzero(elig.T)  # sorted by task, then agent  # noqa: E741
    I, J = I.astype(np.int64), J.astype(np.int64)  # noqa: E741
    c = w.cost * problem.cost[I, J]
    cur = problem.current[J]
    moved = (cur >= 0) & (cur != I)
    if w.migrations and moved.any():
        c = c + w.migrations * problem.migration_matrix[I, J]
    a = problem.demand[I, J] if problem.demand_override else problem.demand_base[J]
    cap = capacity_limit(problem.capacity)
    dur = problem.duration[I, J] / problem.concurrency[I]
    return LinearModel(
        problem=problem, I=I, J=J, c=np.asarray(c, dtype=float),
        pen=problem.unassigned_penalty.astype(float), a=np.asarray(a, dtype=float), cap=cap,
        dur=dur, moved=moved, w_mk=float(w.makespan), w_imb=float(w.imbalance),
        up=problem.up.copy(), max_migrations=problem.snapshot.options.max_migrations,
    )


# -- HiGHS model building ------------------------------------------------------


@dataclass
class HighsModel:
    """Column layout of a (sub-)model passed to HiGHS."""

    highs: object
    pairs: np.ndarray  # model pair indices k of the x columns, in column order
    tasks: np.ndarray  # tasks j of the u columns, in column order
    cap_rows: list[tuple[int, int]]  # (agent, resource) of each capacity row, in order
    n_assign_rows: int
    n_cols: int

    def x_col(self) -> slice:
        return slice(0, self.pairs.size)



def run_highs(h: object, ctx: SolveContext | None) -> None:
    """Run a built HiGHS model, cancelled by a stop request on `ctx`.

    HiGHS's interrupt check costs GIL traffic, so it is armed only for solves
    a caller can stop (`ctx.stoppable`).
    """
    unhook = None
    if ctx is not None and ctx.stoppable:
        h.HandleUserInterrupt = True  # type: ignore[attr-defined]
        unhook = ctx.on_stop(h.cancelSolve)  # type: ignore[attr-defined]
    try:
        h.run()  # type: ignore[attr-defined]
    finally:
        if unhook is not None:
            unhook()

def build_highs(
    lm: LinearModel,
    *,
    tasks: np.ndarray | None = None,
    agents: np.ndarray | None = None,
    fixed_loads: np.ndarray | None = None,
    fixed_used: np.ndarray | None = None,
    fixed_moved: int = 0,
    integer: bool = True,
    all_cap_rows: bool = False,
) -> HighsModel:
    """Pass the (sub-)model to a fresh silent HiGHS instance.

    With `tasks` / `agents` given, only those tasks are free and only those
    agents may receive them; `fixed_used[m, R]` and `fixed_loads[m]` are the
    capacity and load taken by the tasks that stay where they are, and
    `fixed_moved` the migrations they already make. Rows, in order: one
    assignment row per free task (`sum x + u = 1`), capacity rows, then load
    rows (makespan / imbalance). `all_cap_rows` keeps capacity rows that
    cannot bind (for duals).
    """
    import highspy
    from scipy import sparse

    m, R = lm.m, lm.cap.shape[1]
    if tasks is None:
        tasks = np.arange(lm.n)
        sel = np.arange(lm.P)
    else:
        tasks = np.asarray(tasks, dtype=np.int64)
        in_t = np.zeros(lm.n, dtype=bool)
        in_t[tasks] = True
        mask = in_t[lm.J]
        if agents is not None:
            in_a = np.zeros(m, dtype=bool)
            in_a[agents] = True
            mask &= in_a[lm.I]
        sel = np.flatnonzero(mask)
    if agents is None:
        agents = np.arange(m)
    agents = np.asarray(agents, dtype=np.int64)
    fixed_used = np.zeros((m, R)) if fixed_used is None else fixed_used
    fixed_loads = np.zeros(m) if fixed_loads is None else fixed_loads
    P, T = sel.size, tasks.size
    task_row = np.full(lm.n, -1, dtype=np.int64)
    task_row[tasks] = np.arange(T)

    rows: list[np.ndarray] = [task_row[lm.J[sel]], np.arange(T)]
    cols: list[np.ndarray] = [np.arange(P), P + np.arange(T)]
    vals: list[np.ndarray] = [np.ones(P), np.ones(T)]
    row_lo: list[np.ndarray] = [np.ones(T)]
    row_hi: list[np.ndarray] = [np.ones(T)]
    n_rows = T

    # Capacity rows: only pairs/resources that can exceed the free capacity.
    cap_rows: list[tuple[int, int]] = []
    free = lm.cap - fixed_used
    I_sel = lm.I[sel]
    for r in range(R):
        ar = lm.a[sel, r]
        tot = np.bincount(I_sel, weights=ar, minlength=m)
        for i in agents:
            if not all_cap_rows and tot[i] <= free[i, r]:
                continue
            if all_cap_rows and tot[i] == 0 and free[i, r] >= 0:
                continue
            ks = np.flatnonzero((I_sel == i) & (ar > 0))
            rows.append(np.full(ks.size, n_rows))
            cols.append(ks)
            vals.append(ar[ks])
            row_lo.append(np.array([-np.inf]))
            row_hi.append(np.array([free[i, r]]))
            cap_rows.append((int(i), r))
            n_rows += 1

    n_cols = P + T
    cost = np.concatenate([lm.c[sel], lm.pen[tasks]])
    lo = np.zeros(n_cols)
    hi = np.ones(n_cols)
    extra_cost: list[float] = []
    extra_lo: list[float] = []
    extra_hi: list[float] = []
    if lm.has_load_terms:
        dsel = lm.dur[sel]
        others = np.setdiff1d(np.arange(m), agents)
        if lm.w_mk > 0:
            mk_col = n_cols + len(extra_cost)
            base = float(fixed_loads[others].max(initial=0.0))
            extra_cost.append(lm.w_mk)
            extra_lo.append(base)
            extra_hi.append(np.inf)
            for i in agents:  # load_i - Mk <= -fixed_i
                ks = np.flatnonzero(I_sel == i)
                rows += [np.full(ks.size + 1, n_rows)]
                cols += [np.concatenate([ks, [mk_col]])]
                vals += [np.concatenate([dsel[ks], [-1.0]])]
                row_lo.append(np.array([-np.inf]))
                row_hi.append(np.array([-fixed_loads[i]]))
                n_rows += 1
        if lm.w_imb > 0 and lm.up.any():
            hi_col = n_cols + len(extra_cost)
            lo_col = hi_col + 1
            up_others = others[lm.up[others]]
            extra_cost += [lm.w_imb, -lm.w_imb]
            extra_lo += [float(fixed_loads[up_others].max(initial=0.0)), 0.0]
            extra_hi += [np.inf, float(fixed_loads[up_others].min(initial=np.inf))]
            for i in agents[lm.up[agents]]:
                ks = np.flatnonzero(I_sel == i)
                for col, sign_lo, sign_hi in ((hi_col, -np.inf, -fixed_loads[i]),
                                              (lo_col, -fixed_loads[i], np.inf)):
                    rows += [np.full(ks.size + 1, n_rows)]
                    cols += [np.concatenate([ks, [col]])]
                    vals += [np.concatenate([dsel[ks], [-1.0]])]
                    row_lo.append(np.array([sign_lo]))
                    row_hi.append(np.array([sign_hi]))
                    n_rows += 1
    if lm.max_migrations is not None:
        ks = np.flatnonzero(lm.moved[sel])
        if ks.size:
            rows.append(np.full(ks.size, n_rows))
            cols.append(ks)
            vals.append(np.ones(ks.size))
            row_lo.append(np.array([-np.inf]))
            row_hi.append(np.array([float(lm.max_migrations - fixed_moved)]))
            n_rows += 1
    n_extra = len(extra_cost)
    cost = np.concatenate([cost, extra_cost])
    lo = np.concatenate([lo, extra_lo])
    hi = np.concatenate([hi, extra_hi])
    n_cols += n_extra

    mat = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, n_cols),
    )
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    lp.col_cost_ = cost
    lp.col_lower_ = lo
    lp.col_upper_ = hi
    lp.row_lower_ = np.concatenate(row_lo) if row_lo else np.zeros(0)
    lp.row_upper_ = np.concatenate(row_hi) if row_hi else np.zeros(0)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = mat.indptr
    lp.a_matrix_.index_ = mat.indices
    lp.a_matrix_.value_ = mat.data
    lp.a_matrix_.num_col_ = n_cols
    lp.a_matrix_.num_row_ = n_rows
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * (P + T) + [
            highspy.HighsVarType.kContinuous] * n_extra
    h = new_highs()
    h.passModel(lp)  # type: ignore[attr-defined]
    return HighsModel(highs=h, pairs=sel, tasks=tasks, cap_rows=cap_rows, n_assign_rows=T,
                      n_cols=n_cols)


def start_vector(lm: LinearModel, hm: HighsModel, agent_of: np.ndarray) -> np.ndarray:
    """Column values of an assignment in `hm`'s layout (load columns at their implied values)."""
    P, T = hm.pairs.size, hm.tasks.size
    x = np.zeros(hm.n_cols)
    k = hm.pairs
    x[:P] = (agent_of[lm.J[k]] == lm.I[k]).astype(float)
    x[P:P + T] = (agent_of[hm.tasks] < 0).astype(float)
    if hm.n_cols > P + T:
        loads = lm.loads(agent_of)
        extra = []
        if lm.w_mk > 0:
            extra.append(float(loads.max(initial=0.0)))
        if lm.w_imb > 0 and lm.up.any():
            extra += [float(loads[lm.up].max()), float(loads[lm.up].min())]
        x[P + T:] = extra
    return x


def set_start(lm: LinearModel, hm: HighsModel, agent_of: np.ndarray) -> None:
    """Give HiGHS an incumbent (a full assignment consistent with the fixed part)."""
    import highspy

    sol = highspy.HighsSolution()
    sol.col_value = start_vector(lm, hm, agent_of)
    sol.value_valid = True
    hm.highs.setSolution(sol)  # type: ignore[attr-defined]


def read_assignment(lm: LinearModel, hm: HighsModel, col_value: np.ndarray,
                    base: np.ndarray) -> np.ndarray:
    """`base` with the free tasks of `hm` set from a solution vector."""
    out = base.copy()
    out[hm.tasks] = -1
    x = np.asarray(col_value[: hm.pairs.size])
    sel = hm.pairs[x > 0.5]
    out[lm.J[sel]] = lm.I[sel]
    return out
