"""Limits every front end applies the same way: time limit overrides, snapshot magnitudes."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from allocator.errors import InvalidInputError
from models.domain import (
    MAX_COUNT,
    MAX_MAGNITUDE,
    MAX_SPEED,
    MAX_TIME_LIMIT,
    MIN_SPEED,
    Amount,
    Count,
    TimeLimit,
)

if TYPE_CHECKING:
    from models import Snapshot

__all__ = ["MAX_COUNT", "MAX_MAGNITUDE", "MAX_TIME_LIMIT", "check_amount", "check_count",
           "check_fits_memory", "check_magnitudes", "check_time_limit"]

#: Share of the machine's physical memory one run may be estimated to take.
MEMORY_SHARE = 0.75


@cache
def _adapter() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(TimeLimit)


def check_time_limit(limit: float, field: str = "time_limit") -> float:
    """A solve budget override checked by options.time_limit's own pydantic type: in
    (0, MAX_TIME_LIMIT] seconds. NaN, 0 and inf are refused (the anytime backends run
    until their budget)."""
    from pydantic import ValidationError

    try:
        return float(_adapter().validate_python(limit))
    except ValidationError as e:
        msg = e.errors()[0]["msg"]
        raise InvalidInputError(f"{msg}, got {limit!r} (a time limit is in (0, "
                                f"{MAX_TIME_LIMIT:g}] seconds)", field=field) from None


@cache
def _typed(tp: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(tp)


def _check_typed(tp: Any, value: float, field: str, what: str) -> Any:
    from pydantic import ValidationError

    try:
        return _typed(tp).validate_python(value)
    except ValidationError as e:
        msg = e.errors()[0]["msg"]
        raise InvalidInputError(f"{msg}, got {value!r} ({what})", field=field) from None


def check_count(value: int, field: str) -> int:
    """A caller's count (max_migrations) by the models' `Count`: 0 to MAX_COUNT."""
    return int(_check_typed(Count, value, field, f"a count is in [0, {MAX_COUNT}]"))


def check_amount(value: float, field: str) -> float:
    """A caller's amount (a threshold) by the models' `Amount`: finite, 0 to MAX_MAGNITUDE."""
    return float(_check_typed(Amount, value, field,
                              f"an amount is in [0, {MAX_MAGNITUDE:g}]"))


def _physical_memory() -> int | None:
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None  # not a POSIX sysconf: no check


def check_fits_memory(count: int, bytes_each: float, field: str, what: str, *,
                      squared: bool = False) -> None:
    """InvalidInputError naming `field` when `count` items of about `bytes_each` bytes
    (`squared`: count x count of them, as an M x M matrix) would take over MEMORY_SHARE
    of this machine's memory: a clear error up front, not the out-of-memory killer
    after minutes (`allocator simulate --tasks 1e8`)."""
    total = _physical_memory()
    need = count * (count if squared else 1) * bytes_each
    if total is None or need <= MEMORY_SHARE * total:
        return
    most = MEMORY_SHARE * total / bytes_each
    raise InvalidInputError(
        f"{count:,} {what} would take about {need / 2**30:.1f} GiB; this machine has "
        f"{total / 2**30:.1f} GiB, so at most about {int(most ** 0.5 if squared else most):,}",
        field=field)


def check_magnitudes(snap: Snapshot, prefix: str = "snapshot", sep: str = ".") -> None:
    """InvalidInputError naming the first number of `snap` outside the models' limits.

    ``|x| <= MAX_MAGNITUDE`` for every amount, speeds in [MIN_SPEED, MAX_SPEED],
    ``options.max_migrations <= MAX_COUNT``. The field is ``prefix + sep + path``
    (the API: ``snapshot.agents.0.speed``; the CLI: ``FILE: agents.0.speed``).
    Derived numbers (work / speed, cost_rate x duration) are the engine's
    check when it compiles the snapshot (allocator.problem), under the same limit.
    """

    def name(path: str) -> str:
        return f"{prefix}{sep}{path}"

    def check(value: float | None, path: str) -> None:
        if value is not None and not abs(value) <= MAX_MAGNITUDE:
            raise InvalidInputError(f"{value!r} exceeds {MAX_MAGNITUDE:g} (|x| <= "
                                    f"{MAX_MAGNITUDE:g}); rescale the units", field=name(path))

    def check_map(values: dict[Any, float] | None, path: str) -> None:
        for k, v in (values or {}).items():
            check(v, f"{path}.{getattr(k, 'value', k)}")

    def check_all(pairs: Iterable[tuple[float | None, str]]) -> None:
        for value, path in pairs:
            check(value, path)

    check(snap.time, "time")
    w = snap.weights
    check_all((getattr(w, k), f"weights.{k}")
              for k in ("cost", "makespan", "imbalance", "tardiness", "migrations"))
    check_map(w.unassigned, "weights.unassigned")
    check_map(w.tardiness_by_priority, "weights.tardiness_by_priority")
    for i, a in enumerate(snap.agents):
        if not MIN_SPEED <= a.speed <= MAX_SPEED:
            raise InvalidInputError(f"speed {a.speed!r} outside [{MIN_SPEED:g}, "
                                    f"{MAX_SPEED:g}]", field=name(f"agents.{i}.speed"))
        check(a.cost_rate, f"agents.{i}.cost_rate")
        check_map(a.capacity, f"agents.{i}.capacity")
    mig = snap.migration
    check_all(((mig.size_share, "migration.size_share"),
               (mig.progress_share, "migration.progress_share")))
    check_map(mig.label_factors, "migration.label_factors")
    for k, pf in enumerate(mig.pair_factors):
        check(pf.factor, f"migration.pair_factors.{k}.factor")
    mm = snap.options.max_migrations
    if mm is not None and mm > MAX_COUNT:
        raise InvalidInputError(f"{mm!r} exceeds {MAX_COUNT} (a count is <= {MAX_COUNT}; "
                                "any count above the tasks is no cap)",
                                field=name("options.max_migrations"))
    table = snap.task_table
    if table is not None:  # columns: one vectorised look each, no Task objects
        cols = {"work": table.work, "release": table.release, "deadline": table.deadline,
                "migration_cost": table.migration_cost,
                **{f"demand.{r}": v for r, v in table.demand.items()}}
        for col, arr in cols.items():
            if arr is None or arr.size == 0:
                continue
            vals = np.where(np.isnan(arr), 0.0, arr)
            j = int(np.argmax(np.abs(vals)))
            check(float(vals[j]), f"tasks.{j}.{col}")
        return
    for j, t in enumerate(snap.tasks):
        where = f"tasks.{j}"
        check_all(((t.work, f"{where}.work"), (t.release, f"{where}.release"),
                   (t.deadline, f"{where}.deadline"),
                   (t.migration_cost, f"{where}.migration_cost")))
        check_map(t.demand, f"{where}.demand")
        for a_id, ov in t.overrides.items():
            check(ov.cost, f"{where}.overrides.{a_id}.cost")
            check_map(ov.demand, f"{where}.overrides.{a_id}.demand")
