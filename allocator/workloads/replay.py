"""Replay a trace through the executor core on the simulator's virtual clock.

A trace (allocator.workloads.base.Trace, or `(arrival, TaskSpec)` pairs) is
turned into the simulator's :class:`allocator.online.workload.Workload`
(:func:`to_online_workload`) and run by :class:`allocator.online.simulator.Simulator`
-- the same loop as `allocator simulate` -- with per-task records and queue
samples switched on: each task's arrival, first start, end, agent and
outcome, and the queued tasks per agent at evenly spaced instants.

Event order at equal times (the simulator's): completions, then arrivals, then
timers, so an agent freed at t can take a task that arrives at t. A dispatched
attempt runs `work / speed` where `speed` is the agent's true speed (the core
only sees its estimate).

Measures (one :class:`ReplayResult` per policy; `row()` flattens them):

- wait = first start - arrival; response = end - arrival.
- bounded slowdown = max(1, response / max(work, tau)) with tau = 10 s
  (Feitelson's bound, so tiny jobs do not dominate), mean over completed tasks.
- miss_rate: among tasks with a deadline, the share not completed by it
  (rejected and failed count as misses), as in allocator.online.metrics.
- jain: Jain's index of per-agent utilisation (allocator.online.metrics);
  jain_tenants: Jain's index of the per-tenant mean bounded slowdown (1 =
  every tenant is slowed down alike).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import polars as pl

from allocator.errors import InvalidInputError
from allocator.metrics import jain_index
from allocator.online.admission import AdmissionConfig
from allocator.online.events import TaskSpec
from allocator.online.policies import Policy, make_policy
from allocator.online.simulator import Simulator
from allocator.online.workload import Workload, from_specs
from allocator.workloads.base import Trace
from models import Agent

#: Bounded-slowdown threshold (seconds): the usual 10 s of the parallel
#: job-scheduling literature (Feitelson et al.), so a 1 s job that waits 1 min
#: counts as slowdown 7, not 61.
BSLD_TAU = 10.0

#: Baselines every comparison includes, and our policies.
BASELINES = ("fifo", "round-robin", "random", "jsq", "p2c")
OURS = ("edf+stealing", "priority", "wfq", "cfs")

HomeMode = Literal["none", "tenant", "round_robin"]


@dataclass(slots=True)
class ReplayResult:
    """One policy's replay: summary row, per-task records and sampled queue lengths."""

    policy: str
    agents: int
    records: pl.DataFrame
    queue_samples: pl.DataFrame
    core: dict[str, Any]
    wall_s: float
    events: int
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The comparison row: the keys of `allocator simulate --json` plus mean_wait,
        p95_wait, mean_bounded_slowdown, jain_tenants, agents and span."""
        r = self.records
        done = r.filter(pl.col("outcome") == "complete")
        waits = r.filter(pl.col("start").is_not_null())["wait"].to_numpy()
        bsld = done["bsld"].to_numpy()
        ended = r.filter(pl.col("outcome").is_not_null()).height
        tenants = (done.filter(pl.col("tenant").is_not_null()).group_by("tenant")
                   .agg(pl.col("bsld").mean())["bsld"].to_numpy())
        span = float(r["end"].max() or 0.0) if r.height else 0.0  # type: ignore[arg-type]

        def pct(q: float) -> float:
            return float(np.percentile(waits, q)) if waits.size else 0.0

        return {
            "policy": self.policy,
            "agents": self.agents,
            "tasks": r.height,
            "completed": done.height,
            "rejected": int(r.filter(pl.col("outcome") == "reject").height),
            "failed": int(r.filter(pl.col("outcome") == "fail").height),
            "lost": r.height - ended,
            "duplicated": int(self.extra.get("duplicated", 0)),
            "miss_rate": float(self.core["miss_rate"]),
            "mean_wait": float(waits.mean()) if waits.size else 0.0,
            "p50_wait": pct(50),
            "p95_wait": pct(95),
            "p99_wait": pct(99),
            "mean_bounded_slowdown": float(bsld.mean()) if bsld.size else 0.0,
            "jain": float(self.core["jain"]),
            "jain_tenants": float(jain_index(tenants)) if tenants.size else 1.0,
            "utilisation": float(self.core["utilisation"]),
            "steals": int(self.core["steals"]),
            "migrations": int(self.core["migrations"]),
            "span": span,
            "p50_latency": float(self.core["p50_latency"]),
            "p99_latency": float(self.core["p99_latency"]),
            "load_variance": float(self.core["load_variance"]),
            "throughput": float(self.core["throughput"]),
            "requeued": int(self.core["requeued"]),
            "retries": int(self.core["retries"]),
            "events": int(self.core["events"]),
            "events_per_s": self.core["events"] / self.wall_s if self.wall_s > 0 else 0.0,
            "wall_s": self.wall_s,
            "seed": int(self.extra.get("seed", 0)),
            "per_agent": self.core.get("per_agent", []),
            "per_tenant": self.core.get("per_tenant", []),
            "per_class": self.core.get("per_class", []),
            "rejected_after_burst": self.core.get("rejected_after_burst"),
            "steal_interval_mean": float(self.core.get("steal_interval_mean", 0.0)),
            # Priced with the executor's weights (allocator.online.metrics.online_objective).
            **{k: float(self.core.get(k, 0.0)) for k in (
                "cost", "tardiness", "migration_cost", "weighted_objective")},
        }

    def miss_by_class(self) -> dict[str, float]:
        """Deadline-miss rate per priority class (classes with deadline tasks only)."""
        r = self.records.filter(pl.col("deadline").is_not_null())
        miss = (pl.col("outcome") != "complete") | (pl.col("end") > pl.col("deadline") + 1e-9)
        g = r.group_by("priority").agg(miss.mean().alias("m")).sort("priority")
        return {str(p): float(m) for p, m in g.iter_rows()}


#: The resource a task's width is demanded from when agents have several slots.
SLOTS = "slots"


def make_agents(n: int, speeds: Sequence[float] | None = None,
                prefix: str = "a", slots: int | None = None) -> list[Agent]:
    """`n` agents `a0..a{n-1}`; `speeds` is cycled over them (default 1). Single servers,
    or with `slots=K` nodes of K slots (capacity {SLOTS: K}, K tasks at a time)."""
    if n < 1:
        raise InvalidInputError(f"need at least one agent, got {n}", field="agents")
    if slots is not None and slots < 1:
        raise InvalidInputError(f"slots must be >= 1, got {slots}", field="slots")
    sp = list(speeds) if speeds else [1.0]
    if any(not s > 0 for s in sp):
        raise InvalidInputError(f"speeds must be > 0, got {sp}", field="speeds")
    width = len(str(n - 1))
    if slots is None:
        return [Agent(id=f"{prefix}{i:0{width}d}", speed=sp[i % len(sp)]) for i in range(n)]
    return [Agent(id=f"{prefix}{i:0{width}d}", speed=sp[i % len(sp)], concurrency=slots,
                  capacity={SLOTS: float(slots)}) for i in range(n)]


def _replace(s: TaskSpec, upd: dict[str, Any]) -> TaskSpec:
    # (dataclasses.replace, not the slots: the compiled TaskSpec has no __slots__)
    return replace(s, **upd)


def _home_of(mode: HomeMode, agents: Sequence[Agent]) -> Callable[[int, TaskSpec], str | None]:
    ids = [a.id for a in agents]
    n = len(ids)
    if mode == "none":
        return lambda i, s: None
    if mode == "round_robin":
        return lambda i, s: ids[i % n]

    def by_tenant(i: int, s: TaskSpec) -> str | None:
        key = s.tenant if s.tenant is not None else str(i)
        return ids[zlib.crc32(key.encode()) % n]

    return by_tenant


def replay(
    workload: Trace | Sequence[tuple[float, TaskSpec]],
    policy: str | Policy,
    *,
    agents: int | Sequence[Agent] = 4,
    speeds: Sequence[float] | None = None,
    seed: int = 0,
    home: HomeMode = "tenant",
    samples: int = 200,
    policy_overrides: dict[str, Any] | None = None,
    admission: AdmissionConfig | None = None,
    max_retries: int = 2,
    slots: int | None = None,
    flaky: tuple[int, float, float] | None = None,
    tenants: int | None = None,
    skill_groups: int = 0,
) -> ReplayResult:
    """Run one policy over the trace on the simulator; see the module docstring.

    Parameters
    ----------
    workload:
        A Trace or `(arrival, TaskSpec)` pairs (any order).
    policy:
        A policy name (allocator.online.policy_names()) or a Policy.
    agents, speeds:
        An agent count (single servers `a0..`, `speeds` cycled) or the agents.
    seed:
        Seeds the random placements, flaky attempts and skill groups.
    home:
        Where a task is "produced" (its home deque under the stealing
        policies): `tenant` (a hash of the tenant, so a tenant's work lands on
        one agent: skewed, as data locality is), `round_robin`, or `none`.
    samples:
        How many evenly spaced instants the per-agent queue length is sampled at.
    admission, max_retries:
        The executor's admission control and retries per task.
    slots:
        Agents are nodes of this many slots and a task holds its width (the
        `demand` column: SWF processors, pod GPUs) of them on one agent; a task
        wider than every agent is rejected (no eligible agent). `utilisation`
        is then slot-seconds used / (agents x slots x span).
    flaky, tenants, skill_groups:
        As `allocator simulate`'s flags (:func:`to_online_workload`).
    """
    wl = to_online_workload(workload, agents=agents, speeds=speeds, home=home, slots=slots,
                            flaky=flaky, tenants=tenants, skill_groups=skill_groups, seed=seed)
    n = wl.n
    ags = wl.agents
    last_arrival = float(wl.arrival[-1]) if n else 0.0
    times: list[float] = []
    if samples > 0 and n:
        # Evenly spaced up to the last arrival, by repeated addition (as before the
        # replay ran on the simulator: the same instants, the same samples).
        step = last_arrival / samples if last_arrival > 0 else math.inf
        t = 0.0
        while t <= last_arrival:
            times.append(t)
            t += step
    pol = make_policy(policy, **(policy_overrides or {}))
    sim = Simulator(wl, pol, seed=seed, log=0, admission=admission, max_retries=max_retries,
                    record=True, sample_times=times)
    res = sim.run()
    rec = res.records
    assert rec is not None
    core = dict(res.row)
    core["rejected_after_burst"] = None  # a trace carries no burst markers
    start = np.array(rec.start, dtype=float)
    end = np.array(rec.end, dtype=float)
    span = float(np.nanmax(end)) if not np.isnan(end).all() else 0.0
    if slots is not None and span > 0:  # the executor counts a running task as one lane
        width = (wl.demand[:, wl.resources.index(SLOTS)] if wl.demand is not None
                 else np.ones(n))
        done = np.array([o == "complete" for o in rec.outcome], dtype=bool)
        held = float(((end - start) * width)[done].sum())
        core["utilisation"] = held / (span * sum(a.concurrency for a in ags))
    tenant_of = [wl.tenant_names[k] if wl.tenant_names else f"tenant{k}"
                 for k in wl.tenant.tolist()] if n else []
    tenant_col = [None if k < 0 else tenant_of[i] for i, k in enumerate(wl.tenant.tolist())]
    prio_names = ("critical", "high", "normal", "low")
    records = pl.DataFrame({
        "id": wl.ids or [f"t{i}" for i in range(n)],
        "arrival": wl.arrival.astype(float),
        "work": wl.work.astype(float),
        "deadline": [None if d != d else d for d in wl.deadline.tolist()],
        "priority": [prio_names[p] for p in wl.priority.tolist()],
        "tenant": tenant_col,
        "agent": rec.agent,
        "start": start,
        "end": end,
        "outcome": rec.outcome,
    }, schema_overrides={"deadline": pl.Float64, "tenant": pl.String, "agent": pl.String,
                         "outcome": pl.String}).with_columns(
        pl.col("start").fill_nan(None), pl.col("end").fill_nan(None))
    records = records.with_columns(
        wait=pl.col("start") - pl.col("arrival"),
        bsld=pl.max_horizontal(
            pl.lit(1.0),
            (pl.col("end") - pl.col("arrival")) / pl.max_horizontal(pl.col("work"),
                                                                   pl.lit(BSLD_TAU))),
    )
    q_rows = [row for _, row in res.queue_samples]
    if samples <= 0 and not q_rows:
        # No samples asked (capacity planning, tuning): no column per agent either. An
        # empty 10,000-column frame took 1.1 s a run, a tenth of a 10,000-agent replay.
        qs = pl.DataFrame(schema={"time": pl.Float64, "global": pl.Int64})
    else:
        qcols = [*(a.id for a in ags), "global"]
        qs = (pl.DataFrame(q_rows, schema=qcols, orient="row") if q_rows
              else pl.DataFrame(schema=dict.fromkeys(qcols, pl.Int64)))
        qs = qs.with_columns(pl.Series("time", [t for t, _ in res.queue_samples],
                                       dtype=pl.Float64)).select("time", *qcols)
    name = pol.name if isinstance(policy, Policy) else str(policy)
    return ReplayResult(policy=name, agents=len(ags), records=records, queue_samples=qs,
                        core=core, wall_s=float(res.row["wall_s"]),
                        events=int(res.row["events"]),
                        extra={"duplicated": int(res.row["duplicated"]), "seed": seed})


def compare(workload: Trace, policies: Sequence[str | Policy], *,
            agents: int | Sequence[Agent], speeds: Sequence[float] | None = None,
            seed: int = 0, home: HomeMode = "tenant", samples: int = 200,
            admission: AdmissionConfig | None = None, slots: int | None = None,
            flaky: tuple[int, float, float] | None = None, tenants: int | None = None,
            skill_groups: int = 0) -> list[ReplayResult]:
    """Replay the same trace under each policy (same agents, same seed)."""
    return [replay(workload, p, agents=agents, speeds=speeds, seed=seed, home=home,
                   samples=samples, admission=admission, slots=slots, flaky=flaky,
                   tenants=tenants, skill_groups=skill_groups)
            for p in policies]


def utilisation_series(records: pl.DataFrame, agents: int, bins: int = 100
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Busy share of all agents per time bin, from the records' [start, end) intervals.

    Returns (bin left edges, utilisation per bin). A task's busy interval is
    from its (last) start to its end; retried attempts are not split out.
    """
    r = records.filter(pl.col("start").is_not_null() & pl.col("end").is_not_null())
    if r.height == 0:
        return np.zeros(0), np.zeros(0)
    s = r["start"].to_numpy()
    e = r["end"].to_numpy()
    lo, hi = float(s.min()), float(e.max())
    if hi <= lo:
        return np.array([lo]), np.array([0.0])
    edges = np.linspace(lo, hi, bins + 1)
    # busy(t) = #(start <= t) - #(end <= t); its integral over [0, x] is
    # B(x) = sum(max(0, x - s)) - sum(max(0, x - e)), evaluated at the edges.
    ss, es = np.sort(s), np.sort(e)
    cs, ce = np.concatenate(([0.0], np.cumsum(ss))), np.concatenate(([0.0], np.cumsum(es)))

    def integral(x: np.ndarray) -> np.ndarray:
        ks = np.searchsorted(ss, x, side="right")
        ke = np.searchsorted(es, x, side="right")
        return (ks * x - cs[ks]) - (ke * x - ce[ke])

    b = integral(edges)
    width = np.diff(edges)
    return edges[:-1], np.diff(b) / (width * agents)


def to_online_workload(
    workload: Trace | Sequence[tuple[float, TaskSpec]], *,
    agents: int | Sequence[Agent] = 4, speeds: Sequence[float] | None = None,
    home: HomeMode = "tenant", slots: int | None = None,
    flaky: tuple[int, float, float] | None = None, tenants: int | None = None,
    skill_groups: int = 0, seed: int = 0,
) -> Workload:
    """The trace as the simulator's Workload (what :func:`replay` runs).

    Tasks keep their ids (`Workload.ids`; the core sees `t{i}` in arrival
    order), tenants their names. `home` sets each task's home agent (see
    :func:`replay`); `slots` makes the agents nodes of that many slots and the
    width a demand of them. The options of `allocator simulate`: `flaky=(K, P,
    UNTIL)` makes the first K agents fail each attempt with probability P until
    UNTIL; `tenants=K` spreads the tasks evenly over `tenant0..tenant{K-1}` in
    arrival order (replacing the trace's tenants); `skill_groups=G` gives each
    task one of G skills (seeded draw) that every agent has.
    """
    width_as = SLOTS if slots is not None else None
    arrivals = (workload.to_specs(width_as=width_as) if isinstance(workload, Trace)
                else list(workload))
    arrivals.sort(key=lambda x: x[0])
    ags = make_agents(agents, speeds, slots=slots) if isinstance(agents, int) else list(agents)
    if skill_groups:
        if not 0 < skill_groups <= 10_000:
            raise InvalidInputError(f"must be in [0, 10000], got {skill_groups}",
                                    field="skill_groups")
        groups = [f"s{g}" for g in range(skill_groups)]
        ags = [a.model_copy(update={"skills": sorted(set(a.skills) | set(groups))})
               for a in ags]
    homes = _home_of(home, ags)
    specs = []
    for i, (t, s) in enumerate(arrivals):
        upd: dict[str, Any] = {"tenant": f"tenant{i % tenants}"} if tenants else {}
        if tenants:
            s = _replace(s, upd)
        h = homes(i, s)
        if h is not None and s.home is None:
            s = _replace(s, {"home": h})
        specs.append((t, s))
    seen: set[str] = set()
    for _, s in specs:
        if s.id in seen:
            n_dup = len(specs) - len({x.id for _, x in specs})
            raise InvalidInputError(f"duplicate task id {s.id!r} in the workload ({n_dup} rows "
                                    "repeat an earlier id)", field="trace")
        seen.add(s.id)
    wl = from_specs(specs, ags)
    n = wl.n
    if flaky is not None:
        k, p, until = flaky
        if not 0 <= k <= len(ags):
            raise InvalidInputError(f"{k} flaky agents but only {len(ags)} agents",
                                    field="flaky")
        wl.flaky = {ags[j].id: (p, until) for j in range(k)}
    if skill_groups:
        wl.group = np.random.default_rng([seed, 7]).integers(0, skill_groups, n)
    return wl
