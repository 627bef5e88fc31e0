"""`allocator pareto` (a front for one snapshot) and `allocator bench pareto` (GAP files)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from allocator.cli.app import app, bench_app, guarded, to_json
from allocator.cli.tables import DataTable
from allocator.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

    from allocator.pareto import Pick
    from allocator.solvers.nsga2 import Nsga2Progress
    from allocator.usecases import ParetoOutcome
    from models import ParetoFront, Snapshot

err_console = Console(stderr=True)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def front_table(front: ParetoFront, picked: int | None, valid: list[bool]) -> DataTable:
    t = DataTable(title=f"Pareto front ({front.method}{', proven' if front.proven else ''}): "
                    f"{len(front.points)} plans")
    t.add_column("#", justify="right")
    for k in front.objectives:
        t.add_column(k, justify="right")
    t.add_column("assigned", justify="right")
    t.add_column("unassigned", justify="right")
    t.add_column("valid")
    t.add_column("")
    for i, p in enumerate(front.points):
        t.add_row(str(i), *[_fmt(p.objectives[k]) for k in front.objectives],
                  str(len(p.plan.assignments)), str(len(p.plan.unassigned)),
                  "yes" if valid[i] else "NO", "<- picked" if i == picked else "")
    return t


# ---------------------------------------------------------------------------
# Plots


def plot_png(front: ParetoFront, path: Path, picked: int | None) -> None:
    """2-D scatter (two objectives) or parallel coordinates (more), with matplotlib."""
    import matplotlib
    import numpy as np

    from allocator.pareto import bounds

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    F = np.array(front.vectors())
    names = front.objectives
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    if len(names) == 2:
        order = np.argsort(F[:, 0], kind="stable")
        ax.step(F[order, 0], F[order, 1], where="post", color="0.7", lw=1)
        ax.scatter(F[:, 0], F[:, 1], s=28, label=f"{front.method} front ({len(F)})")
        if picked is not None:
            ax.scatter([F[picked, 0]], [F[picked, 1]], s=90, facecolors="none",
                       edgecolors="red", lw=2, label="picked")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.legend()
    else:
        ideal, nadir = bounds(F)
        Z = _normalised(F, ideal, nadir)
        xs = np.arange(len(names))
        for i, z in enumerate(Z):
            if i != picked:
                ax.plot(xs, z, color="tab:blue", alpha=0.35, lw=1)
        if picked is not None:
            ax.plot(xs, Z[picked], color="red", lw=2.5, label="picked")
            ax.legend()
        ax.set_xticks(xs, [f"{n}\n[{_fmt(ideal[k])}, {_fmt(nadir[k])}]"
                           for k, n in enumerate(names)])
        ax.set_ylabel("normalised (0 = best on the front)")
    ax.set_title(f"Pareto front: {len(F)} plans")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _normalised(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> np.ndarray:
    import numpy as np

    rng = np.where(nadir - ideal > 0, nadir - ideal, 1.0)
    return (F - ideal) / rng


def plot_html(front: ParetoFront, path: Path, picked: int | None) -> None:
    """A self-contained HTML page: an inline SVG plot (no scripts, no CDN) and the table."""
    import html

    import numpy as np

    from allocator.pareto import bounds

    F = np.array(front.vectors())
    names = front.objectives
    W, H, pad = 640, 420, 60
    ideal, nadir = bounds(F)
    Z = _normalised(F, ideal, nadir)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'style="font:12px sans-serif;background:#fff">']

    def sx(v: float) -> float:
        return pad + v * (W - 2 * pad)

    def sy(v: float) -> float:
        return H - pad - v * (H - 2 * pad)

    def tip(i: int) -> str:
        return html.escape(f"#{i}: " + ", ".join(f"{k}={_fmt(F[i, n])}"
                                                 for n, k in enumerate(names)))

    parts.append(f'<rect x="{pad}" y="{pad}" width="{W - 2 * pad}" height="{H - 2 * pad}" '
                 f'fill="none" stroke="#999"/>')
    if len(names) == 2:
        for t in (0.0, 0.5, 1.0):
            for axis in (0, 1):
                val = ideal[axis] + t * (nadir[axis] - ideal[axis])
                if axis == 0:
                    parts.append(f'<text x="{sx(t):.1f}" y="{H - pad + 16}" '
                                 f'text-anchor="middle">{_fmt(val)}</text>')
                else:
                    parts.append(f'<text x="{pad - 6}" y="{sy(t) + 4:.1f}" '
                                 f'text-anchor="end">{_fmt(val)}</text>')
        parts.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">'
                     f'{html.escape(names[0])}</text>')
        parts.append(f'<text x="16" y="{H / 2}" transform="rotate(-90 16 {H / 2})" '
                     f'text-anchor="middle">{html.escape(names[1])}</text>')
        order = np.argsort(Z[:, 0], kind="stable")
        pts = " ".join(f"{sx(Z[i, 0]):.1f},{sy(Z[i, 1]):.1f}" for i in order)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#bbb"/>')
        for i in range(len(F)):
            color = "red" if i == picked else "#1f77b4"
            r = 7 if i == picked else 4
            parts.append(f'<circle cx="{sx(Z[i, 0]):.1f}" cy="{sy(Z[i, 1]):.1f}" r="{r}" '
                         f'fill="{color}"><title>{tip(i)}</title></circle>')
    else:
        k = len(names)
        xs = [pad + a * (W - 2 * pad) / (k - 1) for a in range(k)]
        for a, n in enumerate(names):
            parts.append(f'<line x1="{xs[a]:.1f}" y1="{pad}" x2="{xs[a]:.1f}" y2="{H - pad}" '
                         f'stroke="#ccc"/>')
            parts.append(f'<text x="{xs[a]:.1f}" y="{H - pad + 16}" text-anchor="middle">'
                         f'{html.escape(n)}</text>')
            parts.append(f'<text x="{xs[a]:.1f}" y="{H - pad + 30}" text-anchor="middle">'
                         f'[{_fmt(ideal[a])}, {_fmt(nadir[a])}]</text>')
        for i in [i for i in range(len(F)) if i != picked] + ([picked] if picked is not None
                                                                 else []):
            pts = " ".join(f"{xs[a]:.1f},{sy(Z[i, a]):.1f}" for a in range(k))
            color, width = ("red", 3) if i == picked else ("#1f77b4", 1)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" '
                         f'stroke-width="{width}" opacity="0.7"><title>{tip(i)}</title>'
                         f'</polyline>')
    parts.append("</svg>")
    rows = "".join(
        "<tr" + (' style="color:red"' if i == picked else "") + f"><td>{i}</td>"
        + "".join(f"<td>{_fmt(F[i, n])}</td>" for n in range(len(names)))
        + f"<td>{len(p.plan.assignments)}</td><td>{len(p.plan.unassigned)}</td></tr>"
        for i, p in enumerate(front.points))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>Pareto front</title>"
           f"</head><body style='font-family:sans-serif'><h2>Pareto front ({front.method}): "
           f"{len(F)} plans</h2>{''.join(parts)}<table border='1' cellpadding='3' "
           f"style='border-collapse:collapse'><tr><th>#</th>{head}<th>assigned</th>"
           f"<th>unassigned</th></tr>{rows}</table></body></html>")
    path.write_text(doc)


def write_plot(front: ParetoFront, path: Path, picked: int | None) -> None:
    if not front.points:
        raise InvalidInputError("nothing to plot: the front is empty", field="--plot")
    suffix = path.suffix.lower()
    if suffix == ".png":
        plot_png(front, path, picked)
    elif suffix in (".html", ".htm"):
        plot_html(front, path, picked)
    else:
        raise InvalidInputError(f"use a .png or .html file, got {path.name!r}", field="--plot")


# ---------------------------------------------------------------------------
# allocator pareto


def compute_front(snapshot: Snapshot, objectives: list[str], *, exact: bool, time_limit: float,
                  seed: int, generations: int | None, show_progress: bool,
                  pick_spec: str = "knee") -> ParetoOutcome:
    """The front through `usecases.pareto_front` (every point validated), with a progress bar."""
    from allocator.usecases import ParetoParams, pareto_front

    params = ParetoParams(objectives=objectives, exact=exact, time_limit=time_limit, seed=seed,
                          generations=generations, pick=pick_spec, check=True)
    if exact or not show_progress:
        return pareto_front(snapshot, params)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("nsga2", total=time_limit)

        def report(p: Nsga2Progress) -> None:
            bar.update(task, completed=min(p.elapsed_s, time_limit),
                       description=f"nsga2 gen {p.generation} front {p.front_size}")

        return pareto_front(snapshot, params, progress=report)


@app.command("pareto")
@guarded
def pareto_cmd(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot JSON.")],
    objectives: Annotated[str, typer.Option(help="2 to 4 of cost, makespan, imbalance, "
                                                 "tardiness, migrations.")] = "cost,makespan",
    exact: Annotated[bool, typer.Option("--exact", help="Exact bi-objective front "
                                        "(epsilon-constraint CP-SAT; small untimed "
                                        "instances).")] = False,
    time_limit: Annotated[float | None, typer.Option(help="Seconds (default: the "
                                                          "snapshot's).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the snapshot's).")] = None,
    generations: Annotated[int | None, typer.Option(help="NSGA-II generation limit "
                                                         "(deterministic with a seed).")] = None,
    pick_spec: Annotated[str, typer.Option("--pick", help="knee | weights:cost=1,makespan=2 | "
                                                          "min:cost,makespan<=X")] = "knee",
    plot: Annotated[Path | None, typer.Option(help="front.png or front.html")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Write the whole front as JSON.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Trade objectives off: the Pareto front of plans, one picked plan, a plot."""
    from allocator.io import read_snapshot
    from allocator.io.snapshots import dump_model, write_json_atomic
    from allocator.pareto import Pick, parse_objectives, parse_pick

    snap = read_snapshot(snapshot)
    names = parse_objectives(objectives)
    parse_pick(pick_spec, names)  # fail before solving
    if plot is not None and plot.suffix.lower() not in (".png", ".html", ".htm"):
        raise InvalidInputError(f"use a .png or .html file, got {plot.name!r}", field="--plot")
    limit = snap.options.time_limit if time_limit is None else time_limit
    from allocator.limits import check_time_limit

    check_time_limit(limit, "--time-limit")
    outcome = compute_front(snap, names, exact=exact, time_limit=limit,
                            seed=snap.options.seed if seed is None else seed,
                            generations=generations,
                            show_progress=not as_json and err_console.is_terminal,
                            pick_spec=pick_spec)
    front, valid = outcome.front, outcome.valid
    chosen = Pick(outcome.picked_index, outcome.picked_rule, outcome.picked_detail)
    if output is not None:
        write_json_atomic(output, dump_model(front))
    if plot is not None:
        write_plot(front, plot, chosen.index)
    if as_json:
        typer.echo(to_json(front_json(front, chosen, valid)))
    else:
        out = Console(width=None if Console().is_terminal else 140)
        out.print(front_table(front, chosen.index, valid))
        p = front.points[chosen.index]
        out.print(f"picked #{chosen.index} by {chosen.rule} ({chosen.detail}): "
                  + ", ".join(f"{k}={_fmt(v)}" for k, v in p.objectives.items()),
                  markup=False, emoji=False)
        from allocator.cli.solve import render_plan

        render_plan(p.plan, snap, out=out)
        hv = "n/a" if front.hypervolume is None else f"{front.hypervolume:.4f}"
        out.print(f"{front.message or ''} | hypervolume {hv} (normalised by the front's own "
                  f"ideal and nadir, reference point {front.reference_point}) | "
                  f"{front.wall_time_s:.2f}s", markup=False, emoji=False)
        if plot is not None:
            out.print(f"plot written to {plot}", markup=False, emoji=False)
    if not all(valid):
        raise typer.Exit(1)


def front_json(front: ParetoFront, chosen: Pick, valid: list[bool]) -> dict[str, Any]:
    p = front.points[chosen.index]
    return {
        "objectives": front.objectives,
        "method": front.method,
        "proven": front.proven,
        "points": [{"index": i, "objectives": q.objectives, "assigned": len(q.plan.assignments),
                    "unassigned": len(q.plan.unassigned), "valid": valid[i]}
                   for i, q in enumerate(front.points)],
        "hypervolume": front.hypervolume,
        "ideal": front.ideal,
        "nadir": front.nadir,
        "reference_point": front.reference_point,
        "generations": front.generations,
        "time_s": round(front.wall_time_s, 3),
        "valid": all(valid),
        "picked": {"index": chosen.index, "rule": chosen.rule, "detail": chosen.detail,
                   "objectives": p.objectives,
                   "plan": p.plan.model_dump(mode="json", by_alias=True)},
    }


# ---------------------------------------------------------------------------
# allocator bench pareto


def bench_row(name: str, m: int, n: int, front: ParetoFront, ref: ParetoFront | None,
              valid: bool, time_s: float, exact_time_s: float | None) -> dict[str, Any]:
    """Quality of a front; with an exact reference, both are normalised by its ideal/nadir."""
    import numpy as np

    from allocator.pareto import bounds, hypervolume, igd_plus, reference_point

    F = np.array(front.vectors()) if front.points else np.zeros((0, len(front.objectives)))
    row: dict[str, Any] = {"instance": name, "agents": m, "tasks": n,
                           "objectives": ",".join(front.objectives), "points": len(F)}
    if ref is not None and ref.points:
        E = np.array(ref.vectors())
        ideal, nadir = bounds(E)
        hv, hv_ex = hypervolume(F, ideal, nadir), hypervolume(E, ideal, nadir)
        row.update(points_exact=len(E), hv=round(hv, 6), hv_exact=round(hv_ex, 6),
                   hv_ratio=round(hv / hv_ex, 4) if hv_ex > 0 else None,
                   igd_plus=round(igd_plus(F, E, ideal, nadir), 6), exact_proven=ref.proven,
                   reference_point=[round(v, 6) for v in reference_point(ideal, nadir)])
    else:
        row.update(points_exact=None, hv=None if front.hypervolume is None
                   else round(front.hypervolume, 6), hv_exact=None, hv_ratio=None,
                   igd_plus=None, exact_proven=None, reference_point=front.reference_point)
    row.update(generations=front.generations, time_s=round(time_s, 3),
               exact_time_s=None if exact_time_s is None else round(exact_time_s, 3),
               valid=valid)
    return row


@bench_app.command("pareto")
@guarded
def bench_pareto(
    files: Annotated[list[Path], typer.Argument(help="GAP files (OR-Library or one-problem).")],
    objectives: Annotated[str, typer.Option(help="2 to 4 objectives.")] = "cost,makespan",
    time_limit: Annotated[float, typer.Option(help="NSGA-II seconds per problem.")] = 10.0,
    exact: Annotated[bool, typer.Option(help="Compute the exact front when supported.")] = True,
    exact_time_limit: Annotated[float, typer.Option(help="Seconds for the exact sweep.")] = 120.0,
    first: Annotated[bool, typer.Option("--first", help="Only the first problem of each "
                                                        "file.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of NSGA-II (same seed, same front).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """NSGA-II fronts on GAP problems (min cost), measured against the exact front."""
    from allocator.io import gap_to_snapshot, read_gap
    from allocator.pareto import parse_objectives
    from allocator.problem import compile_snapshot
    from allocator.solvers.base import Budget
    from allocator.solvers.exact_front import exact_front, exact_supported
    from allocator.solvers.nsga2 import nsga2_front
    from allocator.validate import validate

    names = parse_objectives(objectives)
    from allocator.solvers.gap_bb import warm_up

    warm_up()  # the branch-and-bound's compile (or cache load) is not part of any timing
    instances = [inst for f in files for inst in (read_gap(f)[:1] if first else read_gap(f))]
    rows = []
    for inst in instances:
        snap = gap_to_snapshot(inst, time_limit=time_limit, seed=seed)
        problem = compile_snapshot(snap)
        t0 = time.perf_counter()
        front = nsga2_front(problem, names, budget=Budget(time_limit), seed=seed)
        t_front = time.perf_counter() - t0
        ref, t_ref = None, None
        if exact and exact_supported(problem, names) is None:
            t0 = time.perf_counter()
            ref = exact_front(problem, names, budget=Budget(exact_time_limit), seed=seed)
            t_ref = time.perf_counter() - t0
        valid = bool(front.points) and all(not validate(snap, p.plan) for p in front.points)
        row = bench_row(inst.name, inst.m, inst.n, front, ref, valid, t_front, t_ref)
        rows.append(row)
        if as_json:
            typer.echo(to_json(row))
    if as_json:
        return
    out = Console(width=None if Console().is_terminal else 160)
    t = DataTable(title=f"Pareto benchmark ({','.join(names)}, NSGA-II {time_limit:g}s)")
    cols = ("instance", "points", "points_exact", "hv", "hv_exact", "hv_ratio", "igd_plus",
            "exact_proven", "time_s", "exact_time_s", "valid")
    for c in cols:
        t.add_column(c, justify="left" if c == "instance" else "right")
    for r in rows:
        t.add_row(*["-" if r[c] is None else str(r[c]) for c in cols])
    out.print(t)
    ratios = [r["hv_ratio"] for r in rows if r["hv_ratio"] is not None]
    if ratios:
        out.print(f"mean hv_ratio {sum(ratios) / len(ratios):.4f} over {len(ratios)} problems")
