"""The repair of an initial placement that breaks a hard rule (allocator/roadef/repair.py):
each rule broken on its own and all at once (every process of a1_1 on one machine) ->
a placement that breaks none, searched on from there; a feasible start is left alone;
what no move can fix is a typed error at once; the topology backend and `bench roadef`
on such snapshots."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator import solve, validate
from allocator.cli import app
from allocator.errors import InfeasibleError
from allocator.roadef import repair as repair_mod
from allocator.roadef import solver as solver_mod
from allocator.roadef.convert import instance_to_snapshot
from allocator.roadef.evaluate import evaluate, violations
from allocator.roadef.instance import (
    RoadefInstance,
    read_instance,
    write_assignment,
    write_model,
)
from allocator.roadef.repair import impossible, repair
from allocator.roadef.solver import solve_roadef
from allocator.solvers.context import SolveContext
from models import Agent, Snapshot, Task, Topology, Weights
from tests.roadef_helpers import ROADEF, tiny

A = ROADEF / "A"


def _all_on_one_machine() -> RoadefInstance:
    """a1_1 with its 100 processes on machine 0: capacity, conflict and spread broken."""
    inst = read_instance(A / "model_a1_1.txt", A / "assignment_a1_1.txt")
    return RoadefInstance(**{**inst.__dict__, "name": "zz",
                             "initial": np.zeros(inst.n_processes, dtype=np.int64)})


BROKEN = {
    # two processes of 6 on a machine of 10
    "capacity": tiny(capacity=[[10], [10], [10]], requirement=[[6], [6]], service=[0, 1],
                     initial=[0, 0]),
    # two processes of one service on one machine
    "conflict": tiny(capacity=[[10], [10], [10]], requirement=[[1], [1]], service=[0, 0],
                     initial=[0, 0]),
    # machines 0 and 1 share location 0; the service needs 2 locations
    "spread": tiny(capacity=[[10], [10], [10]], requirement=[[1], [1]], service=[0, 0],
                   initial=[0, 1], location=[0, 0, 1], spread_min=[2]),
    # service 0 (neighbourhood 1) depends on service 1, which sits in neighbourhood 0 only
    "dependency": tiny(capacity=[[10]] * 4, requirement=[[1], [1]], service=[0, 1],
                       initial=[2, 0], neighbourhood=[0, 0, 1, 1],
                       dependencies=[[1], []]),
}


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_each_broken_rule_is_repaired_and_searched_on(rule: str) -> None:
    inst = BROKEN[rule]
    assert {v.rule for v in violations(inst, inst.initial)} == {rule}
    placement, stats = repair(inst, SolveContext(time_limit=5, workers=1, seed=0))
    assert violations(inst, placement) == [] and stats["repair_moved"] >= 1
    res = solve_roadef(inst, time_limit=2, seed=0, iterations=2)
    assert violations(inst, res.assignment) == []
    assert evaluate(inst, res.assignment) == res.cost
    # the result's starting cost is the initial placement's, moves are counted from it
    assert res.initial_cost == evaluate(inst, inst.initial).total
    assert res.moved == int((res.assignment != inst.initial).sum()) >= 1
    assert res.stats["repair_moved"] >= 1


def test_every_process_on_one_machine_is_repaired_fast_and_the_cost_is_exact() -> None:
    inst = _all_on_one_machine()
    assert {v.rule for v in violations(inst, inst.initial)} == {"capacity", "conflict",
                                                                 "spread"}
    t0 = time.perf_counter()
    a, _ = repair(inst, SolveContext(time_limit=10, workers=1, seed=0))
    assert time.perf_counter() - t0 < 3.0
    assert violations(inst, a) == []
    b, _ = repair(inst, SolveContext(time_limit=10, workers=1, seed=0))
    assert np.array_equal(a, b)  # deterministic for a seed
    res = solve_roadef(inst, time_limit=2, seed=0, iterations=2)
    assert violations(inst, res.assignment) == []
    assert evaluate(inst, res.assignment) == res.cost
    assert res.cost.total < res.initial_cost == evaluate(inst, inst.initial).total
    assert res.history[0][2] == "repair"


def test_a_feasible_initial_placement_is_not_repaired(monkeypatch: pytest.MonkeyPatch) -> None:
    inst = read_instance(A / "model_a1_1.txt", A / "assignment_a1_1.txt")
    first = solve_roadef(inst, time_limit=2, seed=4, iterations=2)

    def boom(*args: object, **kwargs: object) -> object:
        raise AssertionError("repair called on a feasible placement")

    monkeypatch.setattr(solver_mod, "repair", boom)
    second = solve_roadef(inst, time_limit=2, seed=4, iterations=2)
    assert np.array_equal(first.assignment, second.assignment)
    assert first.cost == second.cost and first.initial_cost == 49_528_750
    assert not any(k.startswith("repair") for k in second.stats)
    assert impossible(inst) == []


def _transient_over() -> RoadefInstance:
    """Machine 0 holds 8 of transient resource 0 with capacity 6: no move frees it."""
    return tiny(capacity=[[6, 10], [10, 10]], requirement=[[4, 1], [4, 1]], service=[0, 1],
                initial=[0, 0], transient=[True, False])


def test_a_transient_resource_over_capacity_on_an_initial_machine_is_a_typed_error_at_once(
        ) -> None:
    inst = _transient_over()
    t0 = time.perf_counter()
    with pytest.raises(InfeasibleError) as err:
        solve_roadef(inst, time_limit=30, seed=0)
    assert time.perf_counter() - t0 < 1.0  # the budget is not spent
    msg = str(err.value)
    assert "machine 0 transient resource 0: initial usage 8 > capacity 6" in msg
    assert "cannot be freed by moving it" in msg


@pytest.mark.parametrize("case, needle", [
    pytest.param(dict(capacity=[[10]], requirement=[[1], [1]], service=[0, 0], initial=[0, 0]),
                 "2 processes on 1 machines", id="conflict with too few machines"),
    pytest.param(dict(capacity=[[10], [10]], requirement=[[1], [1]], service=[0, 0],
                      initial=[0, 0], location=[0, 0], spread_min=[2]),
                 "spreadMin 2 > 1", id="spread above the locations"),
    pytest.param(dict(capacity=[[10], [10]], requirement=[[12], [1]], service=[0, 1],
                      initial=[0, 0]),
                 "process 0: fits on no machine", id="a process too large"),
])
def test_what_no_placement_can_fix_is_named_up_front(case: dict[str, object],
                                                     needle: str) -> None:
    inst = tiny(**case)  # type: ignore[arg-type]
    assert violations(inst, inst.initial)
    with pytest.raises(InfeasibleError, match=needle):
        repair(inst, SolveContext(time_limit=30, workers=1))


def test_a_repair_that_fails_within_its_share_names_the_rules_still_broken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    inst = BROKEN["capacity"]
    monkeypatch.setattr(repair_mod._Repair, "run", lambda self: self.st.a.copy())
    with pytest.raises(InfeasibleError, match=r"still broken: machine 0 resource 0: usage 12 "
                                              r"> capacity 10"):
        solve_roadef(inst, time_limit=2, seed=0)


def test_the_topology_backend_places_every_task_of_an_all_on_one_machine_snapshot() -> None:
    inst = _all_on_one_machine()
    snap = instance_to_snapshot(inst)
    plan = solve(snap, solver="topology", time_limit=5, seed=0, deterministic=True)
    assert plan.solver == "topology"
    assert not plan.unassigned and len(plan.assignments) == inst.n_processes
    assert validate(snap, plan) == []


def test_the_topology_backend_leaves_out_tasks_with_a_reason_when_it_cannot_repair() -> None:
    agents = [Agent(id="m0", capacity={"cpu": 6, "mem": 10}),
              Agent(id="m1", capacity={"cpu": 10, "mem": 10})]
    tasks = [Task(id=f"t{i}", current_agent="m0", demand={"cpu": 4, "mem": 1},
                  migration_cost=1) for i in range(2)]
    snap = Snapshot(agents=agents, tasks=tasks, weights=Weights(cost=0, migrations=1),
                    topology=Topology(transient=["cpu"], load_cost={"cpu": 1}))
    plan = solve(snap, solver="topology", time_limit=5, seed=0, deterministic=True)
    assert validate(snap, plan) == []
    assert plan.unassigned and all(u.reason for u in plan.unassigned)
    assert "not repaired" in (plan.message or "")


def test_bench_roadef_repairs_and_one_impossible_instance_loses_no_other_row(
        tmp_path: Path) -> None:
    for name, inst in (("zz", _all_on_one_machine()), ("bad", _transient_over())):
        write_model(tmp_path / f"model_{name}.txt", inst)
        write_assignment(tmp_path / f"assignment_{name}.txt", inst.initial)
    r = CliRunner().invoke(app, ["bench", "roadef", str(tmp_path / "model_bad.txt"),
                                 str(tmp_path / "model_zz.txt"), "--time-limit", "1",
                                 "--iterations", "2", "--json"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert any(line.startswith("error: ") and "model_bad.txt" in line
               and "transient resource 0" in line for line in lines)
    row = json.loads(next(line for line in lines if line.startswith("{")))
    assert row["instance"] == "zz" and row["valid"] is True and row["moved"] > 0
    assert row["objective"] < row["original_cost"]
