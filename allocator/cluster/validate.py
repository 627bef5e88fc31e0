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


def check_pod_schedule(submit: Sequence[float] | np.ndarray, run: Sequence[float] | np.ndarray,
                       cpu: Sequence[int] | np.ndarray, memory: Sequence[int] | np.ndarray,
                       num_gpu: Sequence[int] | np.ndarray,
                       gpu_milli: Sequence[int] | np.ndarray, nodes: int,
                       shape: tuple[int, int, int], log_job: Sequence[int] | np.ndarray,
                       node: Sequence[int] | np.ndarray, gpus: Sequence[Sequence[int]],
                       start: Sequence[float] | np.ndarray, end: Sequence[float] | np.ndarray,
                       *, limit: int = 5) -> list[str]:
    """Pods on nodes (allocator.cluster.pods): the rules of `check_schedule` for times and
    starts, plus: each pod on one existing node, on `num_gpu` distinct existing GPUs of it,
    and at no instant does a node's cpu or memory, or one GPU's 1000 milli, exceed its
    capacity (`shape` = cpu milli, memory MiB, GPUs per node). Ends free before starts at
    equal times. [] when valid."""
    sub = np.asarray(submit, dtype=float)
    out = check_schedule(sub, run, np.ones(sub.size, dtype=np.int64), max(sub.size, 1),
                         log_job, start, end, limit=limit)
    out = [p for p in out if "processors" not in p]
    cap_cpu, cap_mem, n_gpu = shape
    nd = np.asarray(node, dtype=np.int64)
    st = np.asarray(start, dtype=float)
    en = np.asarray(end, dtype=float)
    c = np.asarray(cpu, dtype=np.int64)
    m = np.asarray(memory, dtype=np.int64)
    k = np.asarray(num_gpu, dtype=np.int64)
    gm = np.asarray(gpu_milli, dtype=np.int64)
    bad_node, bad_gpus = [], []
    for i in range(sub.size):
        if np.isnan(st[i]):
            continue
        if not 0 <= nd[i] < nodes:
            bad_node.append(i)
        g = list(gpus[i])
        if len(g) != k[i] or len(set(g)) != len(g) or any(not 0 <= x < n_gpu for x in g):
            bad_gpus.append(i)
    if bad_node:
        out.append(f"{len(bad_node)} pods on a node that does not exist (e.g. pod index "
                   f"{', '.join(map(str, bad_node[:limit]))})")
    if bad_gpus:
        out.append(f"{len(bad_gpus)} pods not on num_gpu distinct GPUs of their node (e.g. "
                   f"pod index {', '.join(map(str, bad_gpus[:limit]))})")
    skip = set(bad_node) | set(bad_gpus)
    ev = sorted((t, kind, i) for i in range(sub.size) if i not in skip and not np.isnan(st[i])
                for t, kind in ((float(st[i]), 1), (float(en[i]), 0)))
    used: dict[tuple[int, int], int] = {}
    over: list[str] = []
    for t, kind, i in ev:
        sign = 1 if kind else -1
        n_i = int(nd[i])
        keys = [(n_i, -1, int(c[i]), cap_cpu, "cpu"), (n_i, -2, int(m[i]), cap_mem, "memory")]
        keys += [(n_i, int(g), int(gm[i]), 1000, f"GPU {int(g)}") for g in gpus[i]]
        for n_, r, amount, cap, what in keys:
            u = used.get((n_, r), 0) + sign * amount
            used[(n_, r)] = u
            if u > cap and len(over) < limit:
                over.append(f"node {n_} {what} holds {u} of {cap} at t={t:.6g}")
    if over:
        out.append("a node exceeds a resource: " + "; ".join(over))
    return out
