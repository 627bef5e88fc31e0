"""Replay a workload through the executor core on a virtual clock, keeping per-task records.

This is a thin discrete-event driver around :class:`allocator.online.Executor`
(events in, instructions out), like the generated-workload simulator, but fed
with pre-built arrivals from a trace and recording what the comparison and
the report need: each task's arrival, first start, end, agent and outcome,
and a sampled queue length per agent.

Event order at equal times: completions, then arrivals, then timer ticks, so
an agent freed at t can take a task that arrives at t. A dispatched attempt
runs `work / speed` where `speed` is the agent's true speed (the core only
sees its estimate).

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

import heapq
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from allocator.errors import InvalidInputError
from allocator.metrics import jain_index
from allocator.online.core import Executor
from allocator.online.events import (
    Complete,
    Dispatch,
    Fail,
    Reject,
    SetTimer,
    Steal,
    TaskCompleted,
    TaskSpec,
    TaskSubmitted,
    Tick,
)
from allocator.online.metrics import summary
from allocator.online.policies import Policy, make_policy
from allocator.workloads.base import Workload
from models import Agent

if TYPE_CHECKING:
    from allocator.online.workload import Workload as OnlineWorkload

#: Bounded-slowdown threshold (seconds): the usual 10 s of the parallel
#: job-scheduling literature (Feitelson et al.), so a 1 s job that waits 1 min
#: counts as slowdown 7, not 61.
BSLD_TAU = 10.0

#: Baselines every comparison includes, and our policies.
BASELINES = ("fifo", "round-robin", "random", "jsq", "p2c")
OURS = ("edf+stealing", "priority", "wfq", "cfs")

HomeMode = Literal["none", "tenant", "round_robin"]

_COMPLETE, _ARRIVE, _TICK = 0, 1, 2


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
    workload: Workload | Sequence[tuple[float, TaskSpec]],
    policy: str | Policy,
    *,
    agents: int | Sequence[Agent] = 4,
    speeds: Sequence[float] | None = None,
    seed: int = 0,
    home: HomeMode = "tenant",
    samples: int = 200,
    policy_overrides: dict[str, Any] | None = None,
    executor_options: dict[str, Any] | None = None,
    slots: int | None = None,
) -> ReplayResult:
    """Run one policy over the workload; see the module docstring for the measures.

    Parameters
    ----------
    workload:
        A Workload or `(arrival, TaskSpec)` pairs (any order).
    policy:
        A policy name (allocator.online.policy_names()) or a Policy.
    agents, speeds:
        An agent count (single servers `a0..`, `speeds` cycled) or the agents.
    seed:
        Seeds the random placements.
    home:
        Where a task is "produced" (its home deque under the stealing
        policies): `tenant` (a hash of the tenant, so a tenant's work lands on
        one agent: skewed, as data locality is), `round_robin`, or `none`.
    samples:
        How many evenly spaced instants the per-agent queue length is sampled at.
    slots:
        Agents are nodes of this many slots and a task holds its width (the
        `demand` column: SWF processors, pod GPUs) of them on one agent; a task
        wider than every agent is rejected (no eligible agent). `utilisation`
        is then slot-seconds used / (agents x slots x span).
    """
    width_as = SLOTS if slots is not None else None
    arrivals = (workload.to_specs(width_as=width_as) if isinstance(workload, Workload)
                else list(workload))
    arrivals.sort(key=lambda x: x[0])
    ags = make_agents(agents, speeds, slots=slots) if isinstance(agents, int) else list(agents)
    speed = {a.id: a.speed for a in ags}
    homes = _home_of(home, ags)
    specs = []
    for i, (t, s) in enumerate(arrivals):
        h = homes(i, s)
        if h is not None and s.home is None:
            s = TaskSpec(**{**{k: getattr(s, k) for k in s.__slots__}, "home": h})  # type: ignore[attr-defined]
        specs.append((t, s))
    pol = make_policy(policy, **(policy_overrides or {}))
    opts = {"log": 0, "retain_finished": False, **(executor_options or {})}
    ex = Executor(pol, agents=ags, seed=seed, **opts)

    n = len(specs)
    idx = {s.id: i for i, (_, s) in enumerate(specs)}
    if len(idx) != n:
        raise InvalidInputError("duplicate task ids in the workload", field="trace")
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    outcome: list[str | None] = [None] * n
    agent_of: list[str | None] = [None] * n
    terminals = 0

    last_arrival = specs[-1][0] if specs else 0.0
    step = last_arrival / samples if samples > 0 and last_arrival > 0 else math.inf
    next_sample = 0.0 if samples > 0 else math.inf
    q_t: list[float] = []
    q_rows: list[list[int]] = []
    agent_ids = [a.id for a in ags]

    heap: list[tuple[float, int, int, Any]] = []
    seq = 0
    ai = 0  # next arrival
    timer_at = math.inf
    events = 0
    t0 = time.perf_counter()

    def apply(out: list[Any]) -> None:
        nonlocal seq, timer_at, terminals
        for ins in out:
            k = type(ins)
            if k is Dispatch:
                i = idx[ins.task_id]
                if math.isnan(start[i]):
                    start[i] = ins.time
                agent_of[i] = ins.agent
                dur = ins.work / speed[ins.agent]
                seq += 1
                heapq.heappush(heap, (ins.time + dur, _COMPLETE, seq,
                                      (ins.task_id, ins.agent, ins.attempt, dur)))
            elif k is Complete or k is Reject or k is Fail:
                i = idx[ins.task_id]
                terminals += 1
                end[i] = ins.time
                outcome[i] = "complete" if k is Complete else (
                    "reject" if k is Reject else "fail")
            elif k is SetTimer:
                if ins.at < timer_at:
                    timer_at = ins.at
                    seq += 1
                    heapq.heappush(heap, (ins.at, _TICK, seq, None))
            elif k is Steal:
                pass

    def sample(now: float) -> None:
        row = []
        for aid in agent_ids:
            a = ex.agents[aid]
            row.append(len(a.queue) + len(a.planned))
        row.append(sum(len(p.queue) for p in ex._pools.values()))
        q_t.append(now)
        q_rows.append(row)

    while ai < n or heap:
        nxt_arr = specs[ai][0] if ai < n else math.inf
        if heap and (heap[0][0] < nxt_arr or (heap[0][0] == nxt_arr and heap[0][1] < _ARRIVE)):
            when, kind, _, payload = heapq.heappop(heap)
        else:
            when, kind, payload = nxt_arr, _ARRIVE, specs[ai][1]
            ai += 1
        while next_sample <= when and next_sample <= last_arrival:
            sample(next_sample)
            next_sample += step
        if kind == _COMPLETE:
            tid, ag, att, dur = payload
            out = ex.handle(TaskCompleted(time=when, task_id=tid, agent=ag, attempt=att,
                                          duration=dur))
        elif kind == _ARRIVE:
            out = ex.handle(TaskSubmitted(time=when, task=payload))
            if ai == n:
                ex.metrics.mark()  # service shares as of the last arrival
        else:
            if when != timer_at:
                continue  # superseded by an earlier request
            timer_at = math.inf
            out = ex.handle(Tick(time=when))
        events += 1
        apply(out)
    wall = time.perf_counter() - t0

    core = summary(ex)
    span = float(np.nanmax(end)) if n and not np.isnan(end).all() else 0.0
    done: dict[str, list[float]] = {aid: [] for aid in agent_ids}
    for i in range(n):
        if outcome[i] == "complete" and agent_of[i] is not None:
            done[agent_of[i]].append(float(end[i]))  # type: ignore[index]
    core["per_agent"] = [
        {"agent": aid, "completed": len(ts),
         "busy_share": ex.agents[aid].busy / (span * ex.agents[aid].concurrency)
         if span > 0 else 0.0,
         "completed_last_quarter": sum(1 for x in ts if x >= 0.75 * span)}
        for aid, ts in done.items()]
    core["rejected_after_burst"] = None  # a trace carries no burst markers
    if slots is not None and span > 0:  # the executor counts a running task as one lane
        held = sum(float(end[i] - start[i]) * dict(specs[i][1].demand).get(SLOTS, 1.0)
                   for i in range(n) if outcome[i] == "complete")
        core["utilisation"] = held / (span * sum(a.concurrency for a in ags))
    arr = np.array([t for t, _ in specs], dtype=float)
    work = np.array([s.work for _, s in specs], dtype=float)
    records = pl.DataFrame({
        "id": [s.id for _, s in specs],
        "arrival": arr,
        "work": work,
        "deadline": [s.deadline for _, s in specs],
        "priority": [s.priority.value for _, s in specs],
        "tenant": [s.tenant for _, s in specs],
        "agent": agent_of,
        "start": start,
        "end": end,
        "outcome": outcome,
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
    qcols = [*agent_ids, "global"]
    qs = (pl.DataFrame(q_rows, schema=qcols, orient="row") if q_rows
          else pl.DataFrame(schema=dict.fromkeys(qcols, pl.Int64)))
    qs = qs.with_columns(pl.Series("time", q_t, dtype=pl.Float64)).select("time", *qcols)
    name = pol.name if isinstance(policy, Policy) else str(policy)
    return ReplayResult(policy=name, agents=len(ags), records=records, queue_samples=qs,
                        core=core, wall_s=wall, events=events,
                        extra={"duplicated": max(0, terminals - n), "seed": seed})


def compare(workload: Workload, policies: Sequence[str | Policy], *,
            agents: int | Sequence[Agent], speeds: Sequence[float] | None = None,
            seed: int = 0, home: HomeMode = "tenant", samples: int = 200,
            admission: Any = None, slots: int | None = None) -> list[ReplayResult]:
    """Replay the same workload under each policy (same agents, same seed)."""
    ex_opts = {"admission": admission} if admission is not None else None
    return [replay(workload, p, agents=agents, speeds=speeds, seed=seed, home=home,
                   samples=samples, executor_options=ex_opts, slots=slots)
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


def to_online_workload(workload: Workload, *, agents: int | Sequence[Agent] = 4,
                       speeds: Sequence[float] | None = None, home: HomeMode = "tenant"
                       ) -> OnlineWorkload:
    """The same tasks as the generated-workload simulator's array form.

    allocator.online.simulator.Simulator can then replay the trace; task i
    becomes `t{i}` (arrival order) and tenant k `tenant{k}` (tenants numbered in
    order of first appearance). Use it to cross-check :func:`replay`, which
    keeps per-task records the simulator does not.
    """
    from allocator.online.workload import Workload as Arrays

    ags = make_agents(agents, speeds) if isinstance(agents, int) else list(agents)
    t = workload.tasks
    prio = {"critical": 0, "high": 1, "normal": 2, "low": 3}
    ten = t["tenant"].to_list()
    codes: dict[str | None, int] = {}
    for x in ten:
        codes.setdefault(x, len(codes))
    specs = workload.to_specs()
    homes = _home_of(home, ags)
    index = {a.id: i for i, a in enumerate(ags)}
    home_idx = np.array([index.get(homes(i, s) or "", -1) for i, (_, s) in enumerate(specs)],
                        dtype=np.int64)
    work = t["work"].to_numpy().astype(float)
    return Arrays(
        agents=ags,
        arrival=t["arrival"].to_numpy().astype(float),
        work=work,
        actual=work.copy(),
        priority=np.array([prio[p] for p in t["priority"]], dtype=np.int64),
        deadline=t["deadline"].fill_null(float("nan")).to_numpy().astype(float),
        hard=np.zeros(t.height, dtype=bool),
        home=home_idx,
        tenant=np.array([codes[x] for x in ten], dtype=np.int64),
        skill=np.zeros(t.height, dtype=bool),
        true_speed={a.id: a.speed for a in ags},
    )
