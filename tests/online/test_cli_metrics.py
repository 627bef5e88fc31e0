"""CLI `allocator simulate`, the Prometheus export and snapshots."""

from __future__ import annotations

import json

from prometheus_client import generate_latest
from typer.testing import CliRunner

import allocator.cli.simulate  # noqa: F401  (registers the command)
from allocator.cli.app import app
from allocator.online import Executor, TaskCompleted, register
from allocator.validate import validate
from models import Agent

from .helpers import submit

REQUIRED = {"policy", "tasks", "completed", "rejected", "failed", "lost", "duplicated",
            "miss_rate", "p50_wait", "p99_wait", "jain", "utilisation", "steals",
            "events_per_s", "wall_s"}


def test_simulate_json_lines_side_by_side() -> None:
    r = CliRunner().invoke(app, ["simulate", "--agents", "4", "--tasks", "400", "--policy",
                                 "fifo", "--policy", "edf+stealing", "--seed", "3", "--mtbf",
                                 "100", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [x["policy"] for x in rows] == ["fifo", "edf+stealing"]
    for x in rows:
        assert set(x) >= REQUIRED
        assert x["lost"] == 0 and x["duplicated"] == 0 and x["tasks"] == 400


def test_simulate_table_policies_and_errors() -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["simulate", "--policies"])
    assert r.exit_code == 0 and "edf+stealing" in r.output and "p2c" in r.output
    r = runner.invoke(app, ["simulate", "--agents", "3", "--tasks", "200", "--arrival",
                            "bursty", "--history", "t5", "-p", "stealing"])
    assert r.exit_code == 0 and "stealing" in r.output and "TaskSubmitted" in r.output
    r = runner.invoke(app, ["simulate", "--policy", "nope"])
    assert r.exit_code == 2 and "unknown policy" in r.output
    r = runner.invoke(app, ["simulate", "--arrival", "weird"])
    assert r.exit_code == 2 and "arrival" in r.output


def test_prometheus_registry_exports_the_measures() -> None:
    ex = Executor("fifo", agents=[Agent(id="a"), Agent(id="b")])
    ex.handle(submit("t1"), submit("t2", deadline=0.5))
    ex.handle(TaskCompleted(task_id="t1", agent="a", attempt=1, time=1),
              TaskCompleted(task_id="t2", agent="b", attempt=1, time=1))
    text = generate_latest(register(ex)).decode()
    for name in ("allocator_online_tasks_total{outcome=\"completed\"} 2.0",
                 "allocator_online_miss_rate 1.0", "allocator_online_jain",
                 "allocator_online_wait{quantile=\"0.99\"}", "allocator_online_steals_total",
                 "allocator_online_agent_utilisation{agent=\"a\"}"):
        assert name in text, name


def test_snapshot_is_a_valid_solver_input_and_plans_validate() -> None:
    from allocator.engine import solve

    ex = Executor("round-robin", agents=[Agent(id="a", capacity={"cpu": 2}),
                                         Agent(id="b", capacity={"cpu": 2}, skills=["x"])])
    ex.handle(*[submit(f"t{i}", demand=(("cpu", 1.0),), deadline=10.0) for i in range(5)],
              submit("s", skills=("x",)))
    snap = ex.snapshot()
    assert {t.id for t in snap.tasks} == {"t0", "t1", "t2", "t3", "t4", "s"}
    running = [t for t in snap.tasks if ex.phase(t.id) == "running"]
    assert running and all(t.allowed_agents == [t.current_agent] for t in running)
    assert all(t.demand == {"cpu": 1.0} for t in running)
    # Queued tasks hold nothing yet: their demand becomes eligibility (fits alone).
    queued = [t for t in snap.tasks if ex.phase(t.id) == "queued" and t.id != "s"]
    assert queued and all(t.demand == {} and t.allowed_agents == ["a", "b"] for t in queued)
    packed = ex.snapshot(pack_queued=True)
    assert all(t.demand == {"cpu": 1.0} for t in packed.tasks if t.id != "s")
    plan = solve(snap, solver="greedy", time_limit=2.0)
    assert validate(snap, plan) == []
    ex.install(plan)
    assert ex.metrics.plans == 1
