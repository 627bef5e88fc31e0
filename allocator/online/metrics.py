"""Online measures: counters, wait and latency samples, per-agent utilisation.

Definitions (the CLI and the exporter print these):

- wait: first dispatch minus submission; latency: end minus submission
  (completed tasks only).
- miss_rate: among tasks with a deadline, the share that did not complete by
  it (late, rejected or failed all count as misses).
- throughput, steal_rate, migration_rate: completions, steals, migrations per
  time unit from the first submission to the last end; 0 when that span is 0.
- utilisation of an agent: busy time / (up time x concurrency); `utilisation`
  is the total over agents, `jain` is Jain's index of the per-agent values
  (allocator.metrics.jain_index) and `load_variance` their variance.
- cost, tardiness, migration_cost, weighted_objective: the work actually done
  priced with a Plan's objective terms (allocator.objectives): cost = the
  agent's cost rate x busy time of every attempt, tardiness = per-class weight
  x lateness of completed tasks, migration_cost = the migration cost of each
  completed task that ran away from its home agent; weighted_objective is
  their sum under the executor's weights (`Executor(weights=...)`), as in a
  Plan. Tasks that never completed count in `miss_rate`, not here.

The Prometheus collector is in allocator/online/prom.py, outside the compiled
group (see there why).
"""

from __future__ import annotations

import math
import struct
from array import array
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from allocator.metrics import jain_index, percentile, variance
from allocator.online.events import TaskSpec
from models import Priority, Weights

_CLASSES = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)

if TYPE_CHECKING:
    from allocator.online.core import Executor, TaskState

#: EWMA weight for the learned ratio actual/estimated tokens per task kind.
TOKEN_ALPHA = 0.2


#: A ledger row: (agent index, start, end, done, priority rank, deadline (nan: none),
#: home agent index (-1: none or no migration cost), migration cost). Numbers only,
#: so the finished tasks' specs are freed.
LedgerRow = tuple[int, float, float, bool, int, float, int, float]
#: Numbers per ledger row.
LEDGER_WIDTH = 8


#: Values a list buffers before they go into their array: from compiled code an
#: array's append or extend is a generic method call per task, a list's is native.
CHUNK: Final = 8192


def _move(buf: list[float], into: array[float]) -> None:
    """Append `buf`'s values to `into` as doubles and empty `buf`.

    Packed by struct (a C double per item, ~6 ns): an array's own `extend`
    parses every item with a format string (PyArg_Parse, ~40 ns), numpy's list
    conversion checks each item's type (~20 ns). Same doubles either way.
    """
    into.frombytes(struct.pack(f"{len(buf)}d", *buf))
    buf.clear()


class Ledger:
    """One row per finished attempt (see LedgerRow), kept as eight doubles in one flat
    array (`data`): no objects per row, so a million rows take 64 MB and numpy reads
    them in one copy (`array()`), where a list of tuples cost ~190 MB and ~0.6 s to
    convert at the end of a million-task simulation. Rows wait in a short list
    (`CHUNK` values) and move into the array a chunk at a time."""

    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._data = array("d")
        self._buf: list[float] = []

    def __len__(self) -> int:
        return (len(self._data) + len(self._buf)) // LEDGER_WIDTH

    def add(self, row: LedgerRow) -> None:
        buf = self._buf
        buf.extend(row)
        if len(buf) >= CHUNK:
            _move(buf, self._data)

    @property
    def data(self) -> array[float]:
        """Every row's doubles so far, row after row (the array itself, not a copy)."""
        buf = self._buf
        if buf:
            _move(buf, self._data)
        return self._data

    @property
    def rows(self) -> list[LedgerRow]:
        """The rows as tuples with their types (indices and ranks ints, done a bool)."""
        d = self.data
        return [(int(d[k]), d[k + 1], d[k + 2], bool(d[k + 3]), int(d[k + 4]), d[k + 5],
                 int(d[k + 6]), d[k + 7]) for k in range(0, len(d), LEDGER_WIDTH)]

    def array(self) -> np.ndarray:
        """The rows as an (n, 8) float array (a copy: the ledger can grow meanwhile)."""
        d = self.data
        if not d:
            return np.zeros((0, LEDGER_WIDTH))
        return np.frombuffer(d, dtype=float).reshape(-1, LEDGER_WIDTH).copy()


class OnlineMetrics:
    """Counters and samples the core updates as it goes (cheap: appends and adds)."""

    def __init__(self) -> None:
        self.events = 0
        self.submitted = 0
        self.completed = 0
        self.rejected = 0
        self.failed = 0
        self.retries = 0
        self.deferred = 0
        self.dispatches = 0
        self.steals = 0
        self.steal_attempts = 0
        self.failed_steals = 0
        #: Back-off intervals chosen by the adaptive stealing rule (sum, count).
        self.steal_interval_sum = 0.0
        self.steal_intervals = 0
        #: Steals whose task finished before the victim would have reached it / not.
        self.steals_paid = 0
        self.steals_lost = 0
        #: Busy time served per tenant and per class (rank), and a copy taken
        #: by `mark()` (the simulator marks the last arrival: shares under load).
        self.tenant_service: dict[str, float] = {}
        self.class_service = [0.0, 0.0, 0.0, 0.0]
        self.marked: tuple[dict[str, float], list[float]] | None = None
        self.migrations = 0
        self.requeued = 0
        self.plans = 0
        self.plan_skipped = 0
        self.stale = 0
        self.breaker_opens = 0
        self.with_deadline = 0
        self.misses = 0
        self.first_submit: float | None = None
        self.last_end = 0.0
        self.codes: Counter[str] = Counter()
        # Waits and latencies: arrays (`waits`, `latencies`), filled a chunk at a time.
        self._waits = array("d")
        self._wait_buf: list[float] = []
        self._latencies = array("d")
        self._latency_buf: list[float] = []
        self._token_ratio: dict[str, float] = {}
        self.ledger = Ledger()

    @property
    def waits(self) -> array[float]:
        """Each task's wait (first dispatch minus submission), in dispatch order."""
        buf = self._wait_buf
        if buf:
            _move(buf, self._waits)
        return self._waits

    @property
    def latencies(self) -> array[float]:
        """Each completed task's latency (end minus submission), in completion order."""
        buf = self._latency_buf
        if buf:
            _move(buf, self._latencies)
        return self._latencies

    # -- updates from the core ------------------------------------------------

    def add_wait(self, x: float) -> None:
        buf = self._wait_buf
        buf.append(x)
        if len(buf) >= CHUNK:
            _move(buf, self._waits)

    def add_latency(self, x: float) -> None:
        buf = self._latency_buf
        buf.append(x)
        if len(buf) >= CHUNK:
            _move(buf, self._latencies)

    def on_submit(self, t: TaskState) -> None:
        self.submitted += 1
        if self.first_submit is None:
            self.first_submit = t.submitted

    def on_complete(self, t: TaskState, now: float) -> None:
        """A task completed at `now` (its last attempt started at `t.started`)."""
        self.last_end = now
        self.completed += 1
        self.add_latency(now - t.submitted)
        svc = now - t.started
        spec = t.spec
        ten = spec.tenant
        if ten is not None:
            ts = self.tenant_service
            ts[ten] = ts.get(ten, 0.0) + svc
        self.class_service[t.rank] += svc
        d = spec.deadline
        if d is not None:
            self.with_deadline += 1
            if now > d + 1e-9:
                self.misses += 1

    def on_end(self, t: TaskState, kind: str, code: Any, now: float) -> None:
        if kind == "Complete":
            self.on_complete(t, now)
            return
        self.last_end = now
        d = t.spec.deadline
        if kind == "Reject":
            self.rejected += 1
        else:
            self.failed += 1
        self.codes[str(code)] += 1
        if d is not None:
            self.with_deadline += 1
            self.misses += 1

    def mark(self) -> None:
        """Remember the service so far (shares are reported as of this mark)."""
        self.marked = (dict(self.tenant_service), list(self.class_service))

    def learn_tokens(self, spec: TaskSpec, actual: float) -> None:
        if spec.tokens <= 0:
            return
        key = spec.kind or spec.tenant or ""
        r = self._token_ratio.get(key, 1.0)
        self._token_ratio[key] = r + TOKEN_ALPHA * (actual / spec.tokens - r)

    def token_estimate(self, spec: TaskSpec) -> float:
        """Estimated tokens of a task: its own estimate times the learned ratio."""
        return spec.tokens * self._token_ratio.get(spec.kind or spec.tenant or "", 1.0)

    # -- summaries -------------------------------------------------------------

    @property
    def ended(self) -> int:
        return self.completed + self.rejected + self.failed


def agent_utilisation(ex: Executor) -> dict[str, float]:
    """busy / (up time x concurrency) per agent that has been up, counting running work."""
    now = ex.now
    out: dict[str, float] = {}
    for a in ex.agents.values():
        up = a.uptime + (now - a.up_since if a.status.value != "down" else 0.0)
        busy = a.busy + sum(now - t.started for t in a.running.values())
        if up > 0:
            out[a.id] = busy / (up * a.concurrency)
    return out


def online_objective(ex: Executor, weights: Weights | None = None) -> dict[str, float]:
    """The work done so far priced with a Plan's terms (allocator.objectives).

    Each attempt in the ledger is priced as a task of work = its busy time on
    a speed-1 copy of its agent, placed there with its real start and end:
    `cost` = cost rate x busy time (`term_cost`), `tardiness` = the class
    weight x lateness of completed attempts past their deadline
    (`term_tardiness`), `migration_cost` = the task's migration cost for each
    completed attempt that ran away from its home agent (`term_migrations`
    with the home as `current_agent`). Returns the raw terms and
    `weighted_objective` under `weights` (default: the executor's).

    Computed on arrays straight from the ledger (a simulation of a million
    tasks has a million rows); tests/online/test_metrics_objective.py checks
    it against the same ledger compiled into a Snapshot and priced by
    allocator.objectives.
    """
    w = weights if weights is not None else ex.weights
    ledger = ex.metrics.ledger
    out = {"cost": 0.0, "tardiness": 0.0, "migration_cost": 0.0, "weighted_objective": 0.0}
    n = len(ledger)
    if not n or not ex.agents:
        return out
    rate = np.zeros(max(a.index for a in ex.agents.values()) + 1)
    for a in ex.agents.values():
        rate[a.index] = a.spec.cost_rate
    arr = ledger.array()
    agent_of = arr[:, 0].astype(np.int64)
    start, end, done = arr[:, 1], arr[:, 2], arr[:, 3] > 0
    cost = float((rate[agent_of] * (end - start)).sum())
    tw = np.array([w.tardiness_by_priority[p] for p in _CLASSES])
    deadline = np.maximum(arr[:, 5], 0.0)
    late = np.where(done & ~np.isnan(deadline), end - deadline, 0.0)
    tardiness = float((tw[arr[:, 4].astype(np.int64)] * np.maximum(late, 0.0)).sum())
    home = arr[:, 6].astype(np.int64)
    moved = done & (home >= 0) & (home != agent_of)
    migration = float(arr[moved, 7].sum())
    out.update(cost=cost, tardiness=tardiness, migration_cost=migration,
               weighted_objective=float(w.cost * cost + w.tardiness * tardiness
                                        + w.migrations * migration))
    return out


def summary(ex: Executor, *, objective: bool = True) -> dict[str, Any]:
    """The executor's measures as one flat dict (the CLI's and the exporter's source).

    `objective=False` skips pricing the ledger (online_objective), which the
    Prometheus exporter does not need on every scrape.
    """
    m = ex.metrics
    util = agent_utilisation(ex)
    u = np.fromiter(util.values(), dtype=float, count=len(util))
    cap = 0.0
    busy = 0.0
    now = ex.now
    for a in ex.agents.values():
        up = a.uptime + (now - a.up_since if a.status.value != "down" else 0.0)
        cap += up * a.concurrency
        busy += a.busy + sum(now - t.started for t in a.running.values())
    waits = np.frombuffer(m.waits, dtype=float) if len(m.waits) else np.zeros(0)
    lat = np.frombuffer(m.latencies, dtype=float) if len(m.latencies) else np.zeros(0)
    span = m.last_end - (m.first_submit or 0.0)
    # Rates over a run that took no time (zero-work tasks ending as they arrive) are
    # 0: dividing by a 1e-12 floor reported 2e12 tasks per time unit.
    if span <= 0:
        span = math.inf
    shares = service_shares(ex)
    return {
        "tasks": m.submitted,
        "completed": m.completed,
        "rejected": m.rejected,
        "failed": m.failed,
        "live": ex.live(),
        "retries": m.retries,
        "deferred": m.deferred,
        "miss_rate": m.misses / m.with_deadline if m.with_deadline else 0.0,
        "p50_wait": percentile(waits, 50),
        "p99_wait": percentile(waits, 99),
        "p50_latency": percentile(lat, 50),
        "p99_latency": percentile(lat, 99),
        "jain": jain_index(u),
        "load_variance": variance(u),
        "utilisation": busy / cap if cap > 0 else 0.0,
        "steals": m.steals,
        "steal_rate": m.steals / span,
        "migrations": m.migrations,
        "migration_rate": m.migrations / span,
        "requeued": m.requeued,
        "breaker_opens": m.breaker_opens,
        "throughput": m.completed / span,
        "stale": m.stale,
        "events": m.events,
        "steal_interval_mean": (m.steal_interval_sum / m.steal_intervals
                                if m.steal_intervals else 0.0),
        "steals_paid": m.steals_paid,
        "steals_lost": m.steals_lost,
        "per_tenant": shares[0],
        "per_class": shares[1],
        **(online_objective(ex) if objective else {}),
    }


def service_shares(ex: Executor) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Busy-time shares per tenant and per class, as of `metrics.mark()` if set.

    The simulator marks the last arrival, so under saturation the shares are
    those of a period when every flow had work waiting (what weights govern).
    """
    m = ex.metrics
    tenants, classes = m.marked if m.marked is not None else (m.tenant_service,
                                                               m.class_service)
    pol = ex.policy
    tot = sum(tenants.values())
    per_tenant = [{"tenant": k, "weight": pol.flow_weights.get(k, 1.0),
                   "service_share": v / tot if tot > 0 else 0.0}
                  for k, v in sorted(tenants.items())]
    ctot = sum(classes)
    names = ("critical", "high", "normal", "low")
    per_class = [{"class": names[r], "weight": w,
                  "service_share": classes[r] / ctot if ctot > 0 else 0.0}
                 for r, w in enumerate(pol.priority.weights.get(p, 1.0)
                                       for p in _CLASSES)]
    return per_tenant, per_class
