"""`allocator agent | submit | tasks | agents`: the live service from the command line.

`agent` is a worker: it registers with the service, long-polls for leased
tasks and runs each one's payload through COMMAND (payload on stdin, result
from stdout), heartbeating meanwhile. A task reports token usage by printing
`usage: tokens=N` as the last line of its stdout or stderr (the line is not
part of the result). Everything heavy (the client, subprocess, pydantic) is
imported inside the commands: `allocator --help` loads none of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from allocator.cli.app import app, fail, guarded, to_json

if TYPE_CHECKING:
    import threading

    from allocator.client import LiveClient
    from allocator.reaper import Reaper

SERVER = typer.Option("--server", envvar="ALLOCATOR_SERVER",
                      help="URL of the live service (`allocator serve`).")
API_KEY = typer.Option("--api-key", envvar="ALLOCATOR_API_KEY",
                       help="Bearer token when the service requires one.")
USAGE_LINE = re.compile(r"^\s*usage:\s*(.*)$", re.IGNORECASE)
#: The number runs to the next space or separator, so `tokens=1e999` is read whole.
TOKENS = re.compile(r"\btokens\s*=\s*([^\s,;]+)")


def _tokens(usage: str) -> float | None:
    """The token count of a usage line, if it is a finite number >= 0 (else not usage)."""
    from pydantic import TypeAdapter, ValidationError

    from models.domain import NonNegative

    m = TOKENS.search(usage)
    if m is None:
        return None
    try:
        return TypeAdapter(NonNegative).validate_python(m.group(1))
    except ValidationError:
        return None


def parse_usage(stdout: str, stderr: str) -> tuple[str, float | None]:
    """(result, tokens): a last `usage: tokens=N` line of stdout or stderr gives the tokens.

    On stdout the line is removed from the result.
    """
    lines = stdout.rstrip("\n").split("\n") if stdout else []
    if lines:
        m = USAGE_LINE.match(lines[-1])
        if m and (t := _tokens(m.group(1))) is not None:
            rest = "\n".join(lines[:-1])
            return (rest + "\n" if rest else ""), t
    err = stderr.rstrip("\n").split("\n") if stderr else []
    if err:
        m = USAGE_LINE.match(err[-1])
        if m and (t := _tokens(m.group(1))) is not None:
            return stdout, t
    return stdout, None


def _kill_group(p: subprocess.Popen[str]) -> None:
    """Kill the command and everything it started: a grandchild left alive keeps the
    output pipes open, and the agent would wait on them (its slot, and a SIGTERM) forever."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        p.kill()


def run_command(command: list[str], task: dict[str, Any],
                procs: dict[tuple[str, int], subprocess.Popen[str]],
                lock: threading.Lock, reaper: Reaper | None = None
                ) -> tuple[str, float | None]:
    """Run one task's command (payload on stdin) in its own process group: (result, tokens).

    A timeout or a cancel kills the whole group, so `sh -c 'sleep 1000; ...'` ends too;
    so does the agent's death, when `reaper` (allocator/reaper.py) watches the group.
    """
    env = {**os.environ, "ALLOCATOR_TASK_ID": task["id"],
           "ALLOCATOR_TASK_ATTEMPT": str(task["attempt"]),
           "ALLOCATOR_TASK_PRIORITY": task.get("priority") or "",
           "ALLOCATOR_TASK_TENANT": task.get("tenant") or ""}
    key = (task["id"], task["attempt"])
    p = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    if reaper is not None:
        reaper.add(p.pid)
    with lock:
        procs[key] = p
    try:
        out, err = p.communicate(task["payload"], timeout=task.get("timeout"))
    except subprocess.TimeoutExpired:
        _kill_group(p)
        p.communicate()
        raise TimeoutError(f"no result within {task['timeout']}s") from None
    finally:
        with lock:
            procs.pop(key, None)
        if reaper is not None:
            reaper.drop(p.pid)
    if p.returncode != 0:
        tail = " ".join(err.strip().splitlines()[-3:])[:500]
        raise RuntimeError(f"exit status {p.returncode}" + (f": {tail}" if tail else ""))
    return parse_usage(out, err)


def _pairs(values: list[str], name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in values:
        k, sep, x = v.partition("=")
        try:
            if not sep or not k:
                raise ValueError
            out[k] = float(x)
        except ValueError:
            raise fail(f"--{name} {v!r}: expected NAME=NUMBER") from None
    return out


def _client(server: str, api_key: str | None) -> LiveClient:
    from allocator.client import LiveClient

    return LiveClient(server, api_key=api_key)


@app.command(context_settings={"allow_interspersed_args": False})
@guarded
def agent(
    command: Annotated[list[str], typer.Argument(
        help="The command each task runs (after `--`): payload on stdin, result on stdout.")],
    agent_id: Annotated[str, typer.Option("--id", help="This agent's id (unique).")],
    server: Annotated[str, SERVER] = "http://127.0.0.1:8000",
    capacity: Annotated[list[str] | None, typer.Option(
        help="A resource this agent has, NAME=AMOUNT (repeatable).")] = None,
    skill: Annotated[list[str] | None, typer.Option(help="A skill (repeatable).")] = None,
    speed: Annotated[float, typer.Option(help="Relative speed (work units per second).",
                                         min=1e-9)] = 1.0,
    concurrency: Annotated[int, typer.Option(help="Tasks run at once.", min=1,
                                             max=10_000)] = 1,
    tokens_per_min: Annotated[float | None, typer.Option(
        help="Token quota of this agent (a rate limit the service respects).", min=0)] = None,
    max_tasks: Annotated[int | None, typer.Option(
        help="Stop after this many tasks (default: run until interrupted).", min=1)] = None,
    api_key: Annotated[str | None, API_KEY] = None,
) -> None:
    """Serve tasks of the live service by running COMMAND for each (docs/live.md)."""
    import signal
    import threading

    from allocator.client import run_agent
    from allocator.reaper import Reaper

    caps = _pairs(capacity or [], "capacity")
    procs: dict[tuple[str, int], subprocess.Popen[str]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def runner(task: dict[str, Any]) -> tuple[str, float | None]:
        return run_command(command, task, procs, lock, reaper)

    def cancel(task_id: str, attempt: int) -> None:
        with lock:
            p = procs.get((task_id, attempt))
        if p is not None:
            _kill_group(p)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    spec: dict[str, Any] = {"capacity": caps, "skills": skill or [], "speed": speed}
    if tokens_per_min is not None:
        spec["tokens_per_min"] = tokens_per_min
    typer.echo(f"agent {agent_id}: serving {server} with {' '.join(command)} "
               f"(concurrency {concurrency})", err=True)
    # Kills the commands' groups if this process dies, even by SIGKILL (else a task
    # re-leased elsewhere would have its side effects twice).
    reaper = Reaper.start()
    try:
        stats = run_agent(server, agent_id, runner=runner, concurrency=concurrency,
                          agent=spec, api_key=api_key, stop=stop, max_tasks=max_tasks,
                          on_cancel=cancel)
    finally:
        if reaper is not None:
            reaper.close()
    # Done (interrupted or --max-tasks): leave, so nothing more is leased to this id.
    from contextlib import suppress

    from allocator.client import LiveError

    with suppress(ConnectionError, LiveError):
        _client(server, api_key).request("DELETE", f"/v1/agents/{agent_id}")
    typer.echo(f"agent {agent_id}: ran {stats.ran} ({stats.ok} ok, {stats.errors} failed, "
               f"{stats.late} late, {stats.duplicates} offered twice)", err=True)


@app.command()
@guarded
def submit(
    tasks_file: Annotated[str, typer.Argument(
        metavar="TASKS.jsonl", help="JSON lines, one task each (`-`: stdin).")],
    server: Annotated[str, SERVER] = "http://127.0.0.1:8000",
    batch: Annotated[int, typer.Option(help="Tasks per request.", min=1, max=5000)] = 1000,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per task.")] = False,
    api_key: Annotated[str | None, API_KEY] = None,
) -> None:
    """Submit tasks to the live service; print each one's admission (state, reason)."""
    import json

    from pydantic import ValidationError

    from allocator.cli.app import format_validation_error
    from allocator.io import strict_json
    from models.live import LiveTask

    stream = sys.stdin if tasks_file == "-" else open(tasks_file, encoding="utf-8")  # noqa: SIM115
    tasks: list[dict[str, Any]] = []
    with stream:
        for n, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                t = LiveTask.model_validate(strict_json.loads(line))
            except strict_json.DuplicateKeyError as e:
                raise fail(f"{tasks_file}:{n}: duplicate key {e.key!r} at {e.path} (a JSON "
                           "object must not repeat a key)") from None
            except json.JSONDecodeError as e:
                raise fail(f"{tasks_file}:{n}: not JSON ({e.msg})") from None
            except ValidationError as e:
                raise fail(f"{tasks_file}:{n}: {format_validation_error(e)}") from None
            tasks.append(t.model_dump(exclude_defaults=True))
    out = _client(server, api_key).submit(tasks, batch=batch)
    if json_out:
        for o in out:
            typer.echo(to_json(o))
        return
    states: dict[str, int] = {}
    for o in out:
        k = "duplicate" if o.get("duplicate") else o["state"]
        states[k] = states.get(k, 0) + 1
        if o["state"] in ("rejected", "deferred") or o.get("duplicate"):
            why = "duplicate id" if o.get("duplicate") else f"{o['code']}: {o['reason']}"
            typer.echo(f"{o['id']}: {o['state']} ({why})")
    typer.echo(f"submitted {len(out)} task(s): "
               + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))


@app.command()
@guarded
def tasks(
    server: Annotated[str, SERVER] = "http://127.0.0.1:8000",
    state: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per task.")] = False,
    api_key: Annotated[str | None, API_KEY] = None,
) -> None:
    """The live service's tasks: id, state, attempts, agent (and more with --json)."""
    rows = _client(server, api_key).tasks(state=state)
    if json_out:
        for r in rows:
            typer.echo(to_json(r))
        return
    typer.echo(f"{'id':<24} {'state':<10} {'priority':<9} {'tenant':<10} {'attempts':>8}  agent")
    for r in rows:
        typer.echo(f"{r['id']:<24} {r['state']:<10} {r['priority']:<9} "
                   f"{r['tenant'] or '-':<10} {r['attempts']:>8}  {r['agent'] or '-'}")


@app.command()
@guarded
def agents(
    server: Annotated[str, SERVER] = "http://127.0.0.1:8000",
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per agent.")] = False,
    api_key: Annotated[str | None, API_KEY] = None,
) -> None:
    """The live service's agents with their live loads (running, queued, load, usage)."""
    rows = _client(server, api_key).agents()
    if json_out:
        for r in rows:
            typer.echo(to_json(r))
        return
    typer.echo(f"{'id':<16} {'status':<8} {'running':>7} {'queued':>6} {'load':>9} "
               f"{'done':>7} {'tokens':>9}  breaker")
    for r in rows:
        typer.echo(f"{r['id']:<16} {r['status']:<8} {r['running']:>7} {r['queued']:>6} "
                   f"{r['load']:>9.3f} {r['completed']:>7} {r['tokens']:>9.0f}  {r['breaker']}")
