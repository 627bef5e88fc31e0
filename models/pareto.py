"""Multi-objective output: a Pareto front of plans.

A ParetoFront lists mutually non-dominated plans, each with its raw objective
vector (the unweighted terms of allocator.objectives, all minimised) and the
full Plan. Which plan to run is a separate choice (allocator.pareto.pick).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.plan import Plan

#: Objectives a front can trade off, in reporting order (unassigned is not one
#: of them: NSGA-II treats it as a constraint, see docs/pareto.md).
PARETO_OBJECTIVES = ("cost", "makespan", "imbalance", "tardiness", "migrations")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParetoPoint(_Out):
    """One plan on the front and its objective values (keys = ParetoFront.objectives)."""

    objectives: dict[str, float]
    plan: Plan
    #: Exact fronts: whether this point is proven Pareto-optimal (every solve
    #: behind it optimal, integer scaling exact). None for heuristic fronts.
    proven: bool | None = None


class ParetoFront(_Out):
    """Mutually non-dominated plans, sorted by the first objective.

    `method` is `nsga2` or `exact` (epsilon-constraint sweep). `proven` is
    true only for an exact front whose every sub-problem was solved to
    optimality. `hypervolume` is measured in the normalised space described
    by `ideal` and `reference_point` (see allocator.pareto.hypervolume).
    """

    objectives: list[str]
    method: str
    points: list[ParetoPoint] = Field(default_factory=list)
    proven: bool = False
    ideal: list[float] | None = None
    nadir: list[float] | None = None
    reference_point: list[float] | None = None
    hypervolume: float | None = None
    generations: int | None = None
    evaluations: int | None = None
    seed: int | None = None
    wall_time_s: float = 0.0
    message: str | None = None

    def vectors(self) -> list[list[float]]:
        """Objective vectors of the points, in `objectives` order."""
        return [[p.objectives[k] for k in self.objectives] for p in self.points]
