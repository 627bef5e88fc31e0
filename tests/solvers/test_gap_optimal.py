"""CP-SAT proves the optimum of OR-Library gap1-gap12 problems, min and max (every problem
of gap1-gap6, the first two of gap7-gap12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocator import solve, validate
from allocator.io import gap_to_snapshot, read_gap
from allocator.io.gap import read_best_known
from models import PlanStatus
from tests.conftest import DATA

BEST = read_best_known(DATA / "gap/best_known.csv")
FILES = [DATA / f"gap/orlib/gap{k}.txt" for k in range(1, 13)]


def test_loader_reads_all_problems() -> None:
    for f in FILES:
        problems = read_gap(f)
        assert len(problems) == 5
        assert all((p.name, "min") in BEST and (p.name, "max") in BEST for p in problems)
    one = read_gap(DATA / "gap/chu-yagiura/c10100")
    assert len(one) == 1 and one[0].m == 10 and one[0].n == 100


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_cpsat_reaches_proven_optimum(path: Path, sense: str) -> None:
    problems = read_gap(path)
    # gap7-gap12's proofs take 1-2 s each: two of their five problems keep the suite short
    for inst in problems if int(path.stem[3:]) <= 6 else problems[:2]:
        snap = gap_to_snapshot(inst, sense=sense, time_limit=60, solver="cpsat")
        plan = solve(snap)
        assert validate(snap, plan) == []
        assert plan.status == PlanStatus.OPTIMAL, inst.name
        assert not plan.unassigned
        total = sum(inst.cost[int(a.agent.split("-")[1]), int(a.task.split("-")[1])]
                    for a in plan.assignments)
        assert total == BEST[inst.name, sense][0], inst.name
