"""`allocator capacity` says what it simulates while it runs (a 10,000-agent plan ran for
minutes with no output), and a replay that asked for no queue samples does not build a
column per agent for them."""

from __future__ import annotations

from typer.testing import CliRunner

from allocator.cli import app
from allocator.planning.capacity import ClassForecast, Forecast, plan_capacity
from allocator.workloads.replay import replay

runner = CliRunner()


def test_every_simulated_run_is_reported_before_it_runs() -> None:
    fc = Forecast([ClassForecast(rate=4.0, size_mean=1.0, size_cv=1.0)], tasks=600)
    seen: list[tuple[int, int, str]] = []
    plan = plan_capacity("mean_wait<=0.4", forecast=fc, seeds=(0, 1), curve_span=1,
                         on_run=lambda done, total, what: seen.append((done, total, what)))
    runs = plan.to_json()["simulations"]
    assert runs > 0 and len(seen) == runs  # one call per simulated run, none cached twice
    assert all(0 <= d < t for d, t, _ in seen)
    assert all("seed" in what and "agent" in what for _, _, what in seen)


def test_cli_progress_goes_to_stderr_only() -> None:
    r = runner.invoke(app, ["capacity", "--rate", "4", "--size-mean", "1", "--tasks", "600",
                            "--sla", "mean_wait<=0.4", "--seeds", "2", "--curve-span", "1",
                            "--json"])
    assert r.exit_code == 0, r.stderr
    assert "simulating" not in r.stdout
    r = runner.invoke(app, ["capacity", "--rate", "4", "--size-mean", "1", "--tasks", "600",
                            "--sla", "mean_wait<=0.4", "--seeds", "2", "--curve-span", "1"])
    assert r.exit_code == 0, r.stderr
    assert "simulating {'agent':" in r.stderr and "run 1 of" in r.stderr
    assert "simulating" not in r.stdout


def test_a_replay_without_samples_has_no_per_agent_sample_columns() -> None:
    fc = Forecast([ClassForecast(rate=4.0, size_mean=1.0, size_cv=1.0)], tasks=200)
    trace = fc.generate(0)
    r = replay(trace, "fifo", agents=50, samples=0)
    assert r.queue_samples.height == 0
    assert r.queue_samples.columns == ["time", "global"]
    sampled = replay(trace, "fifo", agents=3, samples=5)
    assert sampled.queue_samples.height > 0 and len(sampled.queue_samples.columns) == 5
