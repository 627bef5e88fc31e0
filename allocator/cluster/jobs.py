"""Wide jobs for the cluster replay: arrays read from an SWF log (or built by hand).

The executor replay (allocator.workloads.replay) turns every job into a
one-slot task; a parallel machine's log needs the width. `ClusterJobs` keeps
what an HPC scheduler sees and what the log recorded, one numpy array per
field, in submit order:

- `submit` (s, from the first kept submit), `run` (the recorded run time),
  `width` (processors: SWF field 5, else field 8 "requested"),
- `estimate`: the user's requested time (field 9), what EASY and conservative
  backfilling plan with,
- `user`, `group`, `klass` (queue, field 15): integer codes, -1 = unknown,
- `recorded_wait`: field 3, the wait the real scheduler produced (NaN = unknown).

Cleaning follows the SWF conventions (-1 = unknown) and is counted, never
silent (`dropped`, `filled`): a job with an unknown run time or an unknown
width (fields 5 and 8 both -1) cannot be replayed and is dropped; a job wider
than the machine is dropped; an unknown estimate, or one below the run time,
is replaced by the run time (the scheduler would have killed the job at its
estimate, but the log says it ran; planning with the run time keeps every
reservation honest).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Annotated

import numpy as np
import polars as pl

from allocator.errors import InvalidInputError

#: SWF header keys that give the machine size, in order of preference for processors.
_HEADER_NUM = re.compile(r"^;\s*(MaxProcs|MaxNodes)\s*:\s*(\d+)", re.IGNORECASE)


@dataclass(slots=True)
class ClusterJobs:
    """Wide jobs as arrays (see the module docstring); index i is job `ids[i]`."""

    submit: np.ndarray
    run: np.ndarray
    width: np.ndarray
    estimate: np.ndarray
    user: np.ndarray
    group: np.ndarray
    klass: np.ndarray
    recorded_wait: np.ndarray
    ids: list[str]
    dropped: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    source: str = ""
    #: The source's clock at submit 0 (F1 reads absolute submit times).
    origin: float = 0.0

    def __len__(self) -> int:
        return int(self.submit.size)

    @classmethod
    def from_arrays(cls, submit: Sequence[float], run: Sequence[float],
                    width: Sequence[int], estimate: Sequence[float] | None = None, *,
                    user: Sequence[int] | None = None, group: Sequence[int] | None = None,
                    klass: Sequence[int] | None = None,
                    recorded_wait: Sequence[float] | None = None,
                    ids: Sequence[str] | None = None, source: str = "<arrays>"
                    ) -> ClusterJobs:
        """Jobs from plain sequences (tests, generated traces); checked, sorted by submit."""
        s = np.asarray(submit, dtype=float)
        n = s.size
        r = np.asarray(run, dtype=float)
        w = np.asarray(width, dtype=np.int64)
        e = r.copy() if estimate is None else np.asarray(estimate, dtype=float)
        for name, a in (("run", r), ("width", w), ("estimate", e)):
            if a.shape != (n,):
                raise InvalidInputError(f"{name} has {a.size} values for {n} jobs", field=name)
        if n and (not np.isfinite(s).all() or (s < 0).any()):
            raise InvalidInputError("submit times must be finite and >= 0", field="submit")
        if n and (not np.isfinite(r).all() or (r < 0).any()):
            raise InvalidInputError("run times must be finite and >= 0", field="run")
        if n and (w < 1).any():
            raise InvalidInputError("widths must be >= 1", field="width")
        if n and (not np.isfinite(e).all() or (e < r).any()):
            raise InvalidInputError("estimates must be finite and >= the run time",
                                    field="estimate")

        def codes(x: Sequence[int] | None) -> np.ndarray:
            return np.full(n, -1, dtype=np.int64) if x is None else np.asarray(x, dtype=np.int64)

        order = np.argsort(s, kind="stable")
        rw = np.full(n, np.nan) if recorded_wait is None else np.asarray(recorded_wait, float)
        id_list = [str(i) for i in range(n)] if ids is None else [str(x) for x in ids]
        return cls(submit=s[order], run=r[order], width=w[order], estimate=e[order],
                   user=codes(user)[order], group=codes(group)[order],
                   klass=codes(klass)[order], recorded_wait=rw[order],
                   ids=[id_list[i] for i in order], source=source)

    def by_width_class(self) -> np.ndarray:
        """Width class index of each job (see WIDTH_CLASSES)."""
        return np.searchsorted(WIDTH_EDGES, self.width, side="left")

    def window(self, start: int, count: int) -> ClusterJobs:
        """Jobs start..start+count-1 (submit order), re-based to an empty machine at the first."""
        sl = slice(start, start + count)
        sub = self.submit[sl]
        t0 = float(sub[0]) if sub.size else 0.0
        return ClusterJobs(submit=sub - t0, run=self.run[sl], width=self.width[sl],
                           estimate=self.estimate[sl], user=self.user[sl],
                           group=self.group[sl], klass=self.klass[sl],
                           recorded_wait=self.recorded_wait[sl], ids=self.ids[sl],
                           source=f"{self.source}[{start}:{start + count}]",
                           origin=self.origin + t0)


#: Width classes for the per-class metrics: upper bounds (inclusive) and labels.
WIDTH_EDGES = np.array([1, 4, 16, 64], dtype=np.int64)
WIDTH_CLASSES = ("1", "2-4", "5-16", "17-64", "65+")


def header_machine(header: Sequence[str]) -> tuple[int | None, int | None]:
    """(MaxProcs, MaxNodes) from SWF header comment lines: None when absent, 0 when the
    header gives only 0 (no machine size; the error says so), else the first positive."""
    found: dict[str, int] = {}
    for line in header:
        m = _HEADER_NUM.match(line.strip())
        if m and not found.get(key := m.group(1).lower()):
            found[key] = int(m.group(2))
    return found.get("maxprocs"), found.get("maxnodes")


@dataclass(slots=True)
class ClusterTrace:
    """An SWF log read for the cluster replay: jobs plus the machine the header names."""

    jobs: ClusterJobs
    procs: int
    nodes: int | None
    procs_source: str
    rows_read: int
    bad: dict[str, int]

    def dropped(self) -> str:
        """Rows not replayed, by reason: '3 width unknown (...), 1 outside window' or 'none'."""
        dropped = {**self.bad, **self.jobs.dropped}
        return ", ".join(f"{n} {k}" for k, n in dropped.items()) if dropped else "none"

    def summary(self) -> str:
        j = self.jobs
        lines = [f"{j.source}: {self.rows_read} rows read, {len(j)} jobs replayed on "
                 f"{self.procs} processors ({self.procs_source})"
                 + (f", {self.nodes} nodes" if self.nodes else "")]
        lines.append("dropped: " + self.dropped())
        if j.filled:
            lines.append("filled: " + ", ".join(f"{n} {k}" for k, n in j.filled.items()))
        return "\n".join(lines)

    @property
    def procs_per_node(self) -> float:
        return self.procs / self.nodes if self.nodes else 1.0


def check_scale(name: str, value: float) -> float:
    """A time factor: finite and > 0, by pydantic's rules (the error names the option)."""
    from pydantic import Field, TypeAdapter, ValidationError

    try:
        return float(TypeAdapter(Annotated[float, Field(gt=0, allow_inf_nan=False)])
                     .validate_python(value))
    except ValidationError as e:
        raise InvalidInputError(f"{name} {value!r}: {e.errors()[0]['msg'].lower()}",
                                field=name) from None


def scaled_times(submit: np.ndarray, *durations: np.ndarray, time_scale: float,
                 arrival_scale: float) -> tuple[np.ndarray, ...]:
    """(submit x time_scale x arrival_scale, each duration x time_scale); an overflow to
    inf is refused naming the factor that caused it."""
    with np.errstate(over="ignore"):
        out = [np.asarray(d, dtype=float) * time_scale for d in durations]
        sub = np.asarray(submit, dtype=float) * (time_scale * arrival_scale)
    if not all(np.isfinite(d).all() for d in out):
        raise InvalidInputError(f"time_scale {time_scale:g} makes run times infinite",
                                field="time_scale")
    if not np.isfinite(sub).all():
        raise InvalidInputError(f"arrival_scale {arrival_scale:g} (x time_scale "
                                f"{time_scale:g}) makes submit times infinite",
                                field="arrival_scale")
    return (sub, *out)


def read_swf_cluster(source: str | PathLike[str] | bytes, *, procs: int | None = None,
                     window: tuple[float, float] | None = None, limit: int | None = None,
                     statuses: Sequence[int] | None = None,
                     need_size: bool = True, time_scale: float = 1.0,
                     arrival_scale: float = 1.0) -> ClusterTrace:
    """Read an SWF log as wide jobs on the machine its header names (or `procs`).

    `window` (seconds after the first submit) and `limit` (first n jobs) select
    jobs as the executor replay's options do; `statuses` keeps only those status
    codes. Everything dropped or filled is counted (module docstring).
    `need_size=False` (capacity planning, which searches the size) accepts a
    header without the machine size and takes the widest job as the machine.
    `time_scale` multiplies every time (submit gaps, run times, estimates,
    recorded waits) and `arrival_scale` the submit gaps only, as the executor
    replay's options do (allocator.workloads.base.finalize).
    """
    from allocator.workloads.swf import read_swf_frame

    ts, ars = check_scale("time_scale", time_scale), check_scale("arrival_scale", arrival_scale)

    name = "<bytes>" if isinstance(source, bytes) else str(source)
    rows, bad_rows, header = read_swf_frame(source)
    bad = {str(k): int(v) for k, v in bad_rows.group_by("reason").len().sort("reason")
           .iter_rows()}
    rows_read = rows.height + bad_rows.height
    hp, hn = header_machine(header)
    if procs is not None:
        if procs < 1:
            raise InvalidInputError(f"procs must be >= 1, got {procs}", field="procs")
        P, how = procs, "--procs"
    elif hp:
        P, how = hp, "MaxProcs in the header"
    elif hn:
        P, how = hn, "MaxNodes in the header"
    elif not need_size:
        P, how = 0, "the widest job (no MaxProcs or MaxNodes in the header)"
    else:
        zero = [f"{k}: 0" for k, v in (("MaxProcs", hp), ("MaxNodes", hn)) if v == 0]
        what = (f"its {' and '.join(zero)} is no machine size" if zero
                else "it gives neither MaxProcs nor MaxNodes")
        raise InvalidInputError(f"{name}: the header does not say how many processors: "
                                f"{what}; give the machine size with --procs", field="procs")
    dropped: dict[str, int] = {}
    c = pl.col
    if statuses is not None:
        keep = rows.filter(c("status").is_in([float(s) for s in statuses]))
        if rows.height - keep.height:
            dropped["status not selected"] = rows.height - keep.height
        rows = keep
    rows = rows.sort("submit", maintain_order=True)
    if window is not None and rows.height:
        rel = c("submit") - float(rows["submit"].min())  # type: ignore[arg-type]
        keep = rows.filter((rel >= window[0]) & (rel < window[1]))
        if rows.height - keep.height:
            dropped["outside window"] = rows.height - keep.height
        rows = keep
    width = (pl.when(c("procs") > 0).then(c("procs"))
             .when(c("req_procs") > 0).then(c("req_procs")).otherwise(-1.0))
    rows = rows.with_columns(width=width)
    if P == 0:
        P = max(1, int(rows["width"].max() or 1))  # type: ignore[arg-type]
    for reason, cond in (("width unknown (fields 5 and 8 are -1)", c("width") < 1),
                         (f"wider than the machine ({P} processors)", c("width") > P)):
        n_bad = rows.filter(cond).height
        if n_bad:
            dropped[reason] = n_bad
            rows = rows.filter(~cond)
    if limit is not None and rows.height > limit:
        dropped["beyond limit"] = rows.height - limit
        rows = rows.head(limit)
    filled = {
        "width from requested processors": rows.filter(c("procs") <= 0).height,
        "estimate unknown (run time used)": rows.filter(c("req_time") <= 0).height,
        "estimate below the run time (run time used)": rows.filter(
            (c("req_time") > 0) & (c("req_time") < c("run"))).height,
    }
    est = pl.when(c("req_time") >= c("run")).then(c("req_time")).otherwise(c("run"))
    t0 = float(rows["submit"].min()) if rows.height else 0.0  # type: ignore[arg-type]

    def code(col: str) -> np.ndarray:
        return rows[col].fill_null(-1).cast(pl.Int64).to_numpy().copy()

    submit, run, estimate = scaled_times(
        (rows["submit"].to_numpy() - t0).astype(float), rows["run"].to_numpy().astype(float),
        rows.select(est)["req_time"].to_numpy().astype(float), time_scale=ts,
        arrival_scale=ars)
    jobs = ClusterJobs(
        submit=submit, run=run,
        width=rows["width"].cast(pl.Int64).to_numpy().copy(),
        estimate=estimate,
        user=code("user"), group=code("group"), klass=code("queue"),
        recorded_wait=ts * rows.select(pl.when(c("wait") >= 0).then(c("wait"))
                                       .otherwise(math.nan))["wait"].to_numpy().astype(float),
        ids=[str(int(x)) for x in rows["job"].to_list()],
        dropped=dropped, filled={k: v for k, v in filled.items() if v}, source=name,
        origin=t0)
    return ClusterTrace(jobs=jobs, procs=P, nodes=hn or None, procs_source=how, rows_read=rows_read,
                        bad=bad)
