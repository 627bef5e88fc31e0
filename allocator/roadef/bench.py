"""`allocator bench roadef`: solve challenge instances, check each solution with the
independent evaluator, compare with the lower bound and the winning team's result.

Rows: instance, original_cost, objective, best_known, lower_bound
(best_known.csv, else lb_<name>.txt, else `evaluate.aggregate_lower_bound`),
gap_to_best_pct ((objective - best_known) / best_known * 100; the baseline
measured elsewhere is the challenge winner's 300 s result), improvement_pct
(against the initial placement, the baseline of this run), moved, time_s,
valid (no violation found by `evaluate.violations`, which shares no state
with the solver), and the cost split.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from allocator.errors import InvalidInputError
from allocator.roadef.evaluate import aggregate_lower_bound, evaluate, violations
from allocator.roadef.instance import (
    assignment_path,
    instance_name,
    read_instance,
    write_assignment,
)


def warm_up() -> None:
    """Load the compiled annealing and descent kernels from numba's cache, or compile
    them, before any timed solve: a cold cache (a fresh install, or after an edit of
    `kernel.py`) compiled them for 5-14 s of CPU inside the first instance's budget.

    A counted solve of a small generated instance with a transient resource runs every
    compiled entry point with the argument types the timed solves pass.
    """
    from allocator.roadef import pair
    from allocator.roadef.generate import generate_instance
    from allocator.roadef.kernel import HAVE_NUMBA
    from allocator.roadef.solver import solve_roadef

    if not HAVE_NUMBA:
        return
    pair.warm_up()  # the generated instance has a transient resource: no pair steps
    inst = generate_instance(processes=120, machines=12, resources=4, seed=0, name="warm-up")
    solve_roadef(inst, time_limit=600.0, seed=0, iterations=2)


def find_best_known(models: list[Path]) -> Path | None:
    """best_known.csv beside the first model or one folder up (the shared data's layout)."""
    for model in models[:1]:
        for folder in (model.parent, model.parent.parent):
            candidate = folder / "best_known.csv"
            if candidate.is_file():
                return candidate
    return None


def read_best_known(path: Path) -> dict[str, dict[str, int]]:
    """instance -> {original_cost, lower_bound, best_known} from a best_known.csv."""
    out: dict[str, dict[str, int]] = {}
    try:
        with path.open(newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    out[row["instance"]] = {
                        "original_cost": int(row["original_cost"]),
                        "lower_bound": int(row["lower_bound"]),
                        "best_known": int(row["best_known_300s"]),
                    }
                except (KeyError, TypeError, ValueError):
                    raise InvalidInputError(
                        f"{path}, line {i}: expected integer columns instance, original_cost, "
                        "lower_bound, best_known_300s", field="best_known") from None
    except OSError as exc:
        raise InvalidInputError(f"{path}: {exc.strerror or exc}", field="best_known") from None
    return out


def _lower_bound_file(model: Path, name: str) -> int | None:
    lb = model.with_name(f"lb_{name}.txt")
    try:
        return int(lb.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def bench_one(model: Path, *, time_limit: float, seed: int, out: Path | None,
              best: dict[str, dict[str, int]], iterations: int | None = None
              ) -> dict[str, Any]:
    """Solve one instance and return its row (the solution written to `out` if given)."""
    from allocator.roadef.solver import solve_roadef

    name = instance_name(model)
    inst = read_instance(model, assignment_path(model), name)
    t0 = time.perf_counter()
    res = solve_roadef(inst, time_limit=time_limit, seed=seed, iterations=iterations)
    elapsed = time.perf_counter() - t0
    broken = violations(inst, res.assignment)
    cost = evaluate(inst, res.assignment)
    known = best.get(name, {})
    lb = known.get("lower_bound", _lower_bound_file(model, name))
    if lb is None:
        lb = aggregate_lower_bound(inst)
    bk = known.get("best_known")
    original = evaluate(inst, inst.initial).total
    row: dict[str, Any] = {
        "instance": name,
        "original_cost": original,
        "objective": cost.total,
        "lower_bound": lb,
        "best_known": bk,
        "gap_to_best_pct": None if not bk else round(100.0 * (cost.total - bk) / bk, 3),
        "improvement_pct": round(100.0 * (original - cost.total) / original, 3)
        if original else 0.0,
        "moved": int((res.assignment != inst.initial).sum()),
        "time_s": round(elapsed, 2),
        "valid": not broken,
        "violations": [v.message for v in broken[:3]],
        "cost": cost.as_dict(),
        "seed": seed,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_assignment(out / f"solution_{name}.txt", res.assignment)
    return row
