"""The live service's vocabulary: what agents and clients send (pydantic v2, no I/O).

One model per body, shared by the HTTP routes, `allocator submit` (its JSON
lines are :class:`LiveTask` objects) and the Python client, so a field means
the same thing everywhere and a bad one is refused with its name.

Times sent by clients are relative (seconds from now): a deadline is
`deadline` seconds after the task is accepted. Times the service answers with
are Unix timestamps (seconds).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.domain import NonNegative, Priority, _check_resource_map

#: Ids travel in URL paths: letters, digits and `._:@-`, 1-200 characters.
LIVE_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,200}$"
LiveId = Annotated[str, Field(pattern=LIVE_ID_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Positive = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
#: Most tasks in one submit, acknowledgements in one pull, tasks one pull returns.
MAX_BATCH = 5_000
MAX_PULL = 1_000
#: Largest payload / result string (bytes of text); bigger data belongs in a blob store.
MAX_PAYLOAD = 1 << 20


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LiveTask(_Body):
    """A task submitted to the live service (one JSON line of `allocator submit`)."""

    id: LiveId | None = Field(None, description="Unique id; the service makes one if absent.")
    priority: Priority = Priority.NORMAL
    tenant: Name | None = Field(None, description="Who pays; tenants share by their weights.")
    work: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = Field(
        1.0, description="Estimated run time on a speed-1 agent (seconds).")
    payload: Annotated[str, Field(max_length=MAX_PAYLOAD)] = Field(
        "", description="Opaque text handed to the agent (stdin of `allocator agent`).")
    deadline: Positive | None = Field(None, description="Seconds after acceptance.")
    hard_deadline: bool = False
    skills: Annotated[list[Name], Field(max_length=64)] = Field(default_factory=list)
    demand: dict[str, float] = Field(default_factory=dict)
    tokens: NonNegative = Field(0.0, description="Estimated tokens (rate-limited agents).")
    timeout: Positive | None = Field(None, description="Seconds one attempt may run.")
    max_retries: Annotated[int, Field(ge=0, le=100)] | None = None
    allowed_agents: Annotated[list[LiveId], Field(max_length=10_000)] | None = None
    forbidden_agents: Annotated[list[LiveId], Field(max_length=10_000)] = Field(
        default_factory=list)
    kind: Name | None = None

    @field_validator("demand")
    @classmethod
    def _demand(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_resource_map(v, "demand")


class TaskBatch(_Body):
    """Several tasks in one request (one transaction, one admission pass)."""

    tasks: Annotated[list[LiveTask], Field(min_length=1, max_length=MAX_BATCH)]


class LiveAgent(_Body):
    """An agent registering with the service."""

    id: LiveId
    capacity: dict[str, float] = Field(default_factory=dict)
    speed: Positive = 1.0
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = Field(
        1, description="Tasks it runs at once: the core leases it at most this many.")
    skills: Annotated[list[Name], Field(max_length=256)] = Field(default_factory=list)
    cost_rate: NonNegative = 0.0
    labels: dict[Name, Annotated[str, Field(max_length=500)]] = Field(default_factory=dict)
    tokens_per_min: Positive | None = None
    requests_per_min: Positive | None = None

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_resource_map(v, "capacity")


class Heartbeat(_Body):
    """An agent is alive (renews its leases); `draining` leaves gracefully."""

    status: Literal["up", "draining"] = "up"
    load: NonNegative | None = Field(None, description="Agent-reported load (informational).")


class Completion(_Body):
    """The end of one attempt, as the agent reports it."""

    attempt: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        description="The attempt id the task was leased with.")
    agent: LiveId | None = Field(None, description="Reporting agent (default: the lessee).")
    outcome: Literal["ok", "error"] = "ok"
    result: Annotated[str, Field(max_length=MAX_PAYLOAD)] | None = None
    error: Annotated[str, Field(max_length=10_000)] | None = None
    retryable: bool = True
    duration: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] | None = Field(
        None, description="Actual run time in seconds (teaches the agent's speed).")
    tokens: NonNegative | None = Field(None, description="Tokens used (usage metrics, quotas).")


class Ack(Completion):
    """A completion carried by a pull request (saves one round trip per task)."""

    task: LiveId


class PullRequest(_Body):
    """Long-poll for work: up to `max` tasks, waiting at most `wait` seconds."""

    max: Annotated[int, Field(ge=1, le=MAX_PULL)] = 1
    wait: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = 10.0
    acks: Annotated[list[Ack], Field(max_length=MAX_BATCH)] = Field(default_factory=list)
    held: Annotated[list[tuple[LiveId, Annotated[int, Field(ge=1)]]],
                    Field(max_length=100_000)] | None = Field(
        None, description="[task, attempt] pairs the agent is running now. When given, a task "
        "leased to this agent that is neither held nor acknowledged (its pull's answer was "
        "lost) is offered again.")

    @model_validator(mode="after")
    def _distinct(self) -> PullRequest:
        seen: set[tuple[str, int]] = set()
        for a in self.acks:
            k = (a.task, a.attempt)
            if k in seen:
                raise ValueError(f"acks: task {a.task!r} attempt {a.attempt} listed twice")
            seen.add(k)
        return self


__all__ = ["LIVE_ID_PATTERN", "MAX_BATCH", "MAX_PAYLOAD", "MAX_PULL", "Ack", "Completion",
           "Heartbeat", "LiveAgent", "LiveTask", "PullRequest", "TaskBatch"]
