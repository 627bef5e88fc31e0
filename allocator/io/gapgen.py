"""Generated GAP instances of types A-E (Chu & Beasley 1997; Yagiura et al. 2004 for E).

The published rules (`a` resource use, `c` cost, `b` capacity, U uniform):

- A: a ~ U{5..25}, c ~ U{10..50}, b_i = 9 (n / m) + 0.4 max_i sum_{j: best(j) = i} a_ij,
  where best(j) is j's cheapest agent (loose capacities);
- B: a, c as A; b_i = 0.7 x the type-A capacity;
- C: a, c as A; b_i = 0.8 sum_j a_ij / m;
- D: a ~ U{1..100}, c = 111 - a + U{-10..10}, b as C (cost anti-correlated with use);
- E: a = 1 - 10 ln U(0,1], c = 1000 / a - 10 U[0,1] (both rounded), b as C.

Capacities are rounded down to integers, as in the OR-Library files. The same
(type, m, n, seed) always gives the same instance. Written in the one-problem
Chu-Yagiura layout that :func:`allocator.io.gap.read_gap` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from allocator.errors import InvalidInputError
from allocator.io.gap import GapInstance
from allocator.io.snapshots import write_json_atomic

GAP_TYPES = ("a", "b", "c", "d", "e")


def generate_gap(kind: str, agents: int, tasks: int, seed: int = 0) -> GapInstance:
    """One instance of type `kind` (a-e); named like the literature files (`e801600`)."""
    kind = kind.lower()
    if kind not in GAP_TYPES:
        raise InvalidInputError(f"must be one of {', '.join(GAP_TYPES)}, got {kind!r}",
                                field="type")
    if agents < 1:
        raise InvalidInputError(f"must be >= 1, got {agents}", field="agents")
    if tasks < 1:
        raise InvalidInputError(f"must be >= 1, got {tasks}", field="tasks")
    if agents * tasks > 50_000_000:
        raise InvalidInputError(f"{agents} x {tasks} cells is more than 50M", field="tasks")
    m, n = agents, tasks
    rng = np.random.default_rng(seed)
    if kind in ("a", "b", "c"):
        a = rng.integers(5, 26, size=(m, n))
        c = rng.integers(10, 51, size=(m, n))
    elif kind == "d":
        a = rng.integers(1, 101, size=(m, n))
        c = 111 - a + rng.integers(-10, 11, size=(m, n))
    else:
        u = 1.0 - rng.random((m, n))  # U(0, 1]
        af = 1.0 - 10.0 * np.log(u)
        c = np.rint(1000.0 / af - 10.0 * rng.random((m, n))).astype(np.int64)
        a = np.rint(af).astype(np.int64)
    if kind in ("a", "b"):
        best = np.argmin(c, axis=0)
        per = np.bincount(best, weights=a[best, np.arange(n)], minlength=m)
        b = np.full(m, 9.0 * n / m + 0.4 * per.max())
        if kind == "b":
            b = 0.7 * b
    else:
        b = 0.8 * a.sum(axis=1) / m
    cap = np.floor(b).astype(np.int64)
    name = f"{kind}{m:02d}{n}" + (f"s{seed}" if seed else "")
    return GapInstance(name, c.astype(np.int64), a.astype(np.int64), cap)


def format_gap(inst: GapInstance) -> str:
    """The one-problem layout: `m n`, the cost rows, the resource rows, the capacities."""
    lines = [f"{inst.m} {inst.n}"]
    lines += [" ".join(map(str, row)) for row in inst.cost.tolist()]
    lines += [" ".join(map(str, row)) for row in inst.resource.tolist()]
    lines.append(" ".join(map(str, inst.capacity.tolist())))
    return "\n".join(lines) + "\n"


def write_gap(path: str | Path, inst: GapInstance) -> None:
    """Write `inst` atomically (readable by :func:`allocator.io.gap.read_gap`)."""
    write_json_atomic(path, format_gap(inst))
