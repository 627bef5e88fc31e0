"""The capacity planner: estimate with the queueing formulas, confirm by replaying through
the executor, search the mixes; the method is described in allocator.planning.capacity."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from allocator.errors import InvalidInputError
from allocator.online.policies import make_policy
from allocator.planning.forecast import Forecast, scale_arrivals
from allocator.planning.mixes import (
    AgentType,
    Mix,
    candidate_mixes,
    check_types,
    mix_agents,
    mix_capacity,
    mix_cost,
    mix_dict,
)
from allocator.planning.queueing import WorkloadStats, predict, predict_trace, workload_stats
from allocator.planning.sla import Clause, parse_sla, sla_met
from allocator.workloads.base import Trace
from allocator.workloads.replay import BSLD_TAU, replay
from models import Agent


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

    workload: Trace
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

    def __init__(self, sla: Sequence[Clause], *, trace: Trace | None = None,
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
        self._samples: dict[int, Trace] = {}
        self._cache: dict[tuple[Mix, float], SimCheck] = {}
        self.simulations = 0
        self.backend = backend
        #: Called before each simulated run with (runs done, runs in this batch, what):
        #: a 10,000-agent run takes seconds, and the search runs dozens.
        self.on_run: Callable[[int, int, str], None] | None = None

    # -- estimate ------------------------------------------------------------------

    def _sample(self, seed: int) -> Trace:
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
            labels = [f"{mix_dict(self.types, mix)}" + (f" at arrivals x{scale:g}"
                                                         if scale != 1.0 else "")
                      for (mix, scale), js in zip(todo, jobs, strict=True) for _ in js]
            out: list[tuple[dict[str, float], list[dict[str, float]]]]
            if self.backend is not None:
                if self.on_run is not None:
                    self.on_run(0, len(flat), f"{len(flat)} runs at once ({labels[0]} ...)")
                out = self.backend.map(simulate_run, flat)
            else:
                out = []
                for k, (job, label) in enumerate(zip(flat, labels, strict=True)):
                    if self.on_run is not None:
                        self.on_run(k, len(flat), f"{label} seed {job.seed} "
                                                  f"({job.workload.tasks.height:,} tasks)")
                    out.append(simulate_run(job))
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


def plan_capacity(sla: str | Sequence[Clause], *, trace: Trace | None = None,
                  forecast: Forecast | None = None, types: Sequence[AgentType] | None = None,
                  policy: str = "fifo", seeds: Iterable[int] = (0, 1, 2), blocks: int = 4,
                  what_if: Sequence[str] = (), max_simulations: int = 40,
                  curve_span: int = 3, progress: Callable[[str], None] | None = None,
                  estimator: str = "auto", backend: Any = None,
                  on_run: Callable[[int, int, str], None] | None = None) -> CapacityPlan:
    """The cheapest agent mix meeting `sla` (see the module docstring); `backend`
    (allocator.distributed.get_backend) runs the simulations, None: here. `progress`
    hears each step of the search, `on_run` each simulated run before it starts."""
    clauses = parse_sla(sla) if isinstance(sla, str) else list(sla)
    p = Planner(clauses, trace=trace, forecast=forecast, types=types, policy=policy,
                seeds=list(seeds), blocks=blocks, estimator=estimator, backend=backend)
    p.on_run = on_run
    return p.plan(max_simulations=max_simulations, curve_span=curve_span, what_if=what_if,
                  progress=progress)
