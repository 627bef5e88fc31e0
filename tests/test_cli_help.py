"""Help output of every command, `-h`/`--version`, and start-up errors of `serve`.

The command tree is walked from the click app, so a command added later is
checked without being listed here.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from allocator.cli import app
from allocator.cli.app import version

ROOT = Path(__file__).resolve().parents[1]
ALLOCATOR = str(Path(sys.executable).parent / "allocator")

runner = CliRunner()
#: Python types and typer's own labels that must not reach a user.
LEAKS = re.compile(r"<(bool|int|float|str|path|list|tuple)\b|list\[|int range|float range|"
                   r"\{[a-z_]+\}|x[<>]=")


def commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and subcommand (typer 0.29 vendors click: groups are duck-typed)."""
    yield path, cmd
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        yield from commands(sub, (*path, name))


ROOT_COMMAND = get_command(app)
ALL = list(commands(ROOT_COMMAND))


def help_text(*args: str) -> str:
    r = runner.invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0, (args, r.output)
    return r.stdout


def test_the_walk_finds_the_nested_commands() -> None:
    names = {" ".join(p) for p, _ in ALL}
    assert {"solve", "serve", "bench gap", "bench pareto", "convert gap", "tune"} <= names
    assert len(ALL) > 20


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "allocator")
def test_help_has_no_python_types_and_every_option_is_described(path: tuple[str, ...]) -> None:
    text = help_text(*path, "--help")
    assert "Usage: allocator" in text
    leak = LEAKS.search(text)
    assert leak is None, f"{' '.join(path)}: {leak.group(0)!r} in\n{text}"
    assert help_text(*path, "-h") == text
    cmd = dict(ALL)[path]
    for p in cmd.params:
        if p.param_type_name == "option" and not p.hidden:
            assert p.help, f"allocator {' '.join(path)} {p.opts[0]} has no help text"


def test_flags_take_no_value_and_values_have_names() -> None:
    text = help_text("tune", "--help")
    line = next(x for x in text.splitlines() if "--json" in x)
    assert re.search(r"--json\s+Print", line), line
    assert re.search(r"--trace\s+PATH", text)
    assert re.search(r"--samples\s+N\b", text)
    assert re.search(r"--window\s+START:END", text)
    solve = help_text("solve", "--help")
    assert "allocator solve [OPTIONS] SNAPSHOT" in solve
    assert re.search(r"--time-limit\s+SECONDS", solve)
    assert re.search(r"--agents\s+-n\s+N \[min 1\]", help_text("simulate", "--help"))
    # a boolean flag given a value is an error, as in every CLI
    r = runner.invoke(app, ["tune", "--json", "true"])
    assert r.exit_code == 2


def test_version() -> None:
    from allocator import _native

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0
    first, second = r.stdout.strip().splitlines()
    assert first == f"allocator {version()}"
    assert re.fullmatch(r"allocator \d+\.\d+\.\d+\S*", first)
    # the online core's build, as the guard would choose it (without importing the core)
    assert second == f"online core: {_native.describe()}"
    assert re.fullmatch(r"online core: (mypyc|pure) \(.+\)", second)
    assert runner.invoke(app, ["-V"]).stdout == r.stdout


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.pop("ALLOCATOR_DEBUG", None)
    return subprocess.run([ALLOCATOR, "serve", *args], capture_output=True, text=True,
                          env=full, timeout=120)


def test_serve_with_a_bad_database_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = serve("--port", "0", ALLOCATOR_DATABASE_URL="nonsense://")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert "ALLOCATOR_DATABASE_URL" in r.stderr and "nonsense" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_serve_on_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = serve("--port", str(port),
                  ALLOCATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port" in r.stderr


def test_serve_whose_startup_fails_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A store that opens but cannot be migrated fails inside uvicorn's lifespan."""
    import sqlite3

    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_migrations (x INTEGER)")
    r = serve("--port", "0", "--log-level", "warning", ALLOCATOR_DATABASE_URL=f"sqlite:///{db}")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: the service did not start: ")


def test_the_listening_socket_is_tcp_so_asyncio_sets_nodelay() -> None:
    """With proto 0 asyncio skips TCP_NODELAY and every small response waits ~40 ms."""
    import asyncio.base_events

    from allocator.cli.serve import listen_socket

    with listen_socket("127.0.0.1", 0) as sock, socket.create_connection(
            sock.getsockname()[:2]) as client:
        conn, _ = sock.accept()
        with conn:
            asyncio.base_events._set_nodelay(conn)  # what asyncio does to each connection
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            client.sendall(b"x")
            assert conn.recv(1) == b"x"


def test_solvers_marks_pulp_backends_whose_program_is_missing() -> None:
    import pulp

    from allocator.solvers import solver_names

    r = runner.invoke(app, ["solvers"])
    assert r.exit_code == 0
    rows = {line.split()[0]: line.split()[1:3] for line in r.stdout.splitlines()[1:] if line}
    assert set(rows) == set(solver_names())
    for name, cls in (("milp:glpk", "GLPK_CMD"), ("milp:cbc", "PULP_CBC_CMD"),
                      ("milp:scip", "SCIP_CMD")):
        installed = pulp.getSolver(cls, msg=False).available()
        assert rows[name][0] == ("available" if installed else "not"), (name, rows[name])
    assert rows["greedy"][0] == "available" and rows["cpsat"][0] == "available"
