"""Every hard constraint, where it bites and where it does not (constraint-verifier style).

Two tables:

* the checks of :mod:`allocator.constraints` on hand-written plans: each
  marks exactly the offending tasks / agents, and the independent validator
  reports the same rule;
* every backend on small snapshots built so the objective pulls towards
  breaking one rule ("bites") or the rule is slack ("slack"): the plan keeps
  every rule (checks and validator), and where the rule is slack the
  cost-aware backends take what the rule would have forbidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from allocator import compile_snapshot, solve, validate
from allocator.constraints import (
    HARD_CONSTRAINTS,
    assignment_feasible,
    enforce,
    violations,
)
from allocator.objectives import Schedule
from allocator.solvers.base import assignment_from_plan
from models import Agent, Assignment, Plan, PlanStatus, Snapshot, SolveOptions, Task, Weights

BACKENDS = ["greedy", "balance", "cpsat", "milp", "auto", "nsga2"]
#: Backends that do not read costs (the structure-aware balancer minimises makespan only).
COST_BLIND = {"balance"}


def two_agents(**over: dict) -> list[Agent]:
    """A cheap and a dear agent; `over` patches either by id."""
    base = {
        "cheap": dict(id="cheap", capacity={"slots": 10}, cost_rate=0.1),
        "dear": dict(id="dear", capacity={"slots": 10}, cost_rate=5.0),
    }
    for k, v in over.items():
        base[k].update(v)
    return [Agent(**v) for v in base.values()]  # type: ignore[arg-type]


def snap(agents: list[Agent], tasks: list[Task], **kw: object) -> Snapshot:
    return Snapshot(agents=agents, tasks=tasks,
                    weights=kw.pop("weights", Weights(cost=1, makespan=0.01)),  # type: ignore[arg-type]
                    **kw)  # type: ignore[arg-type]


def tasks(k: int, **kw: object) -> list[Task]:
    return [Task(id=f"t{q}", work=kw.pop("work", 1.0), demand={"slots": 1}, **kw)  # type: ignore[arg-type]
            for q in range(k)]


def on(plan: Plan, agent: str) -> int:
    return sum(a.agent == agent for a in plan.assignments)


def schedule_of(snapshot: Snapshot, plan: Plan) -> Schedule:
    """The plan's own rows as arrays (not rebuilt by the list scheduler)."""
    p = compile_snapshot(snapshot)
    agent_of = np.full(p.n, -1, dtype=np.int64)
    start = np.full(p.n, np.nan)
    end = np.full(p.n, np.nan)
    for a in plan.assignments:
        j = p.task_index[a.task]
        agent_of[j], start[j], end[j] = p.agent_index[a.agent], a.start, a.end
    return Schedule(agent_of, start, end)


# ---------------------------------------------------------------------------
# The checks on hand-written plans


def _plan(*rows: tuple[str, str, float, float]) -> Plan:
    return Plan(status=PlanStatus.FEASIBLE, solver="hand",
                assignments=[Assignment(task=t, agent=a, start=s, end=e) for t, a, s, e in rows])


@dataclass
class CheckCase:
    snapshot: Snapshot
    plan: Plan
    broken: dict[str, list[str]]  # constraint -> offending ids
    kinds: set[str]  # validator kinds expected


CHECKS = [
    pytest.param(CheckCase(
        snap(two_agents(cheap={"skills": []}), [Task(id="g", skills=["gpu"])],
             ),
        _plan(("g", "cheap", 0, 1)), {"eligibility": ["g"]}, {"skill"}),
        id="eligibility bites: missing skill"),
    pytest.param(CheckCase(
        snap(two_agents(cheap={"status": "down"}), [Task(id="t")]),
        _plan(("t", "cheap", 0, 1)), {"eligibility": ["t"]}, {"agent_not_up"}),
        id="eligibility bites: agent down"),
    pytest.param(CheckCase(
        snap(two_agents(), [Task(id="t", forbidden_agents=["dear"])]),
        _plan(("t", "cheap", 0, 1)), {}, set()),
        id="eligibility slack: forbidden elsewhere"),
    pytest.param(CheckCase(
        snap(two_agents(cheap={"capacity": {"slots": 1}}), tasks(2)),
        _plan(("t0", "cheap", 0, 1), ("t1", "cheap", 1, 2)), {"capacity": ["cheap"]},
        {"capacity"}),
        id="capacity bites"),
    pytest.param(CheckCase(
        snap(two_agents(cheap={"capacity": {"slots": 0.3}}),
             [Task(id="a", demand={"slots": 0.1}), Task(id="b", demand={"slots": 0.2})]),
        _plan(("a", "cheap", 0, 1), ("b", "cheap", 1, 2)), {}, set()),
        id="capacity slack: 0.1 + 0.2 fits 0.3"),
    pytest.param(CheckCase(
        snap(two_agents(), [Task(id="r", release=5)]),
        _plan(("r", "cheap", 4, 5)), {"release": ["r"]}, {"starts_early"}),
        id="release bites"),
    pytest.param(CheckCase(
        snap(two_agents(), [Task(id="r", release=5)]),
        _plan(("r", "cheap", 5, 6)), {}, set()),
        id="release slack"),
    pytest.param(CheckCase(
        snap(two_agents(), [Task(id="d", deadline=3, hard_deadline=True, work=2)]),
        _plan(("d", "cheap", 2, 4)), {"hard_deadline": ["d"]}, {"hard_deadline"}),
        id="hard deadline bites"),
    pytest.param(CheckCase(
        snap(two_agents(), [Task(id="d", deadline=3, work=2)]),
        _plan(("d", "cheap", 2, 4)), {}, set()),
        id="soft deadline is not a hard constraint"),
    pytest.param(CheckCase(
        snap(two_agents(), tasks(2)),
        _plan(("t0", "cheap", 0, 1), ("t1", "cheap", 0.5, 1.5)), {"concurrency": ["cheap"]},
        {"overlap"}),
        id="concurrency bites"),
    pytest.param(CheckCase(
        snap(two_agents(cheap={"concurrency": 2}), tasks(2)),
        _plan(("t0", "cheap", 0, 1), ("t1", "cheap", 0.5, 1.5)), {}, set()),
        id="concurrency slack: two lanes"),
    pytest.param(CheckCase(
        snap(two_agents(), tasks(2)),
        _plan(("t0", "cheap", 0, 1), ("t1", "cheap", 1, 2)), {}, set()),
        id="concurrency slack: back to back"),
    pytest.param(CheckCase(
        snap(two_agents(), tasks(3, current_agent="dear"), options=SolveOptions(max_migrations=1)),
        _plan(("t0", "cheap", 0, 1), ("t1", "cheap", 1, 2), ("t2", "dear", 0, 1)),
        {"max_migrations": ["t0", "t1"]}, {"max_migrations"}),
        id="max_migrations bites"),
    pytest.param(CheckCase(
        snap(two_agents(), tasks(3, current_agent="dear"), options=SolveOptions(max_migrations=2)),
        _plan(("t0", "cheap", 0, 1), ("t1", "cheap", 1, 2), ("t2", "dear", 0, 1)), {}, set()),
        id="max_migrations slack: at the cap"),
    pytest.param(CheckCase(
        snap(two_agents(), tasks(3, current_agent="dear"), options=SolveOptions(max_migrations=0)),
        _plan(("t0", "dear", 0, 1)), {}, set()),
        id="max_migrations slack: leaving tasks out is not a migration"),
]


@pytest.mark.parametrize("case", CHECKS)
def test_checks_mark_exactly_the_offenders(case: CheckCase) -> None:
    problem = compile_snapshot(case.snapshot)
    assert violations(problem, schedule_of(case.snapshot, case.plan)) == case.broken
    # The plans list only some tasks: the validator's completeness kinds are not the point.
    kinds = {v.kind for v in validate(case.snapshot, case.plan)} - {"missing_task"}
    assert kinds == case.kinds


def test_one_list_names_every_rule() -> None:
    assert [c.name for c in HARD_CONSTRAINTS] == [
        "eligibility", "capacity", "release", "hard_deadline", "concurrency", "max_migrations",
        "anti_affinity", "spread", "dependency", "transient"]


# ---------------------------------------------------------------------------
# Every backend, where each rule bites and where it is slack


@dataclass
class BackendCase:
    snapshot: Snapshot
    #: What the plan must show beyond validity (cost-aware backends only when `preference`).
    expect: Callable[[Plan], bool]
    preference: bool = False


def _hard_deadline_pair(deadline: float) -> Snapshot:
    # The cheap agent runs one task at a time: both tasks end by 2 only if one goes to dear.
    ts = [Task(id=f"t{q}", work=2, deadline=deadline, hard_deadline=True, demand={"slots": 1})
          for q in range(2)]
    return snap(two_agents(), ts)


CASES = [
    pytest.param(BackendCase(
        snap(two_agents(dear={"skills": ["gpu"]}), [Task(id="g", skills=["gpu"])]),
        lambda p: p.agent_of() == {"g": "dear"}), id="eligibility bites"),
    pytest.param(BackendCase(
        snap(two_agents(dear={"skills": ["gpu"]}), [Task(id="g")]),
        lambda p: p.agent_of() == {"g": "cheap"}, preference=True), id="eligibility slack"),
    pytest.param(BackendCase(
        snap(two_agents(cheap={"capacity": {"slots": 2}}), tasks(3)),
        lambda p: on(p, "cheap") <= 2 and len(p.assignments) == 3), id="capacity bites"),
    pytest.param(BackendCase(
        snap(two_agents(cheap={"capacity": {"slots": 3}}), tasks(3)),
        lambda p: on(p, "cheap") == 3, preference=True), id="capacity slack"),
    pytest.param(BackendCase(
        snap(two_agents(), [Task(id="r", release=5, demand={"slots": 1})]),
        lambda p: p.assignments[0].start == pytest.approx(5.0)), id="release bites"),
    pytest.param(BackendCase(
        snap(two_agents(), [Task(id="r", release=0, demand={"slots": 1})]),
        lambda p: p.assignments[0].start == pytest.approx(0.0)), id="release slack"),
    pytest.param(BackendCase(
        _hard_deadline_pair(2.0),
        lambda p: on(p, "cheap") == 1 and on(p, "dear") == 1), id="hard deadline bites"),
    pytest.param(BackendCase(
        _hard_deadline_pair(4.0),
        lambda p: on(p, "cheap") == 2, preference=True), id="hard deadline slack"),
    pytest.param(BackendCase(
        snap(two_agents(dear={"status": "down"}), tasks(2)),
        lambda p: sorted(a.start for a in p.assignments) == pytest.approx([0.0, 1.0])),
        id="concurrency bites"),
    pytest.param(BackendCase(
        snap(two_agents(cheap={"concurrency": 2}, dear={"status": "down"}), tasks(2)),
        lambda p: sorted(a.start for a in p.assignments) == pytest.approx([0.0, 0.0])),
        id="concurrency slack"),
    pytest.param(BackendCase(
        snap(two_agents(), tasks(3, current_agent="dear"), options=SolveOptions(max_migrations=1),
             weights=Weights(cost=1, makespan=0.01, migrations=0)),
        lambda p: len(p.migrations) <= 1 and len(p.assignments) == 3), id="max_migrations bites"),
    pytest.param(BackendCase(
        snap(two_agents(), tasks(3, current_agent="dear"), options=SolveOptions(max_migrations=0),
             weights=Weights(cost=1, makespan=0.01, migrations=0)),
        lambda p: p.migrations == [] and on(p, "dear") == 3), id="max_migrations bites at 0"),
    pytest.param(BackendCase(
        snap(two_agents(), tasks(3, current_agent="dear"), options=SolveOptions(max_migrations=3),
             weights=Weights(cost=1, makespan=0.01, migrations=0)),
        lambda p: len(p.migrations) == 3, preference=True), id="max_migrations slack"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_backend_keeps_the_rule(backend: str, case: BackendCase) -> None:
    plan = solve(case.snapshot, solver=backend, time_limit=1.0, seed=0)
    assert validate(case.snapshot, plan) == [], plan
    problem = compile_snapshot(case.snapshot)
    assert violations(problem, schedule_of(case.snapshot, plan)) == {}
    if case.preference and backend in COST_BLIND:
        return
    assert case.expect(plan), (backend, plan.agent_of(), plan.assignments)


# ---------------------------------------------------------------------------
# The shared repair


def _random_snapshot(rng: np.random.Generator) -> Snapshot:
    m, n = 3, 12
    agents = [Agent(id=f"a{i}", capacity={"slots": float(rng.integers(2, 6))},
                    concurrency=int(rng.integers(1, 3)), speed=float(rng.uniform(0.5, 2)),
                    status="down" if i == 2 and rng.random() < 0.3 else "up")
              for i in range(m)]
    ts = []
    for j in range(n):
        hard = bool(rng.random() < 0.4)
        ts.append(Task(id=f"t{j}", work=float(rng.integers(1, 5)),
                       release=float(rng.integers(0, 3)),
                       deadline=float(rng.integers(3, 12)) if hard else None,
                       hard_deadline=hard, demand={"slots": 1},
                       current_agent=f"a{int(rng.integers(0, m))}" if rng.random() < 0.5
                       else None))
    return Snapshot(agents=agents, tasks=ts,
                    options=SolveOptions(max_migrations=int(rng.integers(0, 3))))


@pytest.mark.parametrize("seed", range(25))
def test_enforce_makes_any_assignment_feasible(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = _random_snapshot(rng)
    p = compile_snapshot(s)
    raw = rng.integers(-1, p.m, size=p.n)
    fixed = enforce(p, raw)
    assert assignment_feasible(p, fixed)
    assert enforce(p, fixed).tolist() == fixed.tolist()  # feasible in, unchanged out
    # Through the plan builder the validator agrees.
    from allocator.solvers.base import Budget, make_plan

    plan = make_plan(p, raw, solver="hand", status=PlanStatus.FEASIBLE, budget=Budget(1.0))
    assert validate(s, plan) == []
    assert assignment_from_plan(p, plan).agent_of.tolist() == fixed.tolist()


# ---------------------------------------------------------------------------
# Through the CLI


def test_cli_validate_fails_a_plan_over_the_migration_cap(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from allocator.cli import app

    capped = snap(two_agents(), tasks(3, current_agent="dear"),
                  options=SolveOptions(max_migrations=1),
                  weights=Weights(cost=1, makespan=0.01, migrations=0))
    snap_file = tmp_path / "snap.json"
    snap_file.write_text(capped.model_dump_json())
    free = capped.model_copy(update={"options": SolveOptions(max_migrations=None)})
    over = solve(free, solver="cpsat", time_limit=2)
    assert len(over.migrations) == 3  # without the cap every task moves to the cheap agent
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(over.model_dump_json())
    runner = CliRunner()
    r = runner.invoke(app, ["validate", str(snap_file), str(plan_file)])
    assert r.exit_code == 1, r.output
    assert "max_migrations" in r.output
    ok = solve(capped, solver="greedy")
    plan_file.write_text(ok.model_dump_json())
    r = runner.invoke(app, ["validate", str(snap_file), str(plan_file)])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("objectives", ["cost,makespan", "cost,makespan,imbalance"])
def test_cli_pareto_priorities_every_point_valid(objectives: str) -> None:
    """The example with a hard deadline (critical-01 by 8): every point and the knee are valid."""
    import json

    from typer.testing import CliRunner

    from allocator.cli import app
    from tests.conftest import EXAMPLES

    r = CliRunner().invoke(app, ["pareto", str(EXAMPLES / "priorities.json"), "--objectives",
                                 objectives, "--time-limit", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["valid"] and out["points"] and all(p["valid"] for p in out["points"])


# ---------------------------------------------------------------------------
# The shared CP-SAT core and the model decision


def test_needs_schedule_lives_on_the_problem_so_linear_does_not_import_cpsat() -> None:
    import ast

    import allocator.bounds
    import allocator.solvers.linear

    for mod in (allocator.solvers.linear, allocator.bounds):
        tree = ast.parse(Path(str(mod.__file__)).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "allocator.solvers.cpsat" not in imported, f"{mod.__name__}: the cycle is back"
    timed = compile_snapshot(_hard_deadline_pair(2.0))
    untimed = compile_snapshot(snap(two_agents(), tasks(2)))
    assert timed.needs_schedule and not untimed.needs_schedule


@pytest.mark.parametrize("values,factor,exact", [
    pytest.param([1, 2, 3], 1.0, True, id="integers"),
    pytest.param([0.5, 0.25], 100.0, True, id="two decimals"),
    pytest.param([1 / 3, 5 / 3, 0.5], 6.0, True, id="thirds and halves: a composite factor"),
    pytest.param([1 / 137], None, False, id="no power of ten or composite: flagged inexact"),
    pytest.param([1e12, 0.5], None, False, id="would exceed the limit: flagged inexact"),
])
def test_int_scale_flags_inexact_scaling(values: list[float], factor: float | None,
                                        exact: bool) -> None:
    from allocator.solvers.cp_core import int_scale

    sc = int_scale(np.array(values), 1e12)
    assert sc.exact is exact
    if factor is not None:
        assert sc.factor == factor


def test_cp_core_caps_placements_away_from_home_only() -> None:
    from ortools.sat.python import cp_model

    from allocator.solvers.cp_core import build_core

    s = snap(two_agents(), tasks(3, current_agent="dear"), options=SolveOptions(max_migrations=1))
    core = build_core(compile_snapshot(s))
    # Everything on the cheap agent would be 3 migrations: infeasible under the cap.
    core.model.add(sum(core.x[0, j] for j in range(3)) == 3)
    assert cp_model.CpSolver().solve(core.model) == cp_model.INFEASIBLE
    # Leaving all three out is not a migration: feasible.
    core = build_core(compile_snapshot(s))
    core.model.add(sum(core.u) == 3)
    assert cp_model.CpSolver().solve(core.model) == cp_model.OPTIMAL
