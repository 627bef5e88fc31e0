"""`allocator simulate`: run online policies side by side on a generated workload.

The command only translates: options -> `usecases.SimulateParams`, rows -> a
table or JSON lines (`--trace` hands over to `allocator replay`).
`--scenario NAME` takes a named preset (allocator.online.scenarios) instead of
the generic generator options; `--mode` runs online policies, batch plans, or
policies + periodic plans (the coordinator), over one or more solve intervals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from allocator.cli.app import app, bench_app, given, guarded, to_json, warn
from allocator.cli.tables import DataTable
from allocator.errors import InvalidInputError

if TYPE_CHECKING:
    from allocator.online.options import OnlineOptions
    from allocator.online.scenarios import CoordinatorSettings
    from allocator.online.workload import WorkloadConfig
    from models import Weights

DEFAULT_POLICIES = ["fifo", "round-robin", "jsq", "p2c", "edf", "edf+stealing"]
#: Options that only shape a generated workload (ignored, with a warning, under --trace).
GENERATOR_OPTIONS = ("tasks", "arrival", "load", "burst_factor", "sizes", "pareto_alpha", "skew",
                     "speed_spread", "concurrency", "deadline_share", "hard_share",
                     "migration_cost", "noise", "mtbf", "mttr", "task_failure",
                     "tokens_per_min", "coordinate_every", "decision_latency", "history",
                     "max_retries", "scenario_name", "mode", "plot")

#: Keys of one `--json` line, in order (the contract of `allocator simulate --json`).
JSON_KEYS = ("policy", "tasks", "completed", "rejected", "failed", "lost", "duplicated",
             "miss_rate", "p50_wait", "p99_wait", "p50_latency", "p99_latency", "jain",
             "load_variance", "utilisation", "throughput", "steals", "migrations", "requeued",
             "retries", "events", "events_per_s", "wall_s", "seed", "per_agent", "per_tenant",
             "per_class", "rejected_after_burst", "steal_interval_mean", "cost", "tardiness",
             "migration_cost", "weighted_objective")
#: ... and the keys of a run with modes (simulate only: a replay has no coordinator).
RUN_KEYS = ("mode", "interval", "solves", "solve_time_total", "solve_wall_s")

#: Generic workload options a `--scenario` run takes when given explicitly.
_SCENARIO_OVERRIDES = ("arrival", "load", "burst_factor", "sizes", "pareto_alpha", "skew",
                       "speed_spread", "concurrency", "deadline_share", "hard_share",
                       "migration_cost", "noise", "task_failure", "mttr", "skill_groups")


def run_policies(cfg: WorkloadConfig, policies: list[str], *, seed: int,
                 coordinate_every: float | list[float] = 0.0, max_retries: int = 2,
                 history: str | None = None, options: OnlineOptions | None = None,
                 decision_latency: float = 0.0, modes: list[str] | None = None,
                 coordinator: CoordinatorSettings | None = None,
                 weights: Weights | None = None,
                 coordinated_policies: list[str] | None = None,
                 ) -> list[tuple[dict[str, Any], str | None]]:
    """Simulate each (mode, policy, interval) on the same workload (`usecases.simulate_uc`,
    no task cap); (row, history text) per run.

    `online` runs every policy alone; `coordinated` every policy with the
    coordinator at every interval; `batch` plans only, once per interval.
    Without `modes`: coordinated when an interval > 0 is given, else online.
    """
    from allocator.online.options import OnlineOptions
    from allocator.usecases import SimulateParams, simulate_uc

    intervals = ([coordinate_every] if isinstance(coordinate_every, int | float)
                 else list(coordinate_every))
    out = simulate_uc(SimulateParams(
        workload=cfg, policies=policies, seed=seed, options=options or OnlineOptions(),
        max_retries=max_retries, intervals=intervals, decision_latency=decision_latency,
        history=history, max_task_policies=None, modes=modes or (),
        plan_policies=coordinated_policies or (), coordinator=coordinator or {},
        weights=weights))
    res = []
    for row in out.rows:
        every = row.get("interval")
        key = row["policy"] if every is None else f"{row['policy']}@{every:g}"
        res.append(({**row, "seed": seed}, out.histories.get(key) if history else None))
    return res


def parse_weights(text: str | None, default: Weights) -> Weights:
    """`cost=1,tardiness=5,migrations=1` -> Weights (other terms from `default`)."""
    if not text:
        return default
    upd: dict[str, float] = {}
    names = ("cost", "makespan", "imbalance", "tardiness", "migrations")
    for part in text.split(","):
        name, eq, val = part.strip().partition("=")
        if not eq or name not in names:
            raise InvalidInputError(f"expected NAME=W with NAME in {', '.join(names)}, got "
                                    f"{part.strip()!r}", field="weights")
        try:
            v = float(val)
        except ValueError:
            raise InvalidInputError(f"not a number: {val!r}", field="weights") from None
        if not (v >= 0 and v < float("inf")):
            raise InvalidInputError(f"weights must be finite and >= 0, got {val!r}",
                                    field="weights")
        upd[name] = v
    return default.model_copy(update=upd)


def plot_modes(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Weighted objective and miss rate against the solve interval, one line per mode.

    Online runs do not depend on the interval: their line is the best online
    policy (least weighted objective), drawn flat across the intervals. For
    batch and coordinated, each interval shows the best run of that mode.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intervals = sorted({r["interval"] for r in rows if r.get("interval") is not None})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, style in (("online", "--"), ("batch", "-."), ("coordinated", "-")):
        got = [r for r in rows if r.get("mode") == mode]
        if not got:
            continue
        if mode == "online":
            best = min(got, key=lambda r: r["weighted_objective"])
            xs = intervals or [0.0]
            pts = [(x, best) for x in xs]
            label = f"online ({best['policy']})"
        else:
            pts = []
            for x in intervals:
                at = [r for r in got if r["interval"] == x]
                if at:
                    pts.append((x, min(at, key=lambda r: r["weighted_objective"])))
            label = mode
        xs = [x for x, _ in pts]
        axes[0].plot(xs, [r["weighted_objective"] for _, r in pts], style, marker="o",
                     label=label)
        axes[1].plot(xs, [100 * r["miss_rate"] for _, r in pts], style, marker="o",
                     label=label)
    axes[0].set_ylabel("weighted objective (cost + tardiness + migrations)")
    axes[0].set_yscale("log")  # batch runs can be orders of magnitude above
    axes[1].set_ylabel("deadline miss rate (%)")
    for ax in axes:
        ax.set_xlabel("solve interval (time units)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:,.{nd}f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def summary_table(rows: list[dict[str, Any]], title: str) -> DataTable:
    t = DataTable(title=title)
    cols = [("mode", "mode"), ("policy", "policy"), ("interval", "every"),
            ("completed", "done"), ("rejected", "rej"),
            ("failed", "fail"), ("lost", "lost"), ("duplicated", "dup"),
            ("miss_rate", "miss"), ("p50_wait", "p50 wait"), ("p99_wait", "p99 wait"),
            ("p99_latency", "p99 lat"), ("jain", "jain"), ("utilisation", "util"),
            ("steals", "steals"), ("cost", "cost"), ("weighted_objective", "w. objective"),
            ("solves", "solves"), ("events_per_s", "events/s"), ("wall_s", "wall s")]
    for _, head in cols:
        t.add_column(head, justify="left" if head in ("policy", "mode") else "right")
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k)
            if v is None:
                cells.append("-")
                continue
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
    agents: Annotated[int | None, typer.Option(
        "--agents", "-n", min=1, help="Number of agents (default 16, or the scenario's).")
    ] = None,
    tasks: Annotated[int | None, typer.Option(
        "--tasks", "-m", min=1, help="Number of tasks (default 10,000, or the scenario's).")
    ] = None,
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help="Policy to run (repeat for several, side by side). Default: "
        + ", ".join(DEFAULT_POLICIES) + " (or the scenario's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the workload and the policies.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per run.")] = False,
    list_policies: Annotated[bool, typer.Option("--policies", help="List policy names.")] = False,
    scenario_name: Annotated[str | None, typer.Option(
        "--scenario", metavar="NAME", help="A named workload preset (see --scenarios); "
        "--agents, --tasks, --seed and explicitly given workload options still apply.")
    ] = None,
    list_scenarios: Annotated[bool, typer.Option(
        "--scenarios", help="List the scenario names.")] = False,
    mode: Annotated[list[str] | None, typer.Option(
        "--mode", metavar="MODE", help="online (policies alone), batch (plans only, no "
        "online adjustment) or coordinated (policy + plans); repeat for several. Default: "
        "coordinated with --coordinate-every, else online.")] = None,
    arrival: Annotated[str, typer.Option(
        help="Arrival process: poisson, bursty or waves.")] = "poisson",
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
    coordinate_every: Annotated[list[float] | None, typer.Option(
        "--coordinate-every", metavar="T", help="Solve interval of the coordinator (time "
        "units; repeat for several: one run per interval). 0: off.")] = None,
    coordinator_solver: Annotated[str, typer.Option(
        metavar="SOLVER", help="Coordinator backend: auto | cpsat | greedy | nsga2.")
    ] = "greedy",
    coordinator_budget: Annotated[float, typer.Option(
        metavar="B", help="Solve budget: the solver's time limit (s), and by default the "
        "virtual time until its plan takes effect.")] = 0.5,
    delay_factor: Annotated[float | None, typer.Option(
        metavar="F", help="Plans take effect after the solve's measured wall time x F "
        "instead of after the budget (not reproducible run to run).")] = None,
    coordinate_queue: Annotated[int, typer.Option(
        metavar="N", min=0, help="Coordinated mode: also solve when N queued tasks are in no "
        "plan yet (a wave landed; 0: off).")] = 50,
    coordinate_imbalance: Annotated[float, typer.Option(
        metavar="X", min=0.0, help="Coordinated mode: also solve when the CoV of the agents' "
        "backlogs exceeds X (0: off).")] = 0.0,
    coordinator_pick: Annotated[str | None, typer.Option(
        metavar="RULE", help="With --coordinator-solver nsga2: the plan taken from the front "
        "(knee | weights:cost=1,tardiness=5 | min:cost,tardiness<=X).")] = None,
    deadline_margin: Annotated[float, typer.Option(
        metavar="M", min=0.0, max=0.99, help="Plans aim to finish soft deadlines this share "
        "of their slack early (absorbs estimate errors).")] = 0.25,
    plan_policy: Annotated[list[str] | None, typer.Option(
        "--plan-policy", metavar="POLICY", help="Online policy under the plans in coordinated "
        "mode (repeatable; default: the scenario's, else the --policy list).")] = None,
    weights: Annotated[str | None, typer.Option(
        metavar="W", help="Objective weights of weighted_objective and of the coordinator's "
        "solves, e.g. cost=1,tardiness=5,migrations=1 (default, or the scenario's).")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE", help="PNG: weighted objective and miss rate against the "
        "solve interval, one line per mode.")] = None,
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
    """Simulate online policies, batch plans and coordinated runs on a workload; compare them."""
    from allocator.online.options import OnlineOptions, parse_flaky
    from allocator.online.policies import describe_policies
    from allocator.online.scenarios import (
        FLEET_WEIGHTS,
        SCENARIOS,
        CoordinatorSettings,
        scenario,
        scenario_config,
    )
    from allocator.online.workload import WorkloadConfig

    if list_policies:
        for name, doc in describe_policies().items():
            typer.echo(f"{name:18s} {doc}")
        return
    if list_scenarios:
        for name, sc in SCENARIOS.items():
            typer.echo(f"{name:14s} {sc.agents} agents, {sc.tasks:,} tasks: {sc.description}")
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
                   aging=aging, admission=admission, target_wait=target_wait, param=param,
                   flaky=flaky, tenants=tenants, skill_groups=skill_groups)
        return
    opts = OnlineOptions.from_text(tenants=tenants, class_weights=class_weights, aging=aging,
                                   admission=admission, target_wait=target_wait,
                                   params=param or ())
    fk, fp, fu = parse_flaky(flaky) if flaky else (0, 0.0, 0.0)
    n_agents = agents or (scenario(scenario_name).agents if scenario_name else 16)
    extra: dict[str, Any] = dict(mtbf=mtbf or None, tokens_per_min=tokens_per_min or None,
                 tenants=len(opts.tenants) if opts.tenants else 4, flaky=fk, flaky_p=fp,
                 flaky_until=fu)
    if scenario_name:
        sc = scenario(scenario_name)
        explicit = {k: v for k, v in ctx.params.items()
                    if k in _SCENARIO_OVERRIDES and given(ctx, k)}
        cfg = scenario_config(scenario_name, agents=n_agents, tasks=tasks, seed=seed,
                              **extra, **explicit)
        run_weights = parse_weights(weights, sc.weights)
        pols = policy or list(sc.policies)
        planned = plan_policy or [sc.policy]
    else:
        cfg = WorkloadConfig(
            tasks=tasks or 10_000, agents=n_agents, arrival=arrival, load=load,
            burst_factor=burst_factor, sizes=sizes, pareto_alpha=pareto_alpha, skew=skew,
            speed_spread=speed_spread, concurrency=concurrency, deadline_share=deadline_share,
            hard_share=hard_share, migration_cost=migration_cost, noise=noise, mttr=mttr,
            task_failure=task_failure, seed=seed, skill_groups=skill_groups, **extra)
        run_weights = parse_weights(weights, FLEET_WEIGHTS)
        pols = policy or DEFAULT_POLICIES
        planned = plan_policy or pols
    coord = CoordinatorSettings(
        every=max([x for x in coordinate_every or [] if x > 0], default=10.0),
        solver=coordinator_solver, budget=coordinator_budget,
        queue_growth=coordinate_queue or None, imbalance=coordinate_imbalance or None,
        delay_factor=delay_factor, pick=coordinator_pick, deadline_margin=deadline_margin)
    results = run_policies(cfg, pols, seed=seed, coordinate_every=coordinate_every or [],
                           max_retries=max_retries, history=history, options=opts,
                           decision_latency=decision_latency, modes=mode, coordinator=coord,
                           weights=run_weights, coordinated_policies=planned)
    rows = [r for r, _ in results]
    title = (f"{scenario_name or 'generated'}: {cfg.tasks:,} tasks, {cfg.agents} agents, "
             f"{cfg.arrival} arrivals at load {cfg.load}, seed {seed}")
    if as_json:
        for row in rows:
            typer.echo(to_json({k: row[k] for k in (*JSON_KEYS, *RUN_KEYS)}))
    else:
        console = Console()
        console.width = max(console.width, 200)  # many columns: do not squeeze them
        console.print(summary_table(rows, title))
    if plot is not None:
        plot_modes(rows, plot, title)
        typer.echo(f"plot written to {plot}", err=True)
    if history:
        for row, text in results:
            typer.echo(f"--- {row['policy']}: history of {history}", err=as_json)
            typer.echo(text or "(no events: unknown task id)", err=as_json)


@bench_app.command("online")
@guarded
def bench_online_cmd(
    tasks: Annotated[int, typer.Option(
        help="Tasks for the simulator speed run (the issue's goal is set at 1,000,000 x 64 "
             "agents).")] = 1_000_000,
    quick: Annotated[bool, typer.Option(help="Small sizes (a smoke run).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON line per row (kind: sim_speed, runtime, quality).")] = False,
) -> None:
    """Simulator speed, runtime overhead vs ThreadPoolExecutor, policy quality."""
    if not as_json:
        print_bench(tasks, quick=quick)
        return
    import os

    from allocator.online import bench, native_build

    load = os.getloadavg()[0]
    n_speed = 20_000 if quick else tasks
    build = native_build().build  # compiled or not: the simulator's speed depends on it
    for r in bench.sim_speed(tasks=n_speed):
        typer.echo(to_json({"kind": "sim_speed", **r, "build": build, "loadavg": load}))
    for r in bench.runtime_overhead(tasks=5_000 if quick else 20_000):
        typer.echo(to_json({"kind": "runtime", **r, "loadavg": load}))
    for r in bench.quality(tasks=3_000 if quick else 20_000):
        typer.echo(to_json({"kind": "quality", **r}))


def print_bench(speed_tasks: int = 1_000_000, *, quick: bool = False,
                console: Console | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run the online benchmarks and print their tables; returns the rows."""
    from allocator.online import bench, native_build

    con = console or Console()
    con.width = max(con.width, 130)
    n_speed = 20_000 if quick else speed_tasks
    out: dict[str, list[dict[str, Any]]] = {}
    con.print(f"online core: {native_build()}")
    rows = out["speed"] = bench.sim_speed(tasks=n_speed)
    t = DataTable(title=f"Simulator speed: {n_speed:,} tasks, 64 agents (CPU s exclude other "
                    "load on the machine)")
    for c in ("policy", "events", "wall s", "CPU s", "events/s wall", "events/CPU s",
              "vs bare loop", "vs 300k goal", "1M tasks, est. CPU s", "lost", "dup"):
        t.add_column(c, justify="left" if c == "policy" else "right")
    for r in rows:
        t.add_row(r["policy"], f"{r['events']:,}", f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}",
                  f"{r['events_per_s']:,.0f}", f"{r['events_per_cpu_s']:,.0f}",
                  f"{r['vs_bare_loop']:.3f}x", f"{r['vs_goal']:.2f}x",
                  f"{r['est_1m_tasks_cpu_s']:.0f}", str(r["lost"]), str(r["duplicated"]))
    con.print(t)
    rows = out["runtime"] = bench.runtime_overhead(tasks=5_000 if quick else 20_000)
    t = DataTable(title="Runtime overhead per no-op task (priority+stealing, 8 workers), "
                    f"median of 5 alternating rounds; {rows[0]['build']} core")
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
    t = DataTable(title="Quality on skewed synthetic workloads (16 agents, pareto sizes, "
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
