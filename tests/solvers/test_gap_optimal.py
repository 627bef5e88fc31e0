"""CP-SAT proves the optimum of every OR-Library gap1-gap12 problem, min and max."""

from __future__ import annotations

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
def test_cpsat_reaches_proven_optimum(path: object, sense: str) -> None:
    for inst in read_gap(path):  # type: ignore[arg-type]
        snap = gap_to_snapshot(inst, sense=sense, time_limit=60, solver="cpsat")
        plan = solve(snap)
        assert validate(snap, plan) == []
        assert plan.status == PlanStatus.OPTIMAL, inst.name
        assert not plan.unassigned
        total = sum(inst.cost[int(a.agent.split("-")[1]), int(a.task.split("-")[1])]
                    for a in plan.assignments)
        assert total == BEST[inst.name, sense][0], inst.name
