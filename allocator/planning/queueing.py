"""Queueing formulas of the capacity estimate: Erlang B/C, the Allen–Cunneen GI/G/c wait
model, and the stationary and trace-driven predictions (see allocator.planning.capacity)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from allocator.errors import InvalidInputError
from allocator.workloads.base import Trace


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability of c servers at a Erlangs (stable recursion)."""
    if c < 0 or a < 0:
        raise InvalidInputError(f"need c >= 0 and a >= 0, got c={c}, a={a}", field="c")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Erlang C: probability an arrival waits in M/M/c at a Erlangs (1 when a >= c)."""
    if c < 1:
        raise InvalidInputError(f"need at least one server, got {c}", field="c")
    if a >= c:
        return 1.0
    if a <= 0:
        return 0.0
    b = erlang_b(c, a)
    return c * b / (c - a * (1.0 - b))


@dataclass(slots=True, frozen=True)
class WaitModel:
    """The estimated wait distribution: P(W > t) = p_wait · exp(−rate·t)."""

    p_wait: float
    rate: float  # θ; 0 when unstable
    utilisation: float

    @property
    def stable(self) -> bool:
        return self.utilisation < 1.0

    @property
    def mean(self) -> float:
        if not self.stable:
            return math.inf
        return self.p_wait / self.rate if self.rate > 0 else 0.0

    def quantile(self, q: float) -> float:
        """The q-quantile of the wait (0 when at least q of arrivals do not wait)."""
        if not self.stable:
            return math.inf
        if self.p_wait <= 1.0 - q or self.rate <= 0:
            return 0.0
        return math.log(self.p_wait / (1.0 - q)) / self.rate

    def exceed(self, t: np.ndarray) -> np.ndarray:
        """P(W > t) elementwise (t < 0 -> 1)."""
        if not self.stable:
            return np.ones_like(t)
        out = self.p_wait * np.exp(-self.rate * np.maximum(t, 0.0))
        return np.where(t < 0, 1.0, out)


def mgc_wait(c: int, lam: float, mean_work: float, *, speed: float = 1.0, ca2: float = 1.0,
             cs2: float = 1.0) -> WaitModel:
    """Allen–Cunneen GI/G/c wait model (exact for M/M/c: ca2 = cs2 = 1)."""
    if lam <= 0 or mean_work <= 0:
        return WaitModel(0.0, math.inf, 0.0)
    mu = speed / mean_work
    a = lam / mu
    rho = a / c
    if rho >= 1.0:
        return WaitModel(1.0, 0.0, rho)
    cvar = max((ca2 + cs2) / 2.0, 1e-9)
    return WaitModel(erlang_c(c, a), (c * mu - lam) / cvar, rho)


# ----------------------------------------------------------------------------- workload stats


@dataclass(slots=True, frozen=True)
class WorkloadStats:
    rate: float
    mean_work: float
    ca2: float
    cs2: float
    tasks: int
    span: float

    @property
    def offered(self) -> float:
        """Offered load in speed-1 agents (Erlangs)."""
        return self.rate * self.mean_work


def workload_stats(w: Trace) -> WorkloadStats:
    t = w.tasks
    if t.height < 2:
        raise InvalidInputError("need at least two tasks to estimate rates", field="trace")
    arr = t["arrival"].to_numpy()
    work = t["work"].to_numpy()
    gaps = np.diff(arr)
    span = float(arr[-1] - arr[0])
    if span <= 0:
        raise InvalidInputError("all tasks arrive at once: no arrival rate", field="trace")
    mg = float(gaps.mean())
    mw = float(work.mean())
    return WorkloadStats(
        rate=(t.height - 1) / span, mean_work=mw,
        ca2=float(gaps.var() / mg**2) if mg > 0 else 1.0,
        cs2=float(work.var() / mw**2) if mw > 0 else 0.0,
        tasks=t.height, span=span)


def predict(w: Trace | None, stats: WorkloadStats, c: int, speed: float = 1.0
            ) -> dict[str, float]:
    """Predicted SLA metrics of c agents of mean speed `speed`."""
    m = mgc_wait(c, stats.rate, stats.mean_work, speed=speed, ca2=stats.ca2, cs2=stats.cs2)
    out = {
        "utilisation": m.utilisation, "p_wait": m.p_wait, "mean_wait": m.mean,
        "p50_wait": m.quantile(0.5), "p95_wait": m.quantile(0.95), "p99_wait": m.quantile(0.99),
    }
    if w is not None:
        t = w.tasks.filter(pl.col("deadline").is_not_null())
        if t.height:
            slack = (t["deadline"] - t["arrival"] - t["work"] / speed).to_numpy()
            out["miss_rate"] = float(m.exceed(slack).mean())
        else:
            out["miss_rate"] = 0.0
    return out


#: Trace-driven estimate: the local offered load of a task is measured over a
#: window of span / LOCAL_WINDOWS (but at least LOCAL_MIN_JOBS mean run times), so
#: the daily and weekly swings of a real log are followed and single jobs are not.
LOCAL_WINDOWS = 200
LOCAL_MIN_JOBS = 10.0
#: Local load is capped just under c so Erlang C stays defined in overloaded windows
#: (the fluid backlog V already carries the overload).
LOCAL_RHO_CAP = 0.999


def virtual_wait(arrival: np.ndarray, work: np.ndarray, rate: float) -> np.ndarray:
    """Lindley recursion: the wait each task would see at one pooled server of `rate`."""
    n = arrival.size
    v = np.empty(n)
    b = 0.0
    prev = float(arrival[0]) if n else 0.0
    for i in range(n):
        t = float(arrival[i])
        b = max(0.0, b - rate * (t - prev))
        v[i] = b / rate
        b += float(work[i])
        prev = t
    return v


def predict_trace(w: Trace, c: int, speed: float = 1.0, *,
                  window: float | None = None) -> dict[str, float]:
    """Trace-driven Erlang C estimate (see the module docstring, "trace" estimator).

    V_i is task i's wait at one pooled server of speed c·s̄ (Lindley on the
    trace); a_i the offered load (Erlangs) of its window; f_i = C(c, a_i) / (a_i / c).
    P(W > t) ≈ mean_i f_i·1[V_i > t]. For M/M/c this is exact in distribution:
    there W | W > 0 and V | V > 0 are both Exp(cμ − λ), P(W > 0) = C, P(V > 0) = ρ.
    """
    t = w.tasks
    arr = t["arrival"].to_numpy().astype(float)
    work = t["work"].to_numpy().astype(float)
    n = arr.size
    if n == 0:
        return {"utilisation": 0.0, "p_wait": 0.0, "mean_wait": 0.0, "p50_wait": 0.0,
                "p95_wait": 0.0, "p99_wait": 0.0, "miss_rate": 0.0}
    cap = c * speed
    span = float(arr[-1] - arr[0]) or 1.0
    mean_work = float(work.mean()) if n else 0.0
    win = window or max(span / LOCAL_WINDOWS, LOCAL_MIN_JOBS * mean_work / speed, 1e-9)
    v = virtual_wait(arr, work, cap)
    b = ((arr - arr[0]) // win).astype(np.int64)
    nb = int(b.max()) + 1
    last = span - (nb - 1) * win  # the last window is partial
    lengths = np.full(nb, win)
    lengths[-1] = max(last, 1e-9) if nb > 1 else span
    load = np.bincount(b, weights=work, minlength=nb) / lengths / speed
    a_win = np.minimum(load, c * LOCAL_RHO_CAP)
    f_win = np.array([erlang_c(c, x) / (x / c) if x > 0 else 0.0 for x in a_win])
    f = np.minimum(f_win[b], 1.0)
    order = np.argsort(-v, kind="stable")
    vs = v[order]
    tail = np.cumsum(f[order]) / n  # tail[k] = P(W >= vs[k]) (estimate)

    def quantile(q: float) -> float:
        k = int(np.searchsorted(tail, 1.0 - q, side="right"))
        return float(vs[k]) if k < n and vs[k] > 0 else 0.0

    out = {"utilisation": float(work.sum() / speed / (c * span)),
           "p_wait": float((f * (v > 0)).mean()), "mean_wait": float((f * v).mean()),
           "p50_wait": quantile(0.5), "p95_wait": quantile(0.95), "p99_wait": quantile(0.99)}
    dl = t["deadline"].to_numpy()
    has = ~np.isnan(dl.astype(float)) if dl.dtype != object else np.array(
        [x is not None for x in dl])
    if has.any():
        slack = dl[has].astype(float) - arr[has] - work[has] / speed
        miss = np.where(slack < 0, 1.0, f[has] * (v[has] > slack))
        out["miss_rate"] = float(miss.mean())
    else:
        out["miss_rate"] = 0.0
    return out
