"""Start-up stays light: what `allocator --help` imports, checked from the import graph.

Not a timing test: the figure is `allocator bench startup` (median of fresh
processes against `python -c pass`). These tests pin down the cause of a slow
start instead - a command module that imports the engine, numpy or a solver at
module level - so they fail the same way on an idle and on a loaded machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import allocator
from allocator.cli import app

#: Packages a command may load when it runs, never to print help or its version.
HEAVY = ("numpy", "polars", "pandas", "pyarrow", "scipy", "ortools", "pulp", "highspy",
         "pymoo", "matplotlib", "fastapi", "starlette", "uvicorn", "sqlalchemy", "ray", "mcp",
         "prometheus_client", "models")
#: allocator modules allowed on the help path: the command modules, the error classes and
#: the online core's build check (`--version` reports it; standard library only).
LIGHT = ("allocator", "allocator.errors", "allocator._native")

_PROBE = """
import json, sys
sys.argv = ["allocator", *json.loads(sys.argv[1])]
from allocator.cli import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print("\\n@@" + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_after(*argv: str) -> set[str]:
    """Modules in sys.modules after `allocator ARGV...` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(list(argv))],
                          capture_output=True, text=True, check=False, timeout=60)
    marker = proc.stderr.rpartition("\n@@")[2]
    assert marker, proc.stderr
    return set(json.loads(marker))


def heavy_in(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.split(".")[0] in HEAVY)


def engine_in(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.startswith("allocator.") and m not in LIGHT
                  and not m.startswith("allocator.cli"))


@pytest.mark.parametrize("argv", [("--help",), ("-h",), ("--version",), ()],
                         ids=["--help", "-h", "--version", "no-args"])
def test_help_and_version_load_no_engine_and_no_heavy_package(argv: tuple[str, ...]) -> None:
    mods = loaded_after(*argv)
    assert heavy_in(mods) == [], ("move these imports into the command function that uses "
                                  "them", heavy_in(mods))
    assert engine_in(mods) == [], ("command modules import the engine inside their command "
                                   "functions (or under TYPE_CHECKING)", engine_in(mods))
    assert "pydantic" not in mods  # typer itself loads it for a subcommand's options only


def test_importing_the_cli_app_loads_no_heavy_package() -> None:
    code = ("import sys, json; import allocator.cli.app; import allocator.cli; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    mods = set(json.loads(out))
    assert heavy_in(mods) == [] and engine_in(mods) == []


def test_a_command_help_loads_no_solver_and_no_plotting() -> None:
    for command in ("solve", "simulate", "replay", "capacity", "pareto", "batch"):
        mods = loaded_after(command, "--help")
        assert not {"numpy", "ortools", "matplotlib", "polars", "pymoo"} & {
            m.split(".")[0] for m in mods}, (command, heavy_in(mods))


def test_a_command_that_runs_still_loads_what_it_needs() -> None:
    """The probe sees imports: `solvers` lists the registry, so the engine is there."""
    mods = loaded_after("solvers")
    assert "allocator.solvers" in mods


def test_the_package_exports_resolve_lazily() -> None:
    from allocator.engine import solve
    from allocator.problem import Problem, compile_snapshot
    from allocator.validate import Violation, validate

    assert allocator.solve is solve and allocator.validate is validate
    assert allocator.Problem is Problem and allocator.compile_snapshot is compile_snapshot
    assert allocator.Violation is Violation
    assert set(allocator.__all__) <= set(dir(allocator))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = allocator.nope  # type: ignore[attr-defined]


def test_import_allocator_alone_is_light() -> None:
    code = "import sys, json; import allocator; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    mods = set(json.loads(out))
    assert heavy_in(mods) == [] and engine_in(mods) == []


def test_simulate_help_lists_every_admission_mode() -> None:
    """The help text is literal (no engine import for it); it must follow the engine's list."""
    from allocator.online.options import ADMISSIONS

    text = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"}).stdout
    line = next(ln for ln in text.splitlines() if "--admission" in ln)
    assert all(a in line for a in ADMISSIONS), line


def test_bench_startup_prints_one_row_per_command_with_a_ratio() -> None:
    r = CliRunner().invoke(app, ["bench", "startup", "--runs", "1", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert rows[0]["command"] == "python -c pass" and rows[0]["ratio"] == 1.0
    assert any(x["command"] == "allocator --help" for x in rows)
    assert all(x["median_s"] > 0 and x["ratio"] > 0 for x in rows)


@pytest.mark.parametrize("argv", [["--help"], [], ["bench", "--help"], ["solve", "--help"],
                                  ["bench", "gap", "--help"], ["ray", "run", "--help"],
                                  ["nosuch"], ["bench", "nosuch"], ["solv"], ["--version"]],
                         ids=lambda a: " ".join(a) or "no-args")
def test_the_lazy_view_answers_exactly_as_the_full_app(argv: list[str]) -> None:
    """`main` runs a view with only the invoked command built; nothing a user sees changes."""
    from allocator.cli.app import lazy_view

    runner, env = CliRunner(), {"COLUMNS": "100"}
    full, lazy = runner.invoke(app, argv, env=env), runner.invoke(lazy_view(app, argv), argv,
                                                                  env=env)
    assert (lazy.exit_code, lazy.output) == (full.exit_code, full.output)


def test_the_lazy_view_builds_only_the_invoked_command() -> None:
    """The cause of a fast `--help`: other commands are parameterless placeholders."""
    import importlib

    app_module = importlib.import_module("allocator.cli.app")  # `allocator.cli.app` is the Typer
    lazy_view = app_module.lazy_view

    top = lazy_view(app, ["--help"])
    assert all(c.callback is app_module._not_loaded for c in top.registered_commands)
    assert top.registered_groups == []  # groups are listed through placeholders too
    view = lazy_view(app, ["bench", "gap", "x.txt"])
    real = [c.name for c in view.registered_commands if c.callback is not app_module._not_loaded]
    assert real == []  # `bench` is a group: it stays a group, built lazily in turn
    bench = next(g for g in view.registered_groups if g.name == "bench")
    assert bench.typer_instance is not None
    built = [c for c in bench.typer_instance.registered_commands
             if c.callback is not app_module._not_loaded]
    assert [c.name for c in built] == ["gap"]
    assert len(app.registered_commands) > 10  # the full app is untouched
