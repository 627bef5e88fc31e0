"""Independent check of a cluster replay: shares no code with allocator.cluster.sim.

Given the jobs (submit, run, width), the machine size and what the replay
reports (the log of start events, each job's start and end), it checks:

- every job started exactly once (the start log names each job once and no other);
- never before its submit time; its end is its start plus its run time;
- at no instant are more processors busy than the machine has (a sweep over
  all start and end instants, ends first at equal times: a job ending at t
  frees its processors for a job starting at t).

`check_schedule` returns the violations as sentences (empty = valid), so a
test or the CLI's `valid` column can say what broke.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Relative tolerance on times (float sums such as start + run).
TIME_TOL = 1e-9


def check_schedule(submit: Sequence[float] | np.ndarray, run: Sequence[float] | np.ndarray,
                   width: Sequence[int] | np.ndarray, procs: int,
                   log_job: Sequence[int] | np.ndarray, start: Sequence[float] | np.ndarray,
                   end: Sequence[float] | np.ndarray, *, limit: int = 5) -> list[str]:
    """The violations of the rules above (at most `limit` per rule); [] when valid."""
    sub = np.asarray(submit, dtype=float)
    rt = np.asarray(run, dtype=float)
    w = np.asarray(width, dtype=np.int64)
    st = np.asarray(start, dtype=float)
    en = np.asarray(end, dtype=float)
    log = np.asarray(log_job, dtype=np.int64)
    n = sub.size
    out: list[str] = []

    def some(mask: np.ndarray, what: str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            eg = ", ".join(map(str, idx[:limit]))
            out.append(f"{idx.size} jobs {what} (e.g. job index {eg})")

    if (log < 0).any() or (log >= n).any():
        out.append("the start log names a job that does not exist")
        log = log[(log >= 0) & (log < n)]
    counts = np.bincount(log, minlength=n) if n else np.zeros(0, dtype=np.int64)
    some(counts == 0, "never started")
    some(counts > 1, "started more than once")
    some(np.isnan(st) | np.isnan(en), "without a start or an end")
    ok = ~(np.isnan(st) | np.isnan(en))
    tol = TIME_TOL * np.maximum(1.0, np.abs(np.where(ok, en, 0.0)))
    some(ok & (st < sub - tol), "started before they were submitted")
    some(ok & (np.abs((en - st) - rt) > tol + TIME_TOL * np.abs(rt)),
         "did not run for their run time")
    some(w > procs, f"are wider than the machine ({procs} processors)")
    if ok.any():
        times = np.concatenate([st[ok], en[ok]])
        delta = np.concatenate([w[ok], -w[ok]])
        order = np.lexsort((delta, times))  # by time, then ends (negative) first
        busy = np.cumsum(delta[order])
        over = busy > procs
        if over.any():
            k = int(np.argmax(over))
            out.append(f"{int(busy.max())} processors busy at some instant (first at t="
                       f"{times[order][k]:.6g}) on a machine of {procs}")
    return out
