"""Topology of a cluster: where agents sit, how tasks group, and the rules between them.

Agents carry a `zone` (a location, a failure domain) and a `neighbourhood`
(a network domain), plus free-form `labels`; a *topology key* names one of
them: ``"zone"``, ``"neighbourhood"`` or any label key. Tasks belong to a
`group` (a service). The snapshot's `topology` section holds the rules:

hard (checked by allocator.constraints and the independent validator)
  * anti-affinity: the placed tasks of a group sit on distinct agents;
  * spread: the placed tasks of a group cover at least
    ``min(min_spread, placed members)`` values of a topology key;
  * dependency: every value of the key (a neighbourhood) that holds a placed
    task of the group holds a placed task of each group it depends on;
  * transient resources: a task placed away from its current agent still
    holds its demand of these resources there (a move needs room at both
    ends).

soft (objective terms, allocator.objectives)
  * ``safety``: per agent and resource, usage above ``Agent.safety[r]`` costs
    ``load_cost[r]`` per unit;
  * ``balance``: per balance objective (r1, r2, target, weight),
    ``weight x max(0, target x free(r1) - free(r2))`` summed over up agents;
  * ``group_moves``: the largest number of moved tasks of any one group;
  * ``agent_moves``: per moved task, the cost of its move from its current
    agent to its new one (``Agent.move_costs`` pairs first, else
    ``zone_move_costs`` between their zones, else 0).

A moved task's own move cost is the existing ``Task.migration_cost`` (the
``migrations`` term, weighted by ``Weights.migrations``). These are the ideas
of Kubernetes' pod anti-affinity and topology spread constraints, and the
rules of Google's machine reassignment problem (ROADEF/EURO 2012), which
converts into a snapshot without loss (allocator.roadef.convert).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[str, Field(min_length=1, max_length=200)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A topology key: "zone", "neighbourhood" or a label key of the agents.
TopologyKey = Annotated[str, Field(min_length=1, max_length=200)]

#: The keys read from Agent fields rather than from Agent.labels.
FIELD_KEYS = ("zone", "neighbourhood")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Group(_Strict):
    """A group of tasks (a service) and its hard placement rules."""

    id: Id
    #: Hard: the placed tasks of the group sit on distinct agents.
    anti_affinity: bool = False
    #: Hard: placed tasks cover at least min(min_spread, placed) values of `spread_key`.
    min_spread: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    spread_key: TopologyKey = "zone"
    #: Hard: groups whose tasks must share each `dependency_key` value this group uses.
    depends_on: list[Id] = Field(default_factory=list)
    dependency_key: TopologyKey = "neighbourhood"


class Balance(_Strict):
    """Soft: weight x max(0, target x free(resource) - free(against)), per up agent."""

    resource: Id
    against: Id
    target: NonNegative
    weight: NonNegative = 1.0


class ZoneMoveCost(_Strict):
    """Cost of moving one task from an agent in zone `from` to an agent in zone `to`."""

    source: Id = Field(alias="from", serialization_alias="from")
    target: Id = Field(alias="to", serialization_alias="to")
    cost: NonNegative

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Topology(_Strict):
    """Group rules, transient resources and the topology cost terms of a snapshot."""

    groups: list[Group] = Field(default_factory=list)
    #: Resources a moved task still holds on its current agent (hard).
    transient: list[Id] = Field(default_factory=list)
    #: Cost per unit of usage above an agent's safety capacity, per resource
    #: (a resource some agent has a safety for but not listed here: 1).
    load_cost: dict[str, NonNegative] = Field(default_factory=dict)
    balances: list[Balance] = Field(default_factory=list)
    #: Agent-pair move costs by zone (sparse: only the pairs of zones listed).
    zone_move_costs: list[ZoneMoveCost] = Field(default_factory=list)
    #: Weight of `group_moves` (the most moved tasks of any one group).
    group_move_weight: NonNegative = 1.0
    #: Weight of `agent_moves` (the sum of agent-pair move costs).
    agent_move_weight: NonNegative = 1.0
