"""`allocator bench anytime`: % above the LP bound at short budgets and under contention.

For each instance (generated GAP types x sizes x seeds, and any GAP files
given) the LP bound is computed once, untimed, and a stronger valid bound:
the knapsack Lagrangian from the LP's task duals (`--lagrange-s` seconds;
rows: `best_bound`, `best_gap_pct`). Then every solver runs with
every budget, one solve at a time, and - with `--concurrent K` - K copies of
the same solve at once (separate processes started together, so they share
the cores as a loaded service's workers do). Rows keep objective,
unassigned, valid, the plan's own bound gap and the gap to the LP bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from allocator.cli.app import bench_app, guarded, to_json
from allocator.errors import InvalidInputError

if TYPE_CHECKING:
    from allocator.io.gap import GapInstance

err = Console(stderr=True)


def _instance(spec: dict[str, Any]) -> GapInstance:
    if "file" in spec:
        from allocator.io import read_gap

        return read_gap(spec["file"])[int(spec.get("index", 0))]
    from allocator.io.gapgen import generate_gap

    return generate_gap(spec["type"], int(spec["agents"]), int(spec["tasks"]),
                        int(spec["seed"]))


def run_one(spec: dict[str, Any], solver: str, time_limit: float, seed: int = 0,
            inst: GapInstance | None = None, snap: Any = None) -> dict[str, Any]:
    """Solve one instance once; the row `bench gap` would print, plus the timing."""
    from allocator.cli.bench import gap_row
    from allocator.engine import solve
    from allocator.io import gap_to_snapshot
    from allocator.validate import validate

    inst = inst if inst is not None else _instance(spec)
    snap = snap if snap is not None else gap_to_snapshot(inst, time_limit=time_limit, seed=seed)
    t0 = time.perf_counter()
    plan = solve(snap, solver=solver, time_limit=time_limit, seed=seed)
    wall = time.perf_counter() - t0
    row = gap_row(inst, plan, "min", not validate(snap, plan), None, solver)
    row["wall_s"] = round(wall, 3)
    return row


def _child() -> None:
    """One concurrent solve: build the instance, say ready, wait for go, solve, print the row."""
    spec = json.loads(sys.argv[2])
    solver, limit, seed = sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    from allocator.io import gap_to_snapshot

    inst = _instance(spec)
    snap = gap_to_snapshot(inst, time_limit=limit, seed=seed)
    from allocator.engine import _preload

    # Imports before the clock starts, as in a service worker that has solved before
    # (the engine counts the LP stack's import in the budget of a fresh process's solve).
    _preload()

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    sys.stdout.write(json.dumps(run_one(spec, solver, limit, seed, inst, snap)) + "\n")
    sys.stdout.flush()


def run_concurrent(spec: dict[str, Any], solver: str, time_limit: float, k: int,
                   seed: int = 0) -> list[dict[str, Any]]:
    """K identical solves started at the same instant in separate processes."""
    procs = [subprocess.Popen(
        [sys.executable, "-m", "allocator.cli.bench_anytime", "--child", json.dumps(spec),
         solver, str(time_limit), str(seed + i)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for i in range(k)]
    rows: list[dict[str, Any]] = []
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a concurrent bench process failed to start")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            p.wait(timeout=time_limit + 120)
            rows.append(json.loads(line))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return rows


def lp_bound_of(inst: GapInstance) -> float | None:
    return bounds_of(inst, 0.0)[0]


def bounds_of(inst: GapInstance, lagrange_s: float) -> tuple[float | None, float | None]:
    """(LP bound, best valid bound): the latter the larger of the LP bound and the
    knapsack Lagrangian from the LP's task duals (allocator.solvers.knapsack_lagrange.
    assignment_bound, at most `lagrange_s` seconds; also a valid lower bound, which
    the LP bound undercuts by up to 0.17 % on tight C instances)."""
    from allocator.bounds import lp_relaxation
    from allocator.io import gap_to_snapshot
    from allocator.problem import compile_snapshot
    from allocator.solvers.knapsack_lagrange import assignment_bound
    from allocator.solvers.linear import build_linear

    problem = compile_snapshot(gap_to_snapshot(inst))
    lm = build_linear(problem)
    lp = lp_relaxation(problem, lm, time_limit=300)
    if lp is None:
        return None, None
    lagr = (assignment_bound(lm, lp.task_dual, time_limit=lagrange_s)
            if lagrange_s > 0 and lp.task_dual is not None else None)
    return lp.bound, max(lp.bound, lagr) if lagr is not None else lp.bound


def _specs(types: str, sizes: str, seeds: str, files: list[Path]) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for size in [s for s in sizes.split(",") if s]:
        try:
            m, n = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise InvalidInputError(f"size {size!r} is not MxN", field="--sizes") from None
        for kind in [t for t in types.lower().split(",") if t]:
            for seed in [int(s) for s in seeds.split(",") if s]:
                specs.append({"type": kind, "agents": m, "tasks": n, "seed": seed})
    from allocator.io import read_gap

    for f in files:
        for k, _ in enumerate(read_gap(f)):
            specs.append({"file": str(f), "index": k})
    return specs


@bench_app.command("anytime")
@guarded
def bench_anytime(
    files: Annotated[list[Path] | None, typer.Argument(help="Extra GAP files (bundled C/D).")]
    = None,
    types: Annotated[str, typer.Option(help="Generated types, comma-separated.")] = "c,d,e",
    sizes: Annotated[str, typer.Option(help="Generated sizes MxN, comma-separated.")]
    = "20x400,40x800,80x1600",
    seeds: Annotated[str, typer.Option(help="Generator seeds, comma-separated.")] = "101,102",
    budgets: Annotated[str, typer.Option(help="Time limits (s), comma-separated.")] = "1,3,10",
    solver: Annotated[list[str] | None, typer.Option(help="Backends; repeat to compare.")]
    = None,
    concurrent: Annotated[int, typer.Option(help="Also run this many solves at once.")] = 3,
    concurrent_budget: Annotated[float, typer.Option(help="Time limit of the concurrent runs.")]
    = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    save: Annotated[Path | None, typer.Option(help="Also append the JSON rows to this file.")]
    = None,
    lagrange_s: Annotated[float, typer.Option(
        help="Seconds per instance for the knapsack Lagrangian bound (0: LP bound only).")]
    = 30.0,
) -> None:
    """% above the LP bound per solver at each budget, and with K solves at once."""
    from allocator.io import gap_to_snapshot
    from allocator.solvers import get_solver

    solvers = solver or ["auto", "cpsat", "milp"]
    for s in solvers:
        get_solver(s)
    limits = [float(b) for b in budgets.split(",") if b]
    if any(not b > 0 for b in limits) or concurrent < 0:
        raise InvalidInputError("budgets must be > 0 and --concurrent >= 0", field="--budgets")
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any], lp: float | None, spec: dict[str, Any], mode: str,
             best: float | None = None) -> None:
        row["lp_bound"] = lp
        row["lp_gap_pct"] = (None if lp is None or row["objective"] is None
                             else round((row["objective"] - lp) / abs(lp) * 100, 4))
        row["best_bound"] = best
        row["best_gap_pct"] = (None if best is None or row["objective"] is None
                               else round((row["objective"] - best) / abs(best) * 100, 4))
        row["mode"] = mode
        row["type"] = spec.get("type", Path(spec.get("file", "?")).name[:1])
        row["seed"] = spec.get("seed")
        rows.append(row)
        if as_json:
            typer.echo(to_json(row))
        if save is not None:
            with save.open("a") as f:
                f.write(to_json(row) + "\n")

    for spec in _specs(types, sizes, seeds, files or []):
        inst = _instance(spec)
        lp, best = bounds_of(inst, lagrange_s)
        err.print(f"{inst.name}: LP bound {lp}, best bound {best}")
        for limit in limits:
            snap = gap_to_snapshot(inst, time_limit=limit)
            for s in solvers:
                emit(run_one(spec, s, limit, inst=inst, snap=snap), lp, spec, f"{limit:g}s",
                     best)
        if concurrent > 1:
            for s in solvers:
                for row in run_concurrent(spec, s, concurrent_budget, concurrent):
                    emit(row, lp, spec, f"{concurrent_budget:g}s x{concurrent}", best)
    if not as_json:
        print_summary(rows, solvers)
        if lagrange_s > 0:
            print_summary(rows, solvers, key="best_gap_pct")


def print_summary(rows: list[dict[str, Any]], solvers: list[str],
                  key: str = "lp_gap_pct") -> None:
    """Mean / worst % above the LP bound (`key` best_gap_pct: above the best valid bound)
    per mode and solver, unassigned and invalid counts."""
    out = Console(width=None if Console().is_terminal else 180)
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    what = "the LP bound" if key == "lp_gap_pct" else "max(LP, knapsack Lagrangian) bound"
    t = Table(title=f"bench anytime: % above {what} (mean / worst), unassigned tasks, "
                    "invalid plans")
    t.add_column("type x size")
    t.add_column("mode")
    for s in solvers:
        t.add_column(s, justify="right")
    groups = list(dict.fromkeys((r["type"], r["agents"], r["tasks"]) for r in rows))
    for g in [*groups, None]:
        for mode in modes:
            cells = []
            for s in solvers:
                rs = [r for r in rows if r["mode"] == mode and r["solver"] == s
                      and (g is None or (r["type"], r["agents"], r["tasks"]) == g)]
                if not rs:
                    cells.append("-")
                    continue
                gaps = [r[key] for r in rs if r.get(key) is not None]
                un = sum(r["unassigned"] for r in rs)
                bad = sum(not r["valid"] for r in rs)
                txt = (f"{sum(gaps) / len(gaps):.3f} / {max(gaps):.3f}" if gaps else "none")
                if len(gaps) < len(rs) or un:
                    txt += f" ({len(rs) - len(gaps)} incomplete, {un} unassigned)"
                if bad:
                    txt += f" {bad} INVALID"
                cells.append(txt)
            label = "all" if g is None else f"{g[0].upper()} {g[1]}x{g[2]}"
            t.add_row(label, mode, *cells)
    out.print(t)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child()
