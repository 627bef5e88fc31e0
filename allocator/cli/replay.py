"""`allocator replay`: replay a real workload trace under several policies, side by side.

Two replays share the command. On an SWF log (without --agents and with
cluster policy names, or none) the jobs keep their widths on the machine the
header names (allocator.cluster: FCFS, EASY, conservative, SJF, ...). With
--agents / --utilisation, executor policy names, or a non-SWF trace without
--procs, every task is a one-slot task on single-server agents driven through
the online executor (allocator.workloads.replay), as before.

The trace options (window, scaling, deadlines, priorities, tenants, column
mapping) are shared with `allocator tune` and `allocator capacity` through
:func:`load_trace` and the `Trace*` option aliases below.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from allocator.cli.app import app, guarded, to_json
from allocator.errors import InvalidInputError

if TYPE_CHECKING:
    from allocator.workloads import Trace

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
TraceFormat = Annotated[str, typer.Option(
    "--format", help="auto (from the name: .swf[.gz], .csv, .parquet) | csv | parquet: for a "
    "task table whose name does not tell.")]
#: File endings the trace readers recognise without --format.
TRACE_SUFFIXES = (".swf", ".swf.gz", ".csv", ".csv.gz", ".tsv", ".parquet", ".pq")


def trace_options(*, window: str | None, limit: int | None, time_scale: float,
                  arrival_scale: float, deadline: str | None, deadline_factor: float,
                  priority: str | None, tenant: str | None, mapping: str | None,
                  on_bad: str) -> dict[str, Any]:
    """The reader keyword arguments the CLI options stand for (unset ones omitted)."""
    from allocator.workloads import parse_window

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


def load_trace(path: Path, *, fmt: str = "auto", **opts: Any) -> Trace:
    """Read the trace (reader chosen from the file or --format) and report bad rows on stderr."""
    if fmt not in ("auto", "csv", "parquet"):
        raise InvalidInputError(f"must be auto, csv or parquet, got {fmt!r}", field="--format")
    if fmt == "auto" and not path.name.lower().endswith(TRACE_SUFFIXES):
        raise InvalidInputError(
            f"{path}: cannot tell the trace format from the name (.swf, .swf.gz, .csv, "
            ".parquet); pass --format csv or --format parquet", field="--format")
    if fmt != "auto":
        opts["format"] = fmt
    if "mapping" in opts and path.name.lower().endswith((".swf", ".swf.gz")):
        raise InvalidInputError("--mapping applies to generic CSV/Parquet tables only",
                                field="mapping")
    from allocator.workloads import read_trace

    w = read_trace(path, **opts)
    if len(w) == 0:
        raise InvalidInputError(f"{path}: no replayable tasks ({w.bad.summary()})",
                                field="trace")
    typer.echo(w.summary(), err=True)
    return w


def _is_swf(path: Path) -> bool:
    return path.name.lower().endswith((".swf", ".swf.gz"))


def refuse_executor_options(mode: str, given: dict[str, Any], *,
                            executor: str = "the executor replay (--agents N)") -> None:
    """Options only the executor replay reads: silently ignored before, so --report wrote
    nothing and --speeds changed nothing; now a usage error naming the first one set."""
    for name, value in given.items():
        if value is not None:
            raise InvalidInputError(f"--{name} is an option of {executor}; the {mode} does "
                                    "not use it", field=name.replace("-", "_"))


def cluster_mode(trace: Path, *, agents: int | None, utilisation: float | None,
                 procs: int | None, policies: list[str]) -> bool:
    """Whether `allocator replay` keeps job widths (see the module docstring)."""
    from allocator.cluster.policies import is_cluster_policy

    if agents is not None or utilisation is not None:
        return False
    if not all(is_cluster_policy(p) for p in policies):
        return False
    return procs is not None or _is_swf(trace)


def replay_cluster(trace: Path, policies: list[str], *, procs: int | None,
                   window: str | None, limit: int | None, job_windows: int | None,
                   by_width: bool, as_json: bool, time_scale: float = 1.0,
                   arrival_scale: float = 1.0) -> None:
    """Wide-job replay: one row per policy (allocator.cluster.metrics.ROW_KEYS)."""
    from allocator.cluster import DEFAULT_POLICIES, parse_policy, read_swf_cluster
    from allocator.cluster.bench import run_policy
    from allocator.report import units
    from allocator.report.replay import Column, text_table
    from allocator.workloads import parse_window

    pols = [parse_policy(p).name for p in (policies or DEFAULT_POLICIES)]
    if not _is_swf(trace):
        raise InvalidInputError("the wide-job replay reads SWF logs (.swf, .swf.gz); use "
                                "--agents N for the single-server replay of other traces",
                                field="trace")
    tr = read_swf_cluster(trace, procs=procs, window=parse_window(window), limit=limit,
                          time_scale=time_scale, arrival_scale=arrival_scale)
    if len(tr.jobs) == 0:
        raise InvalidInputError(f"{trace}: no replayable jobs of {tr.rows_read} rows "
                                f"(dropped: {tr.dropped()})", field="trace")
    typer.echo(tr.summary(), err=True)
    rows, wrows = [], []
    for p in pols:
        res = run_policy(tr.jobs, tr.procs, p, job_window=job_windows)
        typer.echo(f"{p}: {res.jobs} jobs in {res.wall_s:.3g} s "
                   f"({res.jobs_per_s:,.0f} jobs/s)", err=True)
        for msg in res.problems:
            typer.echo(f"{p}: INVALID: {msg}", err=True)
        rows.append(res.row)
        wrows.extend(res.width_rows)
    if as_json:
        for r in [*rows, *(wrows if by_width else [])]:
            sys.stdout.write(to_json(r) + "\n")
        return
    cols: list[Column] = [("policy", "{}"), *((k, units.formatter(k)) for k in (
        "jobs", "procs", "mean_wait", "mean_bounded_slowdown", "p95_wait", "utilisation",
        "recorded_mean_wait", "recorded_mean_bounded_slowdown")), ("valid", "{}")]
    nan = float("nan")
    typer.echo(text_table([{k: (nan if v is None else v) for k, v in r.items()}
                           for r in rows], cols))
    if by_width:
        wcols: list[Column] = [("policy", "{}"), ("width", "{}"), *(
            (k, units.formatter(k)) for k in (
                "jobs", "mean_wait", "mean_bounded_slowdown", "p95_wait", "work_share",
                "recorded_mean_wait", "recorded_mean_bounded_slowdown"))]
        typer.echo("\nby width class (processors):")
        typer.echo(text_table([{k: (nan if v is None else v) for k, v in r.items()}
                               for r in wrows], wcols))


def pod_mode(trace: Path, *, agents: int | None, utilisation: float | None,
             slots: int | None, nodes: int | None, node_shape: str | None,
             policies: list[str]) -> bool:
    """Whether `allocator replay` places Alibaba pods on nodes (docs/workloads.md)."""
    from allocator.cluster.pods import is_pod_policy, is_pod_trace

    if agents is not None or utilisation is not None or slots is not None:
        if nodes is not None or node_shape is not None:
            raise InvalidInputError("--nodes / --node-shape replay pods on nodes; they do not "
                                    "combine with --agents, --utilisation or --slots",
                                    field="nodes")
        return False
    if not is_pod_trace(trace):
        if nodes is not None or node_shape is not None:
            raise InvalidInputError("--nodes / --node-shape need an Alibaba pod CSV (columns "
                                    "cpu_milli, memory_mib, num_gpu, gpu_milli, ...)",
                                    field="trace")
        return False
    if policies and all(is_pod_policy(p) for p in policies):
        return True
    return nodes is not None or node_shape is not None


def replay_pods(trace: Path, policies: list[str], *, nodes: int | None,
                node_shape: str | None, window: str | None, limit: int | None,
                as_json: bool, time_scale: float = 1.0, arrival_scale: float = 1.0) -> None:
    """Pods on nodes: one row per policy (allocator.cluster.pods.POD_ROW_KEYS)."""
    from allocator.cluster.pods import (
        DEFAULT_NODES,
        DEFAULT_POD_POLICIES,
        DEFAULT_SHAPE,
        NodeShape,
        parse_pod_policy,
        pod_row,
        read_pods,
        simulate_pods,
    )
    from allocator.report.replay import text_table
    from allocator.workloads import parse_window

    pols = [parse_pod_policy(p).name for p in (policies or DEFAULT_POD_POLICIES)]
    shape = NodeShape.parse(node_shape or DEFAULT_SHAPE)
    n = DEFAULT_NODES if nodes is None else nodes
    if n < 1:
        raise InvalidInputError(f"--nodes must be >= 1, got {n}", field="nodes")
    jobs = read_pods(trace, shape, window=parse_window(window), limit=limit,
                     time_scale=time_scale, arrival_scale=arrival_scale)
    dropped = ", ".join(f"{v} {k}" for k, v in jobs.dropped.items()) or "none"
    if len(jobs) == 0:
        raise InvalidInputError(f"{trace}: no replayable pods (dropped: {dropped})",
                                field="trace")
    typer.echo(f"{trace}: {len(jobs)} pods on {n} nodes of cpu={shape.cpu},"
               f"memory={shape.memory},gpu={shape.gpu}; dropped: {dropped}", err=True)
    rows = []
    for p in pols:
        s = simulate_pods(jobs, n, shape, p)
        row = pod_row(jobs, s)
        rate = len(jobs) / s.wall_s if s.wall_s > 0 else float("inf")
        typer.echo(f"{p}: {len(jobs)} pods in {s.wall_s:.3g} s ({rate:,.0f} jobs/s)", err=True)
        for msg in row.pop("_problems"):
            typer.echo(f"{p}: INVALID: {msg}", err=True)
        rows.append(row)
    if as_json:
        for r in rows:
            sys.stdout.write(to_json(r) + "\n")
        return
    cols = [("policy", "{}"), ("jobs", "{}"), ("nodes", "{}"), ("mean_wait", "{:.4g}"),
            ("mean_bounded_slowdown", "{:.4g}"), ("p95_wait", "{:.4g}"),
            ("utilisation_cpu", "{:.3f}"), ("utilisation_memory", "{:.3f}"),
            ("utilisation_gpu", "{:.3f}"), ("recorded_mean_wait", "{:.4g}"),
            ("recorded_mean_bounded_slowdown", "{:.4g}"), ("valid", "{}")]
    nan = float("nan")
    typer.echo(text_table([{k: (nan if v is None else v) for k, v in r.items()}
                           for r in rows], cols))


def list_all_policies() -> None:
    from allocator.cluster import describe_policies
    from allocator.online.policies import policy_names

    typer.echo("wide jobs on P processors (SWF logs; the default for them):")
    for name, doc in describe_policies().items():
        typer.echo(f"  {name:22s} {doc}")
    from allocator.cluster.pods import BACKFILLS, PLACEMENTS, pod_policy_names

    typer.echo("Alibaba pods on nodes (pod CSV with --nodes / --node-shape), BACKFILL:PLACEMENT:")
    for name in pod_policy_names():
        bf, _, pl_ = name.partition(":")
        typer.echo(f"  {name:22s} {BACKFILLS[bf]}; {PLACEMENTS[pl_ or 'first-fit']}")
    typer.echo("single-server agents through the online executor (with --agents N):")
    for name in policy_names():
        typer.echo(f"  {name}")


def parse_speeds(speeds: str | None) -> list[float] | None:
    if not speeds:
        return None
    try:
        out = [float(s) for s in speeds.split(",") if s.strip()]
    except ValueError:
        raise InvalidInputError(f"speeds must be numbers separated by commas, got {speeds!r}",
                                field="speeds") from None
    bad = [s for s in out if not (math.isfinite(s) and s > 0)]
    if bad or not out:
        raise InvalidInputError(f"speeds must be finite and > 0, got {speeds!r}",
                                field="speeds")
    return out


def choose_agents(w: Trace, agents: int | None, utilisation: float | None,
                  speeds: list[float] | None) -> tuple[int, str]:
    """Agent count from --agents, or the smallest giving at most --utilisation."""
    from allocator.workloads.base import MAX_AGENTS

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
    trace: Annotated[Path | None, typer.Argument(
        help="SWF (.swf/.swf.gz), Alibaba pod CSV, or a CSV/Parquet task table.")] = None,
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
    fmt: TraceFormat = "auto",
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
    flaky: Annotated[str | None, typer.Option(
        help="K:P:UNTIL: the first K agents fail each attempt with probability P until "
        "time UNTIL, then are healthy (breaker recovery).")] = None,
    tenants: Annotated[str | None, typer.Option(
        help="W1,W2,...: spread the tasks evenly (in arrival order) over tenants tenant0.. "
        "with these WFQ/CFS weights, replacing the trace's tenants.")] = None,
    skill_groups: Annotated[int, typer.Option(
        min=0, help="Each task needs one of G skills; every agent has all of them.")] = 0,
    procs: Annotated[int | None, typer.Option(
        "--procs", help="Wide-job replay: processors of the machine (default: MaxProcs or "
        "MaxNodes from the SWF header).")] = None,
    by_width: Annotated[bool, typer.Option(
        "--by-width", help="Wide-job replay: also the measures per width class.")] = False,
    job_windows: Annotated[int | None, typer.Option(
        "--job-windows", help="Wide-job replay: replay consecutive windows of N jobs, each "
        "from an empty machine, and report the mean over windows.")] = None,
    nodes: Annotated[int | None, typer.Option(
        "--nodes", help="Pod CSV: replay pods on this many nodes (default 1523, the openb "
        "cluster).")] = None,
    node_shape: Annotated[str | None, typer.Option(
        "--node-shape", help="Pod CSV: one node's capacity, cpu=MILLI,memory=MIB,gpu=N "
        "(default cpu=96000,memory=786432,gpu=8).")] = None,
    list_policies: Annotated[bool, typer.Option(
        "--policies", help="List the policy names and exit.")] = False,
    slots: Annotated[int | None, typer.Option(
        "--slots", help="With --agents: each agent is a node of N slots and a task holds its "
        "width (SWF processors, pod GPUs) of them on one agent; wider tasks are rejected.")
    ] = None,
) -> None:
    """Replay a trace with each policy; one row per policy.

    SWF logs keep their job widths on the machine the header names (FCFS, EASY,
    conservative backfilling, SJF, ...); --agents N replays one-slot tasks on N
    single servers through the online executor instead.
    """
    if list_policies:
        list_all_policies()
        return
    if trace is None:
        raise InvalidInputError("give a TRACE (or --policies)", field="trace")
    # --seed is not here: the wide-job and pod replays are deterministic, so a seed
    # (simulate --trace passes its own) changes nothing and is not an error.
    executor_only = {"speeds": speeds, "home": None if home == "tenant" else home,
                     "report": report, "deadline": deadline,
                     "deadline-factor": None if deadline_factor == 3.0 else deadline_factor,
                     "priority": priority, "tenant": tenant, "mapping": mapping,
                     "on-bad": None if on_bad == "report" else on_bad,
                     "format": None if fmt == "auto" else fmt, "class-weights": class_weights,
                     "aging": aging, "admission": None if admission == "none" else admission,
                     "target-wait": None if target_wait == 5.0 else target_wait,
                     "param": param or None, "flaky": flaky, "tenants": tenants,
                     "skill-groups": skill_groups or None}
    if pod_mode(trace, agents=agents, utilisation=utilisation, slots=slots, nodes=nodes,
                node_shape=node_shape, policies=list(policy or [])):
        refuse_executor_options("pod replay (pods on nodes)", executor_only)
        replay_pods(trace, list(policy or []), nodes=nodes, node_shape=node_shape,
                    window=window, limit=limit, as_json=as_json,
                    time_scale=time_scale, arrival_scale=arrival_scale)
        return
    if slots is None and cluster_mode(trace, agents=agents, utilisation=utilisation,
                                      procs=procs, policies=list(policy or [])):
        refuse_executor_options("wide-job replay", executor_only)
        replay_cluster(trace, list(policy or []), procs=procs, window=window, limit=limit,
                       job_windows=job_windows, by_width=by_width, as_json=as_json,
                       time_scale=time_scale, arrival_scale=arrival_scale)
        return
    from allocator.online.options import OnlineOptions, parse_flaky
    from allocator.online.policies import policy_names
    from allocator.report.replay import text_table, write_replay_report
    from allocator.workloads.replay import BASELINES, OURS, compare

    oopts = OnlineOptions.from_text(tenants=tenants, class_weights=class_weights, aging=aging,
                                    admission=admission, target_wait=target_wait,
                                    params=param or ())
    fault = parse_flaky(flaky) if flaky else None
    opts = trace_options(window=window, limit=limit, time_scale=time_scale,
                         arrival_scale=arrival_scale, deadline=deadline,
                         deadline_factor=deadline_factor, priority=priority, tenant=tenant,
                         mapping=mapping, on_bad=on_bad)
    pols = list(policy) if policy else [*BASELINES, *OURS]
    known = set(policy_names())
    unknown = [p for p in pols if p not in known]
    if unknown:
        from allocator.cluster import is_cluster_policy

        hint = ("a wide-job policy: it runs on SWF logs without --agents / --utilisation"
                if is_cluster_policy(unknown[0]) else
                "see `allocator replay --policies` for the wide-job ones")
        raise InvalidInputError(f"unknown policy {unknown[0]!r}; known: "
                                f"{', '.join(policy_names())} ({hint})", field="policy")
    if home not in ("tenant", "round_robin", "none"):
        raise InvalidInputError(f"home must be tenant, round_robin or none, got {home!r}",
                                field="home")
    if slots is not None and agents is None:
        raise InvalidInputError("--slots needs --agents (the agent count is not sized from "
                                "widths)", field="slots")
    sp = parse_speeds(speeds)
    w = load_trace(trace, fmt=fmt, **opts)
    n, why = choose_agents(w, agents, utilisation, sp)
    if slots is not None:
        held = float((w.tasks["work"] * w.tasks["demand"]).sum())
        mean_speed = sum(sp) / len(sp) if sp else 1.0
        why = (f"{n} agents of {slots} slots (offered load "
               f"{held / (w.span or 1.0) / (n * slots * mean_speed):.2f} of capacity)")
    typer.echo(why, err=True)
    results = compare(w, [oopts.policy(p) for p in pols], agents=n, speeds=sp, seed=seed,
                      home=home, admission=oopts.admission_config(), slots=slots,  # type: ignore[arg-type]
                      flaky=fault, tenants=len(oopts.tenants) if oopts.tenants else None,
                      skill_groups=skill_groups)
    rows = [r.row() for r in results]
    if as_json:
        for r in rows:
            sys.stdout.write(to_json(r) + "\n")
    else:
        typer.echo(text_table(rows))
    if report is not None:
        path = write_replay_report(results, report, workload=w,
                                   title=f"Replay of {trace.name}", notes=[why])
        typer.echo(f"report: {path}", err=True)
