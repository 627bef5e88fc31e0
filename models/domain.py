"""Input vocabulary: agents, tasks and the snapshot a solver is asked to plan.

Everything here is plain data with strict validation; nothing does I/O or
imports a solver. Numbers must be finite: NaN and infinity are rejected with
an error naming the field, because a NaN in a capacity silently disables a
constraint in every solver we use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from models.columns import Coded, bool_column, column_list, float_column, list_column
from models.topology import FIELD_KEYS, Topology

Id = Annotated[str, Field(min_length=1, max_length=200)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Priority(StrEnum):
    """Priority class of a task; the order here is the order of importance."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical .. 3 for low, so sorting ascending puts critical first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


class AgentStatus(StrEnum):
    """Whether an agent accepts work: only `up` agents receive tasks in a plan.

    `draining` agents finish nothing new: a plan moves their tasks elsewhere.
    """

    UP = "up"
    DRAINING = "draining"
    DOWN = "down"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


def _check_resource_map(value: dict[str, float], field: str) -> dict[str, float]:
    for name, amount in value.items():
        if not name:
            raise ValueError(f"{field}: resource names must be non-empty")
        if not isinstance(amount, int | float) or math.isnan(amount) or math.isinf(amount):
            raise ValueError(f"{field}[{name!r}] must be a finite number, got {amount!r}")
        if amount < 0:
            raise ValueError(f"{field}[{name!r}] must be >= 0, got {amount!r}")
    return value


class Agent(_Strict):
    """A worker that runs tasks: a machine, a service replica, an LLM agent.

    `capacity` is held by the tasks assigned to the agent (the sum of their
    demands must fit, per resource). A resource the agent does not list is one
    it does not have (capacity 0). `concurrency` is how many tasks run at the
    same time; the rest queue in plan order.
    """

    id: Id
    capacity: dict[str, float] = Field(default_factory=dict)
    speed: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    concurrency: Annotated[int, Field(ge=1, le=100_000)] = 1
    skills: list[str] = Field(default_factory=list)
    cost_rate: NonNegative = 0.0
    status: AgentStatus = AgentStatus.UP
    labels: dict[str, str] = Field(default_factory=dict)
    #: Topology (models.topology): the agent's location and network domain.
    zone: Id | None = None
    neighbourhood: Id | None = None
    #: Soft threshold per resource: usage above it costs topology.load_cost[r] per unit.
    safety: dict[str, float] = Field(default_factory=dict)
    #: Cost of moving one task from this agent to the agent named (overrides zone costs).
    move_costs: dict[str, float] = Field(default_factory=dict)

    @field_validator("capacity")
    @classmethod
    def _capacity_finite(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_resource_map(v, "capacity")

    @field_validator("safety")
    @classmethod
    def _safety_finite(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_resource_map(v, "safety")

    @field_validator("move_costs")
    @classmethod
    def _move_costs_finite(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_resource_map(v, "move_costs")

    def topology_value(self, key: str) -> str | None:
        """The agent's value of a topology key: its zone, neighbourhood or label `key`."""
        if key in FIELD_KEYS:
            value: str | None = getattr(self, key)
            return value
        return self.labels.get(key)


class AgentOverride(_Strict):
    """Agent-specific cost and demand of one task (the GAP's c[i][j], a[i][j]).

    Only the pairs that differ from the default need an entry, so users who do
    not need a tasks x agents matrix never write one.
    """

    cost: Finite | None = None
    demand: dict[str, float] | None = None

    @field_validator("demand")
    @classmethod
    def _demand_finite(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        return None if v is None else _check_resource_map(v, "demand")


class Task(_Strict):
    """A unit of work to place on one agent.

    Its duration on agent `a` is `work / a.speed`; its default cost there is
    `a.cost_rate * duration`, unless `overrides[a.id].cost` says otherwise.
    A deadline is soft (weighted tardiness) unless `hard_deadline` is set.
    """

    id: Id
    work: NonNegative = 1.0
    demand: dict[str, float] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    release: NonNegative = 0.0
    deadline: NonNegative | None = None
    hard_deadline: bool = False
    skills: list[str] = Field(default_factory=list)
    allowed_agents: list[str] | None = None
    forbidden_agents: list[str] = Field(default_factory=list)
    current_agent: str | None = None
    progress: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    migration_cost: NonNegative | None = None
    tenant: str | None = None
    overrides: dict[str, AgentOverride] = Field(default_factory=dict)
    #: The group (service) the task belongs to: its rules are in Snapshot.topology.groups.
    group: Id | None = None

    @field_validator("demand")
    @classmethod
    def _demand_finite(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_resource_map(v, "demand")

    @model_validator(mode="after")
    def _deadline_after_release(self) -> Task:
        if self.deadline is not None and self.deadline < self.release:
            raise ValueError(
                f"deadline ({self.deadline}) is before release ({self.release}) "
                f"for task {self.id!r}"
            )
        if self.hard_deadline and self.deadline is None:
            raise ValueError(f"hard_deadline is set but task {self.id!r} has no deadline")
        return self


_FloatCol = Annotated[
    np.ndarray,
    PlainSerializer(column_list, return_type=list[float | None]),
    WithJsonSchema({"type": "array", "items": {"type": ["number", "null"]}}),
]
_BoolCol = Annotated[
    np.ndarray,
    PlainSerializer(lambda c: c.tolist(), return_type=list[bool]),
    WithJsonSchema({"type": "array", "items": {"type": "boolean"}}),
]
_ListCol = Annotated[
    Coded,
    PlainSerializer(lambda c: c.tolist(), return_type=list[list[str] | None]),
    WithJsonSchema({"type": "array", "items": {"anyOf": [
        {"type": "array", "items": {"type": "string"}}, {"type": "string"}, {"type": "null"}]}}),
]
#: Float columns whose None entries mean "not given" (stored as NaN).
_OPTIONAL_FLOATS = ("deadline", "migration_cost")


class TaskTable(BaseModel):
    """Tasks as columns: the fields of :class:`Task`, one entry per task.

    For snapshots of 100k+ tasks read from Parquet / CSV / numpy, where a
    list of Task objects costs ~1.4 KB per task and most of a second per
    100k to validate. Give it as ``Snapshot(task_table=...)`` instead of
    ``tasks``. Only `id` is required; a column left out takes Task's default
    for every task. Numbers are numpy arrays (a list, numpy array or polars
    / pandas column is accepted); `skills`, `allowed_agents` and
    `forbidden_agents` are one list of strings per task (a lone string is a
    list of one; in `allowed_agents` None is "no list"), stored as codes into
    the distinct lists (:class:`models.columns.Coded`). Per-agent `overrides`
    have no column: tasks that need them go in as Task objects.

    The rules are Task's, checked column-wise: numbers finite and >= 0,
    progress <= 1, deadline not before release, hard_deadline only with a
    deadline, ids unique and 1-200 characters. A violation names the column
    and the row: ``work[17] must be a finite number, got nan``. `deadline`
    and `migration_cost` take None for "not given" (kept as NaN inside).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    id: list[Id]
    work: _FloatCol | None = None
    demand: dict[str, _FloatCol] = Field(default_factory=dict)
    priority: list[Priority] | None = None
    release: _FloatCol | None = None
    deadline: _FloatCol | None = None
    hard_deadline: _BoolCol | None = None
    skills: _ListCol | None = None
    allowed_agents: _ListCol | None = None
    forbidden_agents: _ListCol | None = None
    current_agent: list[str | None] | None = None
    progress: _FloatCol | None = None
    migration_cost: _FloatCol | None = None
    tenant: list[str | None] | None = None
    group: list[Id | None] | None = None

    @field_validator("work", "release", "deadline", "progress", "migration_cost",
                     mode="before")
    @classmethod
    def _floats(cls, v: Any, info: ValidationInfo) -> np.ndarray | None:
        name = str(info.field_name)
        return None if v is None else float_column(
            v, name, optional=name in _OPTIONAL_FLOATS, upper=1.0 if name == "progress" else None)

    @field_validator("demand", mode="before")
    @classmethod
    def _demands(cls, v: Any) -> dict[str, np.ndarray]:
        if not isinstance(v, dict):
            raise ValueError("demand must map each resource name to a column")
        for r in v:
            if not isinstance(r, str) or not r:
                raise ValueError("demand: resource names must be non-empty strings")
        return {r: float_column(c, f"demand[{r!r}]") for r, c in v.items()}

    @field_validator("hard_deadline", mode="before")
    @classmethod
    def _bools(cls, v: Any) -> np.ndarray | None:
        return None if v is None else bool_column(v, "hard_deadline")

    @field_validator("skills", "allowed_agents", "forbidden_agents", mode="before")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Coded | None:
        name = str(info.field_name)
        return None if v is None else list_column(v, name, allow_none=name == "allowed_agents")

    @model_validator(mode="after")
    def _rows_agree(self) -> TaskTable:
        n = len(self.id)
        columns: list[tuple[str, Any]] = [(k, getattr(self, k)) for k in _TABLE_COLUMNS]
        columns += [(f"demand[{r!r}]", c) for r, c in self.demand.items()]
        for name, col in columns:
            if col is not None and len(col) != n:
                raise ValueError(f"{name} has {len(col)} rows, id has {n}")
        if len(set(self.id)) != n:
            seen: set[str] = set()
            for j, t in enumerate(self.id):
                if t in seen:
                    raise ValueError(f"id[{j}]: duplicate task id {t!r}")
                seen.add(t)
        deadline = self.deadline
        if deadline is not None and self.release is not None:
            early = deadline < self.release  # NaN (no deadline) compares False
            if early.any():
                j = int(np.flatnonzero(early)[0])
                raise ValueError(f"deadline[{j}] ({deadline[j]}) is before release[{j}] "
                                 f"({self.release[j]}) for task {self.id[j]!r}")
        if self.hard_deadline is not None and self.hard_deadline.any():
            none = self.hard_deadline & (np.isnan(deadline) if deadline is not None else True)
            if np.any(none):
                j = int(np.flatnonzero(none)[0])
                raise ValueError(f"hard_deadline[{j}] is set but task {self.id[j]!r} "
                                 "has no deadline")
        return self

    def __len__(self) -> int:
        return len(self.id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskTable):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def row(self, j: int) -> Task:
        """Task j as a validated :class:`Task` object."""
        fields: dict[str, Any] = {"id": self.id[j]}
        for name in ("work", "release", "progress"):
            col = getattr(self, name)
            if col is not None:
                fields[name] = float(col[j])
        for name in _OPTIONAL_FLOATS:
            col = getattr(self, name)
            if col is not None and not math.isnan(col[j]):
                fields[name] = float(col[j])
        if self.demand:
            fields["demand"] = {r: float(c[j]) for r, c in self.demand.items()}
        if self.hard_deadline is not None:
            fields["hard_deadline"] = bool(self.hard_deadline[j])
        for name in ("skills", "forbidden_agents"):
            col = getattr(self, name)
            if col is not None:
                fields[name] = col[j] or []
        if self.allowed_agents is not None:
            fields["allowed_agents"] = self.allowed_agents[j]
        for name in ("priority", "current_agent", "tenant", "group"):
            col = getattr(self, name)
            if col is not None:
                fields[name] = col[j]
        # Validated again: pydantic's model_construct is ~20x slower here.
        return Task.model_validate(fields)

    def rows(self) -> Iterator[Task]:
        """Every task as a Task object, one at a time (none is kept)."""
        return map(self.row, range(len(self.id)))


#: The TaskTable columns with one entry per task (demand is a map of such columns).
_TABLE_COLUMNS = ("work", "priority", "release", "deadline", "hard_deadline", "skills",
                  "allowed_agents", "forbidden_agents", "current_agent", "progress",
                  "migration_cost", "tenant", "group")


# Default penalty for leaving a task unassigned, per priority class. Large
# against typical per-task costs so that solvers place everything they can;
# a factor of 10 between classes so a critical task is never dropped to make
# room for several lower ones.
DEFAULT_UNASSIGNED_PENALTY: dict[Priority, float] = {
    Priority.CRITICAL: 1_000_000.0,
    Priority.HIGH: 100_000.0,
    Priority.NORMAL: 10_000.0,
    Priority.LOW: 1_000.0,
}

# Tardiness weight per priority class: one unit of lateness of a critical task
# costs as much as eight of a low one.
DEFAULT_TARDINESS_WEIGHT: dict[Priority, float] = {
    Priority.CRITICAL: 8.0,
    Priority.HIGH: 4.0,
    Priority.NORMAL: 2.0,
    Priority.LOW: 1.0,
}


class Weights(_Strict):
    """Weights of the objective terms; the objective is their weighted sum.

    Terms (all minimised): cost, makespan (time units), imbalance (busiest
    minus idlest up agent, in time units), tardiness (sum of per-class weight
    x lateness), migrations (sum of migration costs of moved tasks), and the
    per-class penalty for each unassigned task.
    """

    cost: NonNegative = 1.0
    makespan: NonNegative = 0.0
    imbalance: NonNegative = 0.0
    tardiness: NonNegative = 0.0
    migrations: NonNegative = 0.0
    unassigned: dict[Priority, float] = Field(
        default_factory=lambda: dict(DEFAULT_UNASSIGNED_PENALTY)
    )
    tardiness_by_priority: dict[Priority, float] = Field(
        default_factory=lambda: dict(DEFAULT_TARDINESS_WEIGHT)
    )

    @field_validator("unassigned", "tardiness_by_priority")
    @classmethod
    def _complete(cls, v: dict[Priority, float], info: Any) -> dict[Priority, float]:
        default = (
            DEFAULT_UNASSIGNED_PENALTY if info.field_name == "unassigned"
            else DEFAULT_TARDINESS_WEIGHT
        )
        merged = dict(default)
        for k, x in v.items():
            if math.isnan(x) or math.isinf(x) or x < 0:
                raise ValueError(f"{info.field_name}[{k}] must be a finite number >= 0")
            merged[Priority(k)] = float(x)
        return merged


class PairFactor(_Strict):
    """Migration cost factor for moves from agent `source` to agent `target` (directional)."""

    source: Id = Field(alias="from", serialization_alias="from")
    target: Id = Field(alias="to", serialization_alias="to")
    factor: NonNegative

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MigrationPolicy(_Strict):
    """How much moving a task costs (the `migrations` objective term).

    A task's base cost is `Task.migration_cost` when set, else
    `work x (size_share + progress_share x progress)`: moving costs a share of
    the task's size (state to ship, warm-up) plus the work already done. A
    move from agent a to agent b multiplies the base cost by a pair factor:
    the explicit `pair_factors` entry for (a, b) if there is one, else the
    largest `label_factors[key]` over label keys whose values differ between
    a and b (e.g. `{"zone": 2, "region": 5}`), else 1.
    """

    size_share: NonNegative = 0.1
    progress_share: NonNegative = 1.0
    label_factors: dict[str, NonNegative] = Field(default_factory=dict)
    pair_factors: list[PairFactor] = Field(default_factory=list)


#: Largest magnitude of any number in a snapshot, given (capacity, demand, work, cost,
#: time, weight, migration factor) or derived (duration = work / speed, cost =
#: cost_rate x duration), and largest count (options.max_migrations): beyond it the
#: solvers lose precision (HiGHS reads 1e20 as infinity, CP-SAT needs int64). One limit
#: for every front end: allocator.problem refuses such numbers when it compiles a
#: snapshot (any caller), and allocator.limits.check_magnitudes, which the CLI, the API
#: and MCP run on what they read, names the field before any work starts.
MAX_MAGNITUDE = 1e15
#: Agent speeds lie in [MIN_SPEED, MAX_SPEED]: 1 / speed stays within MAX_MAGNITUDE.
MIN_SPEED, MAX_SPEED = 1.0 / MAX_MAGNITUDE, MAX_MAGNITUDE
#: Largest count a front end takes (options.max_migrations; 10**15 never binds).
MAX_COUNT = 10**15
#: A count a caller gives a front end (a rebalance's max_migrations): 0 to MAX_COUNT.
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
#: An amount a caller gives a front end (a rebalance's threshold): 0 to MAX_MAGNITUDE.
Amount = Annotated[float, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)]

#: The longest solve budget anything accepts (a day), in seconds: the anytime backends
#: run until their budget, so an unbounded one never returns.
MAX_TIME_LIMIT = 86_400.0
#: Seconds a solve may take: options.time_limit, and every front end's override
#: (allocator.limits.check_time_limit), so the CLI, the API and MCP refuse the same values.
TimeLimit = Annotated[float, Field(gt=0, le=MAX_TIME_LIMIT, allow_inf_nan=False)]


class SolveOptions(_Strict):
    """How to solve: backend name, wall-clock budget, seed, CPU workers."""

    solver: str = "auto"
    time_limit: TimeLimit = 10.0
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    workers: Annotated[int, Field(ge=1, le=256)] = 2
    #: Hard cap on migrations: placed tasks on another agent than their
    #: `current_agent` (leaving a task out is not a migration). None: no cap.
    max_migrations: Annotated[int, Field(ge=0)] | None = None


class Snapshot(_Strict):
    """Agents, tasks and preferences at one instant: what a solver plans.

    `time` is "now": no task starts before it. References between tasks and
    agents are checked here, so a solver never sees a dangling id.
    """

    time: NonNegative = 0.0
    agents: list[Agent]
    #: The tasks as objects; with `task_table` given, built from it on first access.
    tasks: list[Task] = Field(default_factory=list)
    #: The tasks as columns (instead of `tasks`): see :class:`TaskTable`.
    task_table: TaskTable | None = None
    weights: Weights = Field(default_factory=Weights)
    options: SolveOptions = Field(default_factory=SolveOptions)
    migration: MigrationPolicy = Field(default_factory=MigrationPolicy)
    #: Groups, their placement rules and the topology cost terms (models.topology).
    topology: Topology | None = None
    name: str | None = None
    #: `tasks` built from `task_table` (on first access of `tasks`).
    _rows: list[Task] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _references(self) -> Snapshot:
        agent_ids: set[str] = set()
        for i, a in enumerate(self.agents):
            if a.id in agent_ids:
                raise ValueError(f"agents[{i}].id: duplicate agent id {a.id!r}")
            agent_ids.add(a.id)
        for k, pf in enumerate(self.migration.pair_factors):
            for a_id in (pf.source, pf.target):
                if a_id not in agent_ids:
                    raise ValueError(f"migration.pair_factors[{k}]: unknown agent {a_id!r}")
        resources = {r for a in self.agents for r in a.capacity}
        table = self.task_table
        if table is not None:
            if self.__dict__["tasks"]:
                raise ValueError("tasks and task_table are both given: give the tasks one way")
            _check_table_references(table, agent_ids, resources)
        task_ids: set[str] = set()
        for j, t in enumerate(self.__dict__["tasks"]):
            where = f"tasks[{j}]"
            if t.id in task_ids:
                raise ValueError(f"{where}.id: duplicate task id {t.id!r}")
            task_ids.add(t.id)
            for r in t.demand:
                if r not in resources:
                    raise ValueError(
                        f"{where}.demand: unknown resource {r!r} (no agent has it; "
                        f"known: {sorted(resources)})"
                    )
            refs = [("current_agent", [t.current_agent] if t.current_agent else [])]
            refs.append(("allowed_agents", t.allowed_agents or []))
            refs.append(("forbidden_agents", t.forbidden_agents))
            refs.append(("overrides", list(t.overrides)))
            for field, ids in refs:
                for a_id in ids:
                    if a_id not in agent_ids:
                        raise ValueError(f"{where}.{field}: unknown agent {a_id!r}")
            for a_id, ov in t.overrides.items():
                for r in ov.demand or {}:
                    if r not in resources:
                        raise ValueError(
                            f"{where}.overrides[{a_id!r}].demand: unknown resource {r!r}"
                        )
        _check_topology(self, agent_ids, resources)
        return self

    def agent(self, agent_id: str) -> Agent:
        """The agent with this id (KeyError if there is none)."""
        for a in self.agents:
            if a.id == agent_id:
                return a
        raise KeyError(agent_id)

    def __eq__(self, other: object) -> bool:
        # The fields decide (Task objects built from a table on read do not).
        if not isinstance(other, Snapshot):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    @property
    def columnar(self) -> bool:
        """The tasks come from `task_table` (`tasks` is only built when read)."""
        return self.__dict__["task_table"] is not None and not self.__dict__["tasks"]

    @property
    def n_tasks(self) -> int:
        """How many tasks, without building Task objects from a table."""
        table = self.__dict__["task_table"]
        return len(table.id) if self.columnar else len(self.__dict__["tasks"])

    @property
    def task_ids(self) -> list[str]:
        """The task ids in snapshot order, without building Task objects from a table."""
        if self.columnar:
            ids: list[str] = self.__dict__["task_table"].id
            return ids
        return [t.id for t in self.__dict__["tasks"]]

    def task_at(self, j: int) -> Task:
        """Task j (from a table: that row alone, nothing else is built)."""
        if self.columnar and self._rows is None:
            row: Task = self.__dict__["task_table"].row(j)
            return row
        return self.tasks[j]

    def iter_tasks(self) -> Iterator[Task]:
        """The tasks one at a time (from a table: built and dropped one by one)."""
        if self.columnar and self._rows is None:
            rows: Iterator[Task] = self.__dict__["task_table"].rows()
            return rows
        return iter(self.tasks)


def _snapshot_tasks(self: Snapshot) -> list[Task]:
    """`Snapshot.tasks`: the list given, or the table's rows built once on first access."""
    if not self.columnar:
        tasks: list[Task] = self.__dict__["tasks"]
        return tasks
    if self._rows is None:
        self._rows = list(self.__dict__["task_table"].rows())
    return self._rows


def _set_snapshot_tasks(self: Snapshot, value: list[Task]) -> None:
    """Assigning `tasks` replaces a table (validated like any assignment)."""
    self.__dict__["task_table"] = None
    self._rows = None
    self.__pydantic_validator__.validate_assignment(self, "tasks", value)


# A property over the pydantic field: reads go through it (a table-backed
# snapshot builds its Task objects only when some code really reads
# `tasks`), while validation and serialisation use the stored field (an empty
# list next to the table), so JSON round-trips as columns.
Snapshot.tasks = property(_snapshot_tasks, _set_snapshot_tasks)  # type: ignore[assignment]


def _check_table_references(table: TaskTable, agent_ids: set[str], resources: set[str]) -> None:
    """Snapshot-level checks of a TaskTable: resources and agents it names exist."""
    for r in table.demand:
        if r not in resources:
            raise ValueError(f"task_table.demand: unknown resource {r!r} (no agent has it; "
                             f"known: {sorted(resources)})")
    if table.current_agent is not None:
        unknown = set(table.current_agent) - agent_ids - {None}
        if unknown:
            j = next(j for j, a in enumerate(table.current_agent) if a in unknown)
            raise ValueError(f"task_table.current_agent[{j}]: unknown agent "
                             f"{table.current_agent[j]!r}")
    for field in ("allowed_agents", "forbidden_agents"):
        col: Coded | None = getattr(table, field)
        if col is None:
            continue
        for code, ids in enumerate(col.values):
            for a_id in ids or ():
                if a_id not in agent_ids:
                    j = int(np.flatnonzero(col.codes == code)[0])
                    raise ValueError(f"task_table.{field}[{j}]: unknown agent {a_id!r}")


def _check_topology(snap: Snapshot, agent_ids: set[str], resources: set[str]) -> None:
    """Reference checks of the topology fields; each error names the field."""
    topo = snap.topology
    groups = {g.id for g in topo.groups} if topo is not None else set()
    zones = {a.zone for a in snap.agents if a.zone is not None}
    for i, a in enumerate(snap.agents):
        for r in a.safety:
            if r not in resources:
                raise ValueError(f"agents[{i}].safety: unknown resource {r!r}")
        for b in a.move_costs:
            if b not in agent_ids:
                raise ValueError(f"agents[{i}].move_costs: unknown agent {b!r}")
    if snap.columnar:
        table_groups = snap.__dict__["task_table"].group
        if table_groups is not None:
            unknown = set(table_groups) - groups - {None}
            if unknown:
                j = next(j for j, g in enumerate(table_groups) if g in unknown)
                raise ValueError(f"task_table.group[{j}]: unknown group {table_groups[j]!r} "
                                 "(declare it in topology.groups)")
    for j, t in enumerate(snap.__dict__["tasks"]):
        if t.group is not None and t.group not in groups:
            raise ValueError(f"tasks[{j}].group: unknown group {t.group!r} "
                             "(declare it in topology.groups)")
    if topo is None:
        return
    seen: set[str] = set()
    for k, g in enumerate(topo.groups):
        where = f"topology.groups[{k}]"
        if g.id in seen:
            raise ValueError(f"{where}.id: duplicate group id {g.id!r}")
        seen.add(g.id)
        for d in g.depends_on:
            if d not in groups:
                raise ValueError(f"{where}.depends_on: unknown group {d!r}")
        used_keys = ([("spread_key", g.spread_key)] if g.min_spread > 1 else []) + (
            [("dependency_key", g.dependency_key)] if g.depends_on else [])
        for field, key in used_keys:
            for i, a in enumerate(snap.agents):
                if a.topology_value(key) is None:
                    raise ValueError(
                        f"agents[{i}]: has no {key!r} (needed by {where}.{field})")
    for k, r in enumerate(topo.transient):
        if r not in resources:
            raise ValueError(f"topology.transient[{k}]: unknown resource {r!r}")
    for r in topo.load_cost:
        if r not in resources:
            raise ValueError(f"topology.load_cost: unknown resource {r!r}")
    for k, bal in enumerate(topo.balances):
        for field in ("resource", "against"):
            if getattr(bal, field) not in resources:
                raise ValueError(f"topology.balances[{k}].{field}: unknown resource "
                                 f"{getattr(bal, field)!r}")
    for k, zc in enumerate(topo.zone_move_costs):
        for field, z in (("from", zc.source), ("to", zc.target)):
            if z not in zones:
                raise ValueError(f"topology.zone_move_costs[{k}].{field}: unknown zone {z!r}")
