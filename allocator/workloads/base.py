"""The replayable form of a workload and the options every reader shares.

Every reader (SWF, Alibaba pods, generic tables) first maps its source into a
*raw* frame with these columns (null where the source has nothing):

====== ======= ==============================================================
column dtype   meaning
====== ======= ==============================================================
id     String  task id (job number, pod name, ...)
submit Float64 submission time in the source's seconds
work   Float64 run time in seconds (service time on a speed-1 agent)
demand Float64 width: processors, GPUs, ... (>= 0; 1 when unknown)
est    Float64 the user's run-time estimate in seconds (SWF requested time)
user   String  user id
group  String  group id
klass  String  the source's class label: queue/partition (SWF) or QoS (pods)
====== ======= ==============================================================

:func:`finalize` then applies the shared options (window, limit, time
scaling, deadlines, priorities, tenants) and produces the *replay* frame of a
:class:`Trace`:

======== ======= ============================================================
column   dtype   meaning
======== ======= ============================================================
id       String  task id
arrival  Float64 seconds after the first arrival in the window (>= 0, sorted)
work     Float64 run time (scaled by `time_scale`)
demand   Float64 width, as read
deadline Float64 absolute deadline on the arrival clock, null = none
priority String  one of critical, high, normal, low
tenant   String  fairness key, null = none
======== ======= ============================================================

Rows that cannot be replayed are never dropped silently: each reader counts
them by reason in a :class:`BadRows` report (with the first few line numbers
and texts), and `on_bad="raise"` turns the first one into an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import polars as pl

from allocator.errors import InvalidInputError
from allocator.report import units
from models import Priority

if TYPE_CHECKING:  # the online package is imported only when specs are built
    from allocator.online.events import TaskSpec

DeadlineMode = Literal["none", "estimate", "factor"]
PriorityMode = Literal["none", "class", "fair_share"]
TenantMode = Literal["none", "user", "group", "class"]
OnBad = Literal["report", "raise"]

RAW_SCHEMA: dict[str, type[pl.DataType]] = {
    "id": pl.String, "submit": pl.Float64, "work": pl.Float64, "demand": pl.Float64,
    "est": pl.Float64, "user": pl.String, "group": pl.String, "klass": pl.String,
}
REPLAY_COLUMNS = ("id", "arrival", "work", "demand", "deadline", "priority", "tenant")

#: How many example rows a bad-row report keeps per reason: enough to find
#: the pattern in an editor, few enough to print.
EXAMPLES_PER_REASON = 3

#: Fair-share split (see :func:`finalize`): the heaviest users that together
#: account for this share of all work are `low` ...
FAIR_SHARE_HEAVY = 0.5
#: ... and the lightest users that together account for this share are `high`.
FAIR_SHARE_LIGHT = 0.2

#: Most agents a replay sizes itself to (each is a simulated server with its own state).
MAX_AGENTS = 10_000


@dataclass(slots=True)
class BadRows:
    """Rows a reader could not replay, counted by reason.

    `examples` holds `(line, reason, text)` for the first few rows of each
    reason; `line` is the 1-based line number in the source file (the header
    line of a CSV is line 1), or the 1-based row number of a Parquet table.
    """

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self) -> str:
        if not self.counts:
            return "no bad rows"
        parts = [f"{n} {reason}" for reason, n in sorted(self.counts.items(),
                                                          key=lambda kv: -kv[1])]
        return f"{self.total} bad rows: " + "; ".join(parts)

    def add_frame(self, bad: pl.DataFrame) -> None:
        """Count a frame with columns `line`, `reason`, `text` (one row per bad row)."""
        if bad.is_empty():
            return
        for reason, n in bad.group_by("reason").len().sort("reason").iter_rows():
            self.counts[reason] = self.counts.get(reason, 0) + int(n)
        ex = (bad.sort("line").group_by("reason", maintain_order=True)
              .head(EXAMPLES_PER_REASON).sort("line"))
        self.examples.extend((int(ln), str(r), str(t)[:200])
                             for ln, r, t in ex.select("line", "reason", "text").iter_rows())


@dataclass(slots=True)
class Trace:
    """A replayable task list plus the account of what was read.

    Attributes
    ----------
    tasks:
        The replay frame (see the module docstring), sorted by arrival.
    bad:
        Rows that could not be replayed, by reason.
    filtered:
        Valid rows left out on purpose (window, limit, status, pending), by reason.
    filled:
        Values the reader filled in (e.g. unknown width -> 1), by field.
    source:
        Where it came from (path or a label).
    rows_read:
        Data rows in the source (comments and blank lines excluded).
    """

    tasks: pl.DataFrame
    bad: BadRows = field(default_factory=BadRows)
    filtered: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    source: str = ""
    rows_read: int = 0

    def __len__(self) -> int:
        return self.tasks.height

    @property
    def span(self) -> float:
        """Last arrival minus first (0 for fewer than two tasks)."""
        return float(self.tasks["arrival"].max() or 0.0) if self.tasks.height else 0.0  # type: ignore[arg-type]

    @property
    def total_work(self) -> float:
        return float(self.tasks["work"].sum()) if self.tasks.height else 0.0

    def offered_load(self) -> float:
        """Work arriving per unit time (the number of busy speed-1 agents it needs)."""
        return self.total_work / self.span if self.span > 0 else float("inf")

    def agents_for_utilisation(self, target: float, *, speed: float = 1.0) -> int:
        """Smallest agent count whose utilisation (offered load / capacity) is <= target."""
        if not 0 < target <= 1:
            raise InvalidInputError(f"target utilisation must be in (0, 1], got {target}",
                                    field="target")
        need = self.offered_load() / (speed * target)
        if not math.isfinite(need) or need > MAX_AGENTS:
            raise InvalidInputError(
                f"this trace would need {need:.3g} agents for utilisation {target:g} (its "
                f"{len(self)} tasks carry {self.total_work:.3g} s of work over a span of "
                f"{self.span:.3g} s); at most {MAX_AGENTS} are simulated: give --agents, "
                "or check the trace's run and submit times", field="agents")
        return max(1, math.ceil(need))

    def summary(self) -> str:
        lines = [
            f"{self.source}: {self.rows_read:,} rows read, {len(self):,} tasks, "
            f"span {units.decimal(self.span)} s, work {units.decimal(self.total_work)} s, "
            f"offered load {units.decimal(self.offered_load())} agents",
            self.bad.summary(),
        ]
        if self.filtered:
            lines.append("filtered: " + ", ".join(f"{n} {k}" for k, n in self.filtered.items()))
        if self.filled:
            lines.append("filled: " + ", ".join(f"{n} {k}" for k, n in self.filled.items()))
        return "\n".join(lines)

    def to_specs(self, *, width_as: str | None = None) -> list[tuple[float, TaskSpec]]:
        """`(arrival, TaskSpec)` pairs in arrival order, ready for the online executor.

        `TaskSpec.work` is the run time; the deadline is absolute on the same
        clock as the arrival. The width (`demand` column) is passed on only with
        `width_as=RESOURCE`: the task then demands that much of the resource on
        the one agent it runs on (a replay on agents of several slots);
        otherwise agents are single servers (see docs/workloads.md).
        """
        from allocator.online.events import TaskSpec as Spec

        out: list[tuple[float, TaskSpec]] = []
        prio = {p.value: p for p in Priority}
        cols = self.tasks.select(REPLAY_COLUMNS)
        for id_, arr, work, dem, dl, pr, ten in cols.iter_rows():
            out.append((float(arr), Spec(
                id=str(id_), work=float(work), priority=prio[pr],
                deadline=None if dl is None else float(dl), tenant=ten,
                demand=((width_as, float(dem)),) if width_as else ())))
        return out


def check_options(*, time_scale: float, arrival_scale: float, deadline: str,
                  deadline_factor: float, priority: str, tenant: str,
                  window: tuple[float, float] | None, limit: int | None, on_bad: str) -> None:
    """Raise InvalidInputError for an option outside its domain (before any reading)."""
    if not time_scale > 0:
        raise InvalidInputError(f"time_scale must be > 0, got {time_scale}", field="time_scale")
    if not arrival_scale > 0:
        raise InvalidInputError(f"arrival_scale must be > 0, got {arrival_scale}",
                                field="arrival_scale")
    if deadline not in ("none", "estimate", "factor"):
        raise InvalidInputError(f"deadline must be none, estimate or factor, got {deadline!r}",
                                field="deadline")
    if not deadline_factor > 0:
        raise InvalidInputError(f"deadline_factor must be > 0, got {deadline_factor}",
                                field="deadline_factor")
    if priority not in ("none", "class", "fair_share"):
        raise InvalidInputError(
            f"priority must be none, class or fair_share, got {priority!r}", field="priority")
    if tenant not in ("none", "user", "group", "class"):
        raise InvalidInputError(f"tenant must be none, user, group or class, got {tenant!r}",
                                field="tenant")
    if window is not None and not (len(window) == 2 and window[0] < window[1]):
        raise InvalidInputError(f"window must be (start, end) with start < end, got {window}",
                                field="window")
    if limit is not None and limit < 0:
        raise InvalidInputError(f"limit must be >= 0, got {limit}", field="limit")
    if on_bad not in ("report", "raise"):
        raise InvalidInputError(f"on_bad must be report or raise, got {on_bad!r}",
                                field="on_bad")


def raise_on_bad(bad: pl.DataFrame, source: str) -> None:
    if bad.height:
        ln, reason, text = bad.sort("line").row(0)
        raise InvalidInputError(f"{source}, line {ln}: {reason}: {str(text)[:120]!r}",
                                field="trace")


def _class_priority(klass: pl.Expr, mapping: Mapping[str, str]) -> pl.Expr:
    return (klass.replace_strict(dict(mapping), default=Priority.NORMAL.value,
                                 return_dtype=pl.String)
            .fill_null(Priority.NORMAL.value))


def finalize(raw: pl.DataFrame, *, time_scale: float = 1.0, arrival_scale: float = 1.0,
             window: tuple[float, float] | None = None, limit: int | None = None,
             deadline: DeadlineMode = "none", deadline_factor: float = 3.0,
             priority: PriorityMode = "none", class_priority: Mapping[str, str] | None = None,
             tenant: TenantMode = "none") -> tuple[pl.DataFrame, dict[str, int]]:
    """Apply the shared options to a raw frame; return the replay frame and what was filtered.

    Order: sort by submit; `window=(start, end)` keeps `start <= submit - t0 < end`
    where t0 is the first submit of the whole trace (source seconds, before
    scaling); `limit` keeps the first n of those; arrivals become
    `(submit - first kept submit) * time_scale * arrival_scale` and work
    `work * time_scale`, so `arrival_scale < 1` compresses the arrival process
    (more load) without changing the jobs.

    Deadlines: `estimate` = arrival + the user's estimate (scaled), falling back
    to `factor` when the estimate is unknown; `factor` = arrival + k x work.

    Priorities: `class` maps the `klass` column through `class_priority`
    (unmapped -> normal); `fair_share` ranks users by total work and gives
    `low` to the heaviest users holding FAIR_SHARE_HEAVY of the work, `high` to
    the lightest holding FAIR_SHARE_LIGHT, `normal` to the rest.
    """
    filtered: dict[str, int] = {}
    df = raw.sort("submit", maintain_order=True)
    if window is not None and df.height:
        t0 = float(df["submit"].min())  # type: ignore[arg-type]
        rel = pl.col("submit") - t0
        keep = df.filter((rel >= window[0]) & (rel < window[1]))
        if df.height - keep.height:
            filtered["outside window"] = df.height - keep.height
        df = keep
    if limit is not None and df.height > limit:
        filtered["beyond limit"] = df.height - limit
        df = df.head(limit)
    first = float(df["submit"].min()) if df.height else 0.0  # type: ignore[arg-type]
    work = pl.col("work") * time_scale
    df = df.with_columns(
        arrival=(pl.col("submit") - first) * (time_scale * arrival_scale),
        work=work,
        est=pl.col("est") * time_scale,
    )
    by_factor = pl.col("arrival") + deadline_factor * pl.col("work")
    if deadline == "none":
        dl = pl.lit(None, dtype=pl.Float64)
    elif deadline == "factor":
        dl = by_factor
    else:
        dl = pl.when(pl.col("est") > 0).then(pl.col("arrival") + pl.col("est")).otherwise(by_factor)
    df = df.with_columns(deadline=dl)

    if priority == "none":
        pr = pl.lit(Priority.NORMAL.value)
    elif priority == "class":
        pr = _class_priority(pl.col("klass"), class_priority or {})
    else:
        shares = (df.group_by("user").agg(pl.col("work").sum().alias("w"))
                  .sort(["w", "user"], descending=[True, False], nulls_last=True))
        total = float(shares["w"].sum()) or 1.0
        shares = shares.with_columns(before=(pl.col("w").cum_sum() - pl.col("w")) / total)
        # `before` = share of work held by heavier users; the lightest tail is where
        # the remaining share (1 - before - own) is below FAIR_SHARE_LIGHT.
        shares = shares.with_columns(
            fs=pl.when(pl.col("before") < FAIR_SHARE_HEAVY).then(pl.lit(Priority.LOW.value))
            .when(1.0 - pl.col("before") <= FAIR_SHARE_LIGHT).then(pl.lit(Priority.HIGH.value))
            .otherwise(pl.lit(Priority.NORMAL.value)))
        df = df.join(shares.select("user", "fs"), on="user", how="left", nulls_equal=True)
        pr = pl.col("fs").fill_null(Priority.NORMAL.value)
    df = df.with_columns(priority=pr)

    ten = {"none": pl.lit(None, dtype=pl.String), "user": pl.col("user"),
           "group": pl.col("group"), "class": pl.col("klass")}[tenant]
    df = df.with_columns(tenant=ten).sort("arrival", maintain_order=True)
    return df.select(REPLAY_COLUMNS), filtered


def build(raw: pl.DataFrame, bad: pl.DataFrame, *, source: str, rows_read: int,
          filled: dict[str, int], pre_filtered: dict[str, int] | None = None,
          **options: object) -> Trace:
    """Bundle a reader's raw frame and bad rows into a Trace (see :func:`finalize`)."""
    report = BadRows()
    report.add_frame(bad)
    tasks, filtered = finalize(raw, **options)  # type: ignore[arg-type]
    return Trace(tasks=tasks, bad=report, filtered={**(pre_filtered or {}), **filtered},
                    filled={k: v for k, v in filled.items() if v}, source=source,
                    rows_read=rows_read)


def ensure_raw(df: pl.DataFrame) -> pl.DataFrame:
    """Cast to RAW_SCHEMA, adding missing columns as nulls."""
    cols = [pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in RAW_SCHEMA.items()]
    return df.select(cols)


def parse_window(text: str | None) -> tuple[float, float] | None:
    """`"START:END"` in seconds (either may be empty: 0 / infinity) -> (start, end)."""
    if not text:
        return None
    a, sep, b = text.partition(":")
    if not sep:
        raise InvalidInputError(f"window must look like START:END, got {text!r}", field="window")
    try:
        return (float(a) if a else 0.0, float(b) if b else float("inf"))
    except ValueError:
        raise InvalidInputError(f"window must look like START:END, got {text!r}",
                                field="window") from None


def priority_names() -> Sequence[str]:
    return [p.value for p in Priority]
