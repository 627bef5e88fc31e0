"""`allocator capacity`: how many agents (of which types) meet an SLA, estimated and simulated."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from allocator.cli.app import app, guarded, to_json
from allocator.cli.replay import (
    ArrivalScale,
    DeadlineFactor,
    DeadlineOpt,
    MappingOpt,
    OnBadOpt,
    PriorityOpt,
    TenantOpt,
    TimeScale,
    TraceFormat,
    TraceLimit,
    TraceWindow,
    _is_swf,
    load_trace,
    trace_options,
)
from allocator.errors import InvalidInputError

if TYPE_CHECKING:
    from allocator.report.replay import Column


def capacity_wide(trace: Path, sla: str, *, policy: str, window: str | None,
                  limit: int | None, curve_span: int, max_simulations: int,
                  as_json: bool, time_scale: float = 1.0, arrival_scale: float = 1.0) -> None:
    """`allocator capacity --trace LOG.swf`: the answer in processors and nodes."""
    from allocator.cluster import read_swf_cluster
    from allocator.planning.wide import plan_wide
    from allocator.report import units
    from allocator.report.replay import text_table
    from allocator.workloads import parse_window

    tr = read_swf_cluster(trace, window=parse_window(window), limit=limit, need_size=False,
                          time_scale=time_scale, arrival_scale=arrival_scale)
    if not as_json:
        typer.echo(tr.summary(), err=True)
    plan = plan_wide(sla, tr, policy=policy, curve_span=curve_span,
                     max_simulations=max_simulations,
                     progress=None if as_json else (lambda m: typer.echo(m, err=True)))
    out = plan.to_json()
    if as_json:
        sys.stdout.write(to_json(out) + "\n")
        return
    keys = sorted({c.metric for c in plan.sla} | {"utilisation", "mean_wait"})
    unit = f" ({plan.procs_per_node} processors per node)" if plan.procs_per_node > 1 else ""
    if plan.procs is None:
        typer.echo(f"no machine up to {max(r['procs'] for r in plan.curve)} processors met "
                   f"{', '.join(out['sla'])} with {policy} (search stopped after "
                   f"{plan.simulations} replays)")
    else:
        typer.echo(f"answer: {plan.procs} processors = {plan.nodes} nodes{unit} meet "
                   f"{', '.join(out['sla'])} with {policy}: {_fmt(plan.simulated, keys)}")
    lm = out["log_machine"]
    typer.echo(f"the log's machine ({lm['procs']} processors, {tr.procs_source}): "
               f"{'meets' if lm['sla_met'] else 'misses'} it: {_fmt(lm['simulated'], keys)}")
    if plan.note:
        typer.echo(plan.note)
    cols: list[Column] = [("procs", units.count), ("nodes", units.count)]
    cols += [(k, units.formatter(k)) for k in keys] + [("sla_met", "{}")]
    typer.echo("\ncurve (each size replayed over the whole log):")
    typer.echo(text_table(plan.curve, cols))


def _fmt(d: dict[str, Any] | None, keys: list[str]) -> str:
    from allocator.report import units

    if not d:
        return "-"
    return ", ".join(f"{k} {units.cell(k, d[k])}" for k in keys if k in d and d[k] is not None)


@app.command("capacity")
@guarded
def capacity_cmd(
    sla: Annotated[str, typer.Option(
        "--sla", help='Clauses like "p95_wait<=60,miss_rate<=0.01" (metrics: mean_wait, '
        "p50/p95/p99_wait, miss_rate, utilisation, mean_bounded_slowdown).")],
    trace: Annotated[Path | None, typer.Option("--trace", help="Workload trace.")] = None,
    forecast: Annotated[Path | None, typer.Option(
        "--forecast", help='JSON {"classes": [{"name", "rate", "size_mean", "size_cv", '
        '"priority", "deadline_factor"}], "tasks": N}.')] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", help="One-class forecast: arrivals per second.")] = None,
    size_mean: Annotated[float, typer.Option("--size-mean", help="Mean work (s).")] = 1.0,
    size_cv: Annotated[float, typer.Option(
        "--size-cv", help="Coefficient of variation of work (1 = exponential).")] = 1.0,
    tasks: Annotated[int, typer.Option("--tasks", help="Forecast: tasks per run.")] = 20_000,
    agent_types: Annotated[Path | None, typer.Option(
        "--agent-types", help="JSON list of {name, speed, cost, min, max}; default one type "
        "of speed 1, cost 1.")] = None,
    policy: Annotated[str | None, typer.Option(
        "--policy", "-p", help="Policy the simulations run: on an SWF log a wide-job policy "
        "(default easy; `allocator replay --policies`), answered in processors and nodes; "
        "otherwise an executor policy (default fifo; `allocator simulate --list-policies`).")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Simulated runs per mix.")] = 3,
    blocks: Annotated[int, typer.Option(
        "--blocks", help="Split a run into this many consecutive blocks for the confidence "
        "statement.")] = 4,
    what_if: Annotated[list[str] | None, typer.Option(
        "--what-if", help="Repeatable: agents+N, agents-N, arrivals*X.")] = None,
    curve_span: Annotated[int, typer.Option(
        "--curve-span", help="Curve: chosen count ± this many agents.")] = 3,
    max_simulations: Annotated[int, typer.Option(
        "--max-simulations", help="Stop the search after this many simulated mixes.")] = 40,
    estimator: Annotated[str, typer.Option(
        "--estimator", help="auto (trace-driven for traces, stationary for forecasts) | "
        "trace | stationary.")] = "auto",
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG of the curve.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    backend: Annotated[str, typer.Option(help="Where the simulations run: local or ray.")]
    = "local",
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join with --backend ray (default: RAY_ADDRESS or a local Ray).")]
    = None,
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
    fmt: TraceFormat = "auto",
) -> None:
    """The cheapest agent mix meeting the SLA: Erlang C / M/G/c estimate, then simulation."""
    from allocator.cluster.policies import is_cluster_policy
    from allocator.io import strict_json
    from allocator.planning.capacity import (
        AgentType,
        ClassForecast,
        Forecast,
        mix_dict,
        plan_capacity,
        read_agent_types,
    )
    from allocator.report import units
    from allocator.report.replay import text_table

    given = sum(x is not None for x in (trace, forecast, rate))
    if given != 1:
        raise InvalidInputError("give exactly one of --trace, --forecast or --rate",
                                field="trace")
    if seeds < 1:
        raise InvalidInputError(f"--seeds must be >= 1, got {seeds}", field="seeds")
    if trace is not None and agent_types is None and _is_swf(trace) and (
            policy is None or is_cluster_policy(policy)):
        from allocator.cli.replay import refuse_executor_options

        refuse_executor_options("wide-job planner (an SWF log, a wide-job policy)", {
            "seeds": None if seeds == 3 else seeds, "blocks": None if blocks == 4 else blocks,
            "what-if": what_if or None, "plot": plot,
            "estimator": None if estimator == "auto" else estimator,
            "backend": None if backend == "local" else backend, "address": address,
            "deadline": deadline, "deadline-factor": None if deadline_factor == 3.0
            else deadline_factor, "priority": priority, "tenant": tenant, "mapping": mapping,
            "on-bad": None if on_bad == "report" else on_bad,
            "format": None if fmt == "auto" else fmt},
            executor="the executor planner (-p fifo or another executor policy)")
        capacity_wide(trace, sla, policy=policy or "easy", window=window, limit=limit,
                      curve_span=curve_span, max_simulations=max_simulations,
                      as_json=as_json, time_scale=time_scale,
                      arrival_scale=arrival_scale)
        return
    policy = policy or "fifo"
    from allocator.online.policies import policy_names

    if policy not in policy_names():  # before any estimate is printed
        raise InvalidInputError(f"unknown policy {policy!r}; known: "
                                f"{', '.join(policy_names())} (on SWF logs also the wide-job "
                                "policies of `allocator replay --policies`)", field="policy")
    w = fc = None
    if trace is not None:
        opts = trace_options(window=window, limit=limit, time_scale=time_scale,
                             arrival_scale=arrival_scale, deadline=deadline,
                             deadline_factor=deadline_factor, priority=priority, tenant=tenant,
                             mapping=mapping, on_bad=on_bad)
        w = load_trace(trace, fmt=fmt, **opts)
    elif forecast is not None:
        try:
            data = strict_json.loads(forecast.read_text())
        except strict_json.DuplicateKeyError as e:
            raise InvalidInputError(f"duplicate key {e.key!r} (a JSON object must not repeat "
                                    "a key)", field=f"{forecast}: {e.path}") from None
        except (OSError, ValueError) as e:
            raise InvalidInputError(f"{forecast}: {e}", field="forecast") from None
        fc = Forecast.from_json(data)
    else:
        assert rate is not None
        fc = Forecast([ClassForecast(rate=rate, size_mean=size_mean, size_cv=size_cv)],
                      tasks=tasks)
    types = read_agent_types(agent_types) if agent_types else [AgentType()]

    from rich.console import Console

    err = Console(stderr=True, highlight=False, markup=False, emoji=False)
    live = err.is_terminal and not as_json
    status = err.status("estimating", spinner="dots") if live else None

    def progress(msg: str) -> None:
        if not as_json:
            err.print(msg, soft_wrap=True)

    def on_run(done: int, total: int, what: str) -> None:
        """Each simulated run before it starts: a status line on a terminal, else a line."""
        msg = f"simulating {what}: run {done + 1} of {total}"
        if status is not None:
            status.update(msg)
        elif not as_json:
            err.print(f"  {msg}", soft_wrap=True)

    from allocator.distributed import get_backend

    with get_backend(backend, address=address) as runner, status or contextlib.nullcontext():
        plan = plan_capacity(sla, trace=w, forecast=fc, types=types, policy=policy,
                             seeds=range(seeds), blocks=blocks, what_if=what_if or [],
                             max_simulations=max_simulations, curve_span=curve_span,
                             progress=progress, estimator=estimator,
                             backend=runner if backend != "local" else None, on_run=on_run)
    if plot is not None:
        from allocator.report.capacity import plot_curve

        plot_curve(plan, plot)
        progress(f"plot: {plot}")
    out = plan.to_json()
    if as_json:
        sys.stdout.write(to_json(out) + "\n")
        return
    keys = sorted({c.metric for c in plan.sla} | {"utilisation", "mean_wait"})
    st = plan.stats
    if st is not None:
        typer.echo(f"workload: {st.tasks:,} tasks, rate {units.decimal(st.rate)}/s, mean work "
                   f"{units.decimal(st.mean_work)} s, offered load {units.decimal(st.offered)} "
                   f"agents, ca2 {units.decimal(st.ca2)}, cs2 {units.decimal(st.cs2)}")
    chosen = out["agents"]
    if chosen is None:
        typer.echo(f"no mix met {', '.join(out['sla'])} within the search "
                   f"(best tried: {mix_dict(plan.types, plan.check.mix) if plan.check else '-'})")
    else:
        typer.echo(f"answer: {chosen} cost {out['cost']:g} meets {', '.join(out['sla'])} "
                   f"({policy})")
    est = out["estimate_agents"]
    name = ("trace-driven Erlang C" if out["estimator"] == "trace"
            else "Erlang C / Allen–Cunneen")
    typer.echo(f"the estimate ({name}) alone picked {est}")
    typer.echo(f"answer predicted: {_fmt(out['predicted'], keys)}")
    if out["estimator"] == "trace":
        typer.echo("  (stationary Allen–Cunneen from the averages alone: "
                   f"{_fmt(out['predicted_stationary'], keys)})")
    typer.echo(f"answer simulated (mean of runs): {_fmt(out['simulated'], keys)}")
    typer.echo("confidence: " + out["confidence"]["statement"])
    rows = []
    for r in out["curve"]:
        row: dict[str, Any] = {"agents": r["agents"], "cost": r["cost"]}
        for k in keys:
            row[f"pred {k}"] = r.get(f"predicted_{k}")
            row[f"sim {k}"] = r.get(f"simulated_{k}")
        row["sla_met"] = "yes" if r["sla_met"] else "no"
        rows.append(row)
    cols: list[Column] = [("agents", "{}"), ("cost", units.decimal)]
    for k in keys:
        cols += [(f"pred {k}", units.formatter(k)), (f"sim {k}", units.formatter(k))]
    cols.append(("sla_met", "{}"))
    typer.echo("\ncurve (dominant type varied):")
    typer.echo(text_table([{k: (float("inf") if v is None else v) for k, v in r.items()}
                           for r in rows], cols))
    if out["what_if"]:
        typer.echo("\nwhat-if:")
        for r in out["what_if"]:
            met = r.get("sla_met")
            typer.echo(f"  {r['scenario']}: agents {r.get('agents')} -> "
                       f"{'meets' if met else 'misses'} SLA; predicted "
                       f"{_fmt(r.get('predicted'), keys)}; simulated "
                       f"{_fmt(r.get('simulated'), keys)}"
                       + (f" ({r['note']})" if r.get("note") else ""))
