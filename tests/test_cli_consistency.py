"""Flags that do nothing say so, swapped arguments get a hint, defaults agree across commands."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from allocator.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "examples" / "priorities.json"
KTH = ROOT / "data" / "traces" / "KTH-SP2-1996-2.1-cln.swf.gz"
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


def test_validate_with_its_files_swapped_says_the_order(tmp_path: Path) -> None:
    plan = tmp_path / "p.json"
    code, _, err = run("solve", str(EXAMPLE), "--solver", "greedy", "-o", str(plan))
    assert code == 0, err
    code, out, err = run("validate", str(plan), str(EXAMPLE))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "allocator validate SNAPSHOT PLAN" in err and f"validate {EXAMPLE} {plan}" in err
    assert run("validate", str(EXAMPLE), str(plan))[0] == 0


def test_solve_plot_says_where_the_chart_went(tmp_path: Path) -> None:
    chart = tmp_path / "plan.html"
    code, out, err = run("solve", str(EXAMPLE), "--solver", "greedy", "--plot", str(chart))
    assert code == 0, err
    assert chart.is_file() and f"chart written to {chart}" in out
    code, out, err = run("solve", str(EXAMPLE), "--solver", "greedy", "--plot", str(chart),
                         "--json")
    assert code == 0 and json.loads(out)["solver"] == "greedy"
    assert f"chart written to {chart}" in err


def test_capacity_rejects_an_unknown_policy_before_estimating() -> None:
    code, out, err = run("capacity", "--rate", "2", "--sla", "p95_wait<=5", "--policy", "nope")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [err.strip()] and "unknown policy 'nope'" in err


def test_simulate_report_without_trace_warns() -> None:
    code, _, err = run("simulate", "--tasks", "200", "-p", "fifo", "--report", "rep", "--json")
    assert code == 0, err
    assert "warning: --report has no effect without --trace" in err
    assert not Path("rep").exists()


def test_simulate_trace_agrees_with_replay_and_names_ignored_flags() -> None:
    code, out, err = run("simulate", "--trace", str(KTH), "-p", "fifo", "--json", "--tasks", "5",
                         "--load", "0.5")
    assert code == 0, err
    assert "warning: --tasks, --load shape a generated workload" in err
    sim = json.loads(out.splitlines()[0])
    code, out, err = run("replay", str(KTH), "-p", "fifo", "--json")
    assert code == 0, err
    rep = json.loads(out.splitlines()[0])
    assert sim["agents"] == rep["agents"] and sim["miss_rate"] == rep["miss_rate"]


def test_replay_takes_the_simulate_fault_and_fairness_flags() -> None:
    flags = ("-p", "wfq", "--json", "-n", "3", "--flaky", "1:0.9:400000", "--tenants", "1,3",
             "--skill-groups", "2")
    code, out, err = run("replay", str(KTH), "--limit", "300", *flags)
    assert code == 0, err
    rep = json.loads(out.splitlines()[0])
    assert rep["retries"] > 0 and rep["lost"] == 0 and rep["duplicated"] == 0
    assert [(t["tenant"], t["weight"]) for t in rep["per_tenant"]] == [
        ("tenant0", 1.0), ("tenant1", 3.0)]
    code, out, err = run("simulate", "--trace", str(KTH), *flags)  # handed over as they are
    assert code == 0, err
    assert "no effect" not in err
    sim = json.loads(out.splitlines()[0])
    assert sim["retries"] > 0 and sim["per_tenant"][1]["weight"] == 3.0


def test_a_failed_batch_input_is_reported_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"agents": [], "tasks": [{"id": "t", "work": -1}]}')
    code, out, err = run("batch", str(bad), str(EXAMPLE), "--out", str(tmp_path / "out"),
                         "--solver", "greedy")
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: bad: ")
    assert "greater than or equal to 0" in lines[0]
    assert err.count("greater than or equal to 0") == 1
    assert "greater than or equal" not in out and "error on stderr" in out
