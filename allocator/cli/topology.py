"""`allocator convert roadef` and `allocator topology` (thin: parse, call the engine, format)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from allocator.cli.app import app, convert_app, guarded, to_json


@convert_app.command("roadef")
@guarded
def convert_roadef(
    model: Annotated[Path, typer.Argument(help="ROADEF model file (model_*.txt).")],
    assignment: Annotated[Path, typer.Argument(help="Its initial assignment "
                                                    "(assignment_*.txt).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Snapshot JSON to write.")],
) -> None:
    """Write a machine reassignment instance as a snapshot with topology (zones, groups)."""
    from allocator.io.snapshots import dump_model, write_json_atomic
    from allocator.roadef.convert import instance_to_snapshot
    from allocator.roadef.instance import read_instance

    inst = read_instance(model, assignment)
    snap = instance_to_snapshot(inst)
    write_json_atomic(output, dump_model(snap))
    typer.echo(f"wrote {inst.name} ({inst.n_machines} agents, {inst.n_processes} tasks, "
               f"{inst.n_services} groups, {inst.n_resources} resources) to {output}")


def _fmt_map(values: dict[str, float], pct: bool = False) -> str:
    return " ".join(f"{r}={v:.0%}" if pct else f"{r}={v:g}" for r, v in values.items())


@app.command()
@guarded
def topology(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot JSON.")],
    plan: Annotated[Path | None, typer.Option(help="Plan whose placement to analyse "
                                                   "(default: the current agents).")] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Machines added / removed / moved "
                                                      "per what-if.")] = 1,
    time_limit: Annotated[float, typer.Option(help="Budget of each re-solve (s).")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed of every re-solve.")] = 0,
    solver: Annotated[str | None, typer.Option(help="Backend of the re-solves "
                                                    "(default: the snapshot's).")] = None,
    what_if: Annotated[bool, typer.Option("--what-if/--no-what-if",
                                          help="Price the what-ifs by re-solving.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Capacity and load per zone and neighbourhood, hot and cold zones, shadow prices,
    binding rules, and what adding, removing or moving machines would save."""
    from allocator.io import read_plan, read_snapshot
    from allocator.usecases import TopologyParams, topology_uc

    snap = read_snapshot(snapshot)
    the_plan = read_plan(plan) if plan is not None else None
    report = topology_uc(snap, TopologyParams(plan=the_plan, k=k, time_limit=time_limit,
                                              seed=seed, solver=solver, what_if=what_if))
    if as_json:
        typer.echo(to_json(report.to_dict(), indent=2))
        return
    _render(report)


def _render(report: Any) -> None:
    from rich.console import Console

    from allocator.cli.tables import DataTable, escape

    out = Console(width=None if Console().is_terminal else 160)
    for title, rows, key in (("zones", report.zones, "zone"),
                             ("neighbourhoods", report.neighbourhoods, "neighbourhood")):
        t = DataTable(title=f"{title} ({report.placement} placement)")
        for c in (key, "agents", "tasks", "utilisation", "above safety", "status",
                  "shadow price (capacity / safety)"):
            t.add_column(c)
        for z in rows:
            price = z.get("shadow_price")
            t.add_row(z[key], str(z["agents"]), str(z["tasks"]),
                      _fmt_map(z["utilisation"], pct=True),
                      _fmt_map({r: v for r, v in z["above_safety"].items() if v}) or "-",
                      z.get("status", ""),
                      "-" if price is None else
                      f"{_fmt_map(price['capacity'])} / {_fmt_map(price['safety'])}")
        out.print(t)
    out.print(f"hot: {', '.join(report.hot) or '-'} | cold: {', '.join(report.cold) or '-'}",
              markup=False, emoji=False)
    if not report.lp.get("solved"):
        out.print(f"[dim]LP: {escape(str(report.lp.get('note')))}[/]")
    for b in report.binding[:20]:
        out.print(f"binding {b['rule']}: group {b['group']} {b['detail']}",
                  markup=False, emoji=False)
    if report.baseline.get("error"):
        out.print(f"what-ifs not priced: {report.baseline['error']}", markup=False, emoji=False)
    elif report.baseline:
        out.print(f"baseline re-solve: objective {report.baseline['objective']:.6g} "
                  f"({report.baseline['solver']}, {report.baseline['time_limit']:g}s)",
                  markup=False, emoji=False)
        t = DataTable(title="what-ifs (each a re-solve with the same budget and seed)")
        for c in ("action", "k", "from", "to", "objective", "evacuation", "saving", "valid",
                  "note"):
            t.add_column(c)
        for w in report.what_if:
            t.add_row(w.action, str(w.k), w.source or "-", w.target or "-",
                      "-" if w.objective is None else f"{w.objective:.6g}",
                      f"{w.evacuation_cost:.6g}",
                      "-" if w.saving is None else f"{w.saving:.6g}", str(w.valid), w.note)
        out.print(t)
