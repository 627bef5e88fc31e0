"""`allocator ray run`: the executor core driving agents that are Ray actors."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from allocator.cli.app import app, fail, guarded, to_json, warn

ray_app = typer.Typer(help="The executor on Ray (needs the ray extra).", no_args_is_help=True)
app.add_typer(ray_app, name="ray")
console = Console(width=None if Console().is_terminal else 140)


@ray_app.command("run")
@guarded
def ray_run(
    agents: Annotated[int, typer.Option(help="Agents (one Ray actor each).")] = 4,
    concurrency: Annotated[int, typer.Option(help="Concurrent tasks per agent.")] = 2,
    tasks: Annotated[int, typer.Option(help="Tasks to run.")] = 200,
    seconds: Annotated[float, typer.Option(help="Run time of each task (a sleep).")] = 0.02,
    policy: Annotated[str, typer.Option(help="Online policy (see allocator.online).")]
    = "stealing",
    requests_per_min: Annotated[float | None, typer.Option(
        help="Rate limit of every agent, requests per minute.")] = None,
    kill: Annotated[str | None, typer.Option(
        help="Kill this agent's actor mid-run (e.g. a0) to show failover.")] = None,
    kill_after: Annotated[float, typer.Option(help="Seconds after the start to kill it.")]
    = 1.0,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray).")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run sleep tasks through the executor on Ray actors; report lost/duplicated tasks."""
    if agents < 1 or tasks < 0 or concurrency < 1:
        raise fail("--agents and --concurrency must be >= 1, --tasks >= 0")
    for flag, v in (("--seconds", seconds), ("--kill-after", kill_after)):
        if not (math.isfinite(v) and v >= 0):  # NaN or negative sleeps failed every task
            raise fail(f"{flag} must be a finite number >= 0, got {v}")
    if num_cpus is not None and num_cpus < 1:  # Ray crashed and the run hung
        raise fail(f"--num-cpus must be >= 1, got {num_cpus}")
    if requests_per_min is not None and not (math.isfinite(requests_per_min)
                                             and requests_per_min >= 0):
        raise fail(f"--requests-per-min must be a finite number >= 0 (0: no limit), got "
                   f"{requests_per_min}")  # a negative limit never refilled: a hang
    from allocator.distributed.driver import RayExecutor
    from allocator.distributed.work import sleep_for
    from allocator.online.events import TERMINAL, Instruction, RateLimit
    from models import Agent

    limit = RateLimit(requests_per_min=requests_per_min) if requests_per_min else None
    specs = [(Agent(id=f"a{i}", capacity={}, concurrency=concurrency), limit)
             for i in range(agents)]
    if kill is not None and kill not in {a.id for a, _ in specs}:
        raise fail(f"--kill: no agent {kill!r} (agents are a0..a{agents - 1})")
    ends: Counter[str] = Counter()

    def count(ins: Instruction) -> None:
        if isinstance(ins, TERMINAL):
            ends[ins.task_id] += 1  # type: ignore[attr-defined]

    with RayExecutor(specs, policy, address=address, num_cpus=num_cpus,
                     on_instruction=count) as rx:
        t0 = time.monotonic()
        ids = [f"t{i}" for i in range(tasks)]
        homes = max(1, agents // 2)  # tasks start at the first half: the others steal
        for i, tid in enumerate(ids):
            rx.submit(sleep_for, seconds, id=tid, work=seconds, home=f"a{i % homes}")
        killed = False
        while rx.pending():
            rx.step(0.05)
            if kill and not killed and time.monotonic() - t0 >= kill_after:
                import ray

                ray.kill(rx.actor(kill))
                killed = True
        wall = time.monotonic() - t0
        session = rx.session
    st = rx.stats
    row = {
        "ray": session.mode if session else "", "agents": agents, "concurrency": concurrency,
        "policy": policy, "tasks": tasks, "completed": st.terminal.get("complete", 0),
        "failed": st.terminal.get("fail", 0), "rejected": st.terminal.get("reject", 0),
        "lost": sum(1 for t in ids if ends[t] == 0),
        "duplicated": sum(1 for t in ids if ends[t] > 1),
        "dispatches": st.dispatches, "steals": st.steals, "migrations": st.migrations,
        "actor_deaths": st.actor_deaths, "breaker_opened": st.breaker_opened,
        "wall_s": round(wall, 3), "tasks_per_s": round(tasks / wall, 1) if wall else 0.0,
        "killed": kill if killed else None,
    }
    if kill and not killed:
        warn(f"--kill {kill}: the run ended after {wall:.2f} s, before --kill-after "
             f"{kill_after:g} s, so no actor was killed (use more --tasks or a smaller "
             "--kill-after)")
    if as_json:
        typer.echo(to_json(row))
        return
    table = Table(title="Executor on Ray")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, val in row.items():
        table.add_row(k, str(val))
    console.print(table)
    if row["lost"] or row["duplicated"]:
        raise typer.Exit(1)
