"""Domain vocabulary shared by the engine, the API and the executor (pydantic v2, no I/O)."""

from models.domain import (
    DEFAULT_TARDINESS_WEIGHT,
    DEFAULT_UNASSIGNED_PENALTY,
    Agent,
    AgentOverride,
    AgentStatus,
    Priority,
    Snapshot,
    SolveOptions,
    Task,
    Weights,
)
from models.pareto import PARETO_OBJECTIVES, ParetoFront, ParetoPoint
from models.plan import (
    AgentLoad,
    Assignment,
    Migration,
    ObjectiveTerm,
    Plan,
    PlanMetrics,
    PlanStatus,
    SolutionPoint,
    Unassigned,
    UnassignedReason,
)

__all__ = [
    "DEFAULT_TARDINESS_WEIGHT",
    "DEFAULT_UNASSIGNED_PENALTY",
    "PARETO_OBJECTIVES",
    "Agent",
    "AgentLoad",
    "AgentOverride",
    "AgentStatus",
    "Assignment",
    "Migration",
    "ObjectiveTerm",
    "ParetoFront",
    "ParetoPoint",
    "Plan",
    "PlanMetrics",
    "PlanStatus",
    "Priority",
    "Snapshot",
    "SolutionPoint",
    "SolveOptions",
    "Task",
    "Unassigned",
    "UnassignedReason",
    "Weights",
]
