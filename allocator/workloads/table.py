"""Generic task tables (CSV or Parquet) with a documented column mapping.

The mapping names, for each field the replay needs, the source column that
holds it (`{field: column}`); fields not mapped are absent. Defaults are the
field names themselves, so a table with columns `arrival,work` needs no
mapping at all.

========  ========  =========================================================
field     required  meaning
========  ========  =========================================================
arrival   yes       submission time (number, in the table's time unit)
work      one of    run time; or give `end` (and optionally `start`):
end       these     work = end - start (start defaults to arrival)
start     no        start of service, used only with `end`
id        no        task id (default: the 1-based row number)
demand    no        width (processors, GPUs ...), default 1
estimate  no        the user's run-time estimate (for `deadline="estimate"`)
deadline  no        absolute deadline; becomes estimate = deadline - arrival,
                    so `deadline="estimate"` reproduces it (time-scaled)
priority  no        class label: critical/high/normal/low or 0..3, or any
                    label mapped with `class_priority`
user      no        user id (tenant and fair share)
group     no        group id
========  ========  =========================================================

`time_unit` multiplies every time column first (e.g. 0.001 for milliseconds).
Bad rows: missing, non-numeric or non-finite (nan, inf) fields, negative work or arrival.
:func:`scan_table` gives the lazy raw frame (plus `line` and `reason`) for
large tables where projection and filter push-down pay; :func:`read_table`
collects it and builds a :class:`~allocator.workloads.base.Trace`.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Literal

import polars as pl

from allocator.errors import InvalidInputError
from allocator.workloads.base import (
    RAW_SCHEMA,
    DeadlineMode,
    OnBad,
    PriorityMode,
    TenantMode,
    Trace,
    build,
    check_options,
    raise_on_bad,
)
from models import Priority

FIELDS = ("arrival", "work", "end", "start", "id", "demand", "estimate", "deadline",
          "priority", "user", "group")
_TIMES = ("arrival", "work", "end", "start", "estimate", "deadline")

#: Class labels understood without a mapping: the names and their ranks 0..3.
PRIORITY_LABELS: dict[str, str] = {
    **{p.value: p.value for p in Priority}, **{str(p.rank): p.value for p in Priority},
}


def _format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return "parquet"
    if suffixes.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    raise InvalidInputError(f"{path}: cannot tell the format from the name; pass "
                            "format='csv' or 'parquet'", field="trace")


def scan_table(
    source: str | PathLike[str],
    *,
    mapping: Mapping[str, str] | None = None,
    format: Literal["auto", "csv", "parquet"] = "auto",
    separator: str = ",",
    time_unit: float = 1.0,
) -> pl.LazyFrame:
    """Lazy raw frame of a task table: RAW_SCHEMA columns plus `line` and `reason`.

    `reason` is null for a good row and says why otherwise.
    """
    path = Path(source)
    if not path.exists():
        raise InvalidInputError(f"no such file: {path}", field="trace")
    m = {f: f for f in FIELDS}
    if mapping:
        unknown = sorted(set(mapping) - set(FIELDS))
        if unknown:
            raise InvalidInputError(f"unknown mapping fields {', '.join(unknown)}; known: "
                                    f"{', '.join(FIELDS)}", field="mapping")
        m.update(mapping)
    fmt = _format(path, format)
    if fmt == "csv":
        lf = pl.scan_csv(path, separator=separator, infer_schema=False)
        first_line = 2  # after the header
    elif fmt == "parquet":
        lf = pl.scan_parquet(path)
        first_line = 1
    else:
        raise InvalidInputError(f"format must be auto, csv or parquet, got {format!r}",
                                field="format")
    try:
        cols = lf.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as e:
        raise InvalidInputError(f"{path}: cannot read ({e})", field="trace") from None
    have = {f: m[f] for f in FIELDS if m[f] in cols}
    if "arrival" not in have:
        raise InvalidInputError(f"{path}: no arrival column {m['arrival']!r} (columns: "
                                f"{', '.join(cols)})", field="mapping")
    if "work" not in have and "end" not in have:
        raise InvalidInputError(f"{path}: need a work column {m['work']!r} or an end column "
                                f"{m['end']!r} (columns: {', '.join(cols)})", field="mapping")
    src = sorted(set(have.values()))
    lf = lf.with_row_index("line", first_line)

    def num(f: str) -> pl.Expr:
        if f not in have:
            return pl.lit(None, dtype=pl.Float64)
        c = pl.col(have[f])
        e = c.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        return e * time_unit if f in _TIMES else e

    def txt(f: str) -> pl.Expr:
        if f not in have:
            return pl.lit(None, dtype=pl.String)
        return pl.col(have[f]).cast(pl.String).str.strip_chars()

    def unparsable(f: str) -> pl.Expr:
        if f not in have:
            return pl.lit(False)
        c = pl.col(have[f]).cast(pl.String).str.strip_chars()
        return c.is_not_null() & (c != "") & c.cast(pl.Float64, strict=False).is_null()

    def nonfinite(f: str) -> pl.Expr:  # "nan", "inf" parse as numbers
        if f not in have:
            return pl.lit(False)
        e = num(f)
        return (e.is_nan() | e.is_infinite()).fill_null(False)

    start = num("start") if "start" in have else num("arrival")
    work = num("work") if "work" in have else num("end") - start
    text = pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in src], separator=",")
    out = lf.select(
        pl.col("line"),
        text.alias("text"),
        (txt("id") if "id" in have else pl.col("line").cast(pl.String)).alias("id"),
        num("arrival").alias("submit"),
        work.alias("work"),
        pl.when(num("demand").is_null()).then(1.0).otherwise(num("demand")).alias("demand"),
        pl.when(num("deadline").is_not_null()).then(num("deadline") - num("arrival"))
        .otherwise(num("estimate")).alias("est"),
        txt("user").alias("user"),
        txt("group").alias("group"),
        txt("priority").alias("klass"),
        pl.any_horizontal([unparsable(f) for f in ("arrival", "work", "end", "start",
                                                   "demand", "estimate", "deadline")])
        .alias("_nonnum"),
        pl.any_horizontal([nonfinite(f) for f in ("arrival", "work", "end", "start",
                                                  "demand", "estimate", "deadline")])
        .alias("_nonfinite"),
    )
    reason = (
        pl.when(pl.col("_nonnum")).then(pl.lit("non-numeric field"))
        .when(pl.col("_nonfinite")).then(pl.lit("non-finite number"))
        .when(pl.col("submit").is_null()).then(pl.lit("missing arrival"))
        .when(pl.col("work").is_null()).then(pl.lit("missing work"))
        .when(pl.col("submit") < 0).then(pl.lit("negative arrival"))
        .when(pl.col("work") < 0).then(pl.lit("negative work"))
        .when(pl.col("demand") < 0).then(pl.lit("negative demand"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return out.with_columns(reason=reason).drop("_nonnum", "_nonfinite")


def read_table(
    source: str | PathLike[str],
    *,
    mapping: Mapping[str, str] | None = None,
    format: Literal["auto", "csv", "parquet"] = "auto",
    separator: str = ",",
    time_unit: float = 1.0,
    time_scale: float = 1.0,
    arrival_scale: float = 1.0,
    window: tuple[float, float] | None = None,
    limit: int | None = None,
    deadline: DeadlineMode = "estimate",
    deadline_factor: float = 3.0,
    priority: PriorityMode = "class",
    class_priority: Mapping[str, str] | None = None,
    tenant: TenantMode = "user",
    on_bad: OnBad = "report",
) -> Trace:
    """Read a CSV/Parquet task table into a :class:`Trace` (see the module docstring).

    `deadline="estimate"` uses a mapped deadline or estimate column and falls
    back to arrival + k x work; `priority="class"` maps the priority column
    through `class_priority` (default: the names and ranks of the four classes).
    """
    check_options(time_scale=time_scale, arrival_scale=arrival_scale, deadline=deadline,
                  deadline_factor=deadline_factor, priority=priority, tenant=tenant,
                  window=window, limit=limit, on_bad=on_bad)
    try:
        df = scan_table(source, mapping=mapping, format=format, separator=separator,
                        time_unit=time_unit).collect()
    except pl.exceptions.PolarsError as e:
        raise InvalidInputError(f"{source}: cannot read ({e})", field="trace") from None
    bad = df.filter(pl.col("reason").is_not_null()).select("line", "reason", "text")
    if on_bad == "raise":
        raise_on_bad(bad, str(source))
    raw = df.filter(pl.col("reason").is_null()).select(list(RAW_SCHEMA))
    cp = PRIORITY_LABELS if class_priority is None else class_priority
    return build(raw, bad, source=str(source), rows_read=df.height, filled={},
                 time_scale=time_scale, arrival_scale=arrival_scale, window=window, limit=limit,
                 deadline=deadline, deadline_factor=deadline_factor, priority=priority,
                 class_priority=cp, tenant=tenant)


def read_trace(source: str | PathLike[str], **options: object) -> Trace:
    """Pick the reader from the file: `.swf[.gz]` -> SWF, a CSV whose header has
    `creation_time` and `pod_phase` -> Alibaba pods, other CSV/Parquet -> table."""
    from allocator.workloads.alibaba import read_alibaba_pods
    from allocator.workloads.swf import read_swf

    path = Path(source)
    name = path.name.lower()
    if name.endswith((".swf", ".swf.gz")):
        return read_swf(path, **options)  # type: ignore[arg-type]
    if name.endswith(".csv") and path.exists():
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
        if "creation_time" in header and "pod_phase" in header:
            return read_alibaba_pods(path, **options)  # type: ignore[arg-type]
    return read_table(path, **options)  # type: ignore[arg-type]
