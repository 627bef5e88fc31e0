"""Output vocabulary: what a solver returns.

A Plan explains itself: where each task goes and when, what it costs term by
term, how far it may be from optimal, and why any task could not be placed.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

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

    def agent_of(self) -> dict[str, str]:
        """Map task id -> agent id for the assigned tasks."""
        return {a.task: a.agent for a in self.assignments}
