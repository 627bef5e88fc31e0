"""Run a policy over a whole log or over job windows, timed, checked and measured.

`run_policy(jobs, procs, policy)` replays the whole log once;
`job_window=N` replays consecutive windows of N jobs instead, each from an
empty machine (the protocol of Zhang et al., SC'20, RLScheduler, who sample
such windows), and reports the mean of each measure over the windows. The
timing covers the replay only (not reading the log nor the check).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allocator.cluster.jobs import ClusterJobs
from allocator.cluster.metrics import ROW_KEYS, replay_row, width_rows
from allocator.cluster.sim import simulate
from allocator.errors import InvalidInputError


@dataclass(slots=True)
class PolicyRun:
    """One policy's row (ROW_KEYS), width-class rows, violations found and timing."""

    row: dict[str, Any]
    width_rows: list[dict[str, Any]]
    problems: list[str]
    wall_s: float
    jobs: int
    windows: int = 1
    per_window: list[dict[str, Any]] = field(default_factory=list)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall_s if self.wall_s > 0 else float("inf")


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def run_policy(jobs: ClusterJobs, procs: int, policy: str, *,
               job_window: int | None = None) -> PolicyRun:
    """Replay, check and measure one policy (see the module docstring)."""
    if job_window is None:
        s = simulate(jobs, procs, policy)
        row = replay_row(jobs, s)
        problems = row.pop("_problems")
        return PolicyRun(row=row, width_rows=width_rows(jobs, s), problems=problems,
                         wall_s=s.wall_s, jobs=len(jobs))
    if job_window < 1:
        raise InvalidInputError(f"job windows must hold >= 1 job, got {job_window}",
                                field="job_windows")
    rows, problems, wall = [], [], 0.0
    wrows: list[dict[str, Any]] = []
    for a in range(0, len(jobs), job_window):
        part = jobs.window(a, job_window)
        s = simulate(part, procs, policy)
        wall += s.wall_s
        r = replay_row(part, s)
        problems += [f"window {a}:{a + len(part)}: {p}" for p in r.pop("_problems")]
        rows.append(r)
        wrows += width_rows(part, s)
    mean: dict[str, Any] = {"policy": policy, "jobs": len(jobs), "procs": procs}
    mean.update({k: _mean(rows, k) for k in ROW_KEYS if k not in mean and k != "valid"})
    mean["valid"] = not problems
    by_w: dict[str, list[dict[str, Any]]] = {}
    for r in wrows:
        by_w.setdefault(r["width"], []).append(r)
    wmean = [{"policy": policy, "width": w, "jobs": sum(x["jobs"] for x in rs),
              **{k: _mean(rs, k) for k in ("mean_wait", "mean_bounded_slowdown", "p95_wait",
                                            "work_share", "recorded_mean_wait",
                                            "recorded_mean_bounded_slowdown")}}
             for w, rs in by_w.items()]
    return PolicyRun(row=mean, width_rows=wmean, problems=problems, wall_s=wall,
                     jobs=len(jobs), windows=len(rows), per_window=rows)
