"""Forecast workloads for capacity planning: classes of Poisson arrivals with gamma work,
their summary statistics and seeded samples; arrival scaling for what-if runs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from allocator.errors import InvalidInputError
from allocator.limits import check_fits_memory
from allocator.planning.queueing import WorkloadStats
from allocator.workloads.base import REPLAY_COLUMNS, Trace
from models import Priority

#: Peak memory of a forecast task in `allocator capacity` (measured: 1 million tasks,
#: one simulation, peak 1.0 GB; 3 million, 2.8 GB), for the guard against runs the
#: machine cannot hold.
PLAN_BYTES_PER_TASK = 950.0


@dataclass(slots=True)
class ClassForecast:
    """One class of a forecast: Poisson arrivals, gamma-distributed work."""

    name: str = "default"
    rate: float = 1.0
    size_mean: float = 1.0
    size_cv: float = 1.0
    priority: str = "normal"
    deadline_factor: float | None = None
    tenant: str | None = None


@dataclass(slots=True)
class Forecast:
    classes: list[ClassForecast]
    tasks: int = 20_000

    def __post_init__(self) -> None:
        if not self.classes:
            raise InvalidInputError("a forecast needs at least one class", field="classes")
        for k in self.classes:
            got = {"rate": k.rate, "size_mean": k.size_mean, "size_cv": k.size_cv}
            bad = {n: v for n, v in got.items()
                   if not (isinstance(v, (int, float)) and math.isfinite(v)
                           and (v >= 0 if n == "size_cv" else v > 0))}
            if bad:
                raise InvalidInputError(
                    f"class {k.name}: need finite rate > 0, size_mean > 0, size_cv >= 0; got "
                    + ", ".join(f"{n}={v!r}" for n, v in bad.items()), field="classes")
            if k.priority not in {p.value for p in Priority}:
                raise InvalidInputError(f"class {k.name}: unknown priority {k.priority!r}",
                                        field="classes")
        if self.tasks < 2:
            raise InvalidInputError("a forecast needs at least two tasks", field="tasks")
        check_fits_memory(self.tasks, PLAN_BYTES_PER_TASK, "tasks", "forecast tasks")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Forecast:
        try:
            classes = [ClassForecast(**c) for c in data["classes"]]
        except (KeyError, TypeError) as e:
            raise InvalidInputError(f"forecast: {e}", field="forecast") from None
        return cls(classes, tasks=int(data.get("tasks", 20_000)))

    def stats(self) -> WorkloadStats:
        lam = sum(k.rate for k in self.classes)
        m1 = sum(k.rate * k.size_mean for k in self.classes) / lam
        m2 = sum(k.rate * k.size_mean**2 * (1 + k.size_cv**2) for k in self.classes) / lam
        return WorkloadStats(rate=lam, mean_work=m1, ca2=1.0, cs2=m2 / m1**2 - 1.0,
                             tasks=self.tasks, span=self.tasks / lam)

    def scaled(self, x: float) -> Forecast:
        return Forecast([ClassForecast(k.name, k.rate * x, k.size_mean, k.size_cv, k.priority,
                                       k.deadline_factor, k.tenant) for k in self.classes],
                        tasks=self.tasks)

    def generate(self, seed: int) -> Trace:
        """A seeded sample: superposed Poisson streams, gamma work (exponential at cv 1)."""
        rng = np.random.default_rng(seed)
        lam = sum(k.rate for k in self.classes)
        n = self.tasks
        arrival = np.cumsum(rng.exponential(1.0 / lam, n))
        arrival -= arrival[0]
        probs = np.array([k.rate / lam for k in self.classes])
        cls = rng.choice(len(self.classes), size=n, p=probs)
        work = np.empty(n)
        deadline = np.full(n, np.nan)
        for i, k in enumerate(self.classes):
            idx = np.flatnonzero(cls == i)
            if k.size_cv == 0:
                work[idx] = k.size_mean
            else:
                shape = 1.0 / k.size_cv**2
                work[idx] = rng.gamma(shape, k.size_mean / shape, idx.size)
            if k.deadline_factor is not None:
                deadline[idx] = arrival[idx] + k.deadline_factor * work[idx]
        tasks = pl.DataFrame({
            "id": [f"f{i}" for i in range(n)], "arrival": arrival, "work": work,
            "demand": np.ones(n), "deadline": deadline,
            "priority": [self.classes[c].priority for c in cls],
            "tenant": [self.classes[c].tenant or self.classes[c].name for c in cls],
        }).with_columns(pl.col("deadline").fill_nan(None)).select(REPLAY_COLUMNS)
        return Trace(tasks=tasks, source=f"forecast seed {seed}", rows_read=n)


def scale_arrivals(w: Trace, x: float) -> Trace:
    """The same tasks arriving x times as fast (deadlines keep their slack)."""
    if not x > 0:
        raise InvalidInputError(f"arrival scale must be > 0, got {x}", field="what_if")
    t = w.tasks.with_columns(slack=pl.col("deadline") - pl.col("arrival")).with_columns(
        arrival=pl.col("arrival") / x).with_columns(
        deadline=pl.col("arrival") + pl.col("slack")).select(REPLAY_COLUMNS)
    return Trace(tasks=t, bad=w.bad, filtered=w.filtered, filled=w.filled,
                    source=f"{w.source} (arrivals x{x:g})", rows_read=w.rows_read)
