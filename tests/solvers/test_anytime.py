"""Generated GAP instances, the Lagrangian bound and the anytime construction of `auto`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator import solve, validate
from allocator.bounds import lp_relaxation
from allocator.cli import app
from allocator.errors import InvalidInputError
from allocator.io import gap_to_snapshot, read_gap
from allocator.io.gapgen import GAP_TYPES, generate_gap, write_gap
from allocator.problem import compile_snapshot
from allocator.solvers.auto import separable_bound
from allocator.solvers.lagrange import Lagrangian, lagrangian
from allocator.solvers.linear import build_linear

runner = CliRunner()


@pytest.mark.parametrize("kind", GAP_TYPES)
def test_generator_follows_the_type_rules_and_round_trips(kind: str, tmp_path: Path) -> None:
    inst = generate_gap(kind, 6, 40, seed=3)
    assert inst.cost.shape == inst.resource.shape == (6, 40)
    a, c, b = inst.resource, inst.cost, inst.capacity
    if kind in "abc":
        assert a.min() >= 5 and a.max() <= 25 and c.min() >= 10 and c.max() <= 50
    if kind == "d":
        assert a.min() >= 1 and a.max() <= 100
        assert np.all(np.abs(c - (111 - a)) <= 10)
    if kind == "e":
        assert a.min() >= 1
        # Cheap means heavy: cost falls as the resource use grows.
        assert np.corrcoef(a.ravel(), c.ravel())[0, 1] < -0.3
    if kind in "cde":
        assert np.array_equal(b, np.floor(0.8 * a.sum(axis=1) / 6).astype(np.int64))
    path = tmp_path / "g.txt"
    write_gap(path, inst)
    back = read_gap(path)[0]
    assert np.array_equal(back.cost, c) and np.array_equal(back.resource, a)
    assert np.array_equal(back.capacity, b)
    again = generate_gap(kind, 6, 40, seed=3)
    assert np.array_equal(again.cost, c)  # same seed, same instance
    assert not np.array_equal(generate_gap(kind, 6, 40, seed=4).resource, a)


def test_generator_rejects_bad_input_naming_the_field() -> None:
    with pytest.raises(InvalidInputError) as e:
        generate_gap("f", 2, 3)
    assert e.value.field == "type"
    with pytest.raises(InvalidInputError) as e:
        generate_gap("e", 0, 3)
    assert e.value.field == "agents"


def test_gen_gap_cli_writes_a_file_bench_gap_reads(tmp_path: Path) -> None:
    out = tmp_path / "e.txt"
    r = runner.invoke(app, ["gen", "gap", "--type", "e", "--agents", "5", "--tasks", "30",
                            "--seed", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert read_gap(out)[0].m == 5
    r = runner.invoke(app, ["bench", "gap", str(out), "--time-limit", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("objective", "unassigned", "bound_gap_pct", "valid"):
        assert key in row
    assert row["valid"] and row["unassigned"] == 0
    r = runner.invoke(app, ["gen", "gap", "--type", "x", "--agents", "5", "--tasks", "30",
                            "-o", str(out)])
    assert r.exit_code == 2 and "type" in r.output


@pytest.mark.parametrize(("kind", "seed"), [("c", 11), ("d", 12), ("e", 13), ("e", 14)])
def test_lagrangian_bound_is_valid_and_tight(kind: str, seed: int) -> None:
    inst = generate_gap(kind, 8, 80, seed=seed)
    problem = compile_snapshot(gap_to_snapshot(inst))
    lm = build_linear(problem)
    lp = lp_relaxation(problem, lm)
    assert lp is not None
    res = lagrangian(lm, max_iter=300)
    assert res.bound <= lp.bound + 1e-6 * abs(lp.bound)  # L(lam) <= LP for every lam
    assert res.bound >= lp.bound * (1 - 2e-3)  # and reaches it closely
    assert res.agent_of is not None and lm.feasible(res.agent_of)
    assert res.objective >= lp.bound - 1e-6 * abs(lp.bound)


def test_feasibility_first_places_every_task_on_type_e() -> None:
    # Cost-first greedies leave tasks out here (cheap means heavy, tight capacity).
    inst = generate_gap("e", 20, 400, seed=21)
    problem = compile_snapshot(gap_to_snapshot(inst))
    lm = build_linear(problem)
    x = Lagrangian(lm).feasibility_first()
    assert lm.feasible(x) and not np.any(x < 0)


@pytest.mark.parametrize(("kind", "seed"), [("c", 1), ("e", 3)])
def test_lagrangian_first_incumbent_places_every_task(kind: str, seed: int) -> None:
    # On these instances the regret greedy on the uniform-start prices leaves
    # tasks out; the heuristic falls back to repairing the relaxed plan, so
    # the very first Lagrangian incumbent (the 1 s budget's plan at 80 x 1600)
    # is complete.
    lm = build_linear(compile_snapshot(gap_to_snapshot(generate_gap(kind, 20, 400, seed))))
    lg = Lagrangian(lm)
    lam = lg.uniform_start()
    adj = lg.adjusted(lam)
    assert np.any(lg.insert(adj, lg.greedy(adj)) < 0)
    x = lg.heuristic(lam, 1.0)
    assert lm.feasible(x) and not np.any(x < 0)
    first = lagrangian(lm, max_iter=1)
    assert first.agent_of is not None and not np.any(first.agent_of < 0)


@pytest.mark.parametrize("kind", ["c", "d", "e"])
def test_auto_short_budget_places_everything(kind: str) -> None:
    inst = generate_gap(kind, 20, 400, seed=31)
    snap = gap_to_snapshot(inst, time_limit=1.0)
    plan = solve(snap, solver="auto")
    assert validate(snap, plan) == []
    assert plan.unassigned == []
    assert plan.bound is not None and plan.objective is not None
    assert plan.bound <= plan.objective


@pytest.mark.parametrize("kind", ["c", "d", "e"])
def test_separable_bound_is_a_lower_bound_and_tight_without_capacities(kind: str) -> None:
    # The bound a plan keeps when its search got no CPU for the Lagrangian (a starved
    # machine): below the LP bound, and exact when no capacity binds.
    snap = gap_to_snapshot(generate_gap(kind, 5, 40, seed=3), time_limit=2.0)
    lm = build_linear(compile_snapshot(snap))
    lp = lp_relaxation(compile_snapshot(snap))
    sb = separable_bound(lm)
    assert sb is not None and lp is not None and sb <= lp.bound + 1e-6
    loose = snap.model_copy(update={"agents": [
        a.model_copy(update={"capacity": {k: v * 1000 for k, v in a.capacity.items()}})
        for a in snap.agents]})
    lm2 = build_linear(compile_snapshot(loose))
    plan = solve(loose, solver="auto")
    assert validate(loose, plan) == [] and plan.objective is not None
    assert separable_bound(lm2) == pytest.approx(plan.objective)


@pytest.mark.parametrize("kind", ["d", "e"])
def test_auto_deterministic_construction_is_near_the_lp_bound(kind: str) -> None:
    # workers=1: the construction runs by iteration / pass counts, not the
    # clock, so the quality asserted here does not depend on the machine's load.
    inst = generate_gap(kind, 20, 400, seed=32)
    snap = gap_to_snapshot(inst, time_limit=1.0)
    snap = snap.model_copy(update={"options": snap.options.model_copy(update={"workers": 1})})
    plan = solve(snap, solver="auto")
    assert validate(snap, plan) == [] and plan.unassigned == []
    lp = lp_relaxation(compile_snapshot(snap))
    assert lp is not None and plan.objective is not None and plan.bound is not None
    assert plan.objective <= lp.bound * 1.02
    # The bound: the Lagrangian's (close to the LP's) or HiGHS's dual bound (above it).
    assert lp.bound * (1 - 1e-3) <= plan.bound <= plan.objective


def test_bench_anytime_json_rows_with_concurrent_solves() -> None:
    r = runner.invoke(app, ["bench", "anytime", "--types", "e", "--sizes", "4x30", "--seeds",
                            "1", "--budgets", "0.3", "--solver", "auto", "--concurrent", "2",
                            "--concurrent-budget", "0.3", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [row["mode"] for row in rows] == ["0.3s", "0.3s x2", "0.3s x2"]
    for row in rows:
        for key in ("objective", "unassigned", "bound_gap_pct", "lp_gap_pct", "valid"):
            assert key in row
        assert row["valid"] and row["unassigned"] == 0 and row["lp_gap_pct"] >= -1e-6
