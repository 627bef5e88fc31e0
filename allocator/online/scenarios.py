"""Named workload scenarios and the three ways to run one: online, batch, coordinated.

A scenario is a `WorkloadConfig` preset plus the objective weights its runs
are priced with (`weighted_objective`, allocator.online.metrics) and the
coordinator's defaults. The presets are workloads where a global view can
matter: heterogeneous fleets (cheap slow agents beside expensive fast ones, a
GPU pool with a skill), two resources packed per agent, deadlines, migration
cost off the home agent, wave arrivals and Poisson streams.

Modes (`run_mode`):

- `online`: the named policy alone (no solver);
- `batch`: plans only. Arrivals wait in a pool nobody pulls from; every
  `every` time units the coordinator solves the snapshot and the plan (late
  by its solve time) is all the agents run; no stealing, no pulling;
- `coordinated`: the policy plus the coordinator (every `every`, and when a
  wave of unplanned tasks builds up): the plan places the backlog, the
  policy places arrivals between plans and its stealing covers the gaps
  (stealing moves a planned task only when that is not dearer or rescues
  a deadline, see allocator.online.stealing).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from allocator.errors import InvalidInputError
from allocator.online.coordinator import COORDINATOR_SOLVERS, Coordinator
from allocator.online.policies import Policy, make_policy
from allocator.online.simulator import SimResult, Simulator
from allocator.online.workload import AgentClass, WorkloadConfig, generate
from models import Weights

MODES = ("online", "batch", "coordinated")

#: A unit of lateness costs five units of money (times the class weight, 1-8):
#: late work is expensive, but waiting for a cheap agent is fine within the deadline.
FLEET_WEIGHTS = Weights(cost=1.0, tardiness=5.0, migrations=1.0, makespan=0.0, imbalance=0.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    #: WorkloadConfig fields (agents, tasks and seed come from the caller).
    config: dict[str, Any]
    #: What a run costs: the weights of `weighted_objective` and of the coordinator's solves.
    weights: Weights
    agents: int = 16
    tasks: int = 5000
    #: Coordinator defaults: period, wave trigger, solver and budget (time units).
    every: float = 10.0
    queue_growth: int | None = 50
    solver: str = "greedy"
    budget: float = 0.5
    #: The online policy a coordinated run uses between solves.
    policy: str = "edf"
    policies: tuple[str, ...] = ("fifo", "jsq", "edf", "stealing", "edf+stealing")
    notes: dict[str, str] = field(default_factory=dict)


def _mixed_fleet_classes(agents: int) -> tuple[AgentClass, ...]:
    """3/8 cheap slow CPU, 3/8 fast CPU, 1/4 GPU (at least one of each)."""
    gpu = max(1, agents // 4)
    cheap = max(1, (agents - gpu) // 2)
    fast = agents - gpu - cheap
    if fast < 1:
        raise InvalidInputError("the mixed fleet needs at least 3 agents", field="agents")
    cpu = (("cpu", 8.0), ("mem", 32.0))
    return (
        AgentClass(cheap, speed=0.5, cost_rate=0.5, capacity=cpu, concurrency=2,
                   name="cheap"),
        AgentClass(fast, speed=2.0, cost_rate=6.0, capacity=cpu, concurrency=2, name="fast"),
        AgentClass(gpu, speed=2.0, cost_rate=10.0, skills=("gpu",),
                   capacity=(("cpu", 8.0), ("gpu", 2.0), ("mem", 64.0)), concurrency=2,
                   name="gpu"),
    )


SCENARIOS: dict[str, Scenario] = {
    "mixed-fleet": Scenario(
        name="mixed-fleet",
        description="cheap slow CPU (unit cost 1), fast CPU (3) and a GPU pool (5, gpu skill); "
                    "cpu+mem packed per agent; waves of batch jobs with loose deadlines plus "
                    "a Poisson stream of urgent ones; migration cost off the home agent",
        config=dict(arrival="waves", wave_every=40.0, wave_spread=2.0, background_share=0.3,
                    background_slack=(2.0, 4.0), slack=(8.0, 40.0), load=0.5, sizes="exp",
                    skew=0.0, skill_share=0.15, migration_cost=0.1, noise=0.2,
                    demand=(("cpu", 1.0, 4.0), ("mem", 2.0, 16.0))),
        weights=FLEET_WEIGHTS,
    ),
    "waves": Scenario(
        name="waves",
        description="alike agents with a speed spread, no costs: waves of batch jobs every 50 "
                    "time units, deadlines 8-40x size; what counts is lateness",
        config=dict(arrival="waves", wave_every=50.0, wave_spread=1.0, load=0.65,
                    slack=(8.0, 40.0), sizes="pareto", skew=1.0, migration_cost=0.0),
        weights=Weights(cost=0.0, tardiness=1.0, migrations=0.1, makespan=0.0,
                        imbalance=0.0),
    ),
    "poisson-fleet": Scenario(
        name="poisson-fleet",
        description="the mixed fleet under a steady Poisson stream (load 0.6, deadlines 3-20x "
                    "size): little backlog for a global view to place",
        config=dict(arrival="poisson", load=0.6, slack=(3.0, 20.0), sizes="exp", skew=0.0,
                    skill_share=0.15, migration_cost=0.1,
                    demand=(("cpu", 1.0, 4.0), ("mem", 2.0, 16.0))),
        weights=FLEET_WEIGHTS,
    ),
}

#: Scenarios whose fleet is the mixed fleet (built per agent count).
_MIXED = {"mixed-fleet", "poisson-fleet"}


def scenario(name: str) -> Scenario:
    sc = SCENARIOS.get(name)
    if sc is None:
        raise InvalidInputError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}",
                                field="scenario")
    return sc


def scenario_config(name: str, *, agents: int | None = None, tasks: int | None = None,
                    seed: int = 0, **overrides: Any) -> WorkloadConfig:
    """The scenario's WorkloadConfig for this size and seed, fields overridden."""
    sc = scenario(name)
    m = sc.agents if agents is None else agents
    fields: dict[str, Any] = dict(sc.config)
    if name in _MIXED:
        fields["fleet"] = _mixed_fleet_classes(m)
    fields.update(overrides)
    try:
        return WorkloadConfig(agents=m, tasks=sc.tasks if tasks is None else tasks, seed=seed,
                              **fields)
    except TypeError as e:
        raise InvalidInputError(str(e), field="scenario") from None


def batch_policy() -> Policy:
    """Batch only: tasks wait for a plan (run in its start order), nobody pulls or steals."""
    return replace(make_policy("edf"), name="batch", pull=False, stealing=False)


@dataclass(frozen=True)
class CoordinatorSettings:
    """The coordinator's knobs as the CLI and the benchmark give them."""

    every: float = 10.0
    solver: str = "greedy"
    budget: float = 0.5
    queue_growth: int | None = 50
    imbalance: float | None = None
    delay_factor: float | None = None
    pick: str | None = None
    check_every: float | None = None
    deadline_margin: float = 0.25

    def __post_init__(self) -> None:
        if self.solver not in COORDINATOR_SOLVERS:
            raise InvalidInputError(f"unknown coordinator solver {self.solver!r}; known: "
                                    f"{', '.join(COORDINATOR_SOLVERS)}",
                                    field="coordinator_solver")
        if not self.every > 0:
            raise InvalidInputError(f"must be > 0, got {self.every}", field="coordinate_every")
        if not self.budget > 0:
            raise InvalidInputError(f"must be > 0, got {self.budget}", field="coordinator_budget")


def run_mode(cfg: WorkloadConfig, mode: str, policy: str | Policy, *, seed: int = 0,
             weights: Weights | None = None, coord: CoordinatorSettings | None = None,
             **sim_kwargs: Any) -> SimResult:
    """Simulate one (mode, policy) on the workload `cfg`; the row says the mode.

    `policy` is ignored in batch mode (there is no online policy). The row
    gains mode, solves, solve_time_total (virtual time plans arrived late by)
    and the priced terms (cost, tardiness, migration_cost, weighted_objective).
    """
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}; known: {', '.join(MODES)}",
                                field="mode")
    wl = generate(cfg)
    pol = batch_policy() if mode == "batch" else make_policy(policy)
    sim = Simulator(wl, pol, seed=seed, weights=weights, **sim_kwargs)
    if mode != "online":
        c = coord or CoordinatorSettings()
        sim.coordinator = Coordinator(
            sim.executor, every=c.every, imbalance=c.imbalance if mode == "coordinated" else None,
            queue_growth=c.queue_growth if mode == "coordinated" else None,
            min_interval=min(c.every, max(c.budget, c.every / 10)), solver=c.solver,
            time_limit=c.budget, weights=weights, delay_factor=c.delay_factor, pick=c.pick,
            seed=seed, deadline_margin=c.deadline_margin)
        sim.coordinate_every = c.check_every or min(c.every, max(c.budget, 0.5)) / 2
    res = sim.run()
    name = "batch" if mode == "batch" else (pol.name if mode == "online"
                                            else f"{pol.name}+plans")
    res.row.update(mode=mode, policy=name, seed=seed,
                   interval=(coord or CoordinatorSettings()).every if mode != "online" else None)
    return replace(res, policy=name)
