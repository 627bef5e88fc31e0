"""`allocator bench scale` and `allocator bottlenecks SNAPSHOT`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from allocator.cli.app import app, bench_app, guarded, to_json
from allocator.cli.tables import DataTable
from allocator.errors import InvalidInputError

#: Task counts of the time / memory table (`bench scale --table`).
TABLE_TASKS = (10_000, 30_000, 100_000, 300_000, 1_000_000)


def _console() -> Console:
    return Console(width=None if Console().is_terminal else 160)


@bench_app.command("scale")
@guarded
def bench_scale(
    agents: Annotated[int, typer.Option(help="Agents.")] = 1000,
    tasks: Annotated[int, typer.Option(help="Tasks.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 0,
    time_limit: Annotated[float, typer.Option(help="Solver budget (s).")] = 10.0,
    table: Annotated[bool, typer.Option(
        "--table", help="Run 10k..1M tasks, one fresh process each; time and memory.")] = False,
    max_tasks: Annotated[int, typer.Option(help="Largest size in --table.")] = 1_000_000,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one line per run).")] = False,
) -> None:
    """Load balancing at scale: makespan vs lower bound, time, peak memory, LPT baseline."""
    if agents < 1 or tasks < 1:
        raise InvalidInputError("agents and tasks must be >= 1", field="--agents/--tasks")
    if not table:
        from allocator.scalebench import run_scale

        one = run_scale(agents, tasks, seed, time_limit=time_limit)
        if as_json:
            typer.echo(to_json(one))
        else:
            _print_rows([one])
        return
    rows = []
    for n in [t for t in TABLE_TASKS if t <= max_tasks]:
        # A fresh process per size, so peak RSS is that size's own.
        cmd = [sys.executable, "-m", "allocator.cli.bench_solvers", str(agents), str(n),
               str(seed), str(time_limit)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            row: dict[str, Any] = {"agents": agents, "tasks": n,
                                   "error": proc.stderr.strip().splitlines()[-1:]}
        else:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        if as_json:
            typer.echo(to_json(row))
    if not as_json:
        _print_rows(rows)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    t = DataTable(title="bench scale: makespan vs lower bound (fluid LP over skill groups)")
    cols = ("agents", "tasks", "makespan", "lower_bound", "ratio", "time_s", "peak_rss_mb",
            "valid", "lpt_ratio", "lpt_time_s", "generate_s", "validate_s")
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*["-" if r.get(c) is None else str(r.get(c)) for c in cols])
    _console().print(t)
    for r in rows:
        if "error" in r:
            _console().print(f"{r['tasks']} tasks failed: {r['error']}", markup=False, emoji=False)


@app.command()
@guarded
def bottlenecks(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot JSON.")],
    plan: Annotated[Path | None, typer.Option(help="Plan to analyse (default: solve now).")]
    = None,
    solver: Annotated[str | None, typer.Option(help="Backend when solving.")] = None,
    time_limit: Annotated[float | None, typer.Option(help="Budget when solving (s).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Write the plan with its bottleneck "
                                                     "section.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Binding agents and resources, marginal value of capacity, blocked tasks."""
    from allocator.io import read_plan, read_snapshot, write_plan
    from allocator.usecases import BottlenecksParams, bottlenecks_uc

    snap = read_snapshot(snapshot)
    # The use case the API and MCP call: a supplied plan is checked (ids, each task
    # once, finite numbers, hard constraints) before it is analysed.
    outcome = bottlenecks_uc(snap, BottlenecksParams(
        plan=read_plan(plan) if plan is not None else None, solver=solver,
        time_limit=time_limit))
    the_plan, report = outcome.plan, outcome.report
    if output is not None:
        write_plan(output, the_plan.model_copy(update={"bottlenecks": report}))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    out = _console()
    t = DataTable(title="resources (up agents)")
    for c in ("resource", "used", "capacity", "utilisation", "binding agents"):
        t.add_column(c)
    for r in report.resources:
        t.add_row(r.resource, f"{r.used:g}", f"{r.capacity:g}", f"{r.utilisation:.1%}",
                  ", ".join(r.binding_agents[:8]) + (" ..." if len(r.binding_agents) > 8
                                                     else "") or "-")
    out.print(t)
    if report.capacity_values:
        t = DataTable(title="marginal value of +1 unit of capacity (LP dual; objective units)")
        for c in ("agent", "resource", "value", "utilisation"):
            t.add_column(c)
        for v in report.capacity_values[:20]:
            t.add_row(v.agent, v.resource, f"{v.value:.4g}", f"{v.utilisation:.1%}")
        out.print(t)
    if report.makespan_agents:
        out.print(f"makespan set by: {', '.join(report.makespan_agents[:10])}",
                  markup=False, emoji=False)
    if report.blocked:
        t = DataTable(title=f"blocked tasks ({len(report.blocked)})")
        for c in ("task", "code", "blocking constraint"):
            t.add_column(c)
        for b in report.blocked[:30]:
            t.add_row(b.task, b.code, b.constraint)
        out.print(t)
    if report.note:
        out.print(f"note: {report.note}", markup=False, emoji=False)


def _child(argv: list[str]) -> None:
    """Entry point of one `--table` size (fresh process)."""
    from allocator.scalebench import run_scale

    agents, tasks, seed, limit = int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3])
    typer.echo(to_json(run_scale(agents, tasks, seed, time_limit=limit)))


if __name__ == "__main__":
    _child(sys.argv[1:])
