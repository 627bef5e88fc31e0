"""Capacity planning for wide-job logs: the fewest processors (or nodes) meeting an SLA.

The single-server planner (allocator.planning.planner) sizes a pool of
one-slot agents; a parallel machine's log needs the machine's size in
processors. Here every candidate size P is checked by replaying the whole log
with the wide-job core (allocator.cluster) under the chosen policy, with the
same measures as `allocator replay` (and the independent validity check).

Search, in steps of one node when the header gives processors per node:
start at the smallest size that can run every job (the widest job, in whole
nodes), double until the SLA holds, then bisect between the last size that
missed and the first that met. `offered_procs` in the answer is the
processor-seconds over the submit span (the busy processors the load needs).
Waits fall as the machine grows but backfilling is not strictly monotone in
P, so the answer comes with a curve of sizes around it (each replayed) and
says when a smaller size on the curve also met the SLA.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allocator.cluster.jobs import ClusterTrace
from allocator.cluster.metrics import bounded_slowdown
from allocator.cluster.policies import parse_policy
from allocator.cluster.sim import simulate
from allocator.cluster.validate import check_schedule
from allocator.errors import InvalidInputError
from allocator.planning.sla import Clause, parse_sla, sla_met

#: The SLA metrics a wide-job replay measures (no deadlines in an SWF log).
WIDE_METRICS = ("mean_wait", "p50_wait", "p95_wait", "p99_wait", "utilisation",
                "mean_bounded_slowdown")

#: Largest machine the search tries, as a multiple of its starting size.
MAX_GROWTH = 1024


def wide_metrics(trace: ClusterTrace, procs: int, policy: str) -> dict[str, float]:
    """Replay the log on `procs` processors; the SLA metrics (and `valid`, 1.0 or 0.0)."""
    j = trace.jobs
    s = simulate(j, procs, policy)
    bad = check_schedule(j.submit, j.run, j.width, procs, s.log_job, s.start, s.end)
    wait = s.start - j.submit
    span = float(np.nanmax(s.end) - j.submit.min()) if len(j) else 0.0
    pct = np.percentile(wait, [50, 95, 99]) if wait.size else np.zeros(3)
    return {"mean_wait": float(wait.mean()) if wait.size else 0.0,
            "p50_wait": float(pct[0]), "p95_wait": float(pct[1]), "p99_wait": float(pct[2]),
            "mean_bounded_slowdown": float(bounded_slowdown(wait, j.run).mean())
            if wait.size else 0.0,
            "utilisation": float((j.run * j.width).sum() / (procs * span)) if span > 0 else 0.0,
            "valid": 0.0 if bad else 1.0}


@dataclass(slots=True)
class WidePlan:
    """The answer: processors (and nodes), what they give, the curve around them."""

    sla: list[Clause]
    policy: str
    procs: int | None
    procs_per_node: int
    simulated: dict[str, float]
    machine: int
    machine_metrics: dict[str, float]
    lower_bound: int
    offered: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    simulations: int = 0
    note: str = ""

    @property
    def nodes(self) -> int | None:
        return None if self.procs is None else math.ceil(self.procs / self.procs_per_node)

    def to_json(self) -> dict[str, Any]:
        return {"procs": self.procs, "nodes": self.nodes, "procs_per_node": self.procs_per_node,
                "sla_met": self.procs is not None, "sla": [str(c) for c in self.sla],
                "policy": self.policy, "simulated": self.simulated,
                "log_machine": {"procs": self.machine,
                                "nodes": math.ceil(self.machine / self.procs_per_node),
                                "simulated": self.machine_metrics,
                                "sla_met": sla_met(self.sla, self.machine_metrics)},
                "lower_bound": self.lower_bound, "offered_procs": self.offered,
                "curve": self.curve,
                "simulations": self.simulations, "note": self.note}


def plan_wide(sla: str | Sequence[Clause], trace: ClusterTrace, *, policy: str = "easy",
              curve_span: int = 3, max_simulations: int = 40,
              progress: Callable[[str], None] | None = None) -> WidePlan:
    """The fewest processors (whole nodes) whose replay meets `sla` (module docstring)."""
    clauses = parse_sla(sla) if isinstance(sla, str) else list(sla)
    other = [c.metric for c in clauses if c.metric not in WIDE_METRICS]
    if other:
        raise InvalidInputError(f"SLA metric {other[0]!r} is not measured on a wide-job log; "
                                f"use {', '.join(WIDE_METRICS)}", field="sla")
    parse_policy(policy)
    say = progress or (lambda s: None)
    j = trace.jobs
    if len(j) < 1:
        raise InvalidInputError("no jobs to plan for", field="trace")
    ppn = round(trace.procs_per_node) if trace.nodes and \
        trace.procs % trace.nodes == 0 else 1
    span = float(j.submit.max() - j.submit.min()) or 1.0
    offered = float((j.run * j.width).sum()) / span
    lo = math.ceil(int(j.width.max()) / ppn) * ppn
    cache: dict[int, dict[str, float]] = {}

    def run(p: int) -> dict[str, float]:
        if p not in cache:
            cache[p] = wide_metrics(trace, p, policy)
            say(f"{p} processors: " + ", ".join(f"{c.metric} {cache[p][c.metric]:.4g}"
                                                for c in clauses))
        return cache[p]

    def ok(p: int) -> bool:
        return sla_met(clauses, run(p))

    miss, hit = None, None
    p = lo
    while len(cache) < max_simulations and p <= lo * MAX_GROWTH:
        if ok(p):
            hit = p
            break
        miss = p
        p = max(p * 2, p + ppn)
    if hit is not None and miss is not None:
        a, b = miss // ppn, hit // ppn  # bisect in whole nodes
        while b - a > 1 and len(cache) < max_simulations:
            mid = (a + b) // 2
            if ok(mid * ppn):
                b = mid
            else:
                a = mid
        hit = b * ppn
    centre = hit if hit is not None else (miss or lo)
    curve = []
    for d in range(-curve_span, curve_span + 1):
        q = centre + d * ppn
        if q < lo:
            continue
        m = run(q)
        curve.append({"procs": q, "nodes": q // ppn, **m, "sla_met": sla_met(clauses, m)})
    note = ""
    smaller = [r["procs"] for r in curve if r["sla_met"] and hit is not None and r["procs"] < hit]
    if smaller:
        note = (f"not monotone: {min(smaller)} processors also met the SLA on the curve "
                "(backfilling anomalies); the answer is the bisection's")
    machine_m = run(trace.procs)
    return WidePlan(sla=clauses, policy=policy, procs=hit, procs_per_node=ppn,
                    simulated=run(hit) if hit is not None else run(centre),
                    machine=trace.procs, machine_metrics=machine_m, lower_bound=lo,
                    offered=offered,
                    curve=curve, simulations=len(cache), note=note)
