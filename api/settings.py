"""Service settings, read from environment variables prefixed ``ALLOCATOR_``.

Every field is documented in docs/api.md (settings table). Lists are given as
comma-separated strings, e.g. ``ALLOCATOR_API_KEYS=key1,key2``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of the HTTP service, the job store and the worker pool."""

    model_config = SettingsConfigDict(env_prefix="ALLOCATOR_", extra="ignore")

    database_url: str = Field(
        "sqlite:///allocator-jobs.db",
        description="SQLAlchemy URL of the job store; a PostgreSQL URL works unchanged.",
    )
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        2, description="Solver worker processes (each solve runs in one)."
    )
    max_queue: Annotated[int, Field(ge=1)] = Field(
        64, description="Jobs queued or running before POST /v1/jobs answers 429."
    )
    max_sync_waiting: Annotated[int, Field(ge=1)] = Field(
        16, description="Synchronous solves waiting for a worker before /v1/solve answers 429."
    )
    retry_after_s: Annotated[int, Field(ge=1)] = Field(
        5, description="Retry-After seconds sent with 429 responses."
    )
    sync_time_limit: Annotated[float, Field(gt=0)] = Field(
        10.0, description="Cap on the time limit of POST /v1/solve (seconds)."
    )
    job_time_limit: Annotated[float, Field(gt=0)] = Field(
        600.0, description="Cap on the time limit of a job (seconds)."
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        16 * 1024 * 1024, description="Largest request body accepted (bytes); larger is 413."
    )
    max_agents: Annotated[int, Field(ge=1)] = Field(
        2_000, description="Most agents in one snapshot."
    )
    max_tasks: Annotated[int, Field(ge=1)] = Field(
        50_000, description="Most tasks in one snapshot."
    )
    max_work_bytes: Annotated[int, Field(ge=64 << 20)] = Field(
        1 << 30, description="Most memory (bytes) one request's work may need in a worker, "
        "by the estimate checked before it starts; more is 413.",
    )
    job_ttl_s: Annotated[float, Field(ge=0)] = Field(
        7 * 86_400.0, description="Finished jobs (and their plans) are deleted this long after "
        "they finish; 0 keeps them forever. A finished job's snapshot is dropped at once.",
    )
    lease_ttl_s: Annotated[float, Field(ge=2, le=3600)] = Field(
        30.0, description="The service's lease on its database lasts this long and is renewed "
        "every third of it; a second service on the same database refuses to start while "
        "the lease is held.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens; when any is set every route but /healthz and /readyz "
        "requires one.",
    )
    on_restart: Literal["requeue", "interrupt"] = Field(
        "requeue",
        description="What happens to jobs found running at start-up: run them again, or "
        "mark them interrupted.",
    )
    max_attempts: Annotated[int, Field(ge=1)] = Field(
        2, description="A job is interrupted, not re-queued, after this many started runs."
    )
    cancel_grace_s: Annotated[float, Field(ge=0)] = Field(
        2.0, description="How long a cancelled solve may take to hand back its best plan "
        "before its worker is killed."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host header values accepted besides loopback (127.0.0.1, localhost, "
        "[::1], any port): `name`, `name:port`, `name:*`, or `*` for any. Requests with "
        "another Host get 421 (DNS-rebinding protection).",
    )
    time_limit_grace_s: Annotated[float, Field(ge=0.1, le=60)] = Field(
        1.0, description="Hard time limits: a worker still busy this long after its work's "
        "time limit is killed and replaced (the work ends timed out with its best plan).",
    )
    mcp_http: bool = Field(True, description="Mount the MCP streamable HTTP app under /mcp.")
    mcp_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra Host header values /mcp accepts (DNS-rebinding protection allows "
        "only localhost by default), e.g. `api.example.com:*`.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS; empty (default) = no CORS."
    )
    live: bool = Field(True, description="Serve the live coordination routes (/v1/agents, "
                       "/v1/tasks, /v1/queues; docs/live.md).")
    live_policy: str = Field("priority-wfq", description="Executor policy of the live "
                             "service (allocator.online.policy_names()).")
    live_lease_s: Annotated[float, Field(gt=0, le=86_400)] = Field(
        30.0, description="An agent not heard from (register, heartbeat, pull, complete) "
        "for this long is declared failed and its leased tasks go back to the queues.")
    live_tenant_weights: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="Tenant shares of the live service, `a=3,b=1` "
        "(a tenant not listed weighs 1).")
    live_queue_caps: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict, description="Admission: most queued tasks per priority class, "
        "`low=1000,normal=5000`; a task over its class's cap is rejected with its reason.")
    live_coordinate_every: Annotated[float, Field(ge=0)] = Field(
        30.0, description="Seconds between re-solves of the live queue (0: periodic off).")
    live_imbalance: Annotated[float, Field(ge=0)] = Field(
        0.5, description="Re-solve when the coefficient of variation of the agents' loads "
        "passes this (0: off).")
    live_solver: str = Field("greedy", description="Backend of the live re-solves.")
    live_max_retries: Annotated[int, Field(ge=0, le=100)] = Field(
        2, description="Retries of a live task after a failed or lost attempt.")
    live_seed: int = Field(0, description="Seed of the live core (random placements).")
    plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra modules imported in the server and in every worker (e.g. solver "
        "backends that register themselves).",
    )

    @field_validator("api_keys", "cors_origins", "plugins", "mcp_hosts",
                     "allowed_hosts", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("live_tenant_weights", "live_queue_caps", mode="before")
    @classmethod
    def _pairs(cls, v: object) -> object:
        """`a=3,b=1` -> {"a": "3", "b": "1"} (pydantic then checks the numbers)."""
        if isinstance(v, str):
            out: dict[str, str] = {}
            for part in v.split(","):
                if not part.strip():
                    continue
                k, sep, val = part.partition("=")
                if not sep or not k.strip():
                    raise ValueError(f"expected name=value pairs separated by commas, got "
                                     f"{part.strip()!r}")
                out[k.strip()] = val.strip()
            return out
        return v
