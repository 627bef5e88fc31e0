"""`allocator bench roadef MODEL...`: the ROADEF/EURO 2012 machine reassignment benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from allocator.cli.app import bench_app, gen_app, guarded, one_line, to_json
from allocator.errors import AllocatorError

COLUMNS = ("instance", "original_cost", "objective", "lower_bound", "best_known",
           "gap_to_best_pct", "moved", "time_s", "valid")


@bench_app.command("roadef")
@guarded
def bench_roadef(
    models: Annotated[list[Path], typer.Argument(
        help="Model files (model_<name>.txt; assignment_<name>.txt is read beside each).")],
    time_limit: Annotated[float, typer.Option(help="Seconds per instance.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Search seed.")] = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for solution_<name>.txt (the challenge format).")] = None,
    best_known: Annotated[Path | None, typer.Option(
        help="best_known.csv (default: beside the models or one folder up).")] = None,
    iterations: Annotated[int | None, typer.Option(
        help="Bound the LNS by a count instead of the clock (same seed, same result).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one line per instance).")
                       ] = False,
) -> None:
    """Reassign processes to machines from the initial placement; rows checked by the evaluator."""
    from allocator.limits import check_time_limit
    from allocator.roadef.bench import bench_one, find_best_known, read_best_known, warm_up

    check_time_limit(time_limit, "--time-limit")
    csv_path = best_known if best_known is not None else find_best_known(models)
    best = read_best_known(csv_path) if csv_path is not None else {}
    warm_up()  # the kernels' compile (or cache load) is not part of any instance's time
    rows = []
    failed = 0
    for model in models:
        try:
            row = bench_one(model, time_limit=time_limit, seed=seed, out=out, best=best,
                            iterations=iterations)
        except AllocatorError as exc:
            # one unreadable or infeasible instance does not lose the others' rows
            failed += 1
            typer.echo(f"error: {model}: {one_line(exc)}", err=True)
            continue
        rows.append(row)
        if as_json:
            typer.echo(to_json(row))
    if not as_json and rows:
        _print_rows(rows)
    if failed:
        raise typer.Exit(2)
    if not all(r["valid"] for r in rows):
        raise typer.Exit(1)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="bench roadef: objective vs the winning team's 300 s result (S41)")
    for c in COLUMNS:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*["-" if r.get(c) is None else str(r.get(c)) for c in COLUMNS])
    gaps = [r["gap_to_best_pct"] for r in rows if r.get("gap_to_best_pct") is not None]
    console = Console(width=None if Console().is_terminal else 160)
    console.print(t)
    if gaps:
        console.print(f"mean gap {sum(gaps) / len(gaps):.3f} %, max {max(gaps):.3f} %, "
                      f"valid {sum(r['valid'] for r in rows)}/{len(rows)}")


@gen_app.command("roadef")
@guarded
def gen_roadef(
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for model_/assignment_ files.")],
    processes: Annotated[int, typer.Option(help="Processes.")] = 50_000,
    machines: Annotated[int, typer.Option(help="Machines.")] = 5_000,
    resources: Annotated[int, typer.Option(help="Resources.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    name: Annotated[str | None, typer.Option(help="Instance name (file suffix).")] = None,
) -> None:
    """Write a generated instance with a feasible initial placement (rules: roadef/generate.py)."""
    from allocator.roadef.evaluate import evaluate
    from allocator.roadef.generate import generate_instance
    from allocator.roadef.instance import write_assignment, write_model

    inst = generate_instance(processes, machines, resources, seed=seed, name=name)
    out.mkdir(parents=True, exist_ok=True)
    write_model(out / f"model_{inst.name}.txt", inst)
    write_assignment(out / f"assignment_{inst.name}.txt", inst.initial)
    typer.echo(f"wrote model_{inst.name}.txt and assignment_{inst.name}.txt to {out} "
               f"({inst.n_processes} processes, {inst.n_machines} machines, "
               f"{inst.n_resources} resources, {inst.n_services} services; "
               f"initial cost {evaluate(inst, inst.initial).total})")
