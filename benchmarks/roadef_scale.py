"""Set-B-sized machine reassignment: generate, solve, check, and record peak memory.

    python benchmarks/roadef_scale.py [--processes 50000] [--machines 5000]
        [--resources 12] [--time-limit 300] [--seed 0] [--json]

One row: sizes, generate_s, initial cost (the baseline of this run),
objective, improvement %, moved, solve time, valid (the independent
evaluator), peak RSS (ru_maxrss of this process: instance + solver).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=50_000)
    ap.add_argument("--machines", type=int, default=5_000)
    ap.add_argument("--resources", type=int, default=12)
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from allocator.roadef.evaluate import evaluate, violations
    from allocator.roadef.generate import generate_instance
    from allocator.roadef.solver import solve_roadef

    t0 = time.perf_counter()
    inst = generate_instance(args.processes, args.machines, args.resources, seed=args.seed)
    gen_s = time.perf_counter() - t0
    initial = evaluate(inst, inst.initial).total
    res = solve_roadef(inst, time_limit=args.time_limit, seed=args.seed)
    t1 = time.perf_counter()
    broken = violations(inst, res.assignment)
    check_s = time.perf_counter() - t1
    row = {
        "instance": inst.name, "processes": inst.n_processes, "machines": inst.n_machines,
        "resources": inst.n_resources, "services": inst.n_services,
        "dependencies": sum(len(d) for d in inst.dependencies),
        "generate_s": round(gen_s, 1), "initial_cost": initial, "objective": res.objective,
        "improvement_pct": round(100 * (initial - res.objective) / initial, 2),
        "moved": res.moved, "time_s": round(res.time_s, 1), "valid": not broken,
        "check_s": round(check_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stats": res.stats, "cost": res.cost.as_dict(),
    }
    if args.json:
        print(json.dumps(row))
    else:
        for k, v in row.items():
            print(f"{k:>16}  {v}")
    return 0 if row["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
