"""`allocator simulate`: run online policies side by side on a generated workload.

The command only translates: options -> `usecases.SimulateParams`, rows -> a
table or JSON lines (`--trace` hands over to `allocator replay`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from allocator.cli.app import app, bench_app, given, guarded, to_json, warn

if TYPE_CHECKING:
    from allocator.online.options import OnlineOptions
    from allocator.online.workload import WorkloadConfig

DEFAULT_POLICIES = ["fifo", "round-robin", "jsq", "p2c", "edf", "edf+stealing"]
#: Options that only shape a generated workload (ignored, with a warning, under --trace).
GENERATOR_OPTIONS = ("tasks", "arrival", "load", "burst_factor", "sizes", "pareto_alpha", "skew",
                     "speed_spread", "concurrency", "deadline_share", "hard_share",
                     "migration_cost", "noise", "mtbf", "mttr", "task_failure",
                     "tokens_per_min", "coordinate_every", "flaky", "tenants", "skill_groups",
                     "decision_latency", "history", "max_retries")

#: Keys of one `--json` line, in order (the contract of `allocator simulate --json`).
JSON_KEYS = ("policy", "tasks", "completed", "rejected", "failed", "lost", "duplicated",
             "miss_rate", "p50_wait", "p99_wait", "p50_latency", "p99_latency", "jain",
             "load_variance", "utilisation", "throughput", "steals", "migrations", "requeued",
             "retries", "events", "events_per_s", "wall_s", "seed", "per_agent", "per_tenant",
             "per_class", "rejected_after_burst", "steal_interval_mean")


def run_policies(cfg: WorkloadConfig, policies: list[str], *, seed: int,
                 coordinate_every: float = 0.0, max_retries: int = 2,
                 history: str | None = None, options: OnlineOptions | None = None,
                 decision_latency: float = 0.0,
                 ) -> list[tuple[dict[str, Any], str | None]]:
    """Simulate each policy on the same workload (`usecases.simulate_uc`, no task cap);
    (row, history text) per policy."""
    from allocator.online.options import OnlineOptions
    from allocator.usecases import SimulateParams, simulate_uc

    out = simulate_uc(SimulateParams(
        workload=cfg, policies=policies, seed=seed, options=options or OnlineOptions(),
        max_retries=max_retries, coordinate_every=coordinate_every,
        decision_latency=decision_latency, history=history, max_task_policies=None))
    return [({**row, "seed": seed}, out.histories.get(row["policy"]) if history else None)
            for row in out.rows]


def _fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:,.{nd}f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def summary_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    cols = [("policy", "policy"), ("completed", "done"), ("rejected", "rej"),
            ("failed", "fail"), ("lost", "lost"), ("duplicated", "dup"),
            ("miss_rate", "miss"), ("p50_wait", "p50 wait"), ("p99_wait", "p99 wait"),
            ("p99_latency", "p99 lat"), ("jain", "jain"), ("utilisation", "util"),
            ("steals", "steals"), ("events_per_s", "events/s"), ("wall_s", "wall s")]
    for _, head in cols:
        t.add_column(head, justify="left" if head == "policy" else "right")
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r[k]
            if k == "miss_rate":
                cells.append(f"{100 * v:.1f}%")
            elif k == "events_per_s":
                cells.append(f"{v:,.0f}")
            elif k in ("jain", "utilisation"):
                cells.append(f"{v:.3f}")
            else:
                cells.append(_fmt(v, 2))
        t.add_row(*cells)
    return t


@app.command("simulate")
@guarded
def simulate_cmd(
    ctx: typer.Context,
    agents: Annotated[int, typer.Option("--agents", "-n", min=1, help="Number of agents (with "
                                        "--trace: default as `allocator replay`).")] = 16,
    tasks: Annotated[int, typer.Option("--tasks", "-m", min=1, help="Number of tasks.")] = 10_000,
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help="Policy to run (repeat for several, side by side). Default: "
        + ", ".join(DEFAULT_POLICIES) + ".")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the workload and the policies.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per policy.")] = False,
    list_policies: Annotated[bool, typer.Option("--policies", help="List policy names.")] = False,
    arrival: Annotated[str, typer.Option(help="Arrival process: poisson or bursty.")] = "poisson",
    load: Annotated[float, typer.Option(help="Offered work / total agent capacity.")] = 0.85,
    burst_factor: Annotated[float, typer.Option(help="Burst rate / quiet rate (bursty).")] = 6.0,
    sizes: Annotated[str, typer.Option(help="Task sizes: pareto, exp or fixed.")] = "pareto",
    pareto_alpha: Annotated[float, typer.Option(help="Pareto shape (heavier tail <2).")] = 1.5,
    skew: Annotated[float, typer.Option(help="Zipf exponent of home agents (0 uniform).")] = 1.0,
    speed_spread: Annotated[float, typer.Option(help="Agent speeds in [1/(1+s), 1+s].")] = 0.5,
    concurrency: Annotated[int, typer.Option(min=1, help="Slots per agent.")] = 1,
    deadline_share: Annotated[float, typer.Option(help="Share of tasks with a deadline.")] = 1.0,
    hard_share: Annotated[float, typer.Option(help="Share of deadlines that are hard.")] = 0.0,
    migration_cost: Annotated[float, typer.Option(
        help="Extra time when a task runs away from its home agent.")] = 0.0,
    noise: Annotated[float, typer.Option(help="Lognormal sigma of actual/estimated work.")] = 0.2,
    mtbf: Annotated[float, typer.Option(
        help="Mean time between failures per agent (0: no failures).")] = 0.0,
    mttr: Annotated[float, typer.Option(help="Mean time to rejoin after a failure.")] = 50.0,
    task_failure: Annotated[float, typer.Option(help="Probability an attempt fails.")] = 0.0,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries per task.")] = 2,
    tokens_per_min: Annotated[float, typer.Option(
        help="Token rate limit per agent (0: none); tasks use 1000 tokens per unit of work.")
    ] = 0.0,
    coordinate_every: Annotated[float, typer.Option(
        help="Re-solve with the greedy solver every T time units (0: off).")] = 0.0,
    flaky: Annotated[str | None, typer.Option(
        help="K:P:UNTIL: K agents fail each attempt with probability P until time UNTIL, "
        "then are healthy (breaker recovery).")] = None,
    tenants: Annotated[str | None, typer.Option(
        help="W1,W2,...: tenants with these weights (WFQ/CFS flows), tasks spread evenly.")
    ] = None,
    skill_groups: Annotated[int, typer.Option(
        min=0, help="Each task needs one of G skills; every agent has all of them.")] = 0,
    admission: Annotated[str, typer.Option(
        help="Admission control: none | throttle.")] = "none",
    target_wait: Annotated[float, typer.Option(
        help="Throttle target queueing delay (with --admission throttle).")] = 5.0,
    class_weights: Annotated[str | None, typer.Option(
        help="C,H,N,L: stride weights of the four priority classes (default 8,4,2,1).")
    ] = None,
    aging: Annotated[float | None, typer.Option(
        help="Aging limit of the high, normal and low classes (time units).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Policy parameter name=value (repeatable; names as in `allocator "
        "tune`, e.g. steal.margin_frac=0.2, flow_weight.tenant0=2).")] = None,
    decision_latency: Annotated[float, typer.Option(
        help="Central dispatcher time per decision (0: free); see docs/online.md.")] = 0.0,
    history: Annotated[str | None, typer.Option(
        help="Print the event history of this task id (e.g. t42) for each policy.")] = None,
    trace: Annotated[Path | None, typer.Option(
        "--trace", help="Replay this trace (SWF, Alibaba pods, CSV/Parquet) instead of a "
        "generated workload; same as `allocator replay TRACE -n N` (more options there).")
    ] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="With --trace: write an HTML report with PNGs into this directory.")
    ] = None,
) -> None:
    """Simulate online policies on a generated workload and compare them."""
    from allocator.online.options import OnlineOptions, parse_flaky
    from allocator.online.policies import describe_policies
    from allocator.online.workload import WorkloadConfig

    if list_policies:
        for name, doc in describe_policies().items():
            typer.echo(f"{name:18s} {doc}")
        return
    if report is not None and trace is None:
        warn("--report has no effect without --trace (a generated workload has no report); "
             "nothing is written to " + str(report))
    if trace is not None:
        from allocator.cli.replay import replay_cmd

        unused = given(ctx, *GENERATOR_OPTIONS)
        if unused:
            warn(f"{', '.join(unused)} shape a generated workload and have no effect with "
                 "--trace")
        # Unset, the agent count is replay's (fewest with offered load <= 85 %), so
        # `simulate --trace F` and `replay F` are the same run.
        replay_cmd(trace, agents=agents if given(ctx, "agents") else None, policy=policy,
                   seed=seed, as_json=as_json, report=report, class_weights=class_weights,
                   aging=aging, admission=admission, target_wait=target_wait, param=param)
        return
    opts = OnlineOptions.from_text(tenants=tenants, class_weights=class_weights, aging=aging,
                                   admission=admission, target_wait=target_wait,
                                   params=param or ())
    fk, fp, fu = parse_flaky(flaky) if flaky else (0, 0.0, 0.0)
    cfg = WorkloadConfig(
        tasks=tasks, agents=agents, arrival=arrival, load=load, burst_factor=burst_factor,
        sizes=sizes, pareto_alpha=pareto_alpha, skew=skew, speed_spread=speed_spread,
        concurrency=concurrency, deadline_share=deadline_share, hard_share=hard_share,
        migration_cost=migration_cost, noise=noise, mtbf=mtbf or None, mttr=mttr,
        task_failure=task_failure, tokens_per_min=tokens_per_min or None, seed=seed,
        tenants=len(opts.tenants) if opts.tenants else 4, skill_groups=skill_groups,
        flaky=fk, flaky_p=fp, flaky_until=fu)
    results = run_policies(cfg, policy or DEFAULT_POLICIES, seed=seed,
                           coordinate_every=coordinate_every, max_retries=max_retries,
                           history=history, options=opts, decision_latency=decision_latency)
    if as_json:
        for row, _ in results:
            typer.echo(to_json({k: row[k] for k in JSON_KEYS}))
    else:
        title = (f"{tasks:,} tasks, {agents} agents, {arrival} arrivals at load {load}, "
                 f"{sizes} sizes, skew {skew}, seed {seed}")
        console = Console()
        console.width = max(console.width, 150)  # 15 columns: do not squeeze them
        console.print(summary_table([r for r, _ in results], title))
    if history:
        for row, text in results:
            typer.echo(f"--- {row['policy']}: history of {history}", err=as_json)
            typer.echo(text or "(no events: unknown task id)", err=as_json)


@bench_app.command("online")
@guarded
def bench_online_cmd(
    tasks: Annotated[int, typer.Option(help="Tasks for the simulator speed run.")] = 200_000,
    quick: Annotated[bool, typer.Option(help="Small sizes (a smoke run).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON line per row (kind: sim_speed, runtime, quality).")] = False,
) -> None:
    """Simulator speed, runtime overhead vs ThreadPoolExecutor, policy quality."""
    if not as_json:
        print_bench(tasks, quick=quick)
        return
    import os

    from allocator.online import bench

    load = os.getloadavg()[0]
    n_speed = 20_000 if quick else tasks
    for r in bench.sim_speed(tasks=n_speed):
        typer.echo(to_json({"kind": "sim_speed", **r, "loadavg": load}))
    for r in bench.runtime_overhead(tasks=5_000 if quick else 20_000):
        typer.echo(to_json({"kind": "runtime", **r, "loadavg": load}))
    for r in bench.quality(tasks=3_000 if quick else 20_000):
        typer.echo(to_json({"kind": "quality", **r}))


def print_bench(speed_tasks: int = 200_000, *, quick: bool = False,
                console: Console | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run the online benchmarks and print their tables; returns the rows."""
    from allocator.online import bench

    con = console or Console()
    con.width = max(con.width, 130)
    n_speed = 20_000 if quick else speed_tasks
    out: dict[str, list[dict[str, Any]]] = {}
    rows = out["speed"] = bench.sim_speed(tasks=n_speed)
    t = Table(title=f"Simulator speed: {n_speed:,} tasks, 64 agents (CPU s exclude other "
                    "load on the machine)")
    for c in ("policy", "events", "wall s", "CPU s", "events/s wall", "events/CPU s",
              "1M tasks, est. CPU s", "lost", "dup"):
        t.add_column(c, justify="left" if c == "policy" else "right")
    for r in rows:
        t.add_row(r["policy"], f"{r['events']:,}", f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}",
                  f"{r['events_per_s']:,.0f}", f"{r['events_per_cpu_s']:,.0f}",
                  f"{r['est_1m_tasks_cpu_s']:.0f}", str(r["lost"]), str(r["duplicated"]))
    con.print(t)
    rows = out["runtime"] = bench.runtime_overhead(tasks=5_000 if quick else 20_000)
    t = Table(title="Runtime overhead per no-op task (priority+stealing, 8 workers), "
                    "median of 3 alternating rounds")
    for c in ("executor", "tasks", "median s", "µs/task", "CPU µs/task", "tasks/s",
              "throughput vs TPE", "CPU vs TPE"):
        t.add_column(c, justify="left" if c == "executor" else "right")
    for r in rows:
        t.add_row(r["executor"], f"{r['tasks']:,}", f"{r['median_s']:.3f}",
                  f"{r['us_per_task']:.1f}", f"{r['cpu_us_per_task']:.1f}",
                  f"{r['tasks_per_s']:,.0f}", f"{r['throughput_vs_tpe']:.2f}x",
                  f"{r['cpu_vs_tpe']:.2f}x")
    con.print(t)
    rows = out["quality"] = bench.quality(tasks=3_000 if quick else 20_000)
    t = Table(title="Quality on skewed synthetic workloads (16 agents, pareto sizes, "
                    "deadlines 2-10x size)")
    for c in ("workload", "policy", "miss rate", "p99 latency", "p99 wait", "jain", "util",
              "steals", "lost", "dup"):
        t.add_column(c, justify="left" if c in ("workload", "policy") else "right")
    last = None
    for r in rows:
        t.add_row(r["workload"] if r["workload"] != last else "", r["policy"],
                  f"{100 * r['miss_rate']:.1f}%", f"{r['p99_latency']:.1f}",
                  f"{r['p99_wait']:.1f}", f"{r['jain']:.3f}", f"{r['utilisation']:.3f}",
                  f"{r['steals']:,}", str(r["lost"]), str(r["duplicated"]))
        last = r["workload"]
    con.print(t)
    return out
