"""CLI exit codes and messages: 0 on success, 1 for an invalid plan, 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from allocator.cli import app
from tests.conftest import DATA, EXAMPLES

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_solve_prints_summary_and_writes_plan(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    code, stdout, _ = run("solve", str(EXAMPLES / "multi-resource.json"), "-o", str(out),
                          "--time-limit", "2")
    assert code == 0
    assert "Agents" in stdout and "Unassigned tasks" in stdout
    assert "no up agent has skill(s) blender" in stdout
    plan = json.loads(out.read_text())
    assert plan["status"] in ("optimal", "feasible")
    code, stdout, _ = run("validate", str(EXAMPLES / "multi-resource.json"), str(out))
    assert code == 0 and stdout.startswith("valid")


def test_validate_reports_violations_with_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    assert run("solve", str(EXAMPLES / "seed-overloaded.json"), "-o", str(out),
               "--solver", "greedy")[0] == 0
    plan = json.loads(out.read_text())
    plan["assignments"].append(dict(plan["assignments"][0]))
    out.write_text(json.dumps(plan))
    code, stdout, stderr = run("validate", str(EXAMPLES / "seed-overloaded.json"), str(out))
    assert code == 1
    assert "[assigned_twice]" in stdout
    assert "violation" in stderr


def test_bad_json_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"agents": [')
    code, stdout, stderr = run("solve", str(bad))
    assert code == 2
    assert stderr.startswith("error: ") and "invalid JSON" in stderr
    assert "Traceback" not in stderr + stdout
    assert len(stderr.strip().splitlines()) == 1


def test_invalid_snapshot_names_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"agents": [{"id": "a"}], "tasks": [{"id": "t", "work": -3}]}))
    code, _, stderr = run("solve", str(bad))
    assert code == 2 and "tasks.0.work" in stderr


def test_unknown_solver_exit_2() -> None:
    code, _, stderr = run("solve", str(EXAMPLES / "priorities.json"), "--solver", "nope")
    assert code == 2 and "unknown solver 'nope'" in stderr and "cpsat" in stderr


def test_missing_file_exit_2() -> None:
    code, _, stderr = run("solve", "no/such/file.json")
    assert code == 2 and "no such file" in stderr


def test_schema_prints_json() -> None:
    code, stdout, _ = run("schema", "snapshot")
    assert code == 0 and json.loads(stdout)["title"] == "Snapshot"


def test_bench_gap_json_rows() -> None:
    code, stdout, _ = run("bench", "gap", str(DATA / "gap/orlib/gap1.txt"), "--solver",
                          "cpsat", "--time-limit", "5", "--json")
    assert code == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert {"instance", "agents", "tasks", "solver", "objective", "best_known", "gap_pct",
                "time_s", "status", "valid"} <= set(row)
        assert row["valid"] and row["gap_pct"] == 0.0
    assert rows[1]["instance"] == "gap1:2"


def test_bench_gap_max_sense() -> None:
    code, stdout, _ = run("bench", "gap", str(DATA / "gap/orlib/gap1.txt"), "--sense", "max",
                          "--solver", "cpsat", "--json")
    assert code == 0
    row = json.loads(stdout.splitlines()[0])
    assert row["objective"] == row["best_known"] == 336


def test_convert_gap_then_solve(tmp_path: Path) -> None:
    snap = tmp_path / "gap3-2.json"
    code, stdout, _ = run("convert", "gap", str(DATA / "gap/orlib/gap3.txt"), "--problem",
                          "gap3:2", "-o", str(snap))
    assert code == 0 and "gap3:2" in stdout
    code, stdout, _ = run("solve", str(snap), "--solver", "cpsat", "--json")
    assert code == 0 and json.loads(stdout)["status"] == "optimal"
    code, _, stderr = run("convert", "gap", str(DATA / "gap/orlib/gap3.txt"), "--problem", "9",
                          "-o", str(snap))
    assert code == 2 and "no problem" in stderr
