"""`allocator replay`: replay a real workload trace under several policies, side by side.

The trace options (window, scaling, deadlines, priorities, tenants, column
mapping) are shared with `allocator tune` and `allocator capacity` through
:func:`load_trace` and the `Trace*` option aliases below.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from allocator.cli.app import app, guarded
from allocator.errors import InvalidInputError
from allocator.online.options import OnlineOptions
from allocator.online.policies import policy_names
from allocator.report.replay import text_table, write_replay_report
from allocator.workloads import Workload, parse_window, read_trace
from allocator.workloads.base import MAX_AGENTS
from allocator.workloads.replay import BASELINES, OURS, compare

TraceWindow = Annotated[str | None, typer.Option(
    "--window", help="START:END seconds after the first submission (either may be empty).")]
TraceLimit = Annotated[int | None, typer.Option("--limit", help="Keep the first N tasks.")]
TimeScale = Annotated[float, typer.Option(
    "--time-scale", help="Multiply every time (arrivals, run times, estimates).")]
ArrivalScale = Annotated[float, typer.Option(
    "--arrival-scale", help="Multiply arrival times only (<1 = denser arrivals, more load).")]
DeadlineOpt = Annotated[str | None, typer.Option(
    "--deadline", help="estimate | factor | none (default: the reader's: estimate for SWF and "
    "tables, factor for pods).")]
DeadlineFactor = Annotated[float, typer.Option(
    "--deadline-factor", help="k in deadline = arrival + k x run time.")]
PriorityOpt = Annotated[str | None, typer.Option(
    "--priority", help="class (queue/partition or QoS) | fair_share | none.")]
TenantOpt = Annotated[str | None, typer.Option(
    "--tenant", help="user | group | class | none (default: user; QoS class for pods).")]
MappingOpt = Annotated[str | None, typer.Option(
    "--mapping", help="Generic tables: field=column,... (fields: arrival, work, end, start, "
    "id, demand, estimate, deadline, priority, user, group).")]
OnBadOpt = Annotated[str, typer.Option("--on-bad", help="report (count bad rows) | raise.")]


def trace_options(*, window: str | None, limit: int | None, time_scale: float,
                  arrival_scale: float, deadline: str | None, deadline_factor: float,
                  priority: str | None, tenant: str | None, mapping: str | None,
                  on_bad: str) -> dict[str, Any]:
    """The reader keyword arguments the CLI options stand for (unset ones omitted)."""
    opts: dict[str, Any] = {"time_scale": time_scale, "arrival_scale": arrival_scale,
                            "deadline_factor": deadline_factor, "on_bad": on_bad,
                            "window": parse_window(window), "limit": limit}
    for k, v in (("deadline", deadline), ("priority", priority), ("tenant", tenant)):
        if v is not None:
            opts[k] = v
    if mapping:
        pairs = [p.partition("=") for p in mapping.split(",") if p.strip()]
        if any(not sep or not b for _, sep, b in pairs):
            raise InvalidInputError(f"mapping must be field=column,..., got {mapping!r}",
                                    field="mapping")
        opts["mapping"] = {a.strip(): b.strip() for a, _, b in pairs}
    return opts


def load_trace(path: Path, **opts: Any) -> Workload:
    """Read the trace (reader chosen from the file) and report bad rows on stderr."""
    if "mapping" in opts and path.name.lower().endswith((".swf", ".swf.gz")):
        raise InvalidInputError("--mapping applies to generic CSV/Parquet tables only",
                                field="mapping")
    w = read_trace(path, **opts)
    if len(w) == 0:
        raise InvalidInputError(f"{path}: no replayable tasks ({w.bad.summary()})",
                                field="trace")
    typer.echo(w.summary(), err=True)
    return w


def parse_speeds(speeds: str | None) -> list[float] | None:
    if not speeds:
        return None
    try:
        return [float(s) for s in speeds.split(",") if s.strip()]
    except ValueError:
        raise InvalidInputError(f"speeds must be numbers separated by commas, got {speeds!r}",
                                field="speeds") from None


def choose_agents(w: Workload, agents: int | None, utilisation: float | None,
                  speeds: list[float] | None) -> tuple[int, str]:
    """Agent count from --agents, or the smallest giving at most --utilisation."""
    if agents is not None:
        if not 1 <= agents <= MAX_AGENTS:
            raise InvalidInputError(f"--agents must be in [1, {MAX_AGENTS}], got {agents}",
                                    field="agents")
        mean_speed = sum(speeds) / len(speeds) if speeds else 1.0
        offered = w.offered_load() / (agents * mean_speed)
        return agents, f"{agents} agents (offered load {offered:.2f} of capacity)"
    target = 0.85 if utilisation is None else utilisation
    mean_speed = sum(speeds) / len(speeds) if speeds else 1.0
    n = w.agents_for_utilisation(target, speed=mean_speed)
    return n, (f"{n} agents: the fewest with offered load <= {target:.0%} "
               f"({w.offered_load() / (n * mean_speed):.2f})")


@app.command("replay")
@guarded
def replay_cmd(
    trace: Annotated[Path, typer.Argument(help="SWF (.swf/.swf.gz), Alibaba pod CSV, or a "
                                          "CSV/Parquet task table.")],
    agents: Annotated[int | None, typer.Option(
        "--agents", "-n", help="Number of agents (single servers).")] = None,
    utilisation: Annotated[float | None, typer.Option(
        "--utilisation", help="Without --agents: the fewest agents whose offered load is at "
        "most this share (default 0.85).")] = None,
    speeds: Annotated[str | None, typer.Option(
        "--speeds", help="Agent speeds, comma separated, cycled over the agents.")] = None,
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help="Repeatable. Default: baselines fifo, round-robin, random, jsq, "
        "p2c and ours edf+stealing, priority, wfq, cfs.")] = None,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the randomised policies (random, p2c); same seed, same rows.")] = 0,
    home: Annotated[str, typer.Option(
        "--home", help="Home agent of a task for the stealing policies: tenant | round_robin "
        "| none.")] = "tenant",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per policy.")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Write an HTML report with PNGs into this directory.")] = None,
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
    class_weights: Annotated[str | None, typer.Option(
        help="C,H,N,L: stride weights of the four priority classes (default 8,4,2,1).")
    ] = None,
    aging: Annotated[float | None, typer.Option(
        help="Aging limit of the high, normal and low classes.")] = None,
    admission: Annotated[str, typer.Option(help="Admission control: none | throttle.")
                         ] = "none",
    target_wait: Annotated[float, typer.Option(
        help="Throttle target queueing delay (with --admission throttle).")] = 5.0,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Policy parameter name=value (repeatable), e.g. "
        "flow_weight.<tenant>=3 or steal.margin_frac=0.2.")] = None,
) -> None:
    """Replay a trace through the executor with each policy; one row per policy."""
    oopts = OnlineOptions.from_text(class_weights=class_weights, aging=aging,
                                    admission=admission, target_wait=target_wait,
                                    params=param or ())
    opts = trace_options(window=window, limit=limit, time_scale=time_scale,
                         arrival_scale=arrival_scale, deadline=deadline,
                         deadline_factor=deadline_factor, priority=priority, tenant=tenant,
                         mapping=mapping, on_bad=on_bad)
    pols = list(policy) if policy else [*BASELINES, *OURS]
    known = set(policy_names())
    unknown = [p for p in pols if p not in known]
    if unknown:
        raise InvalidInputError(f"unknown policy {unknown[0]!r}; known: "
                                f"{', '.join(policy_names())}", field="policy")
    if home not in ("tenant", "round_robin", "none"):
        raise InvalidInputError(f"home must be tenant, round_robin or none, got {home!r}",
                                field="home")
    sp = parse_speeds(speeds)
    w = load_trace(trace, **opts)
    n, why = choose_agents(w, agents, utilisation, sp)
    typer.echo(why, err=True)
    results = compare(w, [oopts.policy(p) for p in pols], agents=n, speeds=sp, seed=seed,
                      home=home, admission=oopts.admission_config())  # type: ignore[arg-type]
    rows = [r.row() for r in results]
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v)
                                             else v) for k, v in r.items()}) + "\n")
    else:
        typer.echo(text_table(rows))
    if report is not None:
        path = write_replay_report(results, report, workload=w,
                                   title=f"Replay of {trace.name}", notes=[why])
        typer.echo(f"report: {path}", err=True)
