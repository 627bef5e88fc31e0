"""`allocator tune`: sweep a policy's parameters on a trace; best settings and sensitivity."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from allocator.cli.app import app, guarded
from allocator.cli.replay import (
    ArrivalScale,
    DeadlineFactor,
    DeadlineOpt,
    MappingOpt,
    OnBadOpt,
    PriorityOpt,
    TenantOpt,
    TimeScale,
    TraceLimit,
    TraceWindow,
    choose_agents,
    load_trace,
    parse_speeds,
    trace_options,
)
from allocator.planning.tune import Trial, parse_param, tune
from allocator.report.replay import text_table


@app.command("tune")
@guarded
def tune_cmd(
    trace: Annotated[Path, typer.Option("--trace", help="The workload to tune on.")],
    policy: Annotated[str, typer.Option("--policy", "-p", help="Policy to tune.")],
    param: Annotated[list[str], typer.Option(
        "--param", help="Repeatable: name=v1,v2,... (steal_threshold, steal_interval, "
        "steal.<field>, aging, aging.<class>, weight.<class>, flow_weight.<tenant>).")],
    agents: Annotated[int | None, typer.Option(
        "--agents", "-n", help="Number of agents (default: from --utilisation).")] = None,
    utilisation: Annotated[float | None, typer.Option(
        "--utilisation", help="Without --agents: fewest agents with offered load <= this.")
    ] = None,
    speeds: Annotated[str | None, typer.Option(
        "--speeds", help="Agent speeds, comma separated, cycled over the agents.")] = None,
    objective: Annotated[str, typer.Option(
        "--objective", help="Row metric to minimise (e.g. mean_bounded_slowdown, p95_wait, "
        "miss_rate).")] = "mean_bounded_slowdown",
    search: Annotated[str, typer.Option("--search", help="grid | random")] = "grid",
    samples: Annotated[int, typer.Option("--samples", help="Random search: settings.")] = 20,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of random search and of randomised policies.")] = 0,
    home: Annotated[str, typer.Option(
        "--home", help="Home agent of a task for the stealing policies: tenant | round_robin "
        "| none.")] = "tenant",
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the result (trials, best, sensitivity) as JSON.")] = False,
    window: TraceWindow = None,
    limit: TraceLimit = None,
    time_scale: TimeScale = 1.0,
    arrival_scale: ArrivalScale = 1.0,
    deadline: DeadlineOpt = None,
    deadline_factor: DeadlineFactor = 3.0,
    priority: PriorityOpt = None,
    tenant: TenantOpt = None,
    mapping: MappingOpt = None,
    on_bad: OnBadOpt = "report",
) -> None:
    """Replay the trace under each parameter setting; print the best and each parameter's effect."""
    space = dict(parse_param(p) for p in param)
    opts = trace_options(window=window, limit=limit, time_scale=time_scale,
                         arrival_scale=arrival_scale, deadline=deadline,
                         deadline_factor=deadline_factor, priority=priority, tenant=tenant,
                         mapping=mapping, on_bad=on_bad)
    sp = parse_speeds(speeds)
    w = load_trace(trace, **opts)
    n, why = choose_agents(w, agents, utilisation, sp)
    typer.echo(why, err=True)

    def progress(i: int, total: int, t: Trial) -> None:
        if not as_json:
            typer.echo(f"[{i}/{total}] {t.params} -> {objective}={t.row[objective]:.5g}",
                       err=True)

    res = tune(w, policy, space, agents=n, speeds=sp, objective=objective, search=search,
               samples=samples, seed=seed, home=home, progress=progress)  # type: ignore[arg-type]
    if as_json:
        sys.stdout.write(json.dumps(res.to_json()) + "\n")
        return
    rows = [{"setting": "default", **res.default.row},
            {"setting": "best " + " ".join(f"{k}={v:g}" for k, v in res.best.params.items()),
             **res.best.row}]
    cols = (("setting", "{}"), ("miss_rate", "{:.3f}"), ("mean_wait", "{:.4g}"),
            ("p95_wait", "{:.4g}"), ("p99_wait", "{:.4g}"), ("mean_bounded_slowdown", "{:.4g}"),
            ("jain_tenants", "{:.3f}"), ("utilisation", "{:.3f}"), ("steals", "{}"))
    typer.echo(f"{res.policy}: {len(res.trials)} settings ({search}), objective {objective}")
    typer.echo(text_table(rows, cols))
    gain = res.to_json()["improvement"]
    typer.echo(f"\n{objective}: {res.default.row[objective]:.5g} -> "
               f"{res.best.row[objective]:.5g} ({gain:+.1%} vs the default settings)\n")
    srows = []
    for name, s in sorted(res.sensitivity.items(), key=lambda kv: -kv[1]["spread"]):
        srows.append({"parameter": name, "spread": s["spread"],
                      "relative": s["relative_spread"], "best value": f"{s['best_value']:g}",
                      "mean objective per value": ", ".join(
                          f"{v}: {m:.4g}" for v, m in s["means"].items())})
    typer.echo("sensitivity (main effect: mean objective per value; spread = max - min)")
    typer.echo(text_table(srows, (("parameter", "{}"), ("spread", "{:.4g}"),
                                  ("relative", "{:.1%}"), ("best value", "{}"),
                                  ("mean objective per value", "{}"))))
