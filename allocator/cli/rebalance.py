"""`allocator rebalance`: move few tasks to balance the load (see allocator.rebalance)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from allocator.cli.app import app, guarded, to_json
from allocator.cli.tables import DataTable, escape

if TYPE_CHECKING:
    from allocator.rebalance import RebalanceResult
    from models import Snapshot

console = Console(width=None if Console().is_terminal else 140)


def render_rebalance(result: RebalanceResult, snapshot: Snapshot, *, valid: bool,
                     out: Console | None = None) -> None:
    """Before/after table per agent, the balance measures and the list of moves."""
    c = out or console
    plan = result.plan
    name = escape(snapshot.name or "snapshot")
    c.print(f"[bold]{name}[/]: rebalance | status [bold]{plan.status}[/] "
            f"| {len(plan.migrations)} migration(s) | valid {valid} | {plan.wall_time_s:.2f}s")
    status = {a.id: str(a.status) for a in snapshot.agents}
    t = DataTable(title="Load per agent (busy time)")
    for col in ("agent", "status", "before", "after", "change"):
        t.add_column(col, justify="left" if col in ("agent", "status") else "right")
    for a, b in result.before.loads.items():
        after = result.after.loads[a]
        t.add_row(a, status[a], f"{b:.4g}", f"{after:.4g}", f"{after - b:+.4g}")
    c.print(t)
    t = DataTable(title="Balance (up agents)")
    for col in ("measure", "before", "after"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    t.add_row("load variance", f"{result.before.variance:.4g}", f"{result.after.variance:.4g}")
    t.add_row("max / mean", f"{result.before.max_mean:.3f}", f"{result.after.max_mean:.3f}")
    t.add_row("Jain's index", f"{result.before.jain:.3f}", f"{result.after.jain:.3f}")
    c.print(t)
    if plan.migrations:
        t = DataTable(title="Migrations")
        for col in ("task", "from", "to", "cost", "gain"):
            t.add_column(col, justify="right" if col in ("cost", "gain") else "left")
        for m in plan.migrations:
            t.add_row(m.task, m.source, m.target, f"{m.cost:.4g}",
                      "forced" if m.gain is None else f"{m.gain:.4g}")
        c.print(t)
    if plan.unassigned:
        for u in plan.unassigned:
            c.print(f"unassigned {u.task}: {u.reason}", markup=False, emoji=False)
    if result.dropped:
        c.print(f"threshold {result.threshold:g} undid: {', '.join(result.dropped)}",
                markup=False, emoji=False)
    if result.below_threshold:
        c.print(f"kept below threshold (source full): {', '.join(result.below_threshold)}",
                markup=False, emoji=False)
    if plan.message:
        c.print(f"[dim]{escape(plan.message)}[/]")


@app.command()
@guarded
def rebalance(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot JSON with current agents.")],
    max_migrations: Annotated[int | None, typer.Option(
        "--max-migrations", help="Cap on voluntary moves.")] = None,
    threshold: Annotated[float, typer.Option(
        help="Smallest gain (busy time) a move must have.")] = 0.0,
    time_limit: Annotated[float | None, typer.Option(help="Seconds (default: snapshot's).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: snapshot's).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the plan JSON.")]
    = None,
    plot: Annotated[Path | None, typer.Option(help="Chart file: .png, .svg or .html.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Rebalance: a plan that moves few tasks, with the load before and after."""
    from allocator.limits import check_amount, check_count

    # The models' Count and Amount, as the API's RebalanceRequest.
    if max_migrations is not None:
        check_count(max_migrations, "--max-migrations")
    check_amount(threshold, "--threshold")
    from allocator.io import read_snapshot, write_plan
    from allocator.usecases import RebalanceParams, rebalance_uc

    snap = read_snapshot(snapshot)
    out = rebalance_uc(snap, RebalanceParams(max_migrations=max_migrations, threshold=threshold,
                                             time_limit=time_limit, seed=seed))
    result, valid = out.result, out.valid
    if output is not None:
        write_plan(output, result.plan)
    if plot is not None:
        from allocator.report.plots import plot_plan  # matplotlib only when asked

        plot_plan(snap, result.plan, plot)
    if as_json:
        typer.echo(to_json(out.summary))
        return
    render_rebalance(result, snap, valid=valid)
    if output is not None:
        console.print(f"plan written to {output}", markup=False, emoji=False)
    if plot is not None:
        console.print(f"chart written to {plot}", markup=False, emoji=False)
