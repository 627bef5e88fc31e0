"""Hostile files on the command line: one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.errors import InvalidInputError
from allocator.workloads.base import MAX_AGENTS
from allocator.workloads.swf import _gunzip
from tests.conftest import EXAMPLES

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    r = runner.invoke(app, list(args), env=env)
    return r.exit_code, r.stderr


def one_line_error(code: int, err: str) -> str:
    """The error is one line (progress notes before it are fine), the last, exit 2."""
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err
    return errors[0]


SWF_LINE = "{job} {submit} 0 {run} 1 -1 -1 1 {run} -1 1 1 1 -1 1 -1 -1 -1\n"


def swf(path: Path, rows: list[tuple[int, float, str]]) -> Path:
    path.write_text("".join(SWF_LINE.format(job=j, submit=s, run=r) for j, s, r in rows))
    return path


def test_deeply_nested_json_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "nested.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    msg = one_line_error(*run("solve", str(p)))
    assert "nested.json" in msg or "nested" in msg


def test_corrupt_gzip_trace_is_one_line(tmp_path: Path) -> None:
    good = gzip.compress(swf(tmp_path / "a.swf", [(1, 0, "10"), (2, 5, "10")]).read_bytes())
    p = tmp_path / "bad.swf.gz"
    p.write_bytes(good[:12] + b"\x00garbage" * 20)
    msg = one_line_error(*run("replay", str(p), "--agents", "2"))
    assert "gzip" in msg


def test_gzip_bomb_stops_at_the_decompressed_cap() -> None:
    bomb = gzip.compress(b"0" * (4 << 20))
    assert len(bomb) < 10_000
    with pytest.raises(InvalidInputError, match="more than"):
        _gunzip(bomb, "bomb.gz", limit=1 << 20)
    assert len(_gunzip(bomb, "bomb.gz", limit=8 << 20)) == 4 << 20


def test_two_line_trace_does_not_size_a_huge_pool(tmp_path: Path) -> None:
    p = swf(tmp_path / "dense.swf", [(1, 0, "100000"), (2, 0.001, "100000")])
    msg = one_line_error(*run("replay", str(p), "--policy", "fifo"))
    assert str(MAX_AGENTS) in msg and "--agents" in msg


def test_explicit_agent_count_is_capped(tmp_path: Path) -> None:
    p = swf(tmp_path / "t.swf", [(1, 0, "10"), (2, 5, "10")])
    msg = one_line_error(*run("replay", str(p), "--agents", str(MAX_AGENTS + 1)))
    assert "--agents" in msg


def test_infinite_run_time_is_one_line(tmp_path: Path) -> None:
    p = swf(tmp_path / "inf.swf", [(1, 0, "10"), (2, 5, "1e400")])
    code, err = run("replay", str(p), "--policy", "fifo", "--agents", "2", "--on-bad", "raise")
    assert "non-finite" in one_line_error(code, err)
    code, err = run("replay", str(p), "--policy", "fifo", "--agents", "2")
    assert code == 0 and "non-finite" in err  # reported as a bad row, the rest replayed


def test_plugins_load_in_the_cli() -> None:
    snap = str(EXAMPLES / "priorities.json")
    code, err = run("solve", snap, "--solver", "test:bug")
    assert code == 2 and "unknown solver" in err.lower()
    code, err = run("solve", snap, "--solver", "test:bug",
                    env={"ALLOCATOR_PLUGINS": "tests.api.crashy_solver"})
    msg = one_line_error(code, err)
    assert "a bug in a backend" in msg  # the plugin's backend ran


def test_missing_plugin_is_one_line() -> None:
    code, err = run("solvers", env={"ALLOCATOR_PLUGINS": "no_such_module_xyz"})
    msg = one_line_error(code, err)
    assert "no_such_module_xyz" in msg


def test_json_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.json"
    p.write_text(json.dumps({"agents": []})[:-3])
    one_line_error(*run("solve", str(p)))


@pytest.mark.parametrize("limit", ["inf", "nan", "0", "-1", "1e9"])
@pytest.mark.parametrize("command", ["solve", "pareto", "rebalance", "bottlenecks", "batch",
                                     "run", "topology"])
def test_every_time_limit_override_is_bounded_like_the_snapshot_model(
        tmp_path: Path, command: str, limit: str) -> None:
    """The model refuses time_limit above a day, NaN and inf; an override did not: `solve
    --time-limit inf` never returned, and `rebalance --time-limit 0` ran on the default."""
    snap = str(EXAMPLES / ("topology-two-zone.json" if command == "topology"
                           else "priorities.json"))
    args = {"batch": ["batch", snap, "--out", str(tmp_path / "out")],
            "run": ["run", "--watch", str(EXAMPLES), "--out", str(tmp_path / "out"),
                    "--max-ticks", "1"]}.get(command, [command, snap])
    line = one_line_error(*run(*args, "--time-limit", limit))
    assert "time-limit" in line or "time_limit" in line, line
    assert "86400" in line


@pytest.mark.parametrize(("text", "what"), [
    ('{"agents": [], "tasks": [], "name": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ('{"agents": [{"id": "a", "concurrency": 1' + "0" * 5000 + "}]}", "digits"),
])
def test_unreadable_json_names_the_file(tmp_path: Path, text: str, what: str) -> None:
    """JSON nested too deeply or with a 5000-digit number: the message names the file
    (it was a bare 'input nested too deeply' / int-conversion message), and batch
    reports it as bad input, not an internal error."""
    p = tmp_path / "hostile.json"
    p.write_text(text)
    for cmd in (["solve", str(p)], ["validate", str(EXAMPLES / "priorities.json"), str(p)]):
        msg = one_line_error(*run(*cmd))
        assert str(p) in msg and what in msg, msg
    code, err = run("batch", str(p), "--out", str(tmp_path / "out"))
    assert code == 1 and "internal error" not in err and str(p) in err, err


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--time-limit", "0", "time_limit"), ("--time-limit", "nan", "time_limit"),
    ("--solver", "nope", "unknown solver"),
])
def test_batch_refuses_a_bad_option_once_before_solving(tmp_path: Path, flag: str, value: str,
                                                        says: str) -> None:
    """A --time-limit or --solver that applies to every input failed each input in turn
    (exit 1, one error per input, as if the inputs were bad); it is a usage error (slot g)."""
    out = tmp_path / "out"
    code, err = run("batch", str(EXAMPLES / "priorities.json"),
                    str(EXAMPLES / "multi-resource.json"), "--out", str(out), flag, value)
    msg = one_line_error(code, err)
    assert says in msg.lower(), msg
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(("edit", "says"), [
    ("unknown_agent", "unknown agent 'zz'"), ("duplicate", "assigned twice"),
])
def test_bottlenecks_checks_a_supplied_plan_like_the_api(tmp_path: Path, edit: str,
                                                         says: str) -> None:
    """`allocator bottlenecks --plan` analysed a plan with a task twice without a word and
    died with 'KeyError: zz' on an unknown agent, where POST /v1/bottlenecks refuses both
    naming the field: the CLI now goes through the same use case."""
    snap = str(EXAMPLES / "priorities.json")
    plan = tmp_path / "plan.json"
    code, err = run("solve", snap, "--solver", "greedy", "-o", str(plan))
    assert code == 0, err
    data = json.loads(plan.read_text())
    if edit == "unknown_agent":
        data["assignments"][0]["agent"] = "zz"
    else:
        data["assignments"].append(data["assignments"][0])
    plan.write_text(json.dumps(data))
    msg = one_line_error(*run("bottlenecks", snap, "--plan", str(plan)))
    assert says in msg and "plan.assignments" in msg, msg
