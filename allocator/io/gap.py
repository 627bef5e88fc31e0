"""Generalized Assignment Problem files (OR-Library and Chu-Yagiura layouts).

Format: integers as one stream (rows may wrap). OR-Library files start with
the number of problems P; one-problem files do not. Each problem is
`m n`, the m x n cost matrix, the m x n resource matrix, the m capacities.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from allocator.errors import InvalidInputError
from models import Agent, AgentOverride, Priority, Snapshot, SolveOptions, Task, Weights


@dataclass(frozen=True)
class GapInstance:
    """One GAP problem; `name` is as in best_known.csv (`a05100`, `gap3:2`)."""

    name: str
    cost: np.ndarray  # [m, n]
    resource: np.ndarray  # [m, n]
    capacity: np.ndarray  # [m]

    @property
    def m(self) -> int:
        return int(self.cost.shape[0])

    @property
    def n(self) -> int:
        return int(self.cost.shape[1])


def _parse_one(tokens: list[int], pos: int, name: str, where: str) -> tuple[GapInstance, int]:
    try:
        m, n = tokens[pos], tokens[pos + 1]
    except IndexError:
        raise InvalidInputError("truncated: missing 'm n' header", field=where) from None
    if m <= 0 or n <= 0:
        raise InvalidInputError(f"bad dimensions m={m} n={n}", field=where)
    pos += 2
    need = 2 * m * n + m
    if pos + need > len(tokens):
        raise InvalidInputError(
            f"truncated: problem {name} needs {need} numbers, {len(tokens) - pos} left",
            field=where)
    arr = np.array(tokens[pos:pos + need], dtype=np.int64)
    cost = arr[: m * n].reshape(m, n)
    res = arr[m * n: 2 * m * n].reshape(m, n)
    cap = arr[2 * m * n:]
    if (res < 0).any() or (cap < 0).any():
        raise InvalidInputError(f"negative resource or capacity in problem {name}", field=where)
    return GapInstance(name, cost, res, cap), pos + need


def read_gap(path: str | Path) -> list[GapInstance]:
    """Every problem in a GAP file, named as best_known.csv names them."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError("no such file", field=str(p))
    try:
        tokens = [int(t) for t in p.read_text().split()]
    except ValueError as e:
        raise InvalidInputError(f"not a GAP file: {e}", field=str(p)) from None
    if not tokens:
        raise InvalidInputError("empty file", field=str(p))
    stem = p.stem
    # One-problem files start with `m n` and have exactly 2 + 2mn + m numbers.
    if len(tokens) >= 2 and tokens[0] > 0 and tokens[1] > 0 and (
        len(tokens) == 2 + 2 * tokens[0] * tokens[1] + tokens[0]
    ):
        inst, _ = _parse_one(tokens, 0, stem, str(p))
        return [inst]
    count, pos, out = tokens[0], 1, []
    for k in range(count):
        inst, pos = _parse_one(tokens, pos, f"{stem}:{k + 1}", str(p))
        out.append(inst)
    if pos != len(tokens):
        raise InvalidInputError(f"{len(tokens) - pos} trailing numbers after {count} problems",
                                field=str(p))
    return out


def gap_to_snapshot(inst: GapInstance, *, sense: str = "min", time_limit: float = 10.0,
                    solver: str = "auto", seed: int = 0) -> Snapshot:
    """A GAP problem as a Snapshot: agents with capacity `cap`, per-agent cost and demand.

    For `max` (profit) the costs are negated. Every job must be placed, so
    the unassigned penalty exceeds any possible total cost difference.
    """
    if sense not in ("min", "max"):
        raise InvalidInputError(f"must be 'min' or 'max', got {sense!r}", field="sense")
    sign = 1 if sense == "min" else -1
    big = float(np.abs(inst.cost).sum() + 1) * 10
    agents = [Agent(id=f"agent-{i}", capacity={"cap": float(inst.capacity[i])})
              for i in range(inst.m)]
    tasks = []
    for j in range(inst.n):
        tasks.append(Task(
            id=f"job-{j}",
            work=1.0,
            overrides={
                f"agent-{i}": AgentOverride(cost=float(sign * inst.cost[i, j]),
                                            demand={"cap": float(inst.resource[i, j])})
                for i in range(inst.m)
            },
        ))
    weights = Weights(cost=1.0, unassigned=dict.fromkeys(Priority, big))
    return Snapshot(name=f"{inst.name} ({sense})", agents=agents, tasks=tasks, weights=weights,
                    options=SolveOptions(solver=solver, time_limit=time_limit, seed=seed))


def read_best_known(path: str | Path) -> dict[tuple[str, str], tuple[float, bool]]:
    """best_known.csv as {(instance, sense): (value, proven_optimal)}."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError("no such file", field=str(p))
    out: dict[tuple[str, str], tuple[float, bool]] = {}
    with p.open(newline="") as f:
        for row in csv.DictReader(f):
            sense = row["objective_sense"].strip().lower()
            sense = "max" if sense.startswith("max") else "min"
            out[row["instance"].strip(), sense] = (
                float(row["best_known"]),
                row.get("proven_optimal", "").strip().lower() in ("1", "true", "yes"),
            )
    return out
