"""`allocator bench gap` and `allocator convert gap`: GAP benchmark files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from allocator.cli.app import bench_app, convert_app, guarded, to_json
from allocator.errors import InvalidInputError

if TYPE_CHECKING:
    from allocator.io.gap import GapInstance
    from models import Plan

err_console = Console(stderr=True)


def _find_best_known(files: list[Path]) -> Path | None:
    for f in files:
        for d in (f.parent, f.parent.parent):
            cand = d / "best_known.csv"
            if cand.is_file():
                return cand
    return None


def gap_row(inst: GapInstance, plan: Plan, sense: str, valid: bool,
            best: tuple[float, bool] | None, solver: str) -> dict[str, Any]:
    """One benchmark row; objective in the file's own sense (profit for max)."""
    placed = plan.agent_of()
    objective: float | None = None
    if len(placed) == inst.n:
        objective = float(sum(inst.cost[int(a.split("-")[1]), int(t.split("-")[1])]
                              for t, a in placed.items()))
    gap_pct = None
    if objective is not None and best is not None and best[0] != 0:
        bk = best[0]
        gap_pct = (objective - bk) / abs(bk) * 100 if sense == "min" else (bk - objective) / abs(
            bk) * 100
    return {
        "instance": inst.name,
        "sense": sense,
        "agents": inst.m,
        "tasks": inst.n,
        "solver": solver,
        "objective": objective,
        "best_known": None if best is None else best[0],
        "gap_pct": None if gap_pct is None else round(gap_pct, 4),
        "bound_gap_pct": None if plan.gap is None else round(plan.gap * 100, 4),
        "time_s": round(plan.wall_time_s, 3),
        "status": str(plan.status),
        "unassigned": len(plan.unassigned),
        "valid": valid,
    }


@bench_app.command("gap")
@guarded
def bench_gap(
    files: Annotated[list[Path], typer.Argument(help="GAP files (OR-Library or one-problem).")],
    best_known: Annotated[Path | None, typer.Option(help="best_known.csv (default: next to "
                                                         "the files).")] = None,
    sense: Annotated[str, typer.Option(help="min (cost) or max (profit).")] = "min",
    time_limit: Annotated[float, typer.Option(help="Seconds per problem and solver.")] = 10.0,
    solver: Annotated[list[str] | None, typer.Option(help="Backend; repeat to compare.")] = None,
    seed: Annotated[int, typer.Option(help="Seed passed to every solve.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Solve every problem in the files and compare with the best known values."""
    from allocator.engine import solve as engine_solve
    from allocator.io import gap_to_snapshot, read_gap
    from allocator.io.gap import read_best_known
    from allocator.solvers import get_solver
    from allocator.validate import validate

    solvers = solver or ["auto"]
    for s in solvers:
        get_solver(s)  # fail fast on a typo
    if sense not in ("min", "max"):
        raise InvalidInputError(f"must be min or max, got {sense!r}", field="--sense")
    bk_path = best_known or _find_best_known(files)
    best = read_best_known(bk_path) if bk_path else {}
    instances = [inst for f in files for inst in read_gap(f)]
    rows: list[dict[str, Any]] = []
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        bar = progress.add_task("bench gap", total=len(instances) * len(solvers))
        for inst in instances:
            snap = gap_to_snapshot(inst, sense=sense, time_limit=time_limit, seed=seed)
            for s in solvers:
                progress.update(bar, description=f"{inst.name} {s}")
                plan = engine_solve(snap, solver=s)
                row = gap_row(inst, plan, sense, not validate(snap, plan),
                              best.get((inst.name, sense)), s)
                rows.append(row)
                if as_json:
                    typer.echo(to_json(row))
                progress.advance(bar)
    if as_json:
        return
    out = Console(width=None if Console().is_terminal else 160)
    t = Table(title=f"GAP benchmark ({sense}, {time_limit:g}s per problem)")
    for col in ("instance", "m x n", "solver", "objective", "best", "gap %", "bound gap %",
                "time s", "status", "valid"):
        t.add_column(col, justify="left" if col in ("instance", "solver", "status") else "right")
    for r in rows:
        t.add_row(r["instance"], f"{r['agents']}x{r['tasks']}", r["solver"],
                  "-" if r["objective"] is None else f"{r['objective']:g}",
                  "-" if r["best_known"] is None else f"{r['best_known']:g}",
                  "-" if r["gap_pct"] is None else f"{r['gap_pct']:.2f}",
                  "-" if r["bound_gap_pct"] is None else f"{r['bound_gap_pct']:.2f}",
                  f"{r['time_s']:.2f}", r["status"], "yes" if r["valid"] else "NO")
    out.print(t)
    for s in solvers:
        gaps = [r["gap_pct"] for r in rows if r["solver"] == s and r["gap_pct"] is not None]
        if gaps:
            out.print(f"{s}: mean gap {sum(gaps) / len(gaps):.3f}% worst {max(gaps):.3f}% "
                            f"over {len(gaps)} problems")
    if len(solvers) > 1:
        out.print(size_class_table(rows, solvers))


def size_class_table(rows: list[dict[str, Any]], solvers: list[str]) -> Table:
    """Mean gap to best known per size class (agents x tasks) and solver; - if any row lacks one."""
    t = Table(title="mean gap % by size class (same run, same budget)")
    t.add_column("m x n")
    t.add_column("problems", justify="right")
    for s in solvers:
        t.add_column(s, justify="right")
    t.add_column("best", justify="left")
    classes = sorted({(r["agents"], r["tasks"]) for r in rows}, key=lambda c: (c[1], c[0]))
    for m, n in classes:
        cells, means = [], {}
        for s in solvers:
            gaps = [r["gap_pct"] for r in rows
                    if r["solver"] == s and (r["agents"], r["tasks"]) == (m, n)]
            if gaps and all(g is not None and r_ok for g, r_ok in zip(
                    gaps, [r["valid"] for r in rows
                           if r["solver"] == s and (r["agents"], r["tasks"]) == (m, n)],
                    strict=True)):
                means[s] = sum(gaps) / len(gaps)
                cells.append(f"{means[s]:.3f}")
            else:
                cells.append("-")
        count = len({r["instance"] for r in rows if (r["agents"], r["tasks"]) == (m, n)})
        low = min(means.values()) if means else None
        winners = [k for k, v in means.items() if low is not None and v <= low + 1e-9]
        best = "-" if not winners else winners[0] if len(winners) == 1 else (
            "tie: " + ", ".join(winners))
        t.add_row(f"{m}x{n}", str(count), *cells, best)
    return t


@convert_app.command("gap")
@guarded
def convert_gap(
    file: Annotated[Path, typer.Argument(help="GAP file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Snapshot JSON to write.")],
    problem: Annotated[str | None, typer.Option(help="Problem id, e.g. 2 or gap3:2 (default: "
                                                     "the first).")] = None,
    sense: Annotated[str, typer.Option(help="min (cost) or max (profit).")] = "min",
) -> None:
    """Write one benchmark problem as a snapshot you can open, edit and solve."""
    from allocator.io import gap_to_snapshot, read_gap
    from allocator.io.snapshots import dump_model, write_json_atomic

    instances = read_gap(file)
    if problem is None:
        inst = instances[0]
    else:
        key = problem.split(":")[-1]
        matches = [i for i in instances if i.name == problem or i.name.split(":")[-1] == key]
        if not matches:
            names = ", ".join(i.name for i in instances)
            raise InvalidInputError(f"no problem {problem!r} in {file}; have {names}",
                                    field="--problem")
        inst = matches[0]
    snap = gap_to_snapshot(inst, sense=sense)
    write_json_atomic(output, dump_model(snap))
    typer.echo(f"wrote {inst.name} ({inst.m} agents x {inst.n} tasks, {sense}) to {output}")
