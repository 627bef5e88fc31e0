"""Memory of a solve: the sparse problem/greedy/explainer against the dense path.

    .venv/bin/python benchmarks/memory_bench.py [--quick] [--json]

Each row runs in a fresh child process: it builds a generated snapshot, then
compiles and solves it with the named backend and validates the plan.
`base MiB` is the child's peak RSS before the solve (interpreter, libraries,
the snapshot's pydantic objects), `peak MiB` its peak RSS after (the
`Maximum resident set size` of /usr/bin/time -v, read with getrusage), so
`solve MiB` = peak - base is what the compile + solve + plan added.
`estimate MiB` is api/limits.estimate_work_bytes for the request's shape
(what the server checks against max_work_bytes before the work starts).

`path dense` is the same code with `allocator.problem.DENSE_CELLS` raised
so far that every accessor takes the dense slices, i.e. builds the
tasks x agents arrays ([m, n] eligibility, cost, duration; [m, n, R] demand
with an override) as the code before the sparse accessors did; `sparse`
sets it to -1 (every accessor sparse); `shipped` keeps the default (dense
slices up to DENSE_CELLS cells, where they are faster). The ratio columns
compare dense and sparse on the same instance in the same run. The machine
is shared: compare rows within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

ROWS = [
    # (label, agents, tasks, resources, overrides, solver, paths)
    ("plain", 200, 5_000, 2, False, "greedy", ("dense", "sparse", "shipped")),
    ("plain", 500, 10_000, 2, False, "greedy", ("dense", "sparse")),
    ("override", 300, 10_000, 20, True, "greedy", ("dense", "sparse", "shipped")),
    ("plain", 2_000, 50_000, 1, False, "greedy", ("sparse",)),
    ("plain", 2_000, 50_000, 1, False, "auto", ("sparse",)),
    ("override", 1_000, 20_000, 50, True, "greedy", ("sparse",)),
    ("override", 1_000, 20_000, 50, True, "auto", ("sparse",)),
]
QUICK = [r for r in ROWS if r[1] * r[2] <= 5_000_000]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, solve and validate one instance; the measurements."""
    import numpy as np

    import allocator.problem as problem_mod
    from allocator import validate
    from allocator.engine import solve
    from models import Agent, AgentOverride, Snapshot, Task

    m, n, r = spec["agents"], spec["tasks"], spec["resources"]
    rng = np.random.default_rng(7)
    res = [f"r{k}" for k in range(r)]
    agents = [Agent(id=f"a{i}", capacity={x: 100.0 for x in res}, speed=1.0 + (i % 3) / 2,
                    cost_rate=float(1 + i % 4)) for i in range(m)]
    work = rng.integers(1, 10, n)
    tasks = [Task(id=f"t{j}", work=float(work[j]), demand={res[j % r]: 1.0}) for j in range(n)]
    if spec["overrides"]:  # one per-agent demand override, as in the 1.4 MB body
        tasks[0] = tasks[0].model_copy(
            update={"overrides": {"a1": AgentOverride(demand={res[0]: 2.0})}})
    snap = Snapshot(agents=agents, tasks=tasks)
    if spec["path"] == "dense":
        problem_mod.DENSE_CELLS = 1 << 62
    elif spec["path"] == "sparse":
        problem_mod.DENSE_CELLS = -1
    base = _rss_mib()
    t0 = time.perf_counter()
    plan = solve(snap, solver=spec["solver"], time_limit=spec["time_limit"])
    wall = time.perf_counter() - t0
    peak = _rss_mib()
    return {"base_mib": round(base, 1), "peak_mib": round(peak, 1),
            "solve_mib": round(peak - base, 1), "wall_s": round(wall, 2),
            "assigned": len(plan.assignments), "unassigned": len(plan.unassigned),
            "objective": plan.objective, "valid": not validate(snap, plan),
            "cells": m * n}


def run_row(label: str, m: int, n: int, r: int, overrides: bool, solver: str, path: str,
            time_limit: float) -> dict[str, Any]:
    from api.limits import estimate_work_bytes

    spec = {"agents": m, "tasks": n, "resources": r, "overrides": overrides, "solver": solver,
            "path": path, "time_limit": time_limit}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                         capture_output=True, text=True, timeout=900)
    row: dict[str, Any] = {"instance": label, "agents": m, "tasks": n, "resources": r,
                           "solver": solver, "path": path,
                           "estimate_mib": estimate_work_bytes(m, n, r, overrides, solver) >> 20}
    if out.returncode != 0:
        row["error"] = (out.stderr.strip().splitlines() or ["?"])[-1][:200]
        return row
    row.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="Only rows of at most 5M cells.")
    ap.add_argument("--json", action="store_true", help="One JSON object per row.")
    ap.add_argument("--time-limit", type=float, default=3.0, help="Budget per solve (s).")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    rows = []
    load = os.getloadavg()
    for label, m, n, r, ov, solver, paths in (QUICK if args.quick else ROWS):
        for path in paths:
            row = run_row(label, m, n, r, ov, solver, path, args.time_limit)
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    for row in rows:  # sparse / dense ratios on the same instance
        if row["path"] in ("sparse", "shipped"):
            twin = [d for d in rows if d["path"] == "dense" and all(
                d[k] == row[k] for k in ("instance", "agents", "tasks", "resources", "solver"))]
            if twin and "solve_mib" in twin[0] and "solve_mib" in row:
                row["dense_over_sparse_mib"] = round(
                    twin[0]["solve_mib"] / max(row["solve_mib"], 1.0), 1)
                row["dense_over_sparse_wall"] = round(twin[0]["wall_s"] / max(row["wall_s"],
                                                                               1e-3), 2)
    if args.json:
        return
    cols = ("instance", "agents", "tasks", "resources", "solver", "path", "estimate_mib",
            "base_mib", "peak_mib", "solve_mib", "dense_over_sparse_mib", "wall_s",
            "dense_over_sparse_wall", "assigned", "unassigned", "valid")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine)")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        if "error" in row:
            print(f"| {row['instance']} | {row['agents']} | {row['tasks']} | "
                  f"{row['resources']} | {row['solver']} | {row['path']} | error: "
                  f"{row['error']} |")
            continue
        print("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")


if __name__ == "__main__":
    main()
