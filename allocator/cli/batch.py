"""`allocator batch` and `allocator run --watch` (see allocator.batch)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from allocator.cli.app import app, fail, guarded
from allocator.cli.tables import DataTable, escape

if TYPE_CHECKING:
    from allocator.batch import BatchResult, Tick

console = Console(width=None if Console().is_terminal else 140)
err_console = Console(stderr=True)


def summary_table(results: list[BatchResult]) -> DataTable:
    t = DataTable(title=f"Batch ({len(results)} inputs)")
    for col in ("input", "outcome", "status", "objective", "assigned", "unassigned",
                "migrations", "valid", "time s", "note"):
        t.add_column(col, justify="right" if col in ("objective", "assigned", "unassigned",
                                                     "migrations", "time s") else "left")

    def cell(v: object, fmt: str = "{}") -> str:
        return "" if v is None else fmt.format(v)

    for r in results:
        t.add_row(r.stem, r.outcome, cell(r.status), cell(r.objective, "{:.6g}"),
                  cell(r.assigned), cell(r.unassigned), cell(r.migrations), cell(r.valid),
                  f"{r.wall_s:.2f}", "error on stderr" if r.error else "")
    return t


@app.command()
@guarded
def batch(
    inputs: Annotated[list[Path], typer.Argument(
        help="Snapshot JSON files or directories with agents/tasks tables.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    force: Annotated[bool, typer.Option(help="Solve again even if already solved.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="Assignments table: csv or parquet.")]
    = "csv",
    solver: Annotated[str | None, typer.Option(help="Backend (default: each snapshot's).")]
    = None,
    time_limit: Annotated[float | None, typer.Option(help="Seconds per input.")] = None,
    backend: Annotated[str, typer.Option(help="Where the solves run: local or ray.")]
    = "local",
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join with --backend ray (default: RAY_ADDRESS or a local Ray).")]
    = None,
) -> None:
    """Solve every input into --out: plans, assignments tables, a summary; exit 1 if any fail."""
    if fmt not in ("csv", "parquet"):
        raise fail(f"--format must be csv or parquet, got {fmt!r}")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from allocator.batch import run_batch

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        bar = progress.add_task("solving", total=len(inputs))

        def advance(r: BatchResult) -> None:
            progress.update(bar, advance=1, description=f"{r.stem}: {r.outcome}")

        if backend == "local":
            results = run_batch(inputs, out, force=force, fmt=fmt,  # type: ignore[arg-type]
                                solver=solver, time_limit=time_limit, on_result=advance)
        else:
            from allocator.distributed.sweeps import run_batch_backend

            results = run_batch_backend(backend, inputs, out, address=address, force=force,
                                        fmt=fmt, solver=solver, time_limit=time_limit,
                                        on_result=advance)
    console.print(summary_table(results))
    failed = [r for r in results if r.outcome == "failed"]
    counts = {k: sum(r.outcome == k for r in results) for k in ("solved", "skipped", "failed")}
    console.print(f"solved {counts['solved']}, skipped {counts['skipped']}, "
                  f"failed {counts['failed']} -> {out}")
    for r in failed:  # once each, here: the table only points at it
        typer.echo(f"error: {r.stem}: {r.error}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command("run")
@guarded
def run_watch(
    watch: Annotated[Path, typer.Option("--watch", help="Directory of snapshots to follow.")],
    every: Annotated[str, typer.Option(help="Period: 30s, 5m, 1h.")] = "30s",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output directory (default: WATCH/plans).")] = None,
    solver: Annotated[str | None, typer.Option(help="Backend (default: the snapshot's).")]
    = None,
    time_limit: Annotated[float | None, typer.Option(help="Seconds per solve.")] = None,
    max_ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks.")] = None,
    settle: Annotated[str, typer.Option(
        help="An input is taken once unchanged (size and mtime) this long, or at once when "
        "NAME.ready exists next to it.")] = "2s",
) -> None:
    """Re-solve the newest snapshot in --watch periodically, warm from the previous plan.

    An input is solved only once complete: a `NAME.ready` marker next to it, or
    unchanged for --settle (a half-written file is never solved).

    Stops cleanly on SIGINT/SIGTERM (after the solve in progress, if any).
    """
    from allocator.batch import Watcher, parse_duration

    period = parse_duration(every)
    stop = threading.Event()

    def on_tick(t: Tick) -> None:
        if t.action == "solved":
            console.print(f"[{t.seq}] solved {escape(str(t.input))}: {t.status}, "
                          f"{t.migrations} migration(s){' (warm)' if t.warm else ''} -> {t.plan}")
        elif t.action == "failed":
            console.print(f"[{t.seq}] failed {escape(str(t.input))}: {escape(str(t.error))}")
        else:
            console.print(f"[dim][{t.seq}] {t.action}[/]")

    watcher = Watcher(watch, out or watch / "plans", every=period, solver=solver,
                      time_limit=time_limit, on_tick=on_tick,
                      settle=0.0 if settle.strip() in ("0", "0s") else parse_duration(settle,
                                                                                     "settle"))

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.run(stop, max_ticks=max_ticks)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    console.print(f"stopped after {len(watcher.ticks)} tick(s), {watcher.solves} solve(s)")
