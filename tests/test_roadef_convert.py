"""ROADEF instance <-> Snapshot with topology: the plan objective equals the challenge's
cost term by term on every set-A instance, the validator agrees with the challenge's
rules, and an instance survives the round trip through a snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator import compile_snapshot, validate
from allocator.errors import UnsupportedError
from allocator.roadef.convert import (
    instance_to_snapshot,
    resource_names,
    snapshot_to_instance,
    unsupported_reason,
)
from allocator.roadef.evaluate import evaluate, is_valid
from allocator.roadef.instance import read_instance
from allocator.solvers.base import Budget, make_plan
from models import Agent, Group, PlanStatus, Snapshot, Task, Topology
from tests.roadef_helpers import ROADEF, SET_A

FILES = ROADEF / "A"


def load(name: str):  # type: ignore[no-untyped-def]
    return read_instance(FILES / f"model_{name}.txt", FILES / f"assignment_{name}.txt")


def random_moves(inst, rng: np.random.Generator, tries: int):  # type: ignore[no-untyped-def]
    """A valid placement some moves away from the initial one (checked by the evaluator)."""
    a = inst.initial.copy()
    for _ in range(tries):
        j = int(rng.integers(inst.n_processes))
        old = a[j]
        a[j] = int(rng.integers(inst.n_machines))
        if not is_valid(inst, a):
            a[j] = old
    return a


@pytest.mark.parametrize("name", SET_A)
def test_plan_objective_is_the_challenge_cost(name: str) -> None:
    inst = load(name)
    snap = instance_to_snapshot(inst)
    p = compile_snapshot(snap)
    rng = np.random.default_rng(0)
    for a in (inst.initial, random_moves(inst, rng, 60)):
        plan = make_plan(p, a, solver="hand", status=PlanStatus.FEASIBLE, budget=Budget(1.0))
        assert plan.agent_of() == {f"p{j}": f"m{i}" for j, i in enumerate(a.tolist())}
        assert validate(snap, plan) == []
        cost = evaluate(inst, a)
        terms = {t.name: t.weighted for t in plan.breakdown}
        assert terms["safety"] == cost.load
        assert terms["balance"] == cost.balance
        assert terms["migrations"] == cost.process_move
        assert terms["group_moves"] == cost.service_move
        assert terms["agent_moves"] == cost.machine_move
        assert plan.objective == cost.total
    original = int((FILES / f"original_cost_{name}.txt").read_text().split()[0])
    assert evaluate(inst, inst.initial).total == original


@pytest.mark.parametrize("name", ["a1_1", "a1_2", "a2_1"])
def test_validator_agrees_with_the_challenge_rules(name: str) -> None:
    inst = load(name)
    snap = instance_to_snapshot(inst)
    p = compile_snapshot(snap)
    rng = np.random.default_rng(1)
    checked = {True: 0, False: 0}
    from allocator.constraints import violations
    from allocator.objectives import Schedule

    for q in range(60):
        a = inst.initial.copy()
        k = 1 + q % 2
        moved = rng.choice(inst.n_processes, size=k, replace=False)
        a[moved] = rng.integers(inst.n_machines, size=k)
        ok = is_valid(inst, a)
        broken = violations(p, Schedule(a, np.zeros(p.n), np.zeros(p.n)))
        # Capacity, conflict, spread, dependency, transient: the same verdict.
        assert (set(broken) - {"concurrency"} == set()) is ok, (broken, ok)
        checked[ok] += 1
    assert checked[True] and checked[False]


@pytest.mark.parametrize("name", SET_A)
def test_instance_round_trip(name: str) -> None:
    inst = load(name)
    back = snapshot_to_instance(instance_to_snapshot(inst))
    for f in ("transient", "load_weight", "capacity", "safety", "machine_move_cost",
              "service", "requirement", "process_move_cost", "initial"):
        assert np.array_equal(getattr(back, f), getattr(inst, f)), f
    # Locations and neighbourhoods come back renumbered, as the same partition.
    for f in ("location", "neighbourhood"):
        mine, theirs = getattr(back, f), getattr(inst, f)
        assert np.array_equal(mine[:, None] == mine[None, :], theirs[:, None] == theirs[None, :])
    sizes = np.bincount(inst.service, minlength=inst.n_services)
    assert np.array_equal(back.spread_min, np.minimum(inst.spread_min, sizes))
    assert back.dependencies == inst.dependencies
    assert back.balances == inst.balances
    assert (back.weight_process_move, back.weight_service_move, back.weight_machine_move) == (
        inst.weight_process_move, inst.weight_service_move, inst.weight_machine_move)


def test_move_costs_are_per_zone_when_they_can_be() -> None:
    snap = instance_to_snapshot(load("a2_1"))
    assert snap.topology is not None
    per_zone = bool(snap.topology.zone_move_costs)
    per_agent = any(a.move_costs for a in snap.agents)
    assert per_zone != per_agent or not (per_zone or per_agent)
    assert resource_names(12)[:3] == ["r00", "r01", "r02"]
    assert sorted(resource_names(12)) == resource_names(12)


@pytest.mark.parametrize("change,field", [
    pytest.param({"tasks": [Task(id="t", demand={"cpu": 1})]}, "current_agent", id="no home"),
    pytest.param({"tasks": [Task(id="t", demand={"cpu": 1.5}, current_agent="a")]},
                 "integers", id="fractional demand"),
    pytest.param({"tasks": [Task(id="t", current_agent="a", skills=["x"])]}, "skills",
                 id="skills"),
    pytest.param({"tasks": [Task(id=f"t{k}", group="g", current_agent="a") for k in range(2)],
                  "topology": Topology(groups=[Group(id="g")])}, "anti_affinity",
                 id="group without anti-affinity"),
])
def test_snapshots_the_model_cannot_express_are_refused(change: dict, field: str) -> None:
    base = {"agents": [Agent(id="a", capacity={"cpu": 4}), Agent(id="b", capacity={"cpu": 4})]}
    snap = Snapshot(**(base | change))
    reason = unsupported_reason(snap)
    assert reason is not None and field in reason
    with pytest.raises(UnsupportedError):
        snapshot_to_instance(snap)


def test_cli_convert_roadef(tmp_path: Path) -> None:
    from allocator.cli import app
    from allocator.io import read_snapshot

    out = tmp_path / "a1_1.json"
    r = CliRunner().invoke(app, ["convert", "roadef", str(FILES / "model_a1_1.txt"),
                                 str(FILES / "assignment_a1_1.txt"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    snap = read_snapshot(out)
    assert len(snap.agents) == 4 and len(snap.tasks) == 100
    assert json.loads(out.read_text())["topology"]["groups"]
    r = CliRunner().invoke(app, ["convert", "roadef", str(tmp_path / "missing.txt"),
                                 str(FILES / "assignment_a1_1.txt"), "-o", str(out)])
    assert r.exit_code == 2 and "missing.txt" in r.output


@pytest.mark.parametrize("name", ["a1_1", "a2_1"])
def test_convert_solve_write_evaluate(name: str, tmp_path: Path) -> None:
    """convert -> solve (topology backend) -> write the assignment -> the challenge's
    evaluator: valid, never worse than the initial placement, and the plan's objective
    is the evaluator's cost."""
    from allocator import solve
    from allocator.roadef.convert import plan_assignment
    from allocator.roadef.instance import read_assignment, write_assignment

    inst = load(name)
    snap = instance_to_snapshot(inst)
    plan = solve(snap, solver="topology", time_limit=2, seed=0, deterministic=True)
    assert validate(snap, plan) == [] and not plan.unassigned
    out = tmp_path / f"solution_{name}.txt"
    write_assignment(out, plan_assignment(compile_snapshot(snap), plan))
    back = read_assignment(out, inst.n_processes, inst.n_machines)
    assert is_valid(inst, back)
    cost = evaluate(inst, back)
    assert plan.objective == cost.total
    assert cost.total <= evaluate(inst, inst.initial).total
    assert len(plan.migrations) == int((back != inst.initial).sum())
