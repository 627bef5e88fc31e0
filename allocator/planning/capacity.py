"""Capacity planning: the cheapest agent mix that meets an SLA, estimated then simulated.

1. **Estimate** (queueing theory). The workload is summarised as an arrival
   rate λ, a mean work E[S] and the squared coefficients of variation of the
   inter-arrival times (ca²) and of the work (cs²). With c agents of mean
   speed s̄, the offered load is a = λ·E[S]/s̄ Erlangs and the utilisation
   ρ = a/c. The probability of waiting is Erlang C, C(c, a) (exact for
   M/M/c). The mean wait is the Allen–Cunneen M/G/c (GI/G/c) approximation
   Wq ≈ C(c, a) / (c·μ − λ) · (ca² + cs²) / 2 with μ = s̄/E[S] (exact for
   M/M/c, where ca² = cs² = 1). Wait quantiles use the tail
   P(W > t) ≈ C · exp(−θ t), θ = (c·μ − λ) · 2 / (ca² + cs²), exact for M/M/c
   and matching the approximate mean otherwise. The predicted miss rate is the
   mean over tasks of P(W > deadline − arrival − work/s̄) (1 when the slack is
   shorter than the run). Mixed speeds are treated as c agents of the mean
   speed: an approximation. This *stationary* estimate is the one used for
   forecasts. For a trace (estimator `trace`, the default there) the averages
   hide the load swings of a real log, so the estimate is trace-driven:
   V_i = the wait task i would see at one pooled server of speed c·s̄ (the
   Lindley recursion over the trace's own arrivals and run times), thinned by
   Erlang C at the task's local load: P(W > t) ≈ mean_i C(c, a_i)/(a_i/c)·1[V_i > t],
   a_i the offered load of the task's window. For M/M/c it is exact in
   distribution (W | W > 0 and V | V > 0 are both Exp(cμ − λ)).
2. **Confirm** (simulation). The mix the estimate calls cheapest is replayed
   through the executor (`allocator.workloads.replay`) with the chosen policy
   over several seeds; if the simulation misses the SLA the planner walks up
   the cost-ordered mixes, if it meets it the planner also tries the next
   cheaper mixes, and answers with the cheapest mix whose every run meets the
   SLA. With a trace and a deterministic policy the seeds do not change the
   run; the trace is then also split into `blocks` consecutive parts and the
   answer says in how many of them the SLA holds.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from allocator.errors import InvalidInputError
from allocator.online.policies import make_policy
from allocator.workloads.base import REPLAY_COLUMNS, Workload
from allocator.workloads.replay import BSLD_TAU, replay
from models import Agent, Priority

# ----------------------------------------------------------------------------- formulas


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


def workload_stats(w: Workload) -> WorkloadStats:
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


def predict(w: Workload | None, stats: WorkloadStats, c: int, speed: float = 1.0
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


def predict_trace(w: Workload, c: int, speed: float = 1.0, *,
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


# ----------------------------------------------------------------------------- forecasts


@dataclass(slots=True)
class ClassForecast:
    """One class of a forecast: Poisson arrivals, gamma-distributed work."""

    name: str = "default"
    rate: float = 1.0
    size_mean: float = 1.0
    size_cv: float = 1.0
    priority: str = "normal"
    deadline_factor: float | None = None
    tenant: str | None = None


@dataclass(slots=True)
class Forecast:
    classes: list[ClassForecast]
    tasks: int = 20_000

    def __post_init__(self) -> None:
        if not self.classes:
            raise InvalidInputError("a forecast needs at least one class", field="classes")
        for k in self.classes:
            if not (k.rate > 0 and k.size_mean > 0 and k.size_cv >= 0):
                raise InvalidInputError(
                    f"class {k.name}: need rate > 0, size_mean > 0, size_cv >= 0",
                    field="classes")
            if k.priority not in {p.value for p in Priority}:
                raise InvalidInputError(f"class {k.name}: unknown priority {k.priority!r}",
                                        field="classes")
        if self.tasks < 2:
            raise InvalidInputError("a forecast needs at least two tasks", field="tasks")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Forecast:
        try:
            classes = [ClassForecast(**c) for c in data["classes"]]
        except (KeyError, TypeError) as e:
            raise InvalidInputError(f"forecast: {e}", field="forecast") from None
        return cls(classes, tasks=int(data.get("tasks", 20_000)))

    def stats(self) -> WorkloadStats:
        lam = sum(k.rate for k in self.classes)
        m1 = sum(k.rate * k.size_mean for k in self.classes) / lam
        m2 = sum(k.rate * k.size_mean**2 * (1 + k.size_cv**2) for k in self.classes) / lam
        return WorkloadStats(rate=lam, mean_work=m1, ca2=1.0, cs2=m2 / m1**2 - 1.0,
                             tasks=self.tasks, span=self.tasks / lam)

    def scaled(self, x: float) -> Forecast:
        return Forecast([ClassForecast(k.name, k.rate * x, k.size_mean, k.size_cv, k.priority,
                                       k.deadline_factor, k.tenant) for k in self.classes],
                        tasks=self.tasks)

    def generate(self, seed: int) -> Workload:
        """A seeded sample: superposed Poisson streams, gamma work (exponential at cv 1)."""
        rng = np.random.default_rng(seed)
        lam = sum(k.rate for k in self.classes)
        n = self.tasks
        arrival = np.cumsum(rng.exponential(1.0 / lam, n))
        arrival -= arrival[0]
        probs = np.array([k.rate / lam for k in self.classes])
        cls = rng.choice(len(self.classes), size=n, p=probs)
        work = np.empty(n)
        deadline = np.full(n, np.nan)
        for i, k in enumerate(self.classes):
            idx = np.flatnonzero(cls == i)
            if k.size_cv == 0:
                work[idx] = k.size_mean
            else:
                shape = 1.0 / k.size_cv**2
                work[idx] = rng.gamma(shape, k.size_mean / shape, idx.size)
            if k.deadline_factor is not None:
                deadline[idx] = arrival[idx] + k.deadline_factor * work[idx]
        tasks = pl.DataFrame({
            "id": [f"f{i}" for i in range(n)], "arrival": arrival, "work": work,
            "demand": np.ones(n), "deadline": deadline,
            "priority": [self.classes[c].priority for c in cls],
            "tenant": [self.classes[c].tenant or self.classes[c].name for c in cls],
        }).with_columns(pl.col("deadline").fill_nan(None)).select(REPLAY_COLUMNS)
        return Workload(tasks=tasks, source=f"forecast seed {seed}", rows_read=n)


def scale_arrivals(w: Workload, x: float) -> Workload:
    """The same tasks arriving x times as fast (deadlines keep their slack)."""
    if not x > 0:
        raise InvalidInputError(f"arrival scale must be > 0, got {x}", field="what_if")
    t = w.tasks.with_columns(slack=pl.col("deadline") - pl.col("arrival")).with_columns(
        arrival=pl.col("arrival") / x).with_columns(
        deadline=pl.col("arrival") + pl.col("slack")).select(REPLAY_COLUMNS)
    return Workload(tasks=t, bad=w.bad, filtered=w.filtered, filled=w.filled,
                    source=f"{w.source} (arrivals x{x:g})", rows_read=w.rows_read)


# ----------------------------------------------------------------------------- SLA


_SLA_RE = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+|inf)\s*$")


@dataclass(slots=True, frozen=True)
class Clause:
    metric: str
    op: str
    limit: float

    def holds(self, value: float) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return {"<=": value <= self.limit + 1e-12, "<": value < self.limit,
                ">=": value >= self.limit - 1e-12, ">": value > self.limit}[self.op]

    def margin(self, value: float) -> float:
        """Headroom as a share of the limit (> 0: met with room, < 0: missed)."""
        if not math.isfinite(value):
            return -math.inf
        scale = abs(self.limit) if self.limit else 1.0
        d = self.limit - value if self.op in ("<=", "<") else value - self.limit
        return d / scale

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"


SLA_METRICS = ("mean_wait", "p50_wait", "p95_wait", "p99_wait", "miss_rate", "utilisation",
               "mean_bounded_slowdown")


def parse_sla(text: str) -> list[Clause]:
    """`"p95_wait<=60,miss_rate<=0.01"` -> clauses (metrics: SLA_METRICS)."""
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _SLA_RE.match(part)
        if m is None:
            raise InvalidInputError(f"SLA clause must look like metric<=value, got {part!r}",
                                    field="sla")
        metric, op, val = m.groups()
        if metric not in SLA_METRICS:
            raise InvalidInputError(f"unknown SLA metric {metric!r}; known: "
                                    f"{', '.join(SLA_METRICS)}", field="sla")
        out.append(Clause(metric, op, float(val)))
    if not out:
        raise InvalidInputError("empty SLA", field="sla")
    return out


def sla_met(sla: Sequence[Clause], metrics: Mapping[str, float]) -> bool:
    return all(c.metric in metrics and c.holds(metrics[c.metric]) for c in sla)


# ----------------------------------------------------------------------------- agent types


@dataclass(slots=True, frozen=True)
class AgentType:
    name: str = "agent"
    speed: float = 1.0
    cost: float = 1.0
    min: int = 0
    max: int | None = None


def read_agent_types(path: str | Path) -> list[AgentType]:
    """A JSON list of {name, speed, cost, min, max} (or {"types": [...]})."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"{path}: {e}", field="agent_types") from None
    items = data.get("types", data) if isinstance(data, dict) else data
    try:
        types = [AgentType(**x) for x in items]
    except TypeError as e:
        raise InvalidInputError(f"{path}: {e}", field="agent_types") from None
    check_types(types)
    return types


def check_types(types: Sequence[AgentType]) -> None:
    if not types:
        raise InvalidInputError("need at least one agent type", field="agent_types")
    names = [t.name for t in types]
    if len(set(names)) != len(names):
        raise InvalidInputError("agent type names must be unique", field="agent_types")
    for t in types:
        if not (t.speed > 0 and t.cost >= 0 and t.min >= 0
                and (t.max is None or t.max >= t.min)):
            raise InvalidInputError(f"agent type {t.name}: need speed > 0, cost >= 0, "
                                    "0 <= min <= max", field="agent_types")


Mix = tuple[int, ...]


def mix_agents(types: Sequence[AgentType], mix: Mix) -> list[Agent]:
    out: list[Agent] = []
    for t, n in zip(types, mix, strict=True):
        out.extend(Agent(id=f"{t.name}-{i}", speed=t.speed) for i in range(n))
    return out


def mix_cost(types: Sequence[AgentType], mix: Mix) -> float:
    return sum(t.cost * n for t, n in zip(types, mix, strict=True))


def mix_capacity(types: Sequence[AgentType], mix: Mix) -> float:
    return sum(t.speed * n for t, n in zip(types, mix, strict=True))


def mix_dict(types: Sequence[AgentType], mix: Mix) -> dict[str, int]:
    return {t.name: n for t, n in zip(types, mix, strict=True)}


#: Enumerating mixes stops at this many candidates (ample for 1-3 types).
MAX_MIXES = 200_000


def candidate_mixes(types: Sequence[AgentType], offered: float, *, headroom: float = 4.0
                    ) -> list[Mix]:
    """Stable mixes (capacity > offered load) up to `headroom` x the offered load plus
    a few agents, cheapest first (ties: more capacity first)."""
    top = offered * headroom + 4 * max(t.speed for t in types)
    ranges = []
    for t in types:
        hi = math.ceil(top / t.speed)
        if t.max is not None:
            hi = min(hi, t.max)
        ranges.append(range(t.min, max(t.min, hi) + 1))
    mixes: list[Mix] = []
    for m in itertools.product(*ranges):
        cap = mix_capacity(types, m)
        if sum(m) >= 1 and offered < cap <= top + 1e-9:
            mixes.append(m)
            if len(mixes) > MAX_MIXES:
                raise InvalidInputError("too many agent mixes to enumerate; bound the types "
                                        "with max", field="agent_types")
    mixes.sort(key=lambda m: (mix_cost(types, m), -mix_capacity(types, m), m))
    return mixes


# ----------------------------------------------------------------------------- simulation


def records_metrics(records: pl.DataFrame) -> dict[str, float]:
    """SLA metrics of a set of replay records (one block or all)."""
    waits = records.filter(pl.col("start").is_not_null())["wait"].to_numpy()
    d = records.filter(pl.col("deadline").is_not_null())
    miss = ((d["outcome"] != "complete") | (d["end"] > d["deadline"] + 1e-9)).fill_null(True)
    done = records.filter(pl.col("outcome") == "complete")
    resp = (done["end"] - done["arrival"]).to_numpy()
    bsld = np.maximum(1.0, resp / np.maximum(done["work"].to_numpy(), BSLD_TAU))

    def pct(q: float) -> float:
        return float(np.percentile(waits, q)) if waits.size else 0.0

    return {"mean_wait": float(waits.mean()) if waits.size else 0.0, "p50_wait": pct(50),
            "p95_wait": pct(95), "p99_wait": pct(99),
            "miss_rate": float(miss.mean() or 0.0) if d.height else 0.0,  # type: ignore[arg-type]
            "mean_bounded_slowdown": float(bsld.mean()) if bsld.size else 0.0}


@dataclass(slots=True)
class SimCheck:
    mix: Mix
    runs: list[dict[str, float]]
    blocks: list[dict[str, float]]

    def mean(self) -> dict[str, float]:
        keys = self.runs[0].keys()
        return {k: float(np.mean([r[k] for r in self.runs])) for k in keys}

    def worst(self, sla: Sequence[Clause]) -> dict[str, float]:
        """Per SLA metric, the run value furthest from meeting it."""
        out = {}
        for c in sla:
            vals = [r[c.metric] for r in self.runs]
            out[c.metric] = max(vals) if c.op in ("<=", "<") else min(vals)
        return out

    def met_runs(self, sla: Sequence[Clause]) -> int:
        return sum(sla_met(sla, r) for r in self.runs)

    def met_blocks(self, sla: Sequence[Clause]) -> int:
        keys = {c.metric for c in sla} - {"utilisation"}
        return sum(sla_met([c for c in sla if c.metric in keys], b) for b in self.blocks)


@dataclass(slots=True)
class CapacityPlan:
    types: list[AgentType]
    sla: list[Clause]
    policy: str
    mix: Mix | None
    cost: float
    predicted: dict[str, float]
    simulated: dict[str, float]
    met: bool
    check: SimCheck | None
    predicted_mix: Mix | None
    curve: list[dict[str, Any]] = field(default_factory=list)
    what_if: list[dict[str, Any]] = field(default_factory=list)
    confidence: dict[str, Any] = field(default_factory=dict)
    stats: WorkloadStats | None = None
    simulations: int = 0
    estimator: str = "stationary"
    predicted_stationary: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def clean(d: Mapping[str, Any]) -> dict[str, Any]:
            return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in d.items()}

        return {
            "agents": mix_dict(self.types, self.mix) if self.mix is not None else None,
            "cost": self.cost if self.mix is not None else None,
            "predicted": clean(self.predicted),
            "estimator": self.estimator,
            "predicted_stationary": clean(self.predicted_stationary),
            "simulated": clean(self.simulated),
            "sla_met": self.met,
            "sla": [str(c) for c in self.sla],
            "policy": self.policy,
            "estimate_agents": (mix_dict(self.types, self.predicted_mix)
                                if self.predicted_mix is not None else None),
            "confidence": self.confidence,
            "curve": [clean(r) for r in self.curve],
            "what_if": [clean(r) for r in self.what_if],
            "workload": None if self.stats is None else {
                "tasks": self.stats.tasks, "rate": self.stats.rate,
                "mean_work": self.stats.mean_work, "ca2": self.stats.ca2,
                "cs2": self.stats.cs2, "offered_load": self.stats.offered},
            "simulations": self.simulations,
        }


@dataclass(frozen=True)
class SimJob:
    """One simulated run: everything it needs travels with it (for a sweep backend)."""

    workload: Workload
    policy: str
    agents: list[Agent]
    seed: int
    home: str
    blocks: int


def simulate_run(job: SimJob) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Metrics of one run, and of its `blocks` arrival-ordered parts (a pure function)."""
    r = replay(job.workload, job.policy, agents=job.agents, seed=job.seed,
               home=job.home, samples=0)  # type: ignore[arg-type]
    m = records_metrics(r.records)
    m["utilisation"] = float(r.core["utilisation"])
    blocks: list[dict[str, float]] = []
    if job.blocks > 1:
        rec = r.records.sort("arrival")
        for part in np.array_split(np.arange(rec.height), job.blocks):
            if part.size:
                blocks.append(records_metrics(rec[int(part[0]):int(part[-1]) + 1]))
    return m, blocks


class Planner:
    """Estimate, simulate and search agent mixes for one workload (trace or forecast).

    `backend` (allocator.distributed: local or ray) runs the simulated runs;
    None runs them here, one after the other. Answers are the same either way.
    """

    def __init__(self, sla: Sequence[Clause], *, trace: Workload | None = None,
                 forecast: Forecast | None = None, types: Sequence[AgentType] | None = None,
                 policy: str = "fifo", seeds: Sequence[int] = (0, 1, 2), blocks: int = 4,
                 home: str = "none", estimator: str = "auto", backend: Any = None) -> None:
        if (trace is None) == (forecast is None):
            raise InvalidInputError("give exactly one of a trace or a forecast", field="trace")
        self.sla = list(sla)
        self.trace = trace
        self.forecast = forecast
        self.types = list(types) if types else [AgentType()]
        check_types(self.types)
        self.policy = policy
        self.seeds = list(seeds) or [0]
        if trace is not None and make_policy(policy).placement not in ("random", "p2c"):
            # Same trace, deterministic policy: every seed gives the same run.
            self.seeds = self.seeds[:1]
        self.blocks = blocks
        self.home = home
        self.stats = workload_stats(trace) if trace is not None else forecast.stats()  # type: ignore[union-attr]
        if estimator == "auto":
            estimator = "trace" if trace is not None else "stationary"
        if estimator not in ("trace", "stationary"):
            raise InvalidInputError(f"estimator must be auto, trace or stationary, got "
                                    f"{estimator!r}", field="estimator")
        self.estimator = estimator
        self._samples: dict[int, Workload] = {}
        self._cache: dict[tuple[Mix, float], SimCheck] = {}
        self.simulations = 0
        self.backend = backend

    # -- estimate ------------------------------------------------------------------

    def _sample(self, seed: int) -> Workload:
        assert self.forecast is not None
        if seed not in self._samples:
            self._samples[seed] = self.forecast.generate(seed)
        return self._samples[seed]

    def predict(self, mix: Mix, scale: float = 1.0) -> dict[str, float]:
        c = sum(mix)
        speed = mix_capacity(self.types, mix) / c
        st = self.stats
        if scale != 1.0:
            st = WorkloadStats(st.rate * scale, st.mean_work, st.ca2, st.cs2, st.tasks,
                               st.span / scale)
        w = self.trace if self.trace is not None else self._sample(self.seeds[0])
        if scale != 1.0:
            w = scale_arrivals(w, scale)
        if self.estimator == "trace":
            return predict_trace(w, c, speed)
        return predict(w, st, c, speed)

    def predict_stationary(self, mix: Mix) -> dict[str, float]:
        """The Allen–Cunneen estimate from the workload's averages alone."""
        c = sum(mix)
        w = self.trace if self.trace is not None else self._sample(self.seeds[0])
        return predict(w, self.stats, c, mix_capacity(self.types, mix) / c)

    # -- simulate ------------------------------------------------------------------

    def _jobs(self, mix: Mix, scale: float) -> list[SimJob]:
        agents = mix_agents(self.types, mix)
        jobs = []
        for s in self.seeds:
            w = self.trace if self.trace is not None else self._sample(s)
            assert w is not None
            if scale != 1.0:
                w = scale_arrivals(w, scale)
            jobs.append(SimJob(w, self.policy, agents, s, self.home, self.blocks))
        return jobs

    def simulate_many(self, keys: Sequence[tuple[Mix, float]]) -> list[SimCheck]:
        """Simulate several (mix, scale) pairs at once: all their runs go to the backend
        together (in parallel on ray). Cached like `simulate`."""
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        jobs = [self._jobs(mix, scale) for mix, scale in todo]
        flat = [j for js in jobs for j in js]
        if flat:
            out = (self.backend.map(simulate_run, flat) if self.backend is not None
                   else [simulate_run(j) for j in flat])
            self.simulations += len(flat)
            i = 0
            for key, js in zip(todo, jobs, strict=True):
                part = out[i:i + len(js)]
                i += len(js)
                blocks = next((b for _, b in part if b), [])
                self._cache[key] = SimCheck(key[0], [m for m, _ in part], blocks)
        return [self._cache[k] for k in keys]

    def simulate(self, mix: Mix, scale: float = 1.0) -> SimCheck:
        return self.simulate_many([(mix, scale)])[0]

    def passes(self, mix: Mix, scale: float = 1.0) -> bool:
        chk = self.simulate(mix, scale)
        return chk.met_runs(self.sla) == len(chk.runs)

    # -- search --------------------------------------------------------------------

    def plan(self, *, max_simulations: int = 40, curve_span: int = 3,
             what_if: Sequence[str] = (), progress: Callable[[str], None] | None = None
             ) -> CapacityPlan:
        """The cheapest mix meeting the SLA in every simulated run (see module docstring)."""
        say = progress or (lambda s: None)
        mixes = candidate_mixes(self.types, self.stats.offered)
        if not mixes:
            raise InvalidInputError("no agent mix within the type bounds can carry the load",
                                    field="agent_types")
        predicted_i = next((i for i, m in enumerate(mixes)
                            if sla_met(self.sla, self.predict(m))), None)
        start = predicted_i if predicted_i is not None else len(mixes) - 1
        say(f"estimate: {mix_dict(self.types, mixes[start])} "
            f"({'meets' if predicted_i is not None else 'no mix meets'} the SLA by the formula)")
        best: int | None = None
        sims = 0
        if self.passes(mixes[start]):
            best = start
            i = start - 1
            while i >= 0 and sims < max_simulations:
                sims += 1
                ok = self.passes(mixes[i])
                say(f"simulated {mix_dict(self.types, mixes[i])}: "
                    f"{'meets' if ok else 'misses'}")
                if not ok:
                    break
                best = i
                i -= 1
        else:
            say(f"simulated {mix_dict(self.types, mixes[start])}: misses; walking up")
            i = start + 1
            while i < len(mixes) and sims < max_simulations:
                sims += 1
                if self.passes(mixes[i]):
                    best = i
                    break
                i += 1
        chosen = mixes[best] if best is not None else None
        shown = chosen if chosen is not None else mixes[start]
        chk = self.simulate(shown)
        plan = CapacityPlan(
            types=self.types, sla=self.sla, policy=self.policy, mix=chosen,
            cost=mix_cost(self.types, shown), predicted=self.predict(shown),
            simulated=chk.mean(), met=chosen is not None, check=chk,
            predicted_mix=mixes[predicted_i] if predicted_i is not None else None,
            stats=self.stats, estimator=self.estimator,
            predicted_stationary=self.predict_stationary(shown))
        plan.curve = self.curve(shown, curve_span)
        plan.what_if = [self.what_if(shown, s) for s in what_if]
        plan.confidence = self.confidence(shown, chk)
        plan.simulations = self.simulations
        return plan

    def _dominant(self, mix: Mix) -> int:
        return max(range(len(mix)), key=lambda i: (mix[i], -i))

    def _vary(self, mix: Mix, delta: int) -> Mix | None:
        k = self._dominant(mix)
        m = list(mix)
        m[k] += delta
        t = self.types[k]
        if m[k] < t.min or (t.max is not None and m[k] > t.max) or sum(m) < 1:
            return None
        return tuple(m)

    def curve(self, mix: Mix, span: int) -> list[dict[str, Any]]:
        """SLA metrics (predicted and simulated) as the dominant type's count moves ±span."""
        self.simulate_many([(m, 1.0) for d in range(-span, span + 1)  # one parallel batch
                            if (m := self._vary(mix, d)) is not None
                            and mix_capacity(self.types, m) > self.stats.offered])
        rows = []
        for d in range(-span, span + 1):
            m = self._vary(mix, d)
            if m is None or mix_capacity(self.types, m) <= self.stats.offered:
                continue
            p = self.predict(m)
            chk = self.simulate(m)
            s = chk.mean()
            rows.append({"agents": sum(m), "mix": mix_dict(self.types, m),
                         "cost": mix_cost(self.types, m),
                         **{f"predicted_{k}": v for k, v in p.items()},
                         **{f"simulated_{k}": v for k, v in s.items()},
                         "sla_met": chk.met_runs(self.sla) == len(chk.runs)})
        return rows

    def what_if(self, mix: Mix, scenario: str) -> dict[str, Any]:
        """`agents+N`, `agents-N` (the dominant type) or `arrivals*X`."""
        s = scenario.replace(" ", "")
        m = re.fullmatch(r"agents([+-])(\d+)", s)
        scale = 1.0
        target: Mix | None = mix
        if m:
            d = int(m.group(2)) * (1 if m.group(1) == "+" else -1)
            target = self._vary(mix, d)
        else:
            m2 = re.fullmatch(r"arrivals\*([0-9.eE+-]+)", s)
            if not m2:
                raise InvalidInputError(f"what-if must be agents+N, agents-N or arrivals*X, got "
                                        f"{scenario!r}", field="what_if")
            scale = float(m2.group(1))
            if not scale > 0:
                raise InvalidInputError(f"arrivals*X needs X > 0, got {scale}",
                                        field="what_if")
        if target is None:
            return {"scenario": scenario, "agents": None, "note": "outside the type bounds"}
        row: dict[str, Any] = {"scenario": scenario, "agents": mix_dict(self.types, target),
                               "cost": mix_cost(self.types, target)}
        if mix_capacity(self.types, target) <= self.stats.offered * scale:
            row.update(sla_met=False, note="unstable: offered load >= capacity",
                       predicted=self.predict(target, scale), simulated=None)
            return row
        chk = self.simulate(target, scale)
        row.update(predicted=self.predict(target, scale), simulated=chk.mean(),
                   sla_met=chk.met_runs(self.sla) == len(chk.runs))
        return row

    def confidence(self, mix: Mix, chk: SimCheck) -> dict[str, Any]:
        runs = len(chk.runs)
        distinct = len({tuple(sorted(r.items())) for r in chk.runs})
        worst = chk.worst(self.sla)
        margins = {c.metric: c.margin(worst[c.metric]) for c in self.sla}
        fewer = self._vary(mix, -1)
        fewer_ok = None
        if fewer is not None and mix_capacity(self.types, fewer) > self.stats.offered:
            fewer_ok = self.passes(fewer)
        tasks = self.stats.tasks if self.trace is not None else self.forecast.tasks  # type: ignore[union-attr]
        blocks_met = chk.met_blocks(self.sla) if chk.blocks else None
        parts = [f"simulated {runs} run(s) (seeds {', '.join(map(str, self.seeds))}) of "
                 f"{tasks} tasks with policy {self.policy}; SLA met in "
                 f"{chk.met_runs(self.sla)}/{runs}"]
        if self.trace is not None and runs == 1:
            parts.append(f"(one run: {self.policy} is deterministic on a fixed trace, "
                         "seeds would not change it)")
        if blocks_met is not None:
            parts.append(f"and in {blocks_met}/{len(chk.blocks)} consecutive blocks of the "
                         "first run")
        parts.append("; worst-run margin " + ", ".join(
            f"{c.metric} {worst[c.metric]:.4g} vs {c.limit:g} ({margins[c.metric]:+.0%})"
            for c in self.sla))
        if fewer_ok is not None:
            parts.append(f"; one agent fewer {'also meets' if fewer_ok else 'misses'} it")
        return {"runs": runs, "distinct_runs": distinct, "seeds": self.seeds,
                "tasks_per_run": tasks, "met_runs": chk.met_runs(self.sla),
                "blocks": len(chk.blocks), "met_blocks": blocks_met,
                "margins": margins, "worst": worst, "one_fewer_meets": fewer_ok,
                "statement": " ".join(parts)}


def plan_capacity(sla: str | Sequence[Clause], *, trace: Workload | None = None,
                  forecast: Forecast | None = None, types: Sequence[AgentType] | None = None,
                  policy: str = "fifo", seeds: Iterable[int] = (0, 1, 2), blocks: int = 4,
                  what_if: Sequence[str] = (), max_simulations: int = 40,
                  curve_span: int = 3, progress: Callable[[str], None] | None = None,
                  estimator: str = "auto", backend: Any = None) -> CapacityPlan:
    """The cheapest agent mix meeting `sla` (see the module docstring); `backend`
    (allocator.distributed.get_backend) runs the simulations, None: here."""
    clauses = parse_sla(sla) if isinstance(sla, str) else list(sla)
    p = Planner(clauses, trace=trace, forecast=forecast, types=types, policy=policy,
                seeds=list(seeds), blocks=blocks, estimator=estimator, backend=backend)
    return p.plan(max_simulations=max_simulations, curve_span=curve_span, what_if=what_if,
                  progress=progress)


def plot_curve(plan: CapacityPlan, path: str | Path) -> Path:
    """SLA metrics vs agent count: predicted (line), simulated (markers), limit (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [c for c in plan.sla if c.metric != "utilisation"] or plan.sla
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    xs = [r["agents"] for r in plan.curve]
    for ax, c in zip(axes[0], metrics, strict=True):
        pred = [r.get(f"predicted_{c.metric}", math.nan) for r in plan.curve]
        sim = [r.get(f"simulated_{c.metric}", math.nan) for r in plan.curve]
        label = ("estimate (trace-driven Erlang C)" if plan.estimator == "trace"
                 else "estimate (Erlang C / Allen–Cunneen)")
        ax.plot(xs, pred, "-", label=label)
        ax.plot(xs, sim, "o", label=f"simulated ({plan.policy}, mean of runs)")
        ax.axhline(c.limit, ls="--", color="red", lw=1, label=f"SLA {c}")
        if plan.mix is not None:
            ax.axvline(sum(plan.mix), color="green", lw=1, alpha=0.6, label="chosen")
        ax.set_xlabel("agents")
        ax.set_ylabel(c.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("SLA metrics vs agent count")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
