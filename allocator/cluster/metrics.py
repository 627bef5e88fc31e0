"""The measures of a cluster replay, as the parallel job-scheduling literature uses them.

- wait = start - submit; mean and 95th percentile;
- bounded slowdown = max(1, (wait + run) / max(run, tau)) with tau = 10 s
  (Feitelson et al.), mean over jobs;
- utilisation = processor-seconds used / (processors x (last end - first submit));
- the same wait and slowdown from the log's recorded waits (SWF field 3, the
  real scheduler's), over the jobs whose recorded wait is known;
- each by width class (allocator.cluster.jobs.WIDTH_CLASSES).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from allocator.cluster.jobs import WIDTH_CLASSES, ClusterJobs
from allocator.cluster.sim import ClusterSchedule
from allocator.cluster.validate import check_schedule

#: Bounded-slowdown threshold (s), the field's usual 10 s.
BSLD_TAU = 10.0

#: The keys of one `allocator replay --json` row on a wide-job trace, in order.
ROW_KEYS = ("policy", "jobs", "procs", "mean_wait", "mean_bounded_slowdown", "p95_wait",
            "utilisation", "recorded_mean_wait", "recorded_mean_bounded_slowdown", "valid")


def bounded_slowdown(wait: np.ndarray, run: np.ndarray, tau: float = BSLD_TAU) -> np.ndarray:
    return np.maximum(1.0, (wait + run) / np.maximum(run, tau))


def _stats(wait: np.ndarray, run: np.ndarray) -> tuple[float | None, float | None,
                                                       float | None]:
    if wait.size == 0:
        return None, None, None
    return (float(wait.mean()), float(bounded_slowdown(wait, run).mean()),
            float(np.percentile(wait, 95)))


def replay_row(jobs: ClusterJobs, sched: ClusterSchedule) -> dict[str, Any]:
    """The comparison row (ROW_KEYS); `valid` is the independent check's verdict."""
    problems = check_schedule(jobs.submit, jobs.run, jobs.width, sched.procs, sched.log_job,
                              sched.start, sched.end)
    wait = sched.start - jobs.submit
    mw, mb, p95 = _stats(wait, jobs.run)
    known = ~np.isnan(jobs.recorded_wait)
    rw, rb, _ = _stats(jobs.recorded_wait[known], jobs.run[known])
    span = float(np.nanmax(sched.end) - jobs.submit.min()) if len(jobs) else 0.0
    util = float((jobs.run * jobs.width).sum() / (sched.procs * span)) if span > 0 else 0.0
    return {"policy": sched.policy, "jobs": len(jobs), "procs": sched.procs,
            "mean_wait": mw, "mean_bounded_slowdown": mb, "p95_wait": p95,
            "utilisation": util, "recorded_mean_wait": rw,
            "recorded_mean_bounded_slowdown": rb, "valid": not problems,
            "_problems": problems}


def width_rows(jobs: ClusterJobs, sched: ClusterSchedule) -> list[dict[str, Any]]:
    """Per width class: jobs, mean wait, mean bounded slowdown, p95 wait, the class's share of
    the processor-seconds, and the recorded mean wait and slowdown."""
    cls = jobs.by_width_class()
    wait = sched.start - jobs.submit
    area = jobs.run * jobs.width
    total = float(area.sum()) or 1.0
    rows = []
    for c, label in enumerate(WIDTH_CLASSES):
        m = cls == c
        if not m.any():
            continue
        mw, mb, p95 = _stats(wait[m], jobs.run[m])
        km = m & ~np.isnan(jobs.recorded_wait)
        rw, rb, _ = _stats(jobs.recorded_wait[km], jobs.run[km])
        rows.append({"policy": sched.policy, "width": label, "jobs": int(m.sum()),
                     "mean_wait": mw, "mean_bounded_slowdown": mb, "p95_wait": p95,
                     "work_share": float(area[m].sum()) / total,
                     "recorded_mean_wait": rw, "recorded_mean_bounded_slowdown": rb})
    return rows
