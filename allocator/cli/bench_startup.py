"""`allocator bench startup`: how long the command line takes to answer, against Python itself.

Every command pays the start-up before doing anything, and `--help` is all
start-up. The rows run one fresh process each, interleaved round by round so
a busy machine slows every row alike; the ratio to `python -c pass` in the
same run is the figure to compare between machines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from allocator.cli.app import bench_app, guarded, to_json

#: `allocator --help` must answer within this many seconds (median), issue #21.
HELP_GOAL_S = 0.3

#: A typer app with one command and rich help: what any typer CLI pays before its own code.
_BARE_TYPER = (
    "import typer\n"
    "app = typer.Typer()\n"
    "@app.command()\n"
    "def hello(name: str = 'x') -> None:\n"
    "    '''Say hello.'''\n"
    "@app.command()\n"
    "def bye() -> None:\n"
    "    '''Say bye.'''\n"
    "app()\n"
)


def _allocator() -> list[str]:
    """The installed console script next to this interpreter (what a user types)."""
    import shutil

    script = Path(sys.executable).with_name("allocator")
    if script.exists():
        return [str(script)]
    found = shutil.which("allocator")
    if found:
        return [found]
    return [sys.executable, "-c", "from allocator.cli import main; main()"]


def commands() -> list[tuple[str, list[str]]]:
    """(label, argv) of each row; the first is the baseline."""
    py, cli = sys.executable, _allocator()
    return [
        ("python -c pass", [py, "-c", "pass"]),
        ("bare typer app --help", [py, "-c", _BARE_TYPER, "--help"]),
        ("allocator --help", [*cli, "--help"]),
        ("allocator --version", [*cli, "--version"]),
        ("allocator solve --help", [*cli, "solve", "--help"]),
        ("allocator simulate --help", [*cli, "simulate", "--help"]),
    ]


def measure(runs: int = 10) -> list[dict[str, Any]]:
    """Median and min wall seconds of each row over `runs` fresh processes, interleaved."""
    import statistics
    import subprocess
    import time

    rows = commands()
    times: dict[str, list[float]] = {label: [] for label, _ in rows}
    env = {**os.environ, "COLUMNS": "100"}
    for _ in range(runs):
        for label, argv in rows:
            t0 = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, check=False, env=env)
            times[label].append(time.perf_counter() - t0)
            if proc.returncode != 0:
                err = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"{label} exited {proc.returncode}: {' '.join(err)}")
    base = statistics.median(times[rows[0][0]])
    out = []
    for label, _ in rows:
        med = statistics.median(times[label])
        out.append({"command": label, "runs": runs, "median_s": round(med, 3),
                    "min_s": round(min(times[label]), 3), "ratio": round(med / base, 2)})
    return out


@bench_app.command("startup")
@guarded
def bench_startup(
    runs: Annotated[int, typer.Option(min=1, help="Fresh processes per row.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Start-up time of `allocator --help` and friends against `python -c pass`."""
    load = os.getloadavg()[0]
    rows = measure(runs)
    if as_json:
        for r in rows:
            typer.echo(to_json({**r, "loadavg_1m": round(load, 2)}))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Start-up, median of {runs} fresh processes (load average {load:.2f}, "
                    f"{os.cpu_count()} CPUs)")
    for col in ("command", "median s", "min s", "x python -c pass"):
        t.add_column(col, justify="left" if col == "command" else "right")
    for r in rows:
        t.add_row(r["command"], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}", f"{r['ratio']:.1f}x")
    Console().print(t)
    help_row = next(r for r in rows if r["command"] == "allocator --help")
    verdict = "met" if help_row["median_s"] <= HELP_GOAL_S else "missed"
    typer.echo(f"goal: allocator --help <= {HELP_GOAL_S} s median: {verdict} "
               f"({help_row['median_s']:.3f} s)")
