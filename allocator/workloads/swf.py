"""Standard Workload Format (Parallel Workloads Archive) logs: `.swf` and `.swf.gz`.

Lines starting with `;` are header comments (kept as `header`), blank lines
are ignored, every other line must hold 18 whitespace-separated numbers where
-1 means unknown:

 1 job id, 2 submit time, 3 wait time, 4 run time, 5 allocated processors,
 6 average CPU time, 7 used memory, 8 requested processors, 9 requested time,
 10 requested memory, 11 status, 12 user, 13 group, 14 executable, 15 queue,
 16 partition, 17 preceding job, 18 think time.

Mapping to the raw frame (see allocator.workloads.base): id = job id,
submit = field 2, work = field 4, demand = allocated processors (requested
when unknown, 1 when both are unknown; counted in `filled`), est = requested
time (null when -1), user/group = fields 12/13 (null when -1), klass = queue
(field 15), or partition (field 16) with `klass="partition"`.

Bad rows (counted, not replayed): a wrong number of fields, a non-numeric
field, an unknown or negative submit time, an unknown or negative run time.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Literal

import polars as pl

from allocator.errors import InvalidInputError
from allocator.workloads.base import (
    DeadlineMode,
    OnBad,
    PriorityMode,
    TenantMode,
    Trace,
    build,
    check_options,
    ensure_raw,
    raise_on_bad,
)

SWF_FIELDS = (
    "job", "submit", "wait", "run", "procs", "cpu", "mem", "req_procs", "req_time",
    "req_mem", "status", "user", "group", "exe", "queue", "partition", "prev", "think",
)

#: SWF convention: queue 0 is the interactive queue; interactive work is the
#: one a user sits in front of, so it gets `high`. Every other queue is normal.
DEFAULT_QUEUE_PRIORITY: dict[str, str] = {"0": "high"}


#: Largest decompressed trace read (bytes): a small gzip bomb must not fill the memory.
MAX_DECOMPRESSED_BYTES = 1 << 30


def _gunzip(data: bytes, name: str, limit: int | None = None) -> bytes:
    """Decompress gzip `data` in chunks, refusing more than `limit` bytes of output."""
    limit = MAX_DECOMPRESSED_BYTES if limit is None else limit
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
                if out.tell() > limit:
                    raise InvalidInputError(
                        f"{name}: decompresses to more than {limit} bytes (the limit)",
                        field="trace")
    except (OSError, EOFError, zlib.error) as e:
        raise InvalidInputError(f"{name}: corrupt gzip ({e})", field="trace") from None
    return out.getvalue()


def _lines(source: str | PathLike[str] | bytes) -> tuple[list[str], str]:
    if isinstance(source, bytes):
        data, name = source, "<bytes>"
    else:
        path = Path(source)
        if not path.exists():
            raise InvalidInputError(f"no such file: {path}", field="trace")
        data, name = path.read_bytes(), str(path)
    if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        data = _gunzip(data, name)
    return data.decode("utf-8", errors="replace").splitlines(), name


def read_swf_frame(source: str | PathLike[str] | bytes) -> tuple[pl.DataFrame, pl.DataFrame,
                                                                   list[str]]:
    """Parse an SWF log into (rows, bad rows, header lines).

    `rows` has the 18 SWF fields as Float64 (-1 kept as -1) plus `line`;
    `bad` has `line`, `reason`, `text`.
    """
    lines, _ = _lines(source)
    df = pl.DataFrame({"text": lines}, schema={"text": pl.String}).with_row_index("line", 1)
    stripped = pl.col("text").str.strip_chars()
    header = df.filter(stripped.str.starts_with(";"))["text"].to_list()
    df = df.filter(~stripped.str.starts_with(";") & (stripped != ""))
    df = df.with_columns(tok=pl.col("text").str.extract_all(r"\S+"))
    df = df.with_columns(n=pl.col("tok").list.len())
    nums = [pl.col("tok").list.get(i, null_on_oob=True).cast(pl.Float64, strict=False).alias(f)
            for i, f in enumerate(SWF_FIELDS)]
    df = df.with_columns(nums)
    any_null = pl.any_horizontal([pl.col(f).is_null() for f in SWF_FIELDS])
    reason = (
        pl.when(pl.col("n") != len(SWF_FIELDS))
        .then(pl.format("expected 18 fields, got {}", pl.col("n")))
        .when(any_null).then(pl.lit("non-numeric field"))
        .when(~pl.all_horizontal([pl.col(f).is_finite() for f in SWF_FIELDS]))
        .then(pl.lit("non-finite number"))
        .when(pl.col("submit") < 0).then(pl.lit("unknown submit time"))
        .when(pl.col("run") < 0).then(pl.lit("unknown run time"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    df = df.with_columns(reason=reason)
    bad = df.filter(pl.col("reason").is_not_null()).select("line", "reason", "text")
    rows = df.filter(pl.col("reason").is_null()).select("line", *SWF_FIELDS)
    return rows, bad, header


def _known_str(col: str) -> pl.Expr:
    c = pl.col(col)
    return pl.when(c >= 0).then(c.cast(pl.Int64).cast(pl.String)).otherwise(None)


def read_swf(
    source: str | PathLike[str] | bytes,
    *,
    time_scale: float = 1.0,
    arrival_scale: float = 1.0,
    window: tuple[float, float] | None = None,
    limit: int | None = None,
    statuses: Iterable[int] | None = None,
    deadline: DeadlineMode = "estimate",
    deadline_factor: float = 3.0,
    priority: PriorityMode = "class",
    klass: Literal["queue", "partition"] = "queue",
    class_priority: Mapping[str, str] | None = None,
    tenant: TenantMode = "user",
    on_bad: OnBad = "report",
) -> Trace:
    """Read an SWF log (plain or gzip) into a replayable :class:`Trace`.

    Parameters
    ----------
    source:
        Path to a `.swf` / `.swf.gz` file (gzip is detected from the content) or its bytes.
    time_scale, arrival_scale, window, limit:
        See :func:`allocator.workloads.base.finalize`; window bounds are seconds
        after the trace's first submission.
    statuses:
        Keep only jobs with these status codes (1 completed, 0 failed, 5
        cancelled); the others are counted in `filtered`. Default: all.
    deadline, deadline_factor:
        `estimate` (default): submit + requested time, or submit + k x run time
        when the estimate is unknown; `factor`: submit + k x run time; `none`.
    priority, klass, class_priority:
        `class` (default) maps the queue (or partition) number through
        `class_priority` (default: queue 0, interactive, is `high`);
        `fair_share` ranks users by total work; `none`.
    tenant:
        `user` (default), `group`, `class` (queue/partition) or `none`.
    on_bad:
        `report` (default) counts bad rows in `Trace.bad`; `raise` stops at the first.
    """
    check_options(time_scale=time_scale, arrival_scale=arrival_scale, deadline=deadline,
                  deadline_factor=deadline_factor, priority=priority, tenant=tenant,
                  window=window, limit=limit, on_bad=on_bad)
    if klass not in ("queue", "partition"):
        raise InvalidInputError(f"klass must be queue or partition, got {klass!r}",
                                field="klass")
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    rows, bad, _ = read_swf_frame(source)
    if on_bad == "raise":
        raise_on_bad(bad, name)
    rows_read = rows.height + bad.height
    pre: dict[str, int] = {}
    if statuses is not None:
        keep = [float(s) for s in statuses]
        kept = rows.filter(pl.col("status").is_in(keep))
        if rows.height - kept.height:
            pre["status not selected"] = rows.height - kept.height
        rows = kept
    width = (pl.when(pl.col("procs") > 0).then(pl.col("procs"))
             .when(pl.col("req_procs") > 0).then(pl.col("req_procs")).otherwise(1.0))
    filled = {
        "width from requested processors": int(
            rows.filter((pl.col("procs") <= 0) & (pl.col("req_procs") > 0)).height),
        "width unknown (used 1)": int(
            rows.filter((pl.col("procs") <= 0) & (pl.col("req_procs") <= 0)).height),
    }
    raw = ensure_raw(rows.select(
        id=pl.col("job").cast(pl.Int64).cast(pl.String),
        submit=pl.col("submit"),
        work=pl.col("run"),
        demand=width,
        est=pl.when(pl.col("req_time") > 0).then(pl.col("req_time")).otherwise(None),
        user=_known_str("user"),
        group=_known_str("group"),
        klass=_known_str(klass),
    ))
    cp = DEFAULT_QUEUE_PRIORITY if class_priority is None else class_priority
    return build(raw, bad, source=name, rows_read=rows_read, filled=filled, pre_filtered=pre,
                 time_scale=time_scale, arrival_scale=arrival_scale, window=window, limit=limit,
                 deadline=deadline, deadline_factor=deadline_factor, priority=priority,
                 class_priority=cp, tenant=tenant)
