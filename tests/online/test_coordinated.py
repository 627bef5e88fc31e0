"""Scenarios, the honest coordinator, the three modes and costs priced online (tiny runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator.cli.app import app
from allocator.errors import InvalidInputError
from allocator.online import Executor
from allocator.online.coordinator import Coordinator
from allocator.online.events import Migrate, TaskCompleted
from allocator.online.metrics import online_objective
from allocator.online.scenarios import (
    SCENARIOS,
    CoordinatorSettings,
    run_mode,
    scenario,
    scenario_config,
)
from allocator.online.simulator import Simulator
from allocator.online.stealing import plan_allows
from allocator.online.workload import AgentClass, WorkloadConfig, generate
from allocator.validate import validate
from models import Agent, Plan, Weights

from .helpers import submit

VOLATILE = ("wall_s", "events_per_s", "solve_wall_s")


def _mixed(tasks: int = 400, seed: int = 1) -> WorkloadConfig:
    return scenario_config("mixed-fleet", agents=8, tasks=tasks, seed=seed)


# --------------------------------------------------------------------------- workloads


def test_mixed_fleet_has_prices_pools_resources_and_waves() -> None:
    wl = generate(_mixed())
    kinds = {a.id.rstrip("0123456789"): a for a in wl.agents}
    assert set(kinds) == {"cheap", "fast", "gpu"}
    unit = {k: a.cost_rate / a.speed for k, a in kinds.items()}
    assert unit["cheap"] < unit["fast"] < unit["gpu"]
    assert kinds["gpu"].skills == ["gpu"] and not kinds["cheap"].skills
    specs = list(wl.specs())
    assert all({r for r, _ in s.demand} == {"cpu", "mem"} for s in specs)
    gpu_tasks = [s for s in specs if "gpu" in s.skills]
    assert gpu_tasks and all(s.home is not None and s.home.startswith("gpu") for s in gpu_tasks)
    # Waves: most arrivals fall in the first `wave_spread` of each `wave_every` period.
    cfg = _mixed()
    phase = np.mod(wl.arrival, cfg.wave_every)
    assert np.mean(phase <= cfg.wave_spread) > 0.6
    # Same config, same arrays.
    again = generate(_mixed())
    assert np.array_equal(wl.arrival, again.arrival) and np.array_equal(wl.demand, again.demand)


@pytest.mark.parametrize(("kw", "field"), [
    ({"fleet": (AgentClass(3, speed=1.0),)}, "fleet"),
    ({"fleet": ({"count": 4, "speed": -1.0},)}, "fleet"),
    ({"demand": (("cpu", 3.0, 1.0),)}, "demand"),
    ({"wave_every": 0.0, "arrival": "waves"}, "wave_every"),
    ({"background_share": 1.5}, "background_share"),
    ({"background_slack": (4.0, 1.0)}, "background_slack"),
    ({"skill_share": 0.5, "fleet": (AgentClass(4, speed=1.0),)}, "skill_share"),
    ({"demand": (("cpu", 1.0, 64.0),),
      "fleet": (AgentClass(4, capacity=(("cpu", 8.0),)),)}, "demand"),
])
def test_bad_workload_options_name_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        generate(WorkloadConfig(agents=4, tasks=50, **kw))  # type: ignore[arg-type]
    assert e.value.field == field


def test_unknown_scenario_is_a_typed_error() -> None:
    with pytest.raises(InvalidInputError) as e:
        scenario("nope")
    assert e.value.field == "scenario" and "mixed-fleet" in str(e.value)
    assert {"mixed-fleet", "waves"} <= set(SCENARIOS)


# --------------------------------------------------------------------------- costs online


def test_online_objective_prices_busy_time_lateness_and_moves_like_a_plan() -> None:
    w = Weights(cost=1.0, tardiness=2.0, migrations=3.0)
    ex = Executor("fifo", agents=[Agent(id="x", cost_rate=4.0, speed=2.0)], weights=w)
    ex.handle(submit("t", work=2.0, deadline=0.5, home="x"),
              submit("u", work=2.0, deadline=100.0, home="elsewhere", migration_cost=7.0))
    ex.handle(TaskCompleted(task_id="t", agent="x", attempt=1, time=1.0))
    ex.handle(TaskCompleted(task_id="u", agent="x", attempt=1, time=2.5))
    got = online_objective(ex)
    # Busy 1.0 + 1.5 at cost rate 4; t is 0.5 late (normal class: weight 2);
    # u's home is not an agent of this executor, so it moved nowhere priced.
    assert got["cost"] == pytest.approx(4.0 * 2.5)
    assert got["tardiness"] == pytest.approx(2.0 * 0.5)
    assert got["migration_cost"] == 0.0
    assert got["weighted_objective"] == pytest.approx(10.0 + 2.0 * 1.0)


def test_online_objective_counts_runs_away_from_home() -> None:
    ex = Executor("fifo", agents=[Agent(id="x"), Agent(id="y", cost_rate=1.0)],
                  weights=Weights(cost=1.0, migrations=1.0))
    ex.handle(submit("t", work=1.0, home="x", migration_cost=0.25, allowed=("y",)))
    ex.handle(TaskCompleted(task_id="t", agent="y", attempt=1, time=1.0))
    got = online_objective(ex)
    assert got["migration_cost"] == pytest.approx(0.25)
    assert got["weighted_objective"] == pytest.approx(1.0 + 0.25)


def test_sim_cost_is_cost_rate_times_busy_time() -> None:
    res = Simulator(generate(_mixed(tasks=200)), "edf", weights=Weights(cost=1.0)).run()
    busy = sum(a.busy * a.spec.cost_rate for a in res.executor.agents.values())
    assert res.row["cost"] == pytest.approx(busy)
    assert res.row["weighted_objective"] == pytest.approx(res.row["cost"])


# --------------------------------------------------------------------------- coordinator


def test_plans_take_effect_after_the_budget_and_are_reconciled() -> None:
    wl = generate(_mixed(tasks=200))
    sim = Simulator(wl, "edf", weights=SCENARIOS["mixed-fleet"].weights)
    coord = Coordinator(sim.executor, every=5.0, imbalance=None, queue_growth=20,
                        solver="greedy", time_limit=2.0,
                        weights=SCENARIOS["mixed-fleet"].weights)
    solved_at: list[float] = []
    installed_at: list[float] = []
    propose, install = coord.propose, coord.install

    def spy_propose(now: float) -> tuple[Plan, float] | None:
        snap = sim.executor.snapshot(weights=coord.weights)
        got = propose(now)
        if got is not None:
            assert validate(coord.hedge(snap), got[0]) == []
            solved_at.append(now)
        return got

    def spy_install(plan: Plan, now: float) -> list[object]:
        installed_at.append(now)
        out = install(plan, now)
        assert all(i.time == now for i in out if isinstance(i, Migrate))
        return out  # type: ignore[return-value]

    coord.propose = spy_propose  # type: ignore[method-assign]
    coord.install = spy_install  # type: ignore[method-assign,assignment]
    sim.coordinator = coord
    sim.coordinate_every = 0.5
    row = sim.run().row
    assert row["solves"] == len(solved_at) >= 2
    assert [round(b - a, 9) for a, b in zip(solved_at, installed_at, strict=False)] == [
        2.0] * len(installed_at)
    assert row["solve_time_total"] == pytest.approx(2.0 * row["solves"])
    assert row["lost"] == 0 and row["duplicated"] == 0


def test_wall_time_delay_and_bad_settings() -> None:
    ex = Executor("fifo", agents=[Agent(id="x")])
    c = Coordinator(ex, every=1.0, delay_factor=3.0)
    assert c.delay(0.2) == pytest.approx(0.6)
    assert Coordinator(ex, every=1.0, time_limit=0.7).delay(5.0) == 0.7
    for kw, field in (({"time_limit": 0.0}, "coordinator_budget"),
                      ({"delay_factor": -1.0}, "delay_factor"),
                      ({"pick": "knee"}, "pick"),
                      ({"deadline_margin": 1.0}, "deadline_margin")):
        with pytest.raises(InvalidInputError) as e:
            Coordinator(ex, **kw)  # type: ignore[arg-type]
        assert e.value.field == field
    with pytest.raises(InvalidInputError) as e:
        CoordinatorSettings(solver="simplex")
    assert e.value.field == "coordinator_solver"


@pytest.mark.parametrize("mode", ["batch", "coordinated"])
def test_same_seed_same_run(mode: str) -> None:
    rows = [run_mode(_mixed(tasks=150), mode, "edf", seed=2,
                     weights=SCENARIOS["mixed-fleet"].weights,
                     coord=CoordinatorSettings(every=5.0)).row for _ in range(2)]
    for r in rows:
        for k in VOLATILE:
            r.pop(k)
    assert rows[0] == rows[1]


def test_batch_runs_only_plans_and_coordinated_uses_the_global_view() -> None:
    w = SCENARIOS["mixed-fleet"].weights
    cfg = _mixed(tasks=600, seed=3)
    online = run_mode(cfg, "online", "edf", seed=3, weights=w).row
    coord = run_mode(cfg, "coordinated", "edf", seed=3, weights=w,
                     coord=CoordinatorSettings(every=10.0)).row
    batch = run_mode(cfg, "batch", "edf", seed=3, weights=w,
                     coord=CoordinatorSettings(every=10.0)).row
    for r in (online, coord, batch):
        assert r["lost"] == 0 and r["duplicated"] == 0 and r["completed"] == 600
    assert batch["steals"] == 0 and batch["solves"] > 0 and batch["mode"] == "batch"
    assert coord["mode"] == "coordinated" and coord["policy"] == "edf+plans"
    # The mechanism: plans put work on cheap agents the online policy cannot price.
    assert coord["cost"] < 0.95 * online["cost"]
    assert coord["weighted_objective"] < online["weighted_objective"]
    # Waiting for the next plan is what batch pays for.
    assert batch["miss_rate"] > coord["miss_rate"]


def test_planned_tasks_move_only_when_not_dearer_or_to_rescue_a_deadline() -> None:
    ex = Executor("edf+stealing", agents=[Agent(id="cheap", speed=0.5, cost_rate=0.5),
                                         Agent(id="dear", speed=2.0, cost_rate=8.0)])
    ex.handle(submit("t", work=1.0, deadline=10.0, home="cheap"),
              submit("late", work=1.0, deadline=1.0, home="cheap"))
    t, late = ex.tasks["t"], ex.tasks["late"]
    cheap, dear = ex.agents["cheap"], ex.agents["dear"]
    # Dearer thief: only a task the victim would finish past its deadline.
    assert not plan_allows(t, cheap, dear, 0.0, victim_finish=4.0, thief_finish=0.5)
    assert plan_allows(late, cheap, dear, 0.0, victim_finish=4.0, thief_finish=0.5)
    assert not plan_allows(late, cheap, dear, 0.0, victim_finish=4.0, thief_finish=2.0)
    # A cheaper (or equal) thief may always take planned work.
    assert plan_allows(t, dear, cheap, 0.0, victim_finish=4.0, thief_finish=3.0)


# --------------------------------------------------------------------------- CLI


def test_cli_scenarios_modes_json_and_plot(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["simulate", "--scenarios"])
    assert r.exit_code == 0 and "mixed-fleet" in r.output and "waves" in r.output
    png = tmp_path / "modes.png"
    r = runner.invoke(app, ["simulate", "--scenario", "mixed-fleet", "--agents", "8",
                            "--tasks", "120", "-p", "edf", "--mode", "online", "--mode",
                            "batch", "--mode", "coordinated", "--coordinate-every", "5",
                            "--coordinate-every", "10", "--coordinator-budget", "0.5",
                            "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [(x["mode"], x["interval"]) for x in rows] == [
        ("online", None), ("batch", 5.0), ("batch", 10.0), ("coordinated", 5.0),
        ("coordinated", 10.0)]
    for x in rows:
        assert {"mode", "cost", "weighted_objective", "solves", "solve_time_total"} <= set(x)
    assert rows[0]["solves"] == 0 and rows[1]["solves"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "needle"), [
    (["--scenario", "nope"], "scenario"),
    (["--mode", "hybrid"], "mode"),
    (["--weights", "speed=3"], "weights"),
    (["--weights", "cost=-1"], "weights"),
    (["--coordinator-solver", "simplex", "--mode", "batch"], "coordinator_solver"),
])
def test_cli_bad_options_are_one_line_errors(args: list[str], needle: str) -> None:
    r = CliRunner().invoke(app, ["simulate", "--tasks", "50", "--agents", "3", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("solver", ["auto", "cpsat", "nsga2"])
def test_every_coordinator_solver_runs_warm_and_loses_nothing(solver: str) -> None:
    w = SCENARIOS["mixed-fleet"].weights
    cfg = _mixed(tasks=300, seed=1)
    row = run_mode(cfg, "coordinated", "edf", seed=1, weights=w,
                   coord=CoordinatorSettings(every=10.0, solver=solver, budget=0.2)).row
    assert row["solves"] > 0 and row["lost"] == 0 and row["duplicated"] == 0
    assert row["completed"] == 300
