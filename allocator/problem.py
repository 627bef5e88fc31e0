"""Compile a Snapshot once into the arrays every backend shares.

Indices: agents `i` in `0..m-1`, tasks `j` in `0..n-1`, resources `r` in
`0..R-1`, in snapshot order. Matrices indexed by agent and task are
`[m, n]`. Per-agent demand (the GAP's a[i][j]) is materialised only when a
task overrides it; otherwise `demand_on(i)` is the task's base demand.

Two views of the same numbers:

* dense `[m, n]` (`[m, n, R]`) properties (`eligible`, `cost`, `demand` ...),
  built on first use, for the exact backends and small problems;
* sparse accessors that never build a tasks x agents array: per task
  columns (`col_eligible(j)`, `col_cost(j)`, `col_demand(j)` ...), blocks of
  a few columns (`block_eligible(js)` ...) and pairs (`pair_cost(i, j)` ...).
  They read eligibility from :class:`StaticRules` (one agent mask per
  distinct skill set plus CSR lists of allowed / forbidden agents) and
  overrides from per-task maps, so memory grows with the tasks, the agents
  and the pairs that are listed, not with tasks x agents. Below
  ``DENSE_CELLS`` cells they slice the dense arrays (faster there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter, methodcaller
from typing import Any, TypeVar

import numpy as np

from allocator.errors import InvalidInputError
from allocator.topology_problem import TopologyArrays, compile_topology
from models import MAX_MAGNITUDE as _MODEL_MAX_MAGNITUDE
from models import MAX_SPEED, MIN_SPEED, AgentStatus, Priority, Snapshot, Task, TaskTable

#: Slack allowed when comparing a sum of float demands with a capacity, so
#: that 0.1 + 0.2 fits in 0.3: relative to the capacity, plus an absolute
#: part for zero capacities. Used only through :func:`capacity_limit`
#: (re-exported by allocator.constraints, where the hard rules live).
CAPACITY_RTOL = 1e-9
CAPACITY_ATOL = 1e-12


_Cap = TypeVar("_Cap", float, np.ndarray)


def capacity_limit(capacity: _Cap) -> _Cap:
    """The most demand a capacity holds: the capacity with the shared float tolerance."""
    return capacity * (1 + CAPACITY_RTOL) + CAPACITY_ATOL

#: Agent / task indices accepted by the pairwise accessors: arrays or scalars.
Index = np.ndarray | int | np.integer

#: Largest agents x tasks matrix the pairwise accessors (``pair_cost`` ...)
#: materialise densely; beyond it they compute the requested pairs only.
DENSE_CELLS = 4_000_000
#: Above this many agents x task cells `auto` leaves the assignment model (dense
#: [m, n] arrays, LP, MILP) for its structure-aware paths (allocator.solvers.auto).
LINEAR_MAX_CELLS = 4_000_000
#: Largest magnitude accepted for any number, given or derived (durations =
#: work / speed, costs = cost_rate x duration): beyond it solvers lose
#: precision (HiGHS reads 1e20 as infinity; CP-SAT needs int64), so such
#: input is refused with the field named instead of overflowing somewhere.
#: The models' limit (models.domain.MAX_MAGNITUDE), the one every front end checks.
MAX_MAGNITUDE = _MODEL_MAX_MAGNITUDE


def csr_take(ptr: np.ndarray, idx: np.ndarray, rows: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """The entries of CSR rows `rows`: (values, position in `rows` of each value)."""
    starts = ptr[rows]
    lens = ptr[rows + 1] - starts
    owner = np.repeat(np.arange(rows.size), lens)
    if owner.size == 0:
        return idx[:0], owner
    offsets = np.arange(owner.size) - np.repeat(np.cumsum(lens) - lens, lens)
    return idx[np.repeat(starts, lens) + offsets], owner


def _sorted_keys(js: np.ndarray, iis: np.ndarray, m: int) -> np.ndarray:
    return np.sort(js.astype(np.int64) * max(m, 1) + iis.astype(np.int64))


def _member(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """[k] query[k] is in the sorted array `keys`."""
    if keys.size == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return keys[pos] == query


@dataclass(frozen=True, eq=False)
class StaticRules:
    """Static eligibility (status, skills, allow / forbid lists) without an [m, n] mask.

    Agent i may take task j when ``skill_masks[skill_of[j], i]`` (up and
    holding j's skills), i is in j's allowed list when it has one, and i is
    not in its forbidden list. Memory: one m-bool row per distinct skill set
    plus the listed pairs (CSR index arrays and sorted ``j * m + i`` keys).
    """

    skill_of: np.ndarray  # [n] row of skill_masks
    skill_masks: np.ndarray  # [S, m] bool
    has_allowed: np.ndarray  # [n] bool: the task has an allowed_agents list
    allowed_ptr: np.ndarray  # [n + 1] CSR over allowed_idx
    allowed_idx: np.ndarray
    forbidden_ptr: np.ndarray  # [n + 1] CSR over forbidden_idx
    forbidden_idx: np.ndarray
    allowed_keys: np.ndarray  # sorted j * m + i of the allowed pairs
    forbidden_keys: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in self.__dataclass_fields__)


@dataclass(frozen=True, eq=False)
class PairOverrides:
    """Per-pair overrides sorted by (task, agent): a task's entries are one slice."""

    task: np.ndarray  # [K]
    agent: np.ndarray  # [K]
    values: np.ndarray  # [K] (costs) or [K, R] (demands)
    keys: np.ndarray  # [K] task * m + agent, sorted
    task_ptr: np.ndarray  # [n + 1] task j's entries are task_ptr[j]:task_ptr[j + 1]

    @classmethod
    def build(cls, items: dict[tuple[int, int], object], m: int, n: int, width: int | None
              ) -> PairOverrides:
        k = len(items)
        ij = np.array(list(items.keys()), dtype=np.int64).reshape(k, 2)
        vals = (np.array(list(items.values()), dtype=float).reshape(k) if width is None
                else np.array(list(items.values()), dtype=float).reshape(k, width))
        order = np.lexsort((ij[:, 0], ij[:, 1]))
        task, agent = ij[order, 1], ij[order, 0]
        ptr = np.searchsorted(task, np.arange(n + 1))
        return cls(task, agent, vals[order], task * max(m, 1) + agent, ptr)

    def of_task(self, j: int) -> slice:
        return slice(int(self.task_ptr[j]), int(self.task_ptr[j + 1]))

    def lookup(self, i: np.ndarray, j: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(which pairs (i[k], j[k]) are overridden, their row in `values`)."""
        q = np.asarray(j, dtype=np.int64) * max(m, 1) + np.asarray(i, dtype=np.int64)
        if self.keys.size == 0:
            return np.zeros(q.shape, dtype=bool), np.zeros(q.shape, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys, q), self.keys.size - 1)
        return self.keys[pos] == q, pos


@dataclass(frozen=True, eq=False)
class RuleGroups:
    """Tasks grouped by their static rules, numbered in order of first appearance.

    Group g holds the tasks with skills ``skills[g]`` (sorted), allow list
    ``allowed[g]`` (sorted agent indices, None: no list) and forbid list
    ``forbidden[g]``; ``group_agents[g]`` are the up agents passing them.
    ``skill_set_of[g]`` numbers the distinct skill *sets* (first appearance),
    whose up-agent masks are ``skill_masks``.
    """

    group_of: np.ndarray  # [n]
    group_agents: np.ndarray  # [G, m] bool
    allowed: list[list[int] | None]
    forbidden: list[list[int]]
    skill_set_of: np.ndarray  # [G]
    skill_masks: np.ndarray  # [S, m] bool


def _skill_bits(agents: list, up: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """Skill name -> bit, and [m, words] uint64 skill bitmasks of the agents."""
    names = sorted({s for a in agents for s in a.skills})
    bit = {s: k for k, s in enumerate(names)}
    bits = np.zeros((len(agents), max(1, (len(names) + 63) // 64)), dtype=np.uint64)
    for i, a in enumerate(agents):
        for s in set(a.skills):
            k = bit[s]
            bits[i, k >> 6] |= np.uint64(1 << (k & 63))
    return bit, bits


def _holders(need: frozenset[str], bit: dict[str, int], bits: np.ndarray,
             up: np.ndarray) -> np.ndarray:
    """[m] up agents holding every skill of `need` (numpy over the skill bitmasks)."""
    if not need:
        return up.copy()
    if any(s not in bit for s in need):
        return np.zeros(up.size, dtype=bool)
    want = np.zeros(bits.shape[1], dtype=np.uint64)
    for s in need:
        want[bit[s] >> 6] |= np.uint64(1 << (bit[s] & 63))
    return up & np.all((bits & want[None, :]) == want[None, :], axis=1)


def rule_groups(snapshot: Snapshot, agent_index: dict[str, int], up: np.ndarray) -> RuleGroups:
    """Group the tasks by (skills, allowed, forbidden) with C-level passes over the tasks.

    Most snapshots have a few dozen distinct rule sets for any number of
    tasks: the masks are computed once per group (skills as uint64 bitmasks),
    never per task.
    """
    agents = snapshot.agents
    m, n = len(agents), snapshot.n_tasks
    raw_keys: list[tuple[Any, Any, Any]]
    if snapshot.columnar:
        raw_ids, raw_keys = _table_rule_keys(snapshot.task_table, n)  # type: ignore[arg-type]
    else:
        tasks = snapshot.tasks
        skills = list(map(attrgetter("skills"), tasks))
        allowed = list(map(attrgetter("allowed_agents"), tasks))
        forbidden = list(map(attrgetter("forbidden_agents"), tasks))
        raw: dict[Any, int] = {}
        if allowed.count(None) == n and not any(forbidden):
            ids = [raw.setdefault(k, len(raw)) for k in map(tuple, skills)]
            raw_keys = [(k, None, ()) for k in raw]
        else:
            ids = [raw.setdefault(k, len(raw)) for k in zip(
                map(tuple, skills), [None if a is None else tuple(a) for a in allowed],
                map(tuple, forbidden), strict=True)]
            raw_keys = list(raw)
        raw_ids = np.asarray(ids, dtype=np.int64)
    # Canonical key (sorted lists); raw keys are in first-appearance order, so
    # numbering canonical keys in that order numbers groups by first appearance.
    groups: dict[tuple, int] = {}
    raw_to_group = np.empty(len(raw_keys), dtype=np.int64)
    for r, (sk, al, fb) in enumerate(raw_keys):
        key = (tuple(sorted(sk)), None if al is None else tuple(sorted(al)),
               tuple(sorted(fb)))
        raw_to_group[r] = groups.setdefault(key, len(groups))
    group_of = raw_to_group[raw_ids] if n else np.empty(0, np.int64)
    bit, bits = _skill_bits(agents, up)
    sets: dict[frozenset[str], int] = {}
    masks: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    g_allowed: list[list[int] | None] = []
    g_forbidden: list[list[int]] = []
    skill_set_of = np.empty(len(groups), dtype=np.int64)
    for g, (sk, al, fb) in enumerate(groups):
        need = frozenset(sk)
        s = sets.get(need)
        if s is None:
            s = sets[need] = len(masks)
            masks.append(_holders(need, bit, bits, up))
        skill_set_of[g] = s
        mask = masks[s].copy()
        if al is not None:
            allow = sorted({agent_index[a] for a in al})
            keep = np.zeros(m, dtype=bool)
            keep[allow] = True
            mask &= keep
            g_allowed.append(allow)
        else:
            g_allowed.append(None)
        forbid = sorted({agent_index[a] for a in fb})
        mask[forbid] = False
        g_forbidden.append(forbid)
        rows.append(mask)
    return RuleGroups(
        group_of=group_of,
        group_agents=np.array(rows, dtype=bool).reshape(len(rows), m),
        allowed=g_allowed, forbidden=g_forbidden, skill_set_of=skill_set_of,
        skill_masks=np.array(masks, dtype=bool).reshape(len(masks), m))


def _table_rule_keys(table: TaskTable, n: int
                     ) -> tuple[np.ndarray, list[tuple[Any, Any, Any]]]:
    """Per-task raw rule key numbers and the raw keys (first appearance), from a table's codes.

    The same numbering the object path gives: a code stands for one list as
    given, so distinct code triples are distinct (skills, allowed, forbidden).
    """
    cols = [table.skills, table.allowed_agents, table.forbidden_agents]
    empty: list[tuple[Any, ...] | None] = [(), None, ()]
    codes = [np.zeros(n, dtype=np.int64) if c is None else c.codes for c in cols]
    values = [[empty[k]] if c is None else list(c.values) for k, c in enumerate(cols)]
    key = codes[0]
    for c, v in zip(codes[1:], values[1:], strict=True):
        key = key * len(v) + c
    if n == 0:
        return np.empty(0, dtype=np.int64), []
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    keys = []
    for u in uniq[order].tolist():
        f = u % len(values[2])
        a = (u // len(values[2])) % len(values[1])
        sk = u // (len(values[2]) * len(values[1]))
        keys.append((values[0][sk] or (), values[1][a], values[2][f] or ()))
    return rank[inverse.reshape(-1)], keys


def _expand_lists(lists: list[list[int]], group_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (ptr [n + 1], idx) of per-task lists given per group (task j has lists[group_of[j]])."""
    lens_g = np.array([len(x) for x in lists], dtype=np.int64)
    lens = lens_g[group_of] if group_of.size else np.zeros(0, dtype=np.int64)
    ptr = np.zeros(group_of.size + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(lens)
    total = int(ptr[-1])
    if total == 0:
        return ptr, np.zeros(0, dtype=np.int64)
    cat = np.array([i for x in lists for i in x], dtype=np.int64)
    start_g = np.cumsum(lens_g) - lens_g
    offsets = np.arange(total) - np.repeat(ptr[:-1], lens)
    return ptr, cat[np.repeat(start_g[group_of], lens) + offsets]


@dataclass(eq=False)
class Problem:
    """Array form of a Snapshot. Built by :func:`compile_snapshot`; treat as read-only."""

    snapshot: Snapshot
    agent_ids: list[str]
    task_ids: list[str]
    resources: list[str]
    now: float
    capacity: np.ndarray  # [m, R]
    speed: np.ndarray  # [m]
    concurrency: np.ndarray  # [m] int
    cost_rate: np.ndarray  # [m]
    up: np.ndarray  # [m] bool
    work: np.ndarray  # [n]
    release: np.ndarray  # [n], never before `now`
    deadline: np.ndarray  # [n], +inf when none
    hard_deadline: np.ndarray  # [n] bool
    priority_rank: np.ndarray  # [n] int, 0 = critical
    unassigned_penalty: np.ndarray  # [n]
    tardiness_weight: np.ndarray  # [n]
    current: np.ndarray  # [n] int, -1 = not placed
    migration_cost: np.ndarray  # [n] base cost of moving task j (see models.MigrationPolicy)
    demand_base: np.ndarray  # [n, R]
    migration_factor: np.ndarray | None = None  # [m, m] factor for a move a -> b; None = all 1
    cost_override: dict[tuple[int, int], float] = field(default_factory=dict)
    demand_override: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    agent_index: dict[str, int] = field(default_factory=dict)

    @cached_property
    def task_index(self) -> dict[str, int]:
        """Task id -> index (built on first use: 1M tasks cost ~70 MB)."""
        return dict(zip(self.task_ids, range(self.n), strict=True))

    @property
    def m(self) -> int:
        return len(self.agent_ids)

    @property
    def n(self) -> int:
        return len(self.task_ids)

    @property
    def n_resources(self) -> int:
        return len(self.resources)

    @cached_property
    def topology(self) -> TopologyArrays | None:
        """Group rules and topology costs as arrays (None when the snapshot uses none)."""
        return compile_topology(self.snapshot, self.resources)

    @cached_property
    def duration(self) -> np.ndarray:
        """[m, n] run time of task j on agent i: work / speed."""
        return self.work[None, :] / self.speed[:, None]

    @cached_property
    def cost(self) -> np.ndarray:
        """[m, n] cost of running task j on agent i (cost_rate x duration unless overridden)."""
        c = self.cost_rate[:, None] * self.duration
        if self.cost_override:
            keys = np.array(list(self.cost_override.keys()), dtype=np.int64)
            c[keys[:, 0], keys[:, 1]] = np.fromiter(self.cost_override.values(), dtype=float)
        return c

    @cached_property
    def demand(self) -> np.ndarray:
        """[m, n, R] demand of task j on agent i; a broadcast view when nothing is overridden."""
        shape = (self.m, self.n, self.n_resources)
        if not self.demand_override:
            return np.broadcast_to(self.demand_base[None, :, :], shape)
        d = np.repeat(self.demand_base[None, :, :], self.m, axis=0)
        ov = self.demand_overrides  # one vectorised scatter, not a loop per pair
        d[ov.agent, ov.task] = ov.values
        return d

    def demand_on(self, i: int) -> np.ndarray:
        """[n, R] demands of every task if placed on agent i."""
        return self.demand[i]

    @cached_property
    def fits_alone(self) -> np.ndarray:
        """[m, n] task j's demand fits agent i's capacity when the agent is empty."""
        cap = capacity_limit(self.capacity)
        # One resource at a time: an [m, n] mask, never an [m, n, R] temporary.
        ok = np.ones((self.m, self.n), dtype=bool)
        for r in range(self.n_resources):
            ok &= self.demand_base[None, :, r] <= cap[:, None, r]
        if self.demand_override:
            ov = self.demand_overrides
            ok[ov.agent, ov.task] = np.all(ov.values <= cap[ov.agent], axis=1)
        return ok

    @cached_property
    def static_eligible(self) -> np.ndarray:
        """[m, n] skills, allowed / forbidden lists and agent status permit j on i."""
        group_of, group_agents = self.skill_groups
        return np.ascontiguousarray(group_agents[group_of].T)

    @cached_property
    def deadline_reachable(self) -> np.ndarray:
        """[m, n] a hard deadline can be met on agent i if j started at its release."""
        end = self.release[None, :] + self.duration
        ok = end <= self.deadline[None, :] + 1e-9
        return ok | ~self.hard_deadline[None, :]

    @cached_property
    def eligible(self) -> np.ndarray:
        """[m, n] j may be placed on i at all: static rules, fits alone, deadline reachable."""
        return self.static_eligible & self.fits_alone & self.deadline_reachable

    # -- Structure-aware accessors (no [m, n] matrix unless it is small) -----
    #
    # The dense properties above stay as they are; these give the same
    # numbers for given (i, j) pairs, reading a dense matrix only when it is
    # already built or cheap (<= DENSE_CELLS cells), so plans of 1,000 x
    # 1,000,000 snapshots never allocate tasks x agents arrays.

    @property
    def large(self) -> bool:
        """More than ``DENSE_CELLS`` agent x task cells: the sparse accessors' size."""
        return self.m * self.n > DENSE_CELLS

    def _dense_ok(self, name: str) -> bool:
        return name in self.__dict__ or self.m * self.n <= DENSE_CELLS

    def pair_duration(self, i: Index, j: Index) -> np.ndarray:
        """Run time of task j[k] on agent i[k] (same values as ``duration[i, j]``)."""
        return self.work[j] / self.speed[i]

    def pair_cost(self, i: Index, j: Index) -> np.ndarray:
        """Cost of task j[k] on agent i[k] (same values as ``cost[i, j]``)."""
        if self._dense_ok("cost"):
            return self.cost[i, j]
        c = self.cost_rate[i] * self.pair_duration(i, j)
        if self.cost_override:
            i, j = np.broadcast_arrays(np.asarray(i), np.asarray(j))
            c = np.array(c, dtype=float)
            for k, (a, b) in enumerate(zip(i.ravel().tolist(), j.ravel().tolist(),
                                           strict=True)):
                v = self.cost_override.get((a, b))
                if v is not None:
                    c.flat[k] = v
        return c

    def pair_migration(self, i: Index, j: Index) -> np.ndarray:
        """Migration cost of placing j[k] on i[k] (same values as ``migration_matrix[i, j]``)."""
        if self._dense_ok("migration_matrix"):
            return self.migration_matrix[i, j]
        i, j = np.broadcast_arrays(np.asarray(i), np.asarray(j))
        src = self.current[j]
        moved = (src >= 0) & (src != i)
        out = np.where(moved, self.migration_cost[j], 0.0)
        if self.migration_factor is not None and moved.any():
            out = out * np.where(moved, self.migration_factor[np.maximum(src, 0), i], 1.0)
        return out

    def pair_demand(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """[k, R] demand of j[k] on i[k] (same values as ``demand[i, j]``)."""
        if not self.demand_override:
            return self.demand_base[j]
        if "demand" in self.__dict__:
            return self.demand[i, j]
        i, j = np.broadcast_arrays(np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64))
        out = self.demand_base[j]
        hit, pos = self.demand_overrides.lookup(i, j, self.m)
        if hit.any():
            out = out.copy()
            out[hit] = self.demand_overrides.values[pos[hit]]
        return out

    # -- Sparse structure: eligibility rules and per-task override maps ---------

    @cached_property
    def rule_groups(self) -> RuleGroups:
        """Tasks grouped by (skills, allowed list, forbidden list), in one pass over the tasks."""
        return rule_groups(self.snapshot, self.agent_index, self.up)

    @cached_property
    def static_rules(self) -> StaticRules:
        """Static eligibility as skill-set masks and CSR allow / forbid lists."""
        rg, m, n = self.rule_groups, self.m, self.n
        skill_of = rg.skill_set_of[rg.group_of]
        has_allowed = np.array([a is not None for a in rg.allowed], dtype=bool)[rg.group_of]
        a_ptr, a_idx = _expand_lists([[] if a is None else a for a in rg.allowed], rg.group_of)
        f_ptr, f_idx = _expand_lists(rg.forbidden, rg.group_of)
        a_own = np.repeat(np.arange(n), np.diff(a_ptr))
        f_own = np.repeat(np.arange(n), np.diff(f_ptr))
        return StaticRules(
            skill_of=skill_of,
            skill_masks=rg.skill_masks,
            has_allowed=has_allowed, allowed_ptr=a_ptr, allowed_idx=a_idx,
            forbidden_ptr=f_ptr, forbidden_idx=f_idx,
            allowed_keys=_sorted_keys(a_own, a_idx, m),
            forbidden_keys=_sorted_keys(f_own, f_idx, m))

    @cached_property
    def cost_overrides(self) -> PairOverrides:
        return PairOverrides.build(self.cost_override, self.m, self.n,  # type: ignore[arg-type]
                                   None)

    @cached_property
    def demand_overrides(self) -> PairOverrides:
        return PairOverrides.build(self.demand_override, self.m,  # type: ignore[arg-type]
                                   self.n, self.n_resources)

    @cached_property
    def cap_limit(self) -> np.ndarray:
        """[m, R] :func:`capacity_limit` of the capacities, computed once."""
        return capacity_limit(self.capacity)

    @cached_property
    def demand_support(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (ptr [n + 1], resources) of the resources task j needs on some agent.

        Demands and capacities are >= 0, so a resource a task does not need
        always fits: capacity checks only read these columns (a task needing
        one of 50 resources costs one comparison per agent, not 50).
        """
        nz = self.demand_base != 0
        if self.demand_override:
            ov = self.demand_overrides
            nz = nz.copy()
            jj, rr = np.nonzero(ov.values != 0)
            nz[ov.task[jj], rr] = True
        ptr = np.zeros(self.n + 1, dtype=np.int64)
        ptr[1:] = np.cumsum(nz.sum(axis=1))
        return ptr, np.nonzero(nz)[1].astype(np.int64)

    def col_support(self, j: int) -> np.ndarray:
        """Resource indices task j needs on some agent (see :attr:`demand_support`)."""
        ptr, idx = self.demand_support
        return idx[ptr[j]:ptr[j + 1]]

    def pair_static(self, i: Index, j: Index) -> np.ndarray:
        """[k] agent i[k] is up, has j[k]'s skills and passes its lists (``static_eligible``)."""
        i, j = np.broadcast_arrays(np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64))
        if "static_eligible" in self.__dict__:
            return self.static_eligible[i, j]
        sr = self.static_rules
        ok = sr.skill_masks[sr.skill_of[j], i]
        keys = j * max(self.m, 1) + i
        lists = sr.has_allowed[j]
        if lists.any():
            ok = ok & (~lists | _member(sr.allowed_keys, keys))
        if sr.forbidden_keys.size:
            ok = ok & ~_member(sr.forbidden_keys, keys)
        return ok

    def _dense_cells_ok(self, name: str, width: int = 1) -> bool:
        return name in self.__dict__ or self.m * self.n * width <= DENSE_CELLS

    def col_static(self, j: int) -> np.ndarray:
        """[m] ``static_eligible[:, j]`` without the matrix."""
        if self._dense_ok("static_eligible"):
            return self.static_eligible[:, j]
        sr = self.static_rules
        mask = sr.skill_masks[sr.skill_of[j]].copy()
        if sr.has_allowed[j]:
            allow = np.zeros(self.m, dtype=bool)
            allow[sr.allowed_idx[sr.allowed_ptr[j]:sr.allowed_ptr[j + 1]]] = True
            mask &= allow
        mask[sr.forbidden_idx[sr.forbidden_ptr[j]:sr.forbidden_ptr[j + 1]]] = False
        return mask

    def col_demand(self, j: int) -> np.ndarray:
        """[m, R] ``demand[:, j]``: a broadcast view of the base demand unless overridden."""
        if not self.demand_override:
            return np.broadcast_to(self.demand_base[j], (self.m, self.n_resources))
        if self._dense_cells_ok("demand", self.n_resources):
            return self.demand[:, j]
        ov = self.demand_overrides
        sl = ov.of_task(j)
        if sl.start == sl.stop:
            return np.broadcast_to(self.demand_base[j], (self.m, self.n_resources))
        d = np.repeat(self.demand_base[j][None, :], self.m, axis=0)
        d[ov.agent[sl]] = ov.values[sl]
        return d

    def col_fits(self, j: int) -> np.ndarray:
        """[m] ``fits_alone[:, j]``."""
        if self._dense_ok("fits_alone"):
            return self.fits_alone[:, j]
        cap = self.cap_limit
        rs = self.col_support(j)
        ok = np.all(self.demand_base[j, rs] <= cap[:, rs], axis=1)
        if self.demand_override:
            ov = self.demand_overrides
            sl = ov.of_task(j)
            if sl.start != sl.stop:
                ok[ov.agent[sl]] = np.all(ov.values[sl] <= cap[ov.agent[sl]], axis=1)
        return ok

    def col_deadline_ok(self, j: int) -> np.ndarray:
        """[m] ``deadline_reachable[:, j]``."""
        if not self.hard_deadline[j]:
            return np.ones(self.m, dtype=bool)
        return self.release[j] + self.work[j] / self.speed <= self.deadline[j] + 1e-9

    def col_eligible(self, j: int) -> np.ndarray:
        """[m] ``eligible[:, j]``: static rules, fits alone, deadline reachable."""
        if self._dense_ok("eligible"):
            return self.eligible[:, j]
        return self.col_static(j) & self.col_fits(j) & self.col_deadline_ok(j)

    def col_duration(self, j: int) -> np.ndarray:
        """[m] ``duration[:, j]``."""
        return self.work[j] / self.speed

    def col_cost(self, j: int) -> np.ndarray:
        """[m] ``cost[:, j]``."""
        if self._dense_ok("cost"):
            return self.cost[:, j]
        c = self.cost_rate * (self.work[j] / self.speed)
        if self.cost_override:
            ov = self.cost_overrides
            sl = ov.of_task(j)
            c[ov.agent[sl]] = ov.values[sl]
        return c

    def col_migration(self, j: int) -> np.ndarray:
        """[m] ``migration_matrix[:, j]``."""
        return self.pair_migration(np.arange(self.m), np.full(self.m, j))

    def block_columns(self, width: int = 1) -> int:
        """Tasks per block so that a block of [m, k(, width)] stays about 1M cells."""
        return max(1, 1_000_000 // max(1, self.m * width))

    def block_eligible(self, js: np.ndarray) -> np.ndarray:
        """[m, k] ``eligible[:, js]`` built from the rules, one block of tasks at a time."""
        if self._dense_ok("eligible"):
            return self.eligible[:, js]
        js = np.asarray(js, dtype=np.int64)
        sr, m, k = self.static_rules, self.m, js.size
        ok = sr.skill_masks[sr.skill_of[js]].T.copy()
        cols = np.flatnonzero(sr.has_allowed[js])
        if cols.size:
            allow = np.zeros((m, cols.size), dtype=bool)
            agents, owner = csr_take(sr.allowed_ptr, sr.allowed_idx, js[cols])
            allow[agents, owner] = True
            ok[:, cols] &= allow
        agents, owner = csr_take(sr.forbidden_ptr, sr.forbidden_idx, js)
        ok[agents, owner] = False
        cap = self.cap_limit
        # Only the (task, resource) pairs with a demand: zero always fits.
        kk, rr = np.nonzero(self.demand_base[js])
        if kk.size:
            over = self.demand_base[js[kk], rr][None, :] > cap[:, rr]  # [m, nnz]
            starts = np.flatnonzero(np.r_[True, kk[1:] != kk[:-1]])
            ok[:, kk[starts]] &= ~np.logical_or.reduceat(over, starts, axis=1)
        if self.demand_override:
            ov = self.demand_overrides
            pos = np.full(self.n, -1, dtype=np.int64)
            pos[js] = np.arange(k)
            sel = np.flatnonzero(pos[ov.task] >= 0)
            if sel.size:
                fit = np.all(ov.values[sel] <= cap[ov.agent[sel]], axis=1)
                static = self.pair_static(ov.agent[sel], ov.task[sel])
                ok[ov.agent[sel], pos[ov.task[sel]]] = static & fit
        hard = np.flatnonzero(self.hard_deadline[js])
        if hard.size:
            jh = js[hard]
            end = self.release[jh][None, :] + self.work[jh][None, :] / self.speed[:, None]
            ok[:, hard] &= end <= self.deadline[jh][None, :] + 1e-9
        return ok

    def block_cost(self, js: np.ndarray) -> np.ndarray:
        """[m, k] ``cost[:, js]``."""
        if self._dense_ok("cost"):
            return self.cost[:, js]
        js = np.asarray(js, dtype=np.int64)
        c = self.cost_rate[:, None] * (self.work[js][None, :] / self.speed[:, None])
        if self.cost_override:
            ov = self.cost_overrides
            pos = np.full(self.n, -1, dtype=np.int64)
            pos[js] = np.arange(js.size)
            sel = np.flatnonzero(pos[ov.task] >= 0)
            c[ov.agent[sel], pos[ov.task[sel]]] = ov.values[sel]
        return c

    def block_duration(self, js: np.ndarray) -> np.ndarray:
        """[m, k] ``duration[:, js]``."""
        return self.work[np.asarray(js)][None, :] / self.speed[:, None]

    @cached_property
    def eligible_pairs(self) -> int:
        """How many (agent, task) pairs are eligible (``eligible.sum()``), counted by blocks."""
        if self._dense_ok("eligible"):
            return int(self.eligible.sum())
        step = self.block_columns()
        return sum(int(self.block_eligible(np.arange(lo, min(lo + step, self.n))).sum())
                   for lo in range(0, self.n, step))

    @cached_property
    def skill_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """Eligibility by groups: ``(group_of[n], group_agents[G, m])``.

        Tasks with the same skills and allow / forbid lists form one group;
        ``group_agents[g]`` are the up agents that pass those static rules
        (``static_eligible[:, j] == group_agents[group_of[j]]``). Capacity fit
        and deadlines are per task and checked separately.
        """
        rg = self.rule_groups
        return rg.group_of, rg.group_agents

    @cached_property
    def has_time_constraints(self) -> bool:
        """Whether start times matter beyond packing: releases after now or deadlines."""
        return bool(np.any(self.release > self.now) or np.any(np.isfinite(self.deadline)))

    @cached_property
    def needs_schedule(self) -> bool:
        """Whether start times change the objective or feasibility.

        True when a hard deadline or weighted tardiness meets releases or
        deadlines, or when makespan is weighted and releases or concurrency
        above 1 make it differ from the busiest agent's busy time. Then the
        exact models need the scheduling formulation (intervals); otherwise
        the assignment model captures the snapshot's objective exactly.
        """
        w = self.snapshot.weights
        timed = self.has_time_constraints and (w.tardiness > 0 or bool(self.hard_deadline.any()))
        lanes = w.makespan > 0 and bool(
            np.any(self.release > self.now) or np.any(self.concurrency > 1))
        return bool(timed or lanes)

    @cached_property
    def migration_matrix(self) -> np.ndarray:
        """[m, n] cost of placing task j on agent i away from its current agent.

        Base cost x pair factor (current -> i); 0 on the current agent and for
        tasks with no current agent.
        """
        out = np.zeros((self.m, self.n))
        js = np.flatnonzero(self.current >= 0)
        if js.size == 0:
            return out
        src = self.current[js]
        factor = (np.ones((self.m, js.size)) if self.migration_factor is None
                  else self.migration_factor[src].T)
        out[:, js] = self.migration_cost[js][None, :] * factor
        out[src, js] = 0.0
        return out

    def migration_source(self) -> dict[int, int]:
        return {j: int(c) for j, c in enumerate(self.current) if c >= 0}


def default_migration_cost(snapshot: Snapshot, work: np.ndarray | None = None) -> np.ndarray:
    """[n] base migration cost: the task's own, else work x (size + progress shares)."""
    pol = snapshot.migration
    table = snapshot.task_table
    if snapshot.columnar and table is not None:
        n = len(table)
        if work is None:
            work = np.ones(n) if table.work is None else np.array(table.work)
        progress = np.zeros(n) if table.progress is None else table.progress
        out = work * (pol.size_share + pol.progress_share * progress)
        if table.migration_cost is not None:
            out = np.where(np.isnan(table.migration_cost), out, table.migration_cost)
        return out
    tasks = snapshot.tasks
    if work is None:
        work = _float_column(tasks, "work")
    out = work * (pol.size_share + pol.progress_share * _float_column(tasks, "progress"))
    own = _column(tasks, "migration_cost")
    if own.count(None) != len(own):
        given = np.array([np.nan if c is None else c for c in own], dtype=float)
        out = np.where(np.isnan(given), out, given)
    return out


def migration_factors(snapshot: Snapshot) -> np.ndarray | None:
    """[m, m] pair factor of a move a -> b (see models.MigrationPolicy); None when all are 1."""
    pol = snapshot.migration
    if not pol.label_factors and not pol.pair_factors:
        return None
    agents = snapshot.agents
    m = len(agents)
    best = np.full((m, m), -np.inf)  # largest factor over the labels that differ
    for key, factor in pol.label_factors.items():
        values = [a.labels.get(key) for a in agents]
        differ = np.array([[va != vb for vb in values] for va in values], dtype=bool)
        best = np.where(differ, np.maximum(best, factor), best)
    f = np.where(np.isfinite(best), best, 1.0)
    index = {a.id: i for i, a in enumerate(agents)}
    for pf in pol.pair_factors:
        f[index[pf.source], index[pf.target]] = pf.factor
    return f


def _check_magnitudes(snapshot: Snapshot, p: Problem) -> None:
    """Refuse numbers whose size (or derived size) no solver can handle exactly."""

    def check(value: float, field: str, what: str = "value") -> None:
        if not abs(value) <= MAX_MAGNITUDE:
            raise InvalidInputError(
                f"{what} {value:.3g} exceeds {MAX_MAGNITUDE:.0e}; rescale the units", field=field)

    def scan(arr: np.ndarray, field: Callable[[tuple[int, ...]], str]) -> None:
        if arr.size:
            idx = np.unravel_index(int(np.argmax(np.abs(arr))), arr.shape)
            check(float(arr[idx]), field(tuple(int(k) for k in idx)))

    res, w = p.resources, snapshot.weights
    check(snapshot.time, "time")
    bad = np.flatnonzero(~((p.speed >= MIN_SPEED) & (p.speed <= MAX_SPEED)))
    if bad.size:  # 1 / speed overflows (5e-324: inf x 0 work = NaN finishes)
        i = int(bad[0])
        raise InvalidInputError(f"speed {float(p.speed[i]):.3g} outside [{MIN_SPEED:g}, "
                                f"{MAX_SPEED:g}]", field=f"agents[{i}].speed")
    scan(p.capacity, lambda k: f"agents[{k[0]}].capacity[{res[k[1]]!r}]")
    scan(p.cost_rate, lambda k: f"agents[{k[0]}].cost_rate")
    scan(p.work, lambda k: f"tasks[{k[0]}].work")
    scan(p.release, lambda k: f"tasks[{k[0]}].release")
    scan(np.where(np.isfinite(p.deadline), p.deadline, 0.0), lambda k: f"tasks[{k[0]}].deadline")
    scan(p.demand_base, lambda k: f"tasks[{k[0]}].demand[{res[k[1]]!r}]")
    scan(p.migration_cost, lambda k: f"tasks[{k[0]}].migration_cost")
    # Overrides: one vectorised check; the loop only runs to name a culprit.
    costs = np.fromiter(p.cost_override.values(), dtype=float, count=len(p.cost_override))
    if costs.size and not np.abs(costs).max() <= MAX_MAGNITUDE:
        for (i, j), c in p.cost_override.items():
            check(c, f"tasks[{j}].overrides[{p.agent_ids[i]!r}].cost")
    if p.demand_override:
        dem = np.array(list(p.demand_override.values()), dtype=float)
        if dem.size and not np.abs(dem).max() <= MAX_MAGNITUDE:
            for (i, j), vec in p.demand_override.items():
                r = int(np.argmax(np.abs(vec)))
                check(float(vec[r]),
                      f"tasks[{j}].overrides[{p.agent_ids[i]!r}].demand[{res[r]!r}]")
    for prio, v in w.unassigned.items():
        check(v, f"weights.unassigned[{prio.value!r}]")
    for prio, v in w.tardiness_by_priority.items():
        check(v, f"weights.tardiness_by_priority[{prio.value!r}]")
    for name in ("cost", "makespan", "imbalance", "tardiness", "migrations"):
        check(getattr(w, name), f"weights.{name}")
    if p.m and p.n:
        j, i = int(np.argmax(p.work)), int(np.argmin(p.speed))
        longest = float(p.work[j] / p.speed[i])
        check(longest, f"tasks[{j}].work", f"duration on agents[{i}] (work / speed)")
        k = int(np.argmax(p.cost_rate))
        check(float(p.cost_rate[k]) * longest, f"agents[{k}].cost_rate",
              "cost of the longest task (cost_rate x duration)")


def _check_topology_magnitudes(p: Problem) -> None:
    """The topology numbers obey MAX_MAGNITUDE too (named like the other fields)."""
    topo = p.topology
    if topo is None:
        return
    res = p.resources
    checks: list[tuple[np.ndarray, Callable[[int], str]]] = [
        (np.where(np.isfinite(topo.safety), topo.safety, 0.0).max(axis=1, initial=0.0),
         lambda k: f"agents[{k}].safety"),
        (topo.load_cost, lambda k: f"topology.load_cost[{res[k]!r}]"),
        (topo.bal_target, lambda k: f"topology.balances[{k}].target"),
        (topo.bal_weight, lambda k: f"topology.balances[{k}].weight"),
        (topo.zone_cost.reshape(-1), lambda k: "topology.zone_move_costs"),
        (topo.pair_cost, lambda k: "agents[].move_costs"),
        (np.array([topo.group_move_weight, topo.agent_move_weight]),
         lambda k: ("topology.group_move_weight", "topology.agent_move_weight")[k]),
    ]
    for arr, name in checks:
        if arr.size and not float(np.abs(arr).max()) <= MAX_MAGNITUDE:
            k = int(np.argmax(np.abs(arr)))
            raise InvalidInputError(
                f"value {float(arr[k]):.3g} exceeds {MAX_MAGNITUDE:.0e}; rescale the units",
                field=name(k))


def _column(tasks: list, name: str) -> list:
    """The attribute `name` of every task, in one C-level pass (no per-task Python frame)."""
    return list(map(attrgetter(name), tasks))


def _float_column(tasks: list, name: str) -> np.ndarray:
    return np.fromiter(map(attrgetter(name), tasks), dtype=float, count=len(tasks))


def _optional_column(values: list, missing: float, dtype: type = float) -> np.ndarray:
    """[n] the values with `missing` where a value is None (one scan when none is set)."""
    if values.count(None) == len(values):
        return np.full(len(values), missing, dtype=dtype)
    return np.array([missing if v is None else v for v in values], dtype=dtype)


def _demand_columns(demands: list[dict[str, float]], resources: list[str],
                    r_index: dict[str, int]) -> np.ndarray:
    """[n, R] base demands: one C-level pass per resource over the tasks' demand maps.

    A resource no agent has (or a NaN) shows as fewer hits than listed
    entries; then the plain loop runs and behaves as it always did.
    """
    n, R = len(demands), len(resources)
    out = np.empty((n, R))
    hits = 0
    for k, r in enumerate(resources):
        col = np.fromiter(map(methodcaller("get", r, np.nan), demands), dtype=float, count=n)
        missing = np.isnan(col)
        hits += n - int(np.count_nonzero(missing))
        col[missing] = 0.0
        out[:, k] = col
    if hits != sum(map(len, demands)):
        out = np.zeros((n, R))
        for j, d in enumerate(demands):
            for r, v in d.items():
                out[j, r_index[r]] = v
    return out


def compile_snapshot(snapshot: Snapshot) -> Problem:
    """Turn a validated Snapshot into a Problem (arrays in snapshot order).

    Raises InvalidInputError when a number, or a duration or cost derived
    from them, exceeds ``MAX_MAGNITUDE``. A snapshot given as a TaskTable
    is read from its columns (no Task object is built); Task objects are read
    column by column with C-level passes (``map(attrgetter(...))``): a
    million tasks compile in about a second, with the same numbers a per-task
    loop gives.
    """
    agents, w = snapshot.agents, snapshot.weights
    agent_index = {a.id: i for i, a in enumerate(agents)}
    resources = sorted({r for a in agents for r in a.capacity})
    r_index = {r: k for k, r in enumerate(resources)}
    m, R = len(agents), len(resources)

    capacity = np.zeros((m, R))
    for i, a in enumerate(agents):
        for r, v in a.capacity.items():
            capacity[i, r_index[r]] = v
    now = float(snapshot.time)
    by_rank = sorted(Priority, key=lambda p: p.rank)
    if snapshot.columnar:
        cols = _table_columns(snapshot.task_table, resources, r_index,  # type: ignore[arg-type]
                              agent_index)
    else:
        cols = _object_columns(snapshot.tasks, resources, r_index, agent_index)
    problem = Problem(
        snapshot=snapshot,
        agent_ids=[a.id for a in agents],
        task_ids=cols.ids,
        resources=resources,
        now=now,
        capacity=capacity,
        speed=np.array([a.speed for a in agents], dtype=float),
        concurrency=np.array([a.concurrency for a in agents], dtype=np.int64),
        cost_rate=np.array([a.cost_rate for a in agents], dtype=float),
        up=np.array([a.status == AgentStatus.UP for a in agents], dtype=bool),
        work=cols.work,
        release=np.maximum(cols.release, now),
        deadline=cols.deadline,
        hard_deadline=cols.hard_deadline,
        priority_rank=cols.priority_rank,
        unassigned_penalty=np.array([w.unassigned[p] for p in by_rank],
                                    dtype=float)[cols.priority_rank],
        tardiness_weight=np.array([w.tardiness_by_priority[p] for p in by_rank],
                                  dtype=float)[cols.priority_rank],
        current=cols.current,
        migration_cost=default_migration_cost(snapshot, cols.work),
        migration_factor=migration_factors(snapshot),
        demand_base=cols.demand_base,
        cost_override=cols.cost_override,
        demand_override=cols.demand_override,
        agent_index=agent_index,
    )
    _check_magnitudes(snapshot, problem)
    _check_topology_magnitudes(problem)
    return problem


@dataclass
class _TaskColumns:
    """The task arrays of a Problem, read from Task objects or from a TaskTable."""

    ids: list[str]
    work: np.ndarray
    release: np.ndarray  # as given (compile clips it at `now`)
    deadline: np.ndarray  # +inf: none
    hard_deadline: np.ndarray
    priority_rank: np.ndarray
    current: np.ndarray
    demand_base: np.ndarray
    cost_override: dict[tuple[int, int], float] = field(default_factory=dict)
    demand_override: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)


def _table_columns(table: TaskTable, resources: list[str], r_index: dict[str, int],
                   agent_index: dict[str, int]) -> _TaskColumns:
    """Columns of a TaskTable: copies of its arrays (a table has no per-agent overrides)."""
    n = len(table)

    def floats(col: np.ndarray | None, default: float) -> np.ndarray:
        return np.full(n, default) if col is None else np.array(col, dtype=float)

    demand_base = np.zeros((n, len(resources)))
    for r, col in table.demand.items():
        demand_base[:, r_index[r]] = col
    deadline = floats(table.deadline, np.inf)
    deadline[np.isnan(deadline)] = np.inf
    rank_of = {p: p.rank for p in Priority}
    ranks = (np.full(n, Priority.NORMAL.rank, dtype=np.int64) if table.priority is None
             else np.fromiter(map(rank_of.__getitem__, table.priority), dtype=np.int64,
                              count=n))
    cur = table.current_agent
    current = (np.full(n, -1, dtype=np.int64) if cur is None or cur.count(None) == n
               else np.array([agent_index[c] if c else -1 for c in cur], dtype=np.int64))
    return _TaskColumns(
        ids=table.id, work=floats(table.work, 1.0), release=floats(table.release, 0.0),
        deadline=deadline,
        hard_deadline=(np.zeros(n, dtype=bool) if table.hard_deadline is None
                       else np.array(table.hard_deadline, dtype=bool)),
        priority_rank=ranks, current=current, demand_base=demand_base)


def _object_columns(tasks: list[Task], resources: list[str], r_index: dict[str, int],
                    agent_index: dict[str, int]) -> _TaskColumns:
    """Columns of Task objects, each read in one C-level pass over the tasks."""
    n, R = len(tasks), len(resources)
    demand_base = _demand_columns(_column(tasks, "demand"), resources, r_index)
    cost_override: dict[tuple[int, int], float] = {}
    # Per-pair demands are gathered as plain floats in one flat list and made
    # into one [K, R] array at the end (the dict's vectors are its rows): a
    # numpy copy per pair was a fifth of a 1 s budget at 80 x 1600 GAP.
    d_keys: list[tuple[int, int]] = []
    d_flat: list[float] = []
    overrides = _column(tasks, "overrides")
    for j in [j for j, ov in enumerate(overrides) if ov]:
        base: list[float] | None = None
        for a_id, ov in overrides[j].items():
            i = agent_index[a_id]
            if ov.cost is not None:
                cost_override[(i, j)] = float(ov.cost)
            if ov.demand is not None:
                if base is None:
                    base = demand_base[j].tolist()
                vec = base.copy()
                for r, v in ov.demand.items():
                    vec[r_index[r]] = v
                d_keys.append((i, j))
                d_flat.extend(vec)
    d_vals = np.array(d_flat, dtype=float).reshape(len(d_keys), R)
    demand_override: dict[tuple[int, int], np.ndarray] = dict(zip(d_keys, d_vals, strict=True))
    rank_of = {p: p.rank for p in Priority}
    current = _column(tasks, "current_agent")
    return _TaskColumns(
        ids=_column(tasks, "id"),
        work=_float_column(tasks, "work"),
        release=_float_column(tasks, "release"),
        deadline=_optional_column(_column(tasks, "deadline"), np.inf),
        hard_deadline=np.fromiter(map(attrgetter("hard_deadline"), tasks), dtype=bool,
                                  count=n),
        priority_rank=np.fromiter(map(rank_of.__getitem__, _column(tasks, "priority")),
                                  dtype=np.int64, count=n),
        current=(np.full(n, -1, dtype=np.int64) if current.count(None) == n else np.array(
            [agent_index[c] if c else -1 for c in current], dtype=np.int64)),
        demand_base=demand_base,
        cost_override=cost_override,
        demand_override=demand_override)
