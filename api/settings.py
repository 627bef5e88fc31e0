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
