"""Alibaba PAI GPU pod list (cluster-trace-gpu-v2023, `openb_pod_list_*.csv`).

Columns: name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec, qos,
pod_phase, creation_time, deletion_time, scheduled_time (seconds; empty for
pods that were never scheduled).

Mapping to the raw frame (see allocator.workloads.base): id = name,
submit = creation_time, work = deletion_time - scheduled_time (the time the
pod held its resources), demand = GPUs (num_gpu x gpu_milli / 1000, or
`demand="cpu"`: cpu_milli / 1000 cores), klass = qos, user/group = null.
Pods still running at the end of the trace have deletion_time = trace end,
so their run time is censored there; that is the trace, not the reader.

Bad rows (counted): a missing, non-numeric or non-finite (nan, inf) number, a
deletion before scheduling or creation, a missing name, negative resources.
Pods that were never scheduled (`Pending`, no scheduled_time) have no run
time: they are left out and counted in `filtered` unless `pending="arrival"`,
which replays them with work = deletion - creation.
"""

from __future__ import annotations

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

POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos",
               "pod_phase", "creation_time", "deletion_time", "scheduled_time")
_NUMERIC = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "creation_time",
            "deletion_time", "scheduled_time")

#: Kubernetes QoS and PAI's own labels, most protected first: Guaranteed pods
#: have reserved resources (critical), LS is latency-sensitive serving (high),
#: Burstable may be squeezed (normal), BE is best-effort training (low).
DEFAULT_QOS_PRIORITY: dict[str, str] = {
    "Guaranteed": "critical", "LS": "high", "Burstable": "normal", "BE": "low",
}


def read_alibaba_pods(
    source: str | PathLike[str],
    *,
    time_scale: float = 1.0,
    arrival_scale: float = 1.0,
    window: tuple[float, float] | None = None,
    limit: int | None = None,
    phases: Iterable[str] | None = None,
    pending: Literal["skip", "arrival"] = "skip",
    demand: Literal["gpu", "cpu"] = "gpu",
    deadline: DeadlineMode = "factor",
    deadline_factor: float = 3.0,
    priority: PriorityMode = "class",
    class_priority: Mapping[str, str] | None = None,
    tenant: TenantMode = "class",
    on_bad: OnBad = "report",
) -> Trace:
    """Read an Alibaba PAI pod list CSV into a replayable :class:`Trace`.

    Parameters
    ----------
    source:
        Path to the CSV.
    phases:
        Keep only pods in these phases (Running, Succeeded, Failed, Pending); default all.
    pending:
        `skip` (default) leaves out never-scheduled pods (counted in `filtered`);
        `arrival` replays them with work = deletion - creation.
    demand:
        `gpu` (default): GPUs as a fraction (num_gpu x gpu_milli / 1000); `cpu`: cores.
    deadline, priority, tenant:
        As in :func:`allocator.workloads.read_swf`; the pod list has no user
        estimate (`estimate` falls back to k x run time), the class is the QoS
        (default mapping :data:`DEFAULT_QOS_PRIORITY`) and the default tenant
        is the QoS class, since pods carry no user.
    """
    check_options(time_scale=time_scale, arrival_scale=arrival_scale, deadline=deadline,
                  deadline_factor=deadline_factor, priority=priority, tenant=tenant,
                  window=window, limit=limit, on_bad=on_bad)
    if pending not in ("skip", "arrival"):
        raise InvalidInputError(f"pending must be skip or arrival, got {pending!r}",
                                field="pending")
    if demand not in ("gpu", "cpu"):
        raise InvalidInputError(f"demand must be gpu or cpu, got {demand!r}", field="demand")
    path = Path(source)
    if not path.exists():
        raise InvalidInputError(f"no such file: {path}", field="trace")
    try:
        df = pl.read_csv(path, infer_schema=False)  # all String: we cast and count ourselves
    except pl.exceptions.PolarsError as e:
        raise InvalidInputError(f"{path}: not a CSV ({e})", field="trace") from None
    missing = [c for c in ("name", "creation_time", "deletion_time") if c not in df.columns]
    if missing:
        raise InvalidInputError(f"{path}: missing columns {', '.join(missing)}", field="trace")
    for c in POD_COLUMNS:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    cols = df.columns
    df = df.with_row_index("line", 2)  # line 1 is the header
    text = pl.concat_str([pl.col(c).fill_null("") for c in cols], separator=",")
    num = {c: pl.col(c).str.strip_chars().cast(pl.Float64, strict=False) for c in _NUMERIC}
    df = df.with_columns(text=text, **{f"_{c}": e for c, e in num.items()})

    def nonnum(c: str) -> pl.Expr:
        return pl.col(c).is_not_null() & (pl.col(c).str.strip_chars() != "") & pl.col(
            f"_{c}").is_null()

    res = [pl.col(f"_{c}") < 0 for c in ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli")]
    reason = (
        pl.when(pl.col("name").is_null() | (pl.col("name").str.strip_chars() == ""))
        .then(pl.lit("missing name"))
        .when(pl.any_horizontal([nonnum(c) for c in _NUMERIC])).then(pl.lit("non-numeric field"))
        .when(pl.any_horizontal([(pl.col(f"_{c}").is_nan() | pl.col(f"_{c}").is_infinite())
                                 .fill_null(False) for c in _NUMERIC]))
        .then(pl.lit("non-finite number"))
        .when(pl.col("_creation_time").is_null()).then(pl.lit("missing creation_time"))
        .when(pl.col("_deletion_time").is_null()).then(pl.lit("missing deletion_time"))
        .when(pl.any_horizontal(res)).then(pl.lit("negative resource"))
        .when(pl.col("_deletion_time") < pl.col("_creation_time"))
        .then(pl.lit("deleted before created"))
        .when(pl.col("_deletion_time") < pl.col("_scheduled_time"))
        .then(pl.lit("deleted before scheduled"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    df = df.with_columns(reason=reason)
    bad = df.filter(pl.col("reason").is_not_null()).select("line", "reason", "text")
    if on_bad == "raise":
        raise_on_bad(bad, str(path))
    rows = df.filter(pl.col("reason").is_null())
    rows_read = df.height
    pre: dict[str, int] = {}
    if phases is not None:
        keep = list(phases)
        kept = rows.filter(pl.col("pod_phase").is_in(keep))
        if rows.height - kept.height:
            pre["phase not selected"] = rows.height - kept.height
        rows = kept
    never = pl.col("_scheduled_time").is_null()
    if pending == "skip":
        n = rows.filter(never).height
        if n:
            pre["never scheduled (no run time)"] = n
        rows = rows.filter(~never)
    gpus = (pl.col("_num_gpu").fill_null(0) * pl.col("_gpu_milli").fill_null(0) / 1000.0)
    cpus = pl.col("_cpu_milli").fill_null(0) / 1000.0
    raw = ensure_raw(rows.select(
        id=pl.col("name").str.strip_chars(),
        submit=pl.col("_creation_time"),
        work=pl.when(never).then(pl.col("_deletion_time") - pl.col("_creation_time"))
        .otherwise(pl.col("_deletion_time") - pl.col("_scheduled_time")),
        demand=gpus if demand == "gpu" else cpus,
        klass=pl.col("qos").str.strip_chars(),
    ))
    cp = DEFAULT_QOS_PRIORITY if class_priority is None else class_priority
    return build(raw, bad, source=str(path), rows_read=rows_read, filled={}, pre_filtered=pre,
                 time_scale=time_scale, arrival_scale=arrival_scale, window=window, limit=limit,
                 deadline=deadline, deadline_factor=deadline_factor, priority=priority,
                 class_priority=cp, tenant=tenant)
