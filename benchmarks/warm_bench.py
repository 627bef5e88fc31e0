"""Warm versus cold re-solves after a small edit (5 % of the tasks added or removed).

For each instance: solve it once (the "previous" plan), then edit it (remove
5 % of the tasks, or add 5 % new ones cloned from random existing tasks) and
solve the edited snapshot twice with the same backend and budget:

* cold: `solve(edited)`;
* warm: `solve(edited, previous=plan)` (complete hint + stability preference).

Printed per row: assignment changes against the previous plan (tasks present
in both), the time of the first solution within 1 % of the run's final
objective (from Plan.solutions, the anytime points), the final objective on
the edited snapshot *without* the stability term (so warm and cold compare on
the same objective), and the ratio warm/cold of both.

    .venv/bin/python benchmarks/warm_bench.py [--time-limit 4] [--seed 0]

The machine is shared: the ratios in one run are what to read, not absolute
times.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from allocator.engine import solve
from allocator.io.gap import gap_to_snapshot, read_gap
from allocator.problem import compile_snapshot
from allocator.solvers.base import plan_objective
from allocator.validate import validate
from models import Agent, Plan, Snapshot, Task, Weights

ROOT = Path(__file__).resolve().parents[1]
SHARE = 0.05


def balance_instance(m: int, n: int, seed: int) -> Snapshot:
    """Makespan + imbalance on heterogeneous agents with two resources."""
    rng = random.Random(seed)
    agents = [Agent(id=f"a{i:02d}", capacity={"cpu": 64, "mem": 256},
                    speed=rng.choice([1.0, 1.5, 2.0])) for i in range(m)]
    tasks = [Task(id=f"t{j:04d}", work=float(rng.randint(1, 20)),
                  demand={"cpu": rng.randint(1, 4), "mem": rng.randint(1, 16)})
             for j in range(n)]
    return Snapshot(agents=agents, tasks=tasks, name=f"balance-{m}x{n}",
                    weights=Weights(cost=0, makespan=1, imbalance=1))


def gap_instance(name: str) -> Snapshot:
    (inst,) = read_gap(ROOT / "data" / "gap" / "chu-yagiura" / name)
    return gap_to_snapshot(inst, sense="min")


def edit(snap: Snapshot, kind: str, seed: int) -> Snapshot:
    rng = random.Random(seed)
    k = max(1, round(SHARE * len(snap.tasks)))
    if kind == "remove":
        drop = set(rng.sample(range(len(snap.tasks)), k))
        tasks = [t for j, t in enumerate(snap.tasks) if j not in drop]
    else:
        tasks = list(snap.tasks) + [
            rng.choice(snap.tasks).model_copy(update={"id": f"new-{q}"}) for q in range(k)]
    return snap.model_copy(update={"tasks": tasks})


def time_to_within(plan: Plan, rel: float = 0.01) -> float | None:
    """Time of the first anytime point within `rel` of the run's final objective."""
    if plan.objective is None:
        return None
    pts = plan.solutions
    if not pts:
        return plan.wall_time_s
    final = min(p.objective for p in pts)
    tol = rel * max(abs(final), 1e-9)
    return next(p.time_s for p in pts if p.objective <= final + tol)


def changes(prev: Plan, plan: Plan) -> int:
    a, b = prev.agent_of(), plan.agent_of()
    return sum(1 for t, ag in b.items() if t in a and a[t] != ag)


def base_objective(snap: Snapshot, plan: Plan) -> float:
    problem = compile_snapshot(snap)
    agent_of = np.full(problem.n, -1, dtype=np.int64)
    for t, ag in plan.agent_of().items():
        agent_of[problem.task_index[t]] = problem.agent_index[ag]
    return plan_objective(problem, agent_of)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--solver", default="cpsat")
    args = ap.parse_args()
    instances = [gap_instance("c10200"), balance_instance(10, 200, args.seed)]
    header = (f"{'instance':<16}{'edit':<8}{'mode':<6}{'changes':>8}{'t_1% s':>9}"
              f"{'objective':>13}{'wall s':>8}  status")
    print(header)
    print("-" * len(header))
    for snap in instances:
        name = snap.name or "?"
        prev = solve(snap, solver=args.solver, time_limit=args.time_limit, seed=args.seed)
        for kind in ("remove", "add"):
            new = edit(snap, kind, args.seed)
            runs = {}
            for mode in ("cold", "warm"):
                plan = solve(new, solver=args.solver, time_limit=args.time_limit,
                             seed=args.seed, previous=prev if mode == "warm" else None)
                assert validate(new, plan) == [], f"{name} {kind} {mode}: invalid plan"
                runs[mode] = (changes(prev, plan), time_to_within(plan),
                              base_objective(new, plan), plan)
                ch, t1, obj, _ = runs[mode]
                t1s = "n/a" if t1 is None else f"{t1:.3f}"
                print(f"{name:<16}{kind:<8}{mode:<6}{ch:>8}{t1s:>9}{obj:>13.6g}"
                      f"{plan.wall_time_s:>8.2f}  {plan.status}")
            (cc, ct, co, _), (wc, wt, wo, _) = runs["cold"], runs["warm"]
            ratio_t = "n/a" if not ct or wt is None else f"{wt / ct:.2f}"
            print(f"{'':<16}{kind:<8}{'w/c':<6}{(wc / cc if cc else 0):>8.2f}{ratio_t:>9}"
                  f"{(wo / co if co else 1):>13.4f}")


if __name__ == "__main__":
    main()
