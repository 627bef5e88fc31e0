"""CLI: allocator replay / tune / capacity on a small SWF file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator.cli import app

runner = CliRunner()


@pytest.fixture
def swf(tmp_path: Path) -> Path:
    lines = ["; toy log"]
    for i in range(120):
        user = i % 3
        run = 50 + (i * 37) % 200
        lines.append(f"{i + 1} {i * 20} 0 {run} 1 -1 -1 1 {run * 2} -1 1 {user} 1 -1 "
                     f"{i % 2} -1 -1 -1")
    p = tmp_path / "toy.swf"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_replay_json_and_report(swf: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    r = runner.invoke(app, ["replay", str(swf), "-n", "8", "-p", "fifo", "-p", "round-robin",
                            "-p", "edf+stealing", "--json", "--report", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [x["policy"] for x in rows] == ["fifo", "round-robin", "edf+stealing"]
    for x in rows:
        assert x["tasks"] == 120 and x["lost"] == 0 and x["duplicated"] == 0
        assert "mean_bounded_slowdown" in x and "jain_tenants" in x
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    for png in ("wait_cdf.png", "utilisation.png", "queues.png", "miss_by_class.png"):
        assert (out / png).stat().st_size > 1000


def test_replay_picks_agents_for_utilisation_and_rejects_bad_policy(swf: Path) -> None:
    r = runner.invoke(app, ["replay", str(swf), "--utilisation", "0.8", "-p", "fifo"])
    assert r.exit_code == 0, r.output
    assert "fewest with offered load <= 80%" in r.output
    r = runner.invoke(app, ["replay", str(swf), "-p", "nope"])
    assert r.exit_code == 2 and "unknown policy 'nope'" in r.output


def test_tune_json(swf: Path) -> None:
    r = runner.invoke(app, ["tune", "--trace", str(swf), "--policy", "priority", "-n", "6",
                            "--param", "aging=10,1000", "--param", "weight.low=1,4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["trials"] == 4 and set(out["sensitivity"]) == {"aging", "weight.low"}
    assert set(out["best"]["params"]) == {"aging", "weight.low"}


def test_capacity_json_keys(swf: Path) -> None:
    r = runner.invoke(app, ["capacity", "--trace", str(swf), "--sla", "p95_wait<=100",
                            "--curve-span", "1", "--json", "-p", "fifo"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"agents", "cost", "predicted", "simulated", "sla_met"} <= set(out)
    assert out["sla_met"] is True and out["simulated"]["p95_wait"] <= 100
    assert out["cost"] == sum(out["agents"].values())


def test_capacity_needs_one_source() -> None:
    r = runner.invoke(app, ["capacity", "--sla", "p95_wait<=1"])
    assert r.exit_code == 2 and "exactly one of" in r.output


def test_simulate_trace_delegates_to_replay(swf: Path) -> None:
    r = runner.invoke(app, ["simulate", "--trace", str(swf), "-n", "8", "-p", "fifo", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["policy"] == "fifo" and row["tasks"] == 120 and "mean_bounded_slowdown" in row
