"""`allocator bench scale`: a seeded load-balancing workload and its measurements.

The workload (:func:`scale_snapshot`): agents with heterogeneous speeds
(lognormal, sigma 0.35) and 3 resources (cpu, mem, net), each with 3-6 of 20
skills (every skill held by someone); tasks with lognormal work (sigma 1),
one required skill for 80 % of them, and agent-independent demand. Capacity
is generous on average (about 1.6x the demand an agent gets in a balanced
plan) and tight on some agents. The objective is makespan only.

:func:`run_scale` solves it with `auto` (which takes the structure-aware
`balance` path at this size), validates the plan with the independent
validator, and times a plain numpy LPT baseline on the same snapshot.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import numpy as np

from models import Agent, Plan, Snapshot, SolveOptions, TaskTable, Weights
from models.columns import Coded

RESOURCES = ("cpu", "mem", "net")
N_SKILLS = 20


def scale_snapshot(agents: int, tasks: int, seed: int = 0, *, time_limit: float = 10.0
                   ) -> Snapshot:
    """The seeded workload of the module docstring."""
    rng = np.random.default_rng(seed)
    m, n = agents, tasks
    speed = np.exp(rng.normal(0.0, 0.35, m))
    skills = [f"s{k:02d}" for k in range(N_SKILLS)]
    agent_skills = []
    for i in range(m):
        k = int(rng.integers(3, 7))
        own = set(rng.choice(N_SKILLS, size=k, replace=False).tolist())
        own.add(i % N_SKILLS)  # every skill is held by some agent
        agent_skills.append(sorted(skills[s] for s in own))
    work = np.exp(rng.normal(0.0, 1.0, n))
    need = np.where(rng.random(n) < 0.8, rng.integers(0, N_SKILLS, n), -1)
    demand = np.column_stack([
        rng.uniform(0.1, 1.0, n),            # cpu cores
        np.exp(rng.normal(0.0, 0.5, n)),     # mem GB
        rng.uniform(0.0, 0.5, n),            # net Gbit/s
    ])
    # Balanced share of tasks per agent ~ speed share; capacity ~1.6x that share's demand.
    share = n * speed / speed.sum()
    mean_d = demand.mean(axis=0)
    cap = share[:, None] * mean_d[None, :] * rng.uniform(1.2, 2.0, (m, 3))
    cap = np.maximum(cap, demand.max(axis=0)[None, :] * 1.01)
    agent_objs = [
        Agent(id=f"a{i}", speed=round(float(speed[i]), 4), skills=agent_skills[i],
              capacity={r: round(float(cap[i, k]), 3) for k, r in enumerate(RESOURCES)})
        for i in range(m)
    ]
    # The tasks as columns (models.TaskTable), rounded like Task objects would
    # be (Python's correctly rounded `round`, not np.round): a million Task
    # objects would be 1.4 GB of the process's peak memory before any solving.
    table = TaskTable(
        id=[f"t{j}" for j in range(n)],
        work=_rounded(work, 4),
        demand={r: _rounded(demand[:, k], 3) for k, r in enumerate(RESOURCES)},
        skills=Coded.of(need + 1, [[]] + [[s] for s in skills]),
    )
    weights = Weights(cost=0.0, makespan=1.0)
    return Snapshot(name=f"scale-{m}x{n}-seed{seed}", agents=agent_objs, task_table=table,
                    weights=weights,
                    options=SolveOptions(solver="auto", time_limit=time_limit, seed=seed))


def _rounded(values: np.ndarray, digits: int) -> np.ndarray:
    """`round(x, digits)` of each value, as an array."""
    return np.fromiter((round(x, digits) for x in values.tolist()), dtype=float,
                       count=values.size)


def lpt_baseline(problem: Any) -> tuple[np.ndarray, float]:
    """Plain numpy LPT: each task (largest first) to the eligible agent that finishes it first.

    :func:`allocator.solvers.balance.lpt_assign_plain`, a full scan of the
    task's group per task: the simple method `auto` is measured against.
    (`auto` runs :func:`~allocator.solvers.balance.lpt_assign`, which finds
    the same assignment faster.)
    """
    from allocator.solvers.balance import lpt_assign_plain

    group_of, group_agents = problem.skill_groups
    t = time.perf_counter()
    a = lpt_assign_plain(problem.work, problem.speed, problem.concurrency.astype(float),
                         group_of, group_agents, problem.demand_base, problem.capacity)
    return a, time.perf_counter() - t


def peak_rss_mb() -> float:
    """Peak RSS of the process so far (getrusage ``ru_maxrss``), in MB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    rss = status_mb("VmRSS")
    return peak_rss_mb() if rss is None else rss


def reset_peak_rss() -> bool:
    """Reset the process's peak-RSS mark (Linux ``clear_refs``), so the solve's own
    peak can be read apart from the snapshot generation's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def plan_agent_indices(plan: Plan, problem: Any) -> np.ndarray:
    """[n] agent index of each task of `problem` in `plan` (-1: unassigned).

    Read from the plan's assignment columns when it has them (no million-entry dict).
    """
    mine = np.full(problem.n, -1, dtype=np.int64)
    table = plan.assignment_table
    if table is not None and table.task_ids is problem.task_ids \
            and table.agent_ids == problem.agent_ids:
        mine[table.task] = table.agent
        return mine
    placed = plan.agent_of()
    return np.asarray([problem.agent_index[placed[t]] if t in placed else -1
                       for t in problem.task_ids], dtype=np.int64)


def run_scale(agents: int, tasks: int, seed: int = 0, *, time_limit: float = 10.0,
              validate_plan: bool = True) -> dict[str, Any]:
    """Generate, solve with `auto`, validate, and time the LPT baseline."""
    from allocator.engine import solve
    from allocator.problem import compile_snapshot
    from allocator.solvers.balance import balance_bound
    from allocator.validate import validate

    t0 = time.perf_counter()
    snap = scale_snapshot(agents, tasks, seed, time_limit=time_limit)
    gen_s = time.perf_counter() - t0
    rss_base = current_rss_mb()
    hwm_reset = reset_peak_rss()
    t1 = time.perf_counter()
    plan = solve(snap, solver="auto", time_limit=time_limit)
    solve_s = time.perf_counter() - t1
    rss_solve = peak_rss_mb()
    solve_peak = status_mb("VmHWM") if hwm_reset else None
    valid = None
    validate_s = None
    if validate_plan:
        t2 = time.perf_counter()
        valid = not validate(snap, plan)
        validate_s = time.perf_counter() - t2
    problem = compile_snapshot(snap)
    lb = balance_bound(problem)
    lpt, lpt_s = lpt_baseline(problem)
    on = lpt >= 0
    lpt_load = np.bincount(lpt[on], weights=problem.work[on] / problem.speed[lpt[on]],
                           minlength=problem.m)
    lpt_mk = float(lpt_load.max())
    mine = plan_agent_indices(plan, problem)
    same_as_lpt = bool(np.array_equal(mine, lpt))
    mk = plan.metrics.makespan if plan.metrics else float("nan")
    return {
        "agents": agents,
        "tasks": tasks,
        "seed": seed,
        "makespan": round(mk, 4),
        "lower_bound": round(lb, 4),
        "ratio": round(mk / lb, 5) if lb > 0 else None,
        "bound_method": "max(fluid LP over skill groups, longest task on its fastest agent)",
        "time_s": round(solve_s, 3),
        "time_vs_lpt": round(solve_s / lpt_s, 3) if lpt_s > 0 else None,
        "peak_rss_mb": round(rss_solve, 1),
        "base_rss_mb": round(rss_base, 1),
        "solve_rss_mb": None if solve_peak is None else round(solve_peak - rss_base, 1),
        "valid": valid,
        "unassigned": len(plan.unassigned),
        "status": str(plan.status),
        "solver": plan.solver,
        "lpt_makespan": round(lpt_mk, 4),
        "lpt_ratio": round(lpt_mk / lb, 5) if lb > 0 else None,
        "lpt_time_s": round(lpt_s, 3),
        "makespan_vs_lpt": round(mk / lpt_mk, 5) if lpt_mk > 0 else None,
        "same_plan_as_lpt": same_as_lpt,
        "generate_s": round(gen_s, 3),
        "validate_s": None if validate_s is None else round(validate_s, 3),
    }
