"""Event-driven replay of wide jobs on P identical processors.

One loop for every policy (allocator.cluster.policies): a heap of completion
events, the count of free processors, the queue in the policy's order, and at
each event time one scheduling pass. Times are the trace's seconds; nothing
reads a clock or a random generator, so the same jobs give the same schedule.

Event order at one instant: completions first (their processors are free at
that instant), then arrivals, then one pass. A job holds `width` processors
from its start for its recorded run time; the scheduler plans with the
requested time (`estimate`, never below the run time, see
allocator.cluster.jobs), as a real EASY or conservative scheduler does.

Backfilling:

- EASY: start queue heads while they fit; the first that does not gets a
  reservation at the *shadow time* (the earliest instant the running jobs,
  ending at their start + estimate, leave it enough processors); `extra` is
  what is left over at that instant. A later job starts now if it fits and
  either ends by the shadow time (now + estimate) or needs at most `extra`
  processors (which then shrink).
- Conservative: a free-processor profile (breakpoints T[k], free F[k] on
  [T[k], T[k+1])) holds the running jobs until their expected end and one
  reservation per queued job. An arrival takes the earliest slot that fits
  in the profile as it is (it delays nobody). When a job ends before its
  estimate, its rest is given back and the queue is compressed in policy
  order: each job releases its slot and takes the earliest one that fits,
  which is never later. Jobs whose slot is now start.

`ClusterSchedule.first_reservation` keeps the first start each job was
promised (EASY: when it was the blocked head; conservative: on arrival), so
tests can check that no promise is broken.
"""

from __future__ import annotations

import heapq
import math
import time
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass

import numpy as np

from allocator.cluster.jobs import ClusterJobs
from allocator.cluster.policies import ClusterPolicy, parse_policy
from allocator.errors import InvalidInputError

#: Fair-share usage half-life (s): Slurm's default PriorityDecayHalfLife, 7 days.
FAIR_HALF_LIFE = 7 * 86400.0

#: SWF queue -> priority rank (lower first): queue 0 (interactive) is high, as the
#: SWF reader's default class mapping (allocator.workloads.swf.DEFAULT_QUEUE_PRIORITY).
_HIGH_QUEUES = {0}

_INF = math.inf

#: Conservative profile: a job estimated at 0 s holds its reservation this long
#: (a zero-length slot would protect nothing); it gives it back when it ends.
_MIN_SLOT = 1e-3


@dataclass(slots=True)
class ClusterSchedule:
    """What a replay did: per-job start and end, the start log in order, promises made."""

    policy: str
    procs: int
    start: np.ndarray
    end: np.ndarray
    log_job: np.ndarray
    log_time: np.ndarray
    first_reservation: np.ndarray
    wall_s: float
    passes: int


def _static_keys(jobs: ClusterJobs, pol: ClusterPolicy) -> list[float] | None:
    """Queue key per job for the orders that do not change while a job waits."""
    S, E = jobs.submit, jobs.estimate
    if pol.order == "sjf":
        return E.tolist()  # type: ignore[no-any-return]
    if pol.order == "edf":
        return (S + E).tolist()  # type: ignore[no-any-return]
    if pol.order == "priority":
        return [0.0 if int(q) in _HIGH_QUEUES else 1.0 for q in jobs.klass]
    if pol.order == "f1":
        r = np.log10(np.where(E > 0, E, 0.1))
        s = S + jobs.origin
        return (r * jobs.width + 870.0 * np.log10(np.where(s > 0, s, 0.1))).tolist()  # type: ignore[no-any-return]
    return None  # fcfs and fair share


def simulate(jobs: ClusterJobs, procs: int, policy: str | ClusterPolicy, *,
             half_life: float = FAIR_HALF_LIFE) -> ClusterSchedule:
    """Replay `jobs` on `procs` processors under `policy`; see the module docstring."""
    pol = parse_policy(policy) if isinstance(policy, str) else policy
    n = len(jobs)
    if procs < 1:
        raise InvalidInputError(f"procs must be >= 1, got {procs}", field="procs")
    if n and int(jobs.width.max()) > procs:
        raise InvalidInputError(f"a job needs {int(jobs.width.max())} processors but the "
                                f"machine has {procs}", field="procs")
    if not half_life > 0:
        raise InvalidInputError(f"half_life must be > 0, got {half_life}", field="half_life")
    S: list[float] = jobs.submit.tolist()
    R: list[float] = jobs.run.tolist()
    W: list[int] = jobs.width.tolist()
    E: list[float] = jobs.estimate.tolist()
    if pol.backfill == "conservative":
        E = [e if e > 0 else _MIN_SLOT for e in E]
    keys = _static_keys(jobs, pol)
    fair = pol.order in ("fair-user", "fair-group")
    acct: list[int] = (jobs.user if pol.order == "fair-user" else jobs.group).tolist()
    use_val: dict[int, float] = {}
    use_t: dict[int, float] = {}
    ln2_h = math.log(2.0) / half_life

    start = [math.nan] * n
    end = [math.nan] * n
    first_resv = [math.nan] * n
    log_j: list[int] = []
    log_t: list[float] = []
    running: dict[int, float] = {}  # job -> expected end (start + estimate)
    heap: list[tuple[float, int]] = []  # (end, job); job -1 = a wake-up
    sorted_q: list[tuple[float, int]] = []  # static orders: (key, job)
    plain_q: list[int] = []  # fcfs and fair share: submit order
    free = procs
    easy = pol.backfill == "easy"
    cons = pol.backfill == "conservative"
    # conservative: the profile and each queued job's reserved start
    T: list[float] = [0.0]
    F: list[int] = [procs]
    resv: dict[int, float] = {}
    woken = _INF
    passes = 0

    def begin(j: int, t: float) -> None:
        nonlocal free
        free -= W[j]
        start[j] = t
        log_j.append(j)
        log_t.append(t)
        running[j] = t + E[j]
        heapq.heappush(heap, (t + R[j], j))

    def usage(a: int, t: float) -> float:
        v = use_val.get(a, 0.0)
        return v * math.exp(-ln2_h * (t - use_t[a])) if v else 0.0

    def ordered(t: float) -> list[int]:
        if keys is not None:
            return [j for _, j in sorted_q]
        if not fair:
            return plain_q
        cur: dict[int, float] = {}
        for j in plain_q:
            a = acct[j]
            if a not in cur:
                cur[a] = usage(a, t)
        for j, _ in running.items():  # what running jobs consumed so far
            a = acct[j]
            if a in cur:
                cur[a] += W[j] * (t - start[j])
        return sorted(plain_q, key=lambda j: (cur[acct[j]], S[j], j))

    def drop_started() -> None:
        nonlocal sorted_q, plain_q
        if keys is not None:
            sorted_q = [x for x in sorted_q if start[x[1]] != start[x[1]]]
        else:
            plain_q = [j for j in plain_q if start[j] != start[j]]

    # -- the conservative profile --------------------------------------------------
    def split(x: float) -> int:
        k = bisect_left(T, x)
        if k < len(T) and T[k] == x:
            return k
        T.insert(k, x)
        F.insert(k, F[k - 1])
        return k

    def add(a: float, b: float, delta: int) -> None:
        if b <= a:
            return
        ia = split(a)
        ib = split(b)
        for m in range(ia, ib):
            F[m] += delta

    def earliest(w: int, d: float) -> float:
        k, K = 0, len(T)
        while True:
            if F[k] < w:
                k += 1
                continue
            s = T[k]
            e = s + d
            m = k + 1
            while m < K and T[m] < e:
                if F[m] < w:
                    break
                m += 1
            else:
                return s
            k = m + 1

    def reserve(j: int) -> float:
        s = earliest(W[j], E[j])
        add(s, s + E[j], -W[j])
        resv[j] = s
        return s

    # -- one scheduling pass -------------------------------------------------------
    def schedule(t: float, freed_early: bool, arrived: list[int]) -> None:
        nonlocal woken
        if cons:
            k = bisect_right(T, t) - 1
            if k > 0:
                del T[:k]
                del F[:k]
            T[0] = t
            q = ordered(t)
            if freed_early:
                for j in q:
                    if j in resv:
                        s = resv[j]
                        add(s, s + E[j], W[j])
                        reserve(j)
            for j in arrived:
                s = reserve(j)
                if first_resv[j] != first_resv[j]:
                    first_resv[j] = s
            started = False
            nxt = _INF
            for j in q:
                s = resv[j]
                if s <= t:
                    del resv[j]
                    begin(j, t)
                    started = True
                elif s < nxt:
                    nxt = s
            if started:
                drop_started()
            if nxt < _INF and nxt != woken:
                woken = nxt
                heapq.heappush(heap, (nxt, -1))
            return
        if not easy:  # no backfilling: start heads while they fit
            if fair:
                q = ordered(t)
                k = 0
                while k < len(q) and W[q[k]] <= free:
                    begin(q[k], t)
                    k += 1
                if k:
                    drop_started()
            elif keys is not None:
                while sorted_q and W[sorted_q[0][1]] <= free:
                    begin(sorted_q.pop(0)[1], t)
            else:
                while plain_q and W[plain_q[0]] <= free:
                    begin(plain_q.pop(0), t)
            return
        if not (sorted_q if keys is not None else plain_q):
            return
        before = len(log_j)
        q = ordered(t)
        nq = len(q)
        k = 0
        while k < nq and W[q[k]] <= free:
            begin(q[k], t)
            k += 1
        if k < nq:
            head = q[k]
            need = W[head]
            avail = free
            shadow = _INF
            for e, w in sorted([(running[j], W[j]) for j in running]):
                avail += w
                if avail >= need:
                    shadow = e
                    break
            extra = avail - need
            if first_resv[head] != first_resv[head]:
                first_resv[head] = shadow
            if free > 0:
                for j in q[k + 1:]:
                    w = W[j]
                    if w > free:
                        continue
                    if t + E[j] <= shadow:
                        begin(j, t)
                    elif w <= extra:
                        extra -= w
                        begin(j, t)
                    else:
                        continue
                    if free < 1:
                        break
        if len(log_j) > before:
            drop_started()

    t0 = time.perf_counter()
    i = 0
    while i < n or heap:
        t = S[i] if i < n else _INF
        if heap and heap[0][0] < t:
            t = heap[0][0]
        freed_early = False
        while heap and heap[0][0] <= t:
            _, j = heapq.heappop(heap)
            if j < 0:
                continue
            free += W[j]
            end[j] = t
            exp = running.pop(j)
            if cons and exp > t:
                add(t, exp, W[j])
                freed_early = True
            if fair:
                a = acct[j]
                use_val[a] = usage(a, t) + W[j] * R[j] if a in use_val else W[j] * R[j]
                use_t[a] = t
        arrived: list[int] = []
        while i < n and S[i] <= t:
            if keys is not None:
                insort(sorted_q, (keys[i], i))
            else:
                plain_q.append(i)
            if cons:
                arrived.append(i)
            i += 1
        passes += 1
        schedule(t, freed_early, arrived)
    wall = time.perf_counter() - t0
    return ClusterSchedule(
        policy=pol.name, procs=procs, start=np.array(start, dtype=float),
        end=np.array(end, dtype=float), log_job=np.array(log_j, dtype=np.int64),
        log_time=np.array(log_t, dtype=float),
        first_reservation=np.array(first_resv, dtype=float), wall_s=wall, passes=passes)
