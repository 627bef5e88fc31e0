"""Request and response bodies of the HTTP API (separate from the domain models).

Domain models (Snapshot, Plan) travel inside these envelopes unchanged; what
is HTTP-specific (overrides, job state, paging, the error shape) lives here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models import Plan, Snapshot
from models.domain import Amount, Count, TimeLimit

EXAMPLE_SNAPSHOT: dict[str, Any] = {
    "agents": [
        {"id": "a1", "capacity": {"cpu": 4}, "speed": 1.0, "cost_rate": 1.0},
        {"id": "a2", "capacity": {"cpu": 2}, "speed": 2.0, "cost_rate": 3.0},
    ],
    "tasks": [
        {"id": "t1", "work": 4, "demand": {"cpu": 2}},
        {"id": "t2", "work": 2, "demand": {"cpu": 1}, "priority": "high"},
        {"id": "t3", "work": 1, "demand": {"cpu": 1}, "deadline": 3},
    ],
    "weights": {"cost": 1.0, "makespan": 0.5},
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SolveRequest(_In):
    """A snapshot to solve; the optional fields override `snapshot.options`."""

    snapshot: Snapshot
    solver: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="Backend name (GET /v1/solvers); default: snapshot.options.solver."
    )
    time_limit: TimeLimit | None = Field(
        None, description="Seconds; capped by the server (sync_time_limit / job_time_limit)."
    )
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"snapshot": EXAMPLE_SNAPSHOT, "solver": "auto",
                                         "time_limit": 1.0}]},
    )


class ValidateRequest(_In):
    """A snapshot and a plan for it; the answer lists every violated hard constraint."""

    snapshot: Snapshot
    plan: Plan


class ViolationOut(BaseModel):
    kind: str
    message: str
    task: str | None = None
    agent: str | None = None


class ValidateResponse(BaseModel):
    valid: bool
    violations: list[ViolationOut]


class SolverInfo(BaseModel):
    name: str
    description: str


class SolversResponse(BaseModel):
    solvers: list[SolverInfo]
    default: str = "auto"


class JobState(StrEnum):
    """Life of a job: queued -> running -> succeeded | failed | cancelled | timed_out |
    interrupted.

    `timed_out` is a job stopped at its hard time limit (it keeps its best plan);
    `interrupted` is a job that was running when the server stopped and was not
    re-queued (settings.on_restart, settings.max_attempts).
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class ErrorBody(BaseModel):
    """The one error shape of every 4xx/5xx answer."""

    type: str = Field(description="Machine-readable kind, e.g. invalid_input, not_found.")
    message: str
    field: str | None = Field(None, description="Path of the offending input field, if any.")


class JobOut(BaseModel):
    """Status of a job; `progress` is elapsed / time limit while it runs, 1 when done."""

    id: str
    state: JobState
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    solver: str
    time_limit: float
    seed: int
    agents: int
    tasks: int
    attempts: int = 0
    progress: float = 0.0
    best_objective: float | None = None
    best_bound: float | None = None
    gap: float | None = None
    plan_status: str | None = Field(None, description="Status of the stored (best) plan.")
    has_plan: bool = False
    error: ErrorBody | None = None


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class Health(BaseModel):
    status: str
    workers: int | None = None
    queue_depth: int | None = None


# -- capabilities beyond solve (present when their engine modules exist) ------------------

Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]


class RebalanceRequest(_In):
    """Re-plan for balance with few migrations (tasks' `current_agent` is where they run)."""

    snapshot: Snapshot
    max_migrations: Count | None = None
    threshold: Amount = 0.0
    time_limit: TimeLimit | None = Field(None, description="Seconds; capped by sync_time_limit.")
    seed: Seed | None = None


class RebalanceResponse(BaseModel):
    plan: Plan
    summary: dict[str, Any] = Field(description="Before/after loads, variance, moves, stages.")


class ParetoRequest(_In):
    """A front of plans trading objectives off (NSGA-II, or exact for small instances)."""

    snapshot: Snapshot
    objectives: Annotated[list[Annotated[str, Field(max_length=32)]],
                          Field(min_length=2, max_length=4)] = ["cost", "makespan"]
    exact: bool = False
    time_limit: TimeLimit | None = Field(None, description="Seconds; capped by sync_time_limit.")
    seed: Seed | None = None
    generations: Annotated[int, Field(ge=1, le=100_000)] | None = None
    pick: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        "knee", description="knee | weights:cost=1,makespan=2 | min:cost,makespan<=40")


class PickOut(BaseModel):
    index: int
    rule: str
    detail: str


class ParetoResponse(BaseModel):
    front: dict[str, Any] = Field(description="A ParetoFront (see `allocator schema`).")
    picked: PickOut


class WorkloadIn(_In):
    """A generated online workload (see allocator.online.workload.WorkloadConfig)."""

    tasks: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    agents: Annotated[int, Field(ge=1, le=1_000)] = 8
    arrival: Literal["poisson", "bursty"] = "poisson"
    load: Annotated[float, Field(ge=0.001, le=10, allow_inf_nan=False)] = 0.85
    sizes: Literal["pareto", "exp", "fixed"] = "pareto"
    skew: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 1.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 1
    deadline_share: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 1.0
    noise: Annotated[float, Field(ge=0, le=5, allow_inf_nan=False)] = 0.2
    skill_groups: Annotated[int, Field(ge=0, le=64)] = 0
    flaky: Annotated[str, Field(max_length=64, description="K:P:UNTIL (see `allocator "
                                "simulate --flaky`)")] | None = None


class OnlineOptionsIn(_In):
    """Policy parameters of a simulation (as the `allocator simulate` flags)."""

    tenants: Annotated[list[Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]],
                       Field(min_length=1, max_length=64)] | None = None
    class_weights: Annotated[list[Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]],
                             Field(min_length=4, max_length=4)] | None = None
    aging: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)] | None = None
    admission: Literal["none", "throttle"] = "none"
    target_wait: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)] = 5.0
    params: Annotated[dict[Annotated[str, Field(max_length=64)],
                           Annotated[float, Field(allow_inf_nan=False)]],
                      Field(max_length=32)] = Field(default_factory=dict)


class CoordinatorIn(_In):
    """The solve-between-plans coordinator (as `allocator simulate --coordinate-every`)."""

    every: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)] = Field(
        10.0, description="Virtual seconds between solves.")
    solver: Literal["auto", "cpsat", "greedy", "nsga2"] = "greedy"
    budget: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = Field(
        0.5, description="Wall seconds per solve (it also delays the plan in virtual time).")


class SimulateRequest(_In):
    """Simulate online policies side by side on one generated workload."""

    workload: WorkloadIn = Field(default_factory=WorkloadIn)
    policies: Annotated[list[Annotated[str, Field(max_length=64)]],
                        Field(min_length=1, max_length=16)] | None = None
    options: OnlineOptionsIn = Field(default_factory=OnlineOptionsIn)
    modes: Annotated[list[Literal["online", "batch", "coordinated"]],
                     Field(min_length=1, max_length=3)] | None = Field(
        None, description="online (the policies alone), batch (only periodic plans), "
        "coordinated (policies between plans); default online, or coordinated when "
        "`coordinator` is given.")
    coordinator: CoordinatorIn | None = None
    decision_latency: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] = Field(
        0.0, description="Central dispatcher time per decision (virtual seconds).")
    max_retries: Annotated[int, Field(ge=0, le=100)] = 2
    seed: Seed | None = None
    time_limit: TimeLimit | None = Field(
        None, description="Seconds; capped by sync_time_limit. Policies not run in time "
        "are reported with `skipped: time_limit`.")

    @field_validator("policies")
    @classmethod
    def _distinct_policies(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            dup = next(p for i, p in enumerate(v) if p in v[:i])
            raise ValueError(f"policy {dup!r} listed twice")
        return v

    @field_validator("modes")
    @classmethod
    def _distinct_modes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a mode is listed twice")
        return v


class SimulateResponse(BaseModel):
    rows: list[dict[str, Any]] = Field(description="One row of measures per policy.")
    complete: bool = Field(True, description="False when the time limit cut policies short.")


class BottlenecksRequest(_In):
    """What limits a plan (given, or solved now) and the marginal value of capacity."""

    snapshot: Snapshot
    plan: Plan | None = Field(None, description="Plan to analyse; default: solve now.")
    solver: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    time_limit: TimeLimit | None = Field(None, description="Seconds; capped by sync_time_limit.")
    seed: Seed | None = None


class BottlenecksResponse(BaseModel):
    plan: Plan
    report: dict[str, Any] = Field(description="A BottleneckReport: binding resources, "
                                   "capacity values (LP duals), blocked tasks.")
