"""Output vocabulary: what a solver returns.

A Plan explains itself: where each task goes and when, what it costs term by
term, how far it may be from optimal, and why any task could not be placed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
)

from models.bottlenecks import BottleneckReport


class PlanStatus(StrEnum):
    """How much the solver can vouch for the plan.

    `feasible` is what a time-limited run with a solution reports, even when
    the solution happens to be optimal: only a proof earns `optimal`.
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIMEOUT = "timeout"  # the budget ran out before any solution was found
    ERROR = "error"


class UnassignedReason(StrEnum):
    """Machine-readable cause of leaving a task out; `Unassigned.reason` says it in words."""

    NO_AGENT_UP = "no_agent_up"
    MISSING_SKILL = "missing_skill"
    NOT_ALLOWED = "not_allowed"
    DEMAND_EXCEEDS_CAPACITY = "demand_exceeds_capacity"
    DEADLINE_UNREACHABLE = "deadline_unreachable"
    CAPACITY_EXHAUSTED = "capacity_exhausted"
    DEADLINE_CONFLICT = "deadline_conflict"
    TOPOLOGY_RULE = "topology_rule"
    MIGRATION_LIMIT = "migration_limit"
    NOT_WORTH_PLACING = "not_worth_placing"
    SOLVER_LIMIT = "solver_limit"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Assignment(_Out):
    """Task `task` runs on `agent` from `start` to `end` (snapshot time units)."""

    task: str
    agent: str
    start: float
    end: float


_ASSIGNMENT_FIELDS = set(Assignment.model_fields)
_new_object = object.__new__
_set_slot = object.__setattr__


def _trusted_assignment(task: str, agent: str, start: float, end: float) -> Assignment:
    """An Assignment from values a solver computed itself (no re-validation).

    What ``Assignment.model_construct`` does, without its per-call Python
    overhead: the same ``__dict__``, fields set (one shared set), extra and
    private slots, so the object compares, serialises and validates like a
    validated one (tests/test_plan_builder.py checks that).
    """
    obj = _new_object(Assignment)
    _set_slot(obj, "__dict__", {"task": task, "agent": agent, "start": start, "end": end})
    _set_slot(obj, "__pydantic_fields_set__", _ASSIGNMENT_FIELDS)
    _set_slot(obj, "__pydantic_extra__", None)
    _set_slot(obj, "__pydantic_private__", None)
    return obj


@dataclass(frozen=True, eq=False)
class AssignmentTable:
    """A plan's assignments as columns: row k puts task ``task_ids[task[k]]`` on
    agent ``agent_ids[agent[k]]`` from ``start[k]`` to ``end[k]``.

    A million Assignment objects take ~270 MB; these columns take 32 MB and
    share the id lists with the problem they came from. `Plan.assignments`
    builds the objects from them only when some code reads it.
    """

    task_ids: list[str]
    agent_ids: list[str]
    task: np.ndarray  # [k] int64 index into task_ids
    agent: np.ndarray  # [k] int64 index into agent_ids
    start: np.ndarray  # [k] float
    end: np.ndarray  # [k] float

    def __len__(self) -> int:
        return int(self.task.size)

    def tasks(self) -> list[str]:
        """The task id of each row."""
        if self.task.size < 1000:
            return list(map(self.task_ids.__getitem__, self.task.tolist()))
        return np.asarray(self.task_ids, dtype=object)[self.task].tolist()  # type: ignore[no-any-return]

    def agents(self) -> list[str]:
        """The agent id of each row."""
        return np.asarray(self.agent_ids, dtype=object)[self.agent].tolist()  # type: ignore[no-any-return]

    def rows(self) -> Iterator[Assignment]:
        """The rows as Assignment objects, built one at a time."""
        return map(_trusted_assignment, self.tasks(), self.agents(), self.start.tolist(),
                   self.end.tolist())


class Unassigned(_Out):
    task: str
    code: UnassignedReason
    reason: str


class Migration(_Out):
    """Moving `task` from its current agent to another; `gain` is the objective it saves."""

    task: str
    source: str = Field(alias="from", serialization_alias="from")
    target: str = Field(alias="to", serialization_alias="to")
    cost: float = 0.0
    gain: float | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ObjectiveTerm(_Out):
    """One term of the objective: its raw value, its weight and the product."""

    name: str
    value: float
    weight: float
    weighted: float


class AgentLoad(_Out):
    agent: str
    tasks: int
    busy_time: float
    finish: float
    utilisation: dict[str, float]


class PlanMetrics(_Out):
    """Balance and service measures of a plan (see allocator.metrics)."""

    assigned: int
    unassigned: int
    makespan: float
    load_variance: float
    load_cov: float
    jain_index: float
    max_mean_ratio: float
    weighted_tardiness: float
    deadline_misses: int
    migrations: int
    agents: list[AgentLoad]


class SolutionPoint(_Out):
    """An improving solution found during the search (for anytime curves)."""

    time_s: float
    objective: float
    bound: float | None = None


class Plan(_Out):
    status: PlanStatus
    solver: str
    assignments: list[Assignment] = Field(default_factory=list)
    unassigned: list[Unassigned] = Field(default_factory=list)
    migrations: list[Migration] = Field(default_factory=list)
    objective: float | None = None
    breakdown: list[ObjectiveTerm] = Field(default_factory=list)
    bound: float | None = None
    gap: float | None = Field(
        default=None, description="(objective - bound) / max(|objective|, 1e-9); 0 when proven"
    )
    metrics: PlanMetrics | None = None
    wall_time_s: float = 0.0
    solutions: list[SolutionPoint] = Field(default_factory=list)
    message: str | None = None
    bottlenecks: BottleneckReport | None = None
    #: The assignments as columns (solvers of large snapshots set them; see
    #: :meth:`from_table`): `assignments` is then built on first access.
    _table: AssignmentTable | None = PrivateAttr(default=None)
    _rows: list[Assignment] | None = PrivateAttr(default=None)

    @classmethod
    def from_table(cls, table: AssignmentTable, **fields: Any) -> Plan:
        """A Plan whose assignments are `table` (other fields as in the constructor)."""
        plan = cls(**fields)
        plan._table = table
        return plan

    @property
    def assignment_table(self) -> AssignmentTable | None:
        """The columns the assignments come from, when the plan was built from them."""
        return self._table if self.__dict__["assignments"] == [] else None

    def iter_assignments(self) -> Iterator[Assignment]:
        """The assignments one at a time (from columns: built and dropped one by one)."""
        table = self.assignment_table
        if table is not None and self._rows is None:
            return table.rows()
        return iter(self.assignments)

    def agent_of(self) -> dict[str, str]:
        """Map task id -> agent id for the assigned tasks."""
        table = self.assignment_table
        if table is not None:
            return dict(zip(table.tasks(), table.agents(), strict=True))
        return {a.task: a.agent for a in self.assignments}

    @field_serializer("assignments")
    def _assignments_out(self, value: list[Assignment]) -> list[Assignment]:
        # A plan built from columns writes the same rows as one built from
        # objects (built for the dump only, not kept).
        table = self.assignment_table
        if table is None:
            return value
        return self._rows if self._rows is not None else list(table.rows())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        if self._table is None and other._table is None:
            return super().__eq__(other)
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]


def _plan_assignments(self: Plan) -> list[Assignment]:
    """`Plan.assignments`: the list given, or the table's rows built once on first access."""
    table = self.assignment_table
    if table is None:
        rows: list[Assignment] = self.__dict__["assignments"]
        return rows
    if self._rows is None:
        self._rows = list(table.rows())
    return self._rows


def _set_plan_assignments(self: Plan, value: list[Assignment]) -> None:
    """Assigning `assignments` replaces a table."""
    self._table = None
    self._rows = None
    self.__dict__["assignments"] = [a if isinstance(a, Assignment) else Assignment.model_validate(a)
                                    for a in value]


# As Snapshot.tasks (models.domain): reads go through the property, pydantic's
# validation and serialisation use the stored field (empty next to a table).
Plan.assignments = property(_plan_assignments, _set_plan_assignments)  # type: ignore[assignment]
