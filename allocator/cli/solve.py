"""`allocator solve | validate | schema | solvers`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from allocator.cli.app import app, fail, guarded, to_json
from allocator.cli.tables import DataTable, escape

if TYPE_CHECKING:
    from models import Plan, Snapshot

console = Console(width=None if Console().is_terminal else 140)


def render_plan(plan: Plan, snapshot: Snapshot, *, out: Console | None = None) -> None:
    """Readable summary: status line, agents table, unassigned tasks, objective terms."""
    c = out or console
    gap = "n/a" if plan.gap is None else f"{plan.gap * 100:.2f}%"
    bound = "n/a" if plan.bound is None else f"{plan.bound:.6g}"
    obj = "n/a" if plan.objective is None else f"{plan.objective:.6g}"
    c.print(
        f"[bold]{escape(snapshot.name or 'snapshot')}[/]: {len(snapshot.agents)} agents, "
        f"{snapshot.n_tasks} tasks | solver [cyan]{plan.solver}[/] | status "
        f"[bold]{plan.status}[/] | objective {obj} | bound {bound} | gap {gap} | "
        f"{plan.wall_time_s:.2f}s"
    )
    if plan.metrics is not None:
        mt = plan.metrics
        t = DataTable(title="Agents", show_lines=False)
        t.add_column("agent")
        t.add_column("status")
        t.add_column("tasks", justify="right")
        t.add_column("busy", justify="right")
        t.add_column("finish", justify="right")
        resources = sorted({r for a in mt.agents for r in a.utilisation})
        for r in resources:
            t.add_column(f"util {r}", justify="right")
        status = {a.id: str(a.status) for a in snapshot.agents}
        for a in mt.agents:
            t.add_row(a.agent, status.get(a.agent, "?"), str(a.tasks), f"{a.busy_time:.4g}",
                      f"{a.finish:.4g}",
                      *[f"{a.utilisation.get(r, 0.0) * 100:.0f}%" for r in resources])
        c.print(t)
        c.print(
            f"assigned {mt.assigned}, unassigned {mt.unassigned} | makespan {mt.makespan:.4g} | "
            f"load variance {mt.load_variance:.4g} | CoV {mt.load_cov:.3f} | Jain "
            f"{mt.jain_index:.3f} | max/mean {mt.max_mean_ratio:.3f} | weighted tardiness "
            f"{mt.weighted_tardiness:.4g} | deadline misses {mt.deadline_misses} | "
            f"migrations {mt.migrations}"
        )
    if plan.breakdown:
        t = DataTable(title="Objective")
        for col in ("term", "value", "weight", "weighted"):
            t.add_column(col, justify="left" if col == "term" else "right")
        for term in plan.breakdown:
            if term.value or term.weight:
                t.add_row(term.name, f"{term.value:.6g}", f"{term.weight:g}",
                          f"{term.weighted:.6g}")
        c.print(t)
    if plan.unassigned:
        t = DataTable(title=f"Unassigned tasks ({len(plan.unassigned)})")
        t.add_column("task")
        t.add_column("code")
        t.add_column("reason")
        for u in plan.unassigned[:50]:
            t.add_row(u.task, str(u.code), u.reason)
        if len(plan.unassigned) > 50:
            t.add_row("...", "", f"{len(plan.unassigned) - 50} more in the plan file")
        c.print(t)
    if plan.migrations:
        c.print(f"migrations: {len(plan.migrations)} "
                + ", ".join(f"{m.task} {m.source}->{m.target}" for m in plan.migrations[:10])
                + (" ..." if len(plan.migrations) > 10 else ""), markup=False, emoji=False)
    if plan.message:
        c.print(f"[dim]{escape(plan.message)}[/]")


@app.command()
@guarded
def solve(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot JSON file.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the plan JSON here.")]
    = None,
    solver: Annotated[str | None, typer.Option(help="Backend name (see `allocator solvers`).")]
    = None,
    time_limit: Annotated[float | None, typer.Option(help="Seconds (default: snapshot's).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: snapshot's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan JSON instead.")]
    = False,
    plot: Annotated[Path | None, typer.Option(help="Chart file: .png, .svg or .html.")] = None,
) -> None:
    """Solve a snapshot and print the plan summary."""
    from allocator.io import read_snapshot, write_plan
    from allocator.usecases import SolveParams, solve_uc

    snap = read_snapshot(snapshot)
    plan = solve_uc(snap, SolveParams(solver=solver, time_limit=time_limit, seed=seed))
    if output is not None:
        write_plan(output, plan)
    if plot is not None:
        from allocator.report.plots import plot_plan  # matplotlib only when asked

        plot_plan(snap, plan, plot)
    if as_json:
        typer.echo(to_json(plan.model_dump(mode="json", by_alias=True), indent=2))
        if plot is not None:
            typer.echo(f"chart written to {plot}", err=True)
        return
    render_plan(plan, snap)
    if output is not None:
        console.print(f"plan written to {output}", markup=False, emoji=False)
    if plot is not None:
        console.print(f"chart written to {plot}", markup=False, emoji=False)


@app.command()
@guarded
def validate(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot JSON file.")],
    plan: Annotated[Path, typer.Argument(help="Plan JSON file.")],
) -> None:
    """Check a plan against its snapshot; exit 1 if any hard constraint is violated."""
    from allocator.io import read_plan, read_snapshot
    from allocator.validate import validate as validate_plan

    _check_order(snapshot, plan)
    snap = read_snapshot(snapshot)
    violations = validate_plan(snap, read_plan(plan))
    if not violations:
        typer.echo(f"valid: {plan} satisfies every hard constraint of {snapshot}")
        return
    for v in violations:
        typer.echo(str(v))
    typer.echo(f"{len(violations)} violation(s)", err=True)
    raise typer.Exit(1)


def _check_order(snapshot: Path, plan: Path) -> None:
    """A plan given as SNAPSHOT and a snapshot as PLAN: say so instead of a field error."""
    def kind(path: Path) -> str | None:
        try:
            head = path.read_text(errors="replace")[:65536]
        except OSError:
            return None  # the reader reports it
        if '"assignments"' in head and '"solver"' in head:
            return "plan"
        if '"agents"' in head and '"tasks"' in head:
            return "snapshot"
        return None

    if kind(snapshot) == "plan" and kind(plan) in ("snapshot", None):
        raise fail(f"{snapshot} is a plan and {plan} looks like a snapshot: the order is "
                   f"`allocator validate SNAPSHOT PLAN` (try: allocator validate {plan} "
                   f"{snapshot})")


@app.command()
def schema(
    which: Annotated[str, typer.Argument(help="snapshot, plan or all")] = "all",
) -> None:
    """Print the JSON Schema of Snapshot and/or Plan."""
    from models import Plan, Snapshot

    schemas = {"snapshot": Snapshot.model_json_schema(),
               "plan": Plan.model_json_schema(by_alias=True)}
    if which not in (*schemas, "all"):
        typer.echo(f"error: unknown schema {which!r}; use snapshot, plan or all", err=True)
        raise typer.Exit(2)
    payload = schemas if which == "all" else schemas[which]
    typer.echo(to_json(payload, indent=2))


@app.command()
def solvers() -> None:
    """List the solver backends; PuLP backends whose solver program is missing are marked."""
    from allocator.solvers import solver_names

    names = solver_names()
    status = {name: backend_status(name) for name in names}
    width = max(len(n) for n in names)
    swidth = max(len(s) for s in status.values())
    typer.echo(f"{'NAME':{width}s}  {'STATUS':{swidth}s}  DESCRIPTION")
    for name, desc in names.items():
        typer.echo(f"{name:{width}s}  {status[name]:{swidth}s}  {desc}")
    if any(s != "available" for s in status.values()):
        typer.echo("\nnot installed: PuLP finds no such solver program on PATH (e.g. glpsol for "
                   "milp:glpk); install it to use that backend.", err=True)


def backend_status(name: str) -> str:
    """`available`, or `not installed` for a PuLP backend (milp:glpk ...) without its program.

    The other backends are Python dependencies of the package, so registered means usable.
    """
    from allocator.solvers.milp import PULP_ALIASES

    prefix, _, sub = name.partition(":")
    if prefix != "milp" or sub.lower() not in PULP_ALIASES:
        return "available"
    import pulp

    try:
        ok = bool(pulp.getSolver(PULP_ALIASES[sub.lower()], msg=False).available())
    except Exception:
        ok = False
    return "available" if ok else "not installed"
