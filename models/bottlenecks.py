"""Bottleneck report vocabulary: what limits a plan and what more capacity would be worth."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceUse(_Out):
    """One resource across the up agents: how much of it the plan holds."""

    resource: str
    used: float
    capacity: float
    utilisation: float
    binding_agents: list[str]


class CapacityValue(_Out):
    """Marginal value of one more unit of `resource` on `agent` (from the LP dual).

    `value` is how much the LP-relaxation optimum drops per extra unit, in
    objective units; it is an estimate for the integer plan, exact while the
    LP basis stays the same.
    """

    agent: str
    resource: str
    value: float
    utilisation: float


class AgentBottleneck(_Out):
    agent: str
    busy_time: float
    critical: bool  # its finish sets the makespan
    binding: list[str]  # resources at (or within 0.1 % of) capacity
    utilisation: dict[str, float]


class BlockedTask(_Out):
    """A task the plan leaves out, with the constraint that blocks it."""

    task: str
    code: str
    constraint: str


class BottleneckReport(_Out):
    resources: list[ResourceUse]
    agents: list[AgentBottleneck]
    capacity_values: list[CapacityValue]
    blocked: list[BlockedTask]
    makespan_agents: list[str]
    lp_bound: float | None = None
    note: str | None = None
