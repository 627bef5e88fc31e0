"""Alibaba pods on nodes: cpu, memory and GPU demands placed on one node each.

The openb trace (Weng et al., "Beware of Fragmentation", USENIX ATC 2023;
github.com/alibaba/clusterdata cluster-trace-gpu-v2023) lists pods with
`cpu_milli`, `memory_mib`, `num_gpu`, `gpu_milli`, creation, scheduled and
deletion times. The node list is not in that file, so the cluster is
`nodes` identical nodes of one `NodeShape` (`--nodes`, `--node-shape`).

GPU model (as the paper's simulator): a node has `gpu` GPUs of 1000 milli
each. A pod with `num_gpu = k` needs k distinct GPUs with at least
`gpu_milli` free each: k = 1 with gpu_milli < 1000 shares one GPU with other
pods; k > 1 takes whole GPUs (the trace has gpu_milli = 1000 for all of them).
A pod never spans nodes.

Reading (counted, never silent): run = deletion - scheduled (the time the pod
held its resources); recorded wait = scheduled - creation; pods never
scheduled (Pending) are dropped, as are rows with missing or bad numbers and
pods larger than a node. The trace has no requested times, so EASY plans
with the run time (perfect estimates).

Policies `BACKFILL:PLACEMENT`, queue in creation order:

- `fcfs`: the head starts when some node fits it; the rest wait behind it;
- `easy`: the blocked head gets a reservation (the earliest instant some node
  fits it as running pods end, and that node); a later pod may start now if
  it ends by then, or runs on another node, or leaves the reserved node able
  to hold the head at the reservation;
- `greedy`: every queued pod that fits starts, in queue order (no
  reservation, as Kubernetes' default scheduler; can starve large pods).

Placement: `first-fit` (lowest node index; lowest GPU indices) or `best-fit`
(the node left with the least free capacity, summed over resources as shares
of a node; the GPUs with the least free milli that fit, so shares pack onto
partly used GPUs and whole GPUs stay free). `fcfs`, `easy` and `greedy` alone
mean first-fit.

The independent check is allocator.cluster.validate.check_pod_schedule.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import polars as pl

from allocator.errors import InvalidInputError

#: Default node: 96 cores, 768 GiB, 8 GPUs -- the large 8-GPU node shape of the
#: openb cluster (Weng et al. ATC'23: 1,523 nodes, most of them GPU nodes of 8
#: GPUs). An assumption, not read from the trace: the node list
#: (openb_node_list_gpu_node.csv) is heterogeneous and is not shipped here.
DEFAULT_SHAPE = "cpu=96000,memory=786432,gpu=8"
#: Default node count: the openb cluster's 1,523 nodes.
DEFAULT_NODES = 1523
#: Bounded-slowdown threshold (s), as allocator.cluster.metrics.
BSLD_TAU = 10.0

BACKFILLS = {"fcfs": "the head blocks the queue until some node fits it",
             "easy": "EASY: the blocked head holds a reservation on one node; later pods "
                     "start if they do not delay it",
             "greedy": "every queued pod that fits starts (no reservation; kube-scheduler "
                       "like)"}
PLACEMENTS = {"first-fit": "lowest node index, lowest GPU indices",
              "best-fit": "the node left with the least free capacity; the fullest GPUs "
                          "that fit"}
#: What `allocator replay` runs on a pod trace without -p.
DEFAULT_POD_POLICIES = tuple(f"{b}:{p}" for b in BACKFILLS for p in PLACEMENTS)

POD_ROW_KEYS = ("policy", "jobs", "nodes", "mean_wait", "mean_bounded_slowdown", "p95_wait",
                "utilisation_cpu", "utilisation_memory", "utilisation_gpu",
                "recorded_mean_wait", "recorded_mean_bounded_slowdown", "valid")


@dataclass(frozen=True, slots=True)
class NodeShape:
    """One node's capacity: cpu milli-cores, memory MiB, whole GPUs."""

    cpu: int
    memory: int
    gpu: int

    @classmethod
    def parse(cls, text: str) -> NodeShape:
        """`cpu=96000,memory=786432,gpu=8` (all three; ints >= 0, cpu and memory >= 1)."""
        vals: dict[str, int] = {}
        for part in text.split(","):
            k, sep, v = part.partition("=")
            k = k.strip()
            if not sep or k not in ("cpu", "memory", "gpu") or k in vals:
                raise InvalidInputError(f"node shape must be cpu=N,memory=N,gpu=N, got "
                                        f"{text!r}", field="node_shape")
            try:
                vals[k] = int(v)
            except ValueError:
                raise InvalidInputError(f"node shape {k} must be an integer, got {v!r}",
                                        field="node_shape") from None
        if set(vals) != {"cpu", "memory", "gpu"}:
            raise InvalidInputError(f"node shape needs cpu, memory and gpu, got {text!r}",
                                    field="node_shape")
        if vals["cpu"] < 1 or vals["memory"] < 1 or vals["gpu"] < 0:
            raise InvalidInputError(f"node shape needs cpu >= 1, memory >= 1, gpu >= 0, got "
                                    f"{text!r}", field="node_shape")
        return cls(cpu=vals["cpu"], memory=vals["memory"], gpu=vals["gpu"])


@dataclass(slots=True)
class PodJobs:
    """Pods as arrays in creation order (see the module docstring)."""

    submit: np.ndarray
    run: np.ndarray
    cpu: np.ndarray
    memory: np.ndarray
    num_gpu: np.ndarray
    gpu_milli: np.ndarray
    recorded_wait: np.ndarray
    ids: list[str]
    dropped: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return int(self.submit.size)

    @classmethod
    def from_arrays(cls, submit: Any, run: Any, cpu: Any, memory: Any, num_gpu: Any,
                    gpu_milli: Any, *, recorded_wait: Any = None, ids: Any = None,
                    source: str = "<arrays>") -> PodJobs:
        """Pods from sequences (tests, generated traces); checked, sorted by submit."""
        s = np.asarray(submit, dtype=float)
        n = s.size
        arrs = {"run": np.asarray(run, dtype=float), "cpu": np.asarray(cpu, dtype=np.int64),
                "memory": np.asarray(memory, dtype=np.int64),
                "num_gpu": np.asarray(num_gpu, dtype=np.int64),
                "gpu_milli": np.asarray(gpu_milli, dtype=np.int64)}
        for k, a in arrs.items():
            if a.shape != (n,):
                raise InvalidInputError(f"{k} has {a.size} values for {n} pods", field=k)
        if n and (not np.isfinite(s).all() or (s < 0).any()):
            raise InvalidInputError("submit times must be finite and >= 0", field="submit")
        if n and (not np.isfinite(arrs["run"]).all() or (arrs["run"] < 0).any()):
            raise InvalidInputError("run times must be finite and >= 0", field="run")
        for k in ("cpu", "memory", "num_gpu", "gpu_milli"):
            if n and (arrs[k] < 0).any():
                raise InvalidInputError(f"{k} must be >= 0", field=k)
        g, m = arrs["num_gpu"], arrs["gpu_milli"]
        if n and (((g > 0) & ((m < 1) | (m > 1000))).any() or ((g > 1) & (m != 1000)).any()
                  or ((g == 0) & (m != 0)).any()):
            raise InvalidInputError("gpu_milli must be 1..1000 with one GPU, 1000 with several, "
                                    "0 without GPUs", field="gpu_milli")
        order = np.argsort(s, kind="stable")
        rw = np.full(n, np.nan) if recorded_wait is None else np.asarray(recorded_wait, float)
        id_list = [str(i) for i in range(n)] if ids is None else [str(x) for x in ids]
        return cls(submit=s[order], run=arrs["run"][order], cpu=arrs["cpu"][order],
                   memory=arrs["memory"][order], num_gpu=g[order], gpu_milli=m[order],
                   recorded_wait=rw[order], ids=[id_list[i] for i in order], source=source)

    def gpu_total(self) -> np.ndarray:
        """GPU milli each pod holds in all (num_gpu x gpu_milli)."""
        return self.num_gpu * self.gpu_milli

    def fits(self, shape: NodeShape) -> np.ndarray:
        return ((self.cpu <= shape.cpu) & (self.memory <= shape.memory)
                & (self.num_gpu <= shape.gpu))


def is_pod_trace(path: str | PathLike[str]) -> bool:
    """Whether `path` is a CSV whose header has the openb pod columns."""
    p = str(path)
    if not p.lower().endswith(".csv"):
        return False
    try:
        with open(p, encoding="utf-8") as fh:
            head = fh.readline()
    except OSError:
        return False
    cols = {c.strip() for c in head.split(",")}
    return {"cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "creation_time"} <= cols


def _check_scales(time_scale: float, arrival_scale: float) -> tuple[float, float]:
    from allocator.cluster.jobs import check_scale

    return check_scale("time_scale", time_scale), check_scale("arrival_scale", arrival_scale)


def read_pods(source: str | PathLike[str], shape: NodeShape, *,
              window: tuple[float, float] | None = None,
              limit: int | None = None, time_scale: float = 1.0,
              arrival_scale: float = 1.0) -> PodJobs:
    """Read an openb pod CSV (module docstring); times re-based to the first kept creation.

    `time_scale` multiplies every time and `arrival_scale` the creation gaps only, as
    for SWF logs (allocator.cluster.jobs.read_swf_cluster).
    """
    from allocator.cluster.jobs import scaled_times

    ts, ars = _check_scales(time_scale, arrival_scale)
    name = str(source)
    try:
        df = pl.read_csv(name, infer_schema_length=0)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InvalidInputError(f"{name}: cannot read the pod table: {exc}",
                                field="trace") from None
    need = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "creation_time",
            "deletion_time", "scheduled_time")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InvalidInputError(f"{name}: missing pod columns {missing}", field="trace")
    c = pl.col
    df = df.with_columns([c(k).cast(pl.Float64, strict=False).alias(k) for k in need])
    if "name" not in df.columns:
        df = df.with_row_index("name").with_columns(c("name").cast(pl.Utf8))
    dropped: dict[str, int] = {}

    def drop(reason: str, cond: pl.Expr) -> None:
        nonlocal df
        k = df.filter(cond).height
        if k:
            dropped[reason] = k
            df = df.filter(~cond)

    # NaN and inf parse as numbers; NaN then sorts above every node size and was
    # dropped as "larger than a node".
    drop("bad number (cpu, memory, gpu or times)",
         pl.any_horizontal([c(k).is_null() for k in need if k != "scheduled_time"])
         | pl.any_horizontal([(c(k).is_nan() | c(k).is_infinite()).fill_null(False)
                              for k in need])
         | pl.any_horizontal([c(k) < 0 for k in need[:4]]))
    drop("never scheduled (Pending)", c("scheduled_time").is_null())
    drop("deleted before scheduled or scheduled before created",
         (c("deletion_time") < c("scheduled_time")) | (c("scheduled_time") < c("creation_time")))
    drop("bad gpu_milli for num_gpu",
         ((c("num_gpu") > 0) & ((c("gpu_milli") < 1) | (c("gpu_milli") > 1000)))
         | ((c("num_gpu") > 1) & (c("gpu_milli") != 1000))
         | ((c("num_gpu") == 0) & (c("gpu_milli") != 0)))
    drop(f"larger than a node ({shape.cpu} cpu, {shape.memory} MiB, {shape.gpu} GPUs)",
         (c("cpu_milli") > shape.cpu) | (c("memory_mib") > shape.memory)
         | (c("num_gpu") > shape.gpu))
    df = df.sort("creation_time", maintain_order=True)
    if window is not None and df.height:
        rel = c("creation_time") - float(df["creation_time"].min())  # type: ignore[arg-type]
        drop("outside window", (rel < window[0]) | (rel >= window[1]))
    if limit is not None and df.height > limit:
        dropped["beyond limit"] = df.height - limit
        df = df.head(limit)
    t0 = float(df["creation_time"].min()) if df.height else 0.0  # type: ignore[arg-type]
    submit, run = scaled_times(df["creation_time"].to_numpy() - t0,
                               (df["deletion_time"] - df["scheduled_time"]).to_numpy(),
                               time_scale=ts, arrival_scale=ars)
    jobs = PodJobs.from_arrays(
        submit, run,
        df["cpu_milli"].to_numpy(), df["memory_mib"].to_numpy(), df["num_gpu"].to_numpy(),
        df["gpu_milli"].to_numpy(),
        recorded_wait=ts * (df["scheduled_time"] - df["creation_time"]).to_numpy(),
        ids=df["name"].to_list(), source=name)
    jobs.dropped = dropped
    return jobs


@dataclass(frozen=True, slots=True)
class PodPolicy:
    name: str
    backfill: str
    placement: str


def parse_pod_policy(name: str) -> PodPolicy:
    """`BACKFILL[:PLACEMENT]` -> PodPolicy; InvalidInputError naming the known ones."""
    bf, _, pl_ = name.partition(":")
    pl_ = pl_ or "first-fit"
    if bf not in BACKFILLS or pl_ not in PLACEMENTS:
        raise InvalidInputError(f"unknown pod policy {name!r}; known: "
                                f"{', '.join(pod_policy_names())}", field="policy")
    return PodPolicy(name=name, backfill=bf, placement=pl_)


def pod_policy_names() -> list[str]:
    return [*BACKFILLS, *DEFAULT_POD_POLICIES]


def is_pod_policy(name: str) -> bool:
    try:
        parse_pod_policy(name)
    except InvalidInputError:
        return False
    return True


@dataclass(slots=True)
class PodSchedule:
    """What the replay did: per pod its node, GPUs, start and end; the start log."""

    policy: str
    nodes: int
    shape: NodeShape
    start: np.ndarray
    end: np.ndarray
    node: np.ndarray
    gpus: list[tuple[int, ...]]
    log_job: np.ndarray
    wall_s: float
    passes: int


class _Cluster:
    """Free capacity per node (cpu, memory) and per GPU (milli)."""

    def __init__(self, nodes: int, shape: NodeShape) -> None:
        self.shape = shape
        self.cpu = np.full(nodes, shape.cpu, dtype=np.int64)
        self.mem = np.full(nodes, shape.memory, dtype=np.int64)
        self.gpu = np.full((nodes, max(shape.gpu, 1)), 1000 if shape.gpu else 0, dtype=np.int64)

    def candidates(self, c: int, m: int, k: int, gm: int) -> np.ndarray:
        ok = (self.cpu >= c) & (self.mem >= m)
        if k:
            ok &= (self.gpu >= gm).sum(axis=1) >= k
        return np.flatnonzero(ok)

    def choose(self, cand: np.ndarray, c: int, m: int, k: int, gm: int,
               best: bool) -> int:
        if not best:
            return int(cand[0])
        s = self.shape
        left = (self.cpu[cand] - c) / s.cpu + (self.mem[cand] - m) / s.memory
        if s.gpu:
            left = left + (self.gpu[cand].sum(axis=1) - k * gm) / (1000.0 * s.gpu)
        return int(cand[int(np.argmin(left))])

    def gpus_on(self, node: int, k: int, gm: int, best: bool) -> tuple[int, ...]:
        if not k:
            return ()
        free = self.gpu[node]
        ok = np.flatnonzero(free >= gm)
        if best:
            ok = ok[np.argsort(free[ok], kind="stable")]
        return tuple(int(g) for g in ok[:k])

    def take(self, node: int, c: int, m: int, gpus: tuple[int, ...], gm: int, sign: int
             ) -> None:
        self.cpu[node] -= sign * c
        self.mem[node] -= sign * m
        for g in gpus:
            self.gpu[node, g] -= sign * gm


def simulate_pods(jobs: PodJobs, nodes: int, shape: NodeShape, policy: str) -> PodSchedule:
    """Replay `jobs` on `nodes` nodes of `shape` under `policy` (module docstring)."""
    pol = parse_pod_policy(policy)
    if nodes < 1:
        raise InvalidInputError(f"nodes must be >= 1, got {nodes}", field="nodes")
    too_big = ~jobs.fits(shape)
    if too_big.any():
        raise InvalidInputError(f"{int(too_big.sum())} pods are larger than a node "
                                f"(e.g. {jobs.ids[int(np.argmax(too_big))]})", field="node_shape")
    t_wall = time.perf_counter()
    n = len(jobs)
    best = pol.placement == "best-fit"
    cl = _Cluster(nodes, shape)
    S, R = jobs.submit, jobs.run
    C, M = jobs.cpu.tolist(), jobs.memory.tolist()
    K, GM = jobs.num_gpu.tolist(), jobs.gpu_milli.tolist()
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    node_of = np.full(n, -1, dtype=np.int64)
    gpus_of: list[tuple[int, ...]] = [()] * n
    log: list[int] = []
    running: list[list[tuple[float, int]]] = [[] for _ in range(nodes)]  # per node (end, pod)
    events: list[tuple[float, int]] = []
    queue: list[int] = []

    def place(i: int, t: float, nd: int, gpus: tuple[int, ...]) -> None:
        cl.take(nd, C[i], M[i], gpus, GM[i], 1)
        start[i], end[i] = t, t + R[i]
        node_of[i], gpus_of[i] = nd, gpus
        log.append(i)
        running[nd].append((t + R[i], i))
        heapq.heappush(events, (t + R[i], i))

    def try_start(i: int, t: float, exclude: int = -1) -> tuple[int, tuple[int, ...]] | None:
        cand = cl.candidates(C[i], M[i], K[i], GM[i])
        if exclude >= 0:
            cand = cand[cand != exclude]
        if cand.size == 0:
            return None
        nd = cl.choose(cand, C[i], M[i], K[i], GM[i], best)
        return nd, cl.gpus_on(nd, K[i], GM[i], best)

    def head_fits(cpu: int, mem: int, gfree: np.ndarray, h: int) -> bool:
        return (cpu >= C[h] and mem >= M[h]
                and (not K[h] or int((gfree >= GM[h]).sum()) >= K[h]))

    def reservation(h: int, t: float) -> tuple[float, int, tuple[int, int, np.ndarray]]:
        """Earliest (time, node) the head fits as running pods end; that node's state then."""
        best_t, best_n = float("inf"), -1
        state: tuple[int, int, np.ndarray] = (0, 0, np.zeros(0, dtype=np.int64))
        for nd in range(nodes):
            cpu, mem = int(cl.cpu[nd]), int(cl.mem[nd])
            gfree = cl.gpu[nd].copy()
            for e, j in sorted(running[nd]):
                if e >= best_t:
                    break
                cpu += C[j]
                mem += M[j]
                for g in gpus_of[j]:
                    gfree[g] += GM[j]
                if head_fits(cpu, mem, gfree, h):
                    best_t, best_n, state = e, nd, (cpu, mem, gfree)
                    break
        return best_t, best_n, state

    def schedule(t: float) -> None:
        nonlocal queue
        waiting: list[int] = []
        blocked = -1
        shadow, rnode = float("inf"), -1
        rstate: tuple[int, int, np.ndarray] = (0, 0, np.zeros(0, dtype=np.int64))
        for i in queue:
            if blocked >= 0 and pol.backfill == "fcfs":
                waiting.append(i)
                continue
            got = try_start(i, t)
            if got is None:
                waiting.append(i)
                if blocked < 0:
                    blocked = i
                    if pol.backfill == "easy":
                        shadow, rnode, rstate = reservation(i, t)
                continue
            if blocked < 0 or pol.backfill == "greedy" or t + R[i] <= shadow:
                place(i, t, *got)
                continue
            # EASY, a long pod behind the blocked head: not on the reserved node
            # unless the head still fits there at the shadow time.
            nd, gpus = got
            if nd == rnode:
                cpu, mem, gfree = rstate
                g2 = gfree.copy()
                for g in gpus:
                    g2[g] -= GM[i]
                if head_fits(cpu - C[i], mem - M[i], g2, blocked):
                    rstate = (cpu - C[i], mem - M[i], g2)
                else:
                    alt = try_start(i, t, exclude=rnode)
                    if alt is None:
                        waiting.append(i)
                        continue
                    nd, gpus = alt
            place(i, t, nd, gpus)
        queue = waiting

    i = 0
    passes = 0
    while i < n or events:
        t = min(S[i] if i < n else float("inf"), events[0][0] if events else float("inf"))
        while events and events[0][0] <= t:
            _, j = heapq.heappop(events)
            nd = int(node_of[j])
            cl.take(nd, C[j], M[j], gpus_of[j], GM[j], -1)
            running[nd].remove((float(end[j]), j))
        while i < n and S[i] <= t:
            queue.append(i)
            i += 1
        passes += 1
        schedule(float(t))
    return PodSchedule(policy=pol.name, nodes=nodes, shape=shape, start=start, end=end,
                       node=node_of, gpus=gpus_of, log_job=np.array(log, dtype=np.int64),
                       wall_s=time.perf_counter() - t_wall, passes=passes)


def _stats(wait: np.ndarray, run: np.ndarray) -> tuple[float | None, ...]:
    if wait.size == 0:
        return None, None, None
    bsld = np.maximum(1.0, (wait + run) / np.maximum(run, BSLD_TAU))
    return float(wait.mean()), float(bsld.mean()), float(np.percentile(wait, 95))


def pod_row(jobs: PodJobs, s: PodSchedule) -> dict[str, Any]:
    """The comparison row (POD_ROW_KEYS); `valid` is the independent check's verdict."""
    from allocator.cluster.validate import check_pod_schedule

    problems = check_pod_schedule(jobs.submit, jobs.run, jobs.cpu, jobs.memory, jobs.num_gpu,
                                  jobs.gpu_milli, s.nodes, (s.shape.cpu, s.shape.memory,
                                                            s.shape.gpu),
                                  s.log_job, s.node, s.gpus, s.start, s.end)
    wait = s.start - jobs.submit
    mw, mb, p95 = _stats(wait, jobs.run)
    known = ~np.isnan(jobs.recorded_wait)
    rw, rb, _ = _stats(jobs.recorded_wait[known], jobs.run[known])
    span = float(np.nanmax(s.end) - jobs.submit.min()) if len(jobs) else 0.0

    def util(demand: np.ndarray, cap: float) -> float | None:
        if span <= 0 or cap <= 0:
            return None
        return float((jobs.run * demand).sum() / (cap * s.nodes * span))

    return {"policy": s.policy, "jobs": len(jobs), "nodes": s.nodes,
            "mean_wait": mw, "mean_bounded_slowdown": mb, "p95_wait": p95,
            "utilisation_cpu": util(jobs.cpu, s.shape.cpu),
            "utilisation_memory": util(jobs.memory, s.shape.memory),
            "utilisation_gpu": util(jobs.gpu_total(), 1000.0 * s.shape.gpu),
            "recorded_mean_wait": rw, "recorded_mean_bounded_slowdown": rb,
            "valid": not problems, "_problems": problems}
