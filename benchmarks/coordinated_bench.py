"""Periodic solves + the online executor against either alone, on a scenario.

    .venv/bin/python benchmarks/coordinated_bench.py [--scenario mixed-fleet] [--agents 16]
        [--tasks 5000] [--seeds 0,1,2] [--intervals 5,10,20,40] [--budget 0.5]
        [--solver greedy] [--json rows.jsonl] [--plot FILE] [--md FILE]

For every seed: each online policy of the scenario alone, batch plans at
every interval, and the scenario's policy + plans (coordinated) at every
interval, all on the same generated workload, priced with the scenario's
weights (`weighted_objective` = cost + weighted tardiness + migrations, the
terms of a Plan). The baseline is measured in the same run: the best online
policy per seed (least weighted objective), and the summary compares the
best coordinated run per seed against it (ratio) and against batch at the
same interval. Virtual time is deterministic (plans take effect after their
budget), so rows are reproducible; wall seconds depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from allocator.online.scenarios import CoordinatorSettings, run_mode, scenario, scenario_config


def _numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    sc = scenario(args.scenario)
    rows: list[dict[str, Any]] = []
    for seed in [int(s) for s in _numbers(args.seeds)]:
        cfg = scenario_config(args.scenario, agents=args.agents, tasks=args.tasks, seed=seed)
        plan = [("online", p, None) for p in sc.policies]
        for every in _numbers(args.intervals):
            plan.append(("batch", "edf", every))
            plan.append(("coordinated", sc.policy, every))
        for mode, pol, every in plan:
            coord = None if every is None else CoordinatorSettings(
                every=every, budget=args.budget, solver=args.solver)
            t0 = time.perf_counter()
            row = run_mode(cfg, mode, pol, seed=seed, weights=sc.weights, coord=coord).row
            row["bench_wall_s"] = time.perf_counter() - t0
            keep = {k: row[k] for k in (
                "mode", "policy", "interval", "seed", "tasks", "completed", "lost", "duplicated",
                "miss_rate", "p99_latency", "cost", "tardiness", "migration_cost",
                "weighted_objective", "solves", "solve_time_total", "solve_wall_s", "steals",
                "migrations", "bench_wall_s")}
            rows.append(keep)
            print(json.dumps(keep), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: every run, then per seed the best of each mode and the ratios."""
    out = ["| seed | mode | policy | interval | miss | cost | tardiness | migr. cost | "
           "w. objective | solves | solve time |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        every = "-" if r["interval"] is None else f"{r['interval']:g}"
        out.append(f"| {r['seed']} | {r['mode']} | {r['policy']} | {every} | "
                   f"{100 * r['miss_rate']:.2f}% | {r['cost']:,.0f} | {r['tardiness']:,.0f} | "
                   f"{r['migration_cost']:,.0f} | {r['weighted_objective']:,.0f} | "
                   f"{r['solves']} | {r['solve_time_total']:.1f} |")
    out += ["", "Best per seed (least weighted objective in each mode; coordinated and "
            "batch over all intervals):", "",
            "| seed | best online | w. obj | miss | best coordinated | w. obj | miss | "
            "ratio coord / online | best batch | w. obj | miss |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for seed in sorted({r["seed"] for r in rows}):
        best = {}
        for mode in ("online", "coordinated", "batch"):
            got = [r for r in rows if r["seed"] == seed and r["mode"] == mode]
            best[mode] = min(got, key=lambda r: r["weighted_objective"]) if got else None
        o, c, b = best["online"], best["coordinated"], best["batch"]
        if o is None or c is None or b is None:
            continue
        out.append(
            f"| {seed} | {o['policy']} | {o['weighted_objective']:,.0f} | "
            f"{100 * o['miss_rate']:.2f}% | {c['policy']} @ {c['interval']:g} | "
            f"{c['weighted_objective']:,.0f} | {100 * c['miss_rate']:.2f}% | "
            f"{c['weighted_objective'] / o['weighted_objective']:.3f} | "
            f"batch @ {b['interval']:g} | {b['weighted_objective']:,.0f} | "
            f"{100 * b['miss_rate']:.2f}% |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="mixed-fleet")
    ap.add_argument("--agents", type=int, default=16)
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--intervals", default="5,10,20,40")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--solver", default="greedy")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args()
    load0 = os.getloadavg()
    rows = run(args)
    text = table(rows)
    print(text)
    print(f"\nload average before / after: {load0[0]:.1f} / {os.getloadavg()[0]:.1f} "
          "(2 cores, shared)")
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if args.md:
        args.md.write_text(text + "\n")
    if args.plot:
        from allocator.cli.simulate import plot_modes

        seeds = sorted({r["seed"] for r in rows})
        plot_modes([r for r in rows if r["seed"] == seeds[0]], args.plot,
                   f"{args.scenario}: {args.tasks:,} tasks, {args.agents} agents, seed "
                   f"{seeds[0]}, budget {args.budget:g}, {args.solver}")


if __name__ == "__main__":
    main()
