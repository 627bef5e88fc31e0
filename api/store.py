"""Job store: jobs, their snapshots and plans, through SQLAlchemy 2 (SQLite by default).

The schema is versioned: `schema_migrations` records which of `MIGRATIONS`
have been applied, and `JobStore.migrate()` applies the missing ones in
order, each in its own transaction. PostgreSQL works by changing the URL.

All methods are synchronous and short; the service calls them from a thread
(`asyncio.to_thread`) so the event loop never waits on the database.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    func,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from allocator.live.store import make_engine
from api.schemas import JobState

log = logging.getLogger(__name__)

metadata = MetaData()

migrations_table = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("solver", String(64), nullable=False),
    Column("time_limit", Float, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("n_agents", Integer, nullable=False),
    Column("n_tasks", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("snapshot", Text, nullable=False),
    Column("plan", Text),
    Column("plan_status", String(16)),
    Column("best_objective", Float),
    Column("best_bound", Float),
    Column("error_type", String(64)),
    Column("error_message", Text),
    Column("error_field", String(500)),
)


def _m1_jobs(conn: Connection) -> None:
    jobs.create(conn)


def _m2_state_index(conn: Connection) -> None:
    # Plain DDL (valid in SQLite and PostgreSQL): an Index object would attach itself
    # to `jobs` and be created again by migration 1 on the next fresh database.
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_jobs_state_created "
                      "ON jobs (state, created_at)"))


lease_table = Table(
    "service_lease",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


def _m3_lease(conn: Connection) -> None:
    lease_table.create(conn, checkfirst=True)


def _m4_finished_index(conn: Connection) -> None:
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_jobs_finished ON jobs (finished_at)"))


#: (version, description, apply). Append only; never edit an applied migration.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "jobs table", _m1_jobs),
    (2, "index jobs by state and creation time", _m2_state_index),
    (3, "service lease: one running service per database", _m3_lease),
    (4, "index jobs by finish time (retention)", _m4_finished_index),
]

_FINAL = [s.value for s in JobState if s.final]


class LeaseHeldError(RuntimeError):
    """Another live service holds this database's lease (`holder` names it)."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(d: datetime | None) -> datetime | None:
    return d.replace(tzinfo=UTC) if d is not None and d.tzinfo is None else d


@dataclass
class JobRecord:
    """A job row without its (large) snapshot and plan texts."""

    id: str
    state: JobState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    solver: str
    time_limit: float
    seed: int
    n_agents: int
    n_tasks: int
    attempts: int
    has_plan: bool
    plan_status: str | None
    best_objective: float | None
    best_bound: float | None
    error_type: str | None
    error_message: str | None
    error_field: str | None


_DATES = ("created_at", "started_at", "finished_at")
#: Dates come back as stored (SQLite: text) and are parsed by `_ROW`, so a date edited
#: by hand into garbage is one unreadable row, not an exception for the whole page.
_SUMMARY = [type_coerce(c, String).label(c.name) if c.name in _DATES else c
            for c in jobs.c if c.name not in ("snapshot", "plan")]
_ROW = TypeAdapter(JobRecord)
#: What an unreadable field of a row is reported as (the error names the stored value).
_UNREADABLE: dict[str, Any] = {
    "created_at": datetime(1970, 1, 1, tzinfo=UTC), "started_at": None, "finished_at": None,
    "solver": "", "time_limit": 0.0, "seed": 0, "n_agents": 0, "n_tasks": 0, "attempts": 0,
    "plan_status": None, "best_objective": None, "best_bound": None}


def _record(row: Any) -> JobRecord:
    """The row as a JobRecord; a row the code cannot read (edited by hand: a state or a
    date it does not know) is reported as failed with an `unreadable_row` error naming
    the field and value, and logged, instead of failing every listing with a 500."""
    m = dict(row._mapping)
    m["has_plan"] = bool(m["has_plan"])
    try:
        rec = _ROW.validate_python(m)
    except ValidationError as e:
        errs = e.errors()
        bad = {str(x["loc"][0]) for x in errs if x["loc"]}
        where = str(errs[0]["loc"][0]) if errs[0]["loc"] else "row"
        why = f"the store's row has {where} {m.get(where)!r}: {errs[0]['msg']}"
        log.warning("job store row %s cannot be read (%s); listed as failed", m.get("id"), why)
        m.update({k: _UNREADABLE[k] for k in bad if k in _UNREADABLE})
        m.update(state=JobState.FAILED, error_type="unreadable_row", error_message=why[:2000],
                 error_field=where)
        rec = _ROW.validate_python(m)
    rec.created_at = _utc(rec.created_at)  # type: ignore[assignment]
    rec.started_at = _utc(rec.started_at)
    rec.finished_at = _utc(rec.finished_at)
    return rec


class JobStore:
    """Persistence of jobs. Thread-safe (one connection per call)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    # -- schema -----------------------------------------------------------------------

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            if not self.engine.dialect.has_table(conn, "schema_migrations"):
                return 0
            v = conn.execute(select(func.max(migrations_table.c.version))).scalar()
            return int(v or 0)

    def migrate(self) -> int:
        """Apply the missing migrations in order; returns the resulting version."""
        with self.engine.begin() as conn:
            migrations_table.create(conn, checkfirst=True)
        current = self.schema_version()
        for version, description, apply in MIGRATIONS:
            if version <= current:
                continue
            with self.engine.begin() as conn:
                apply(conn)
                conn.execute(migrations_table.insert().values(
                    version=version, description=description, applied_at=_now()))
            current = version
        return current

    # -- jobs -------------------------------------------------------------------------

    def create(self, *, snapshot_json: str, solver: str, time_limit: float, seed: int,
               n_agents: int, n_tasks: int) -> JobRecord:
        job_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(jobs.insert().values(
                id=job_id, state=JobState.QUEUED.value, created_at=_now(), solver=solver,
                time_limit=time_limit, seed=seed, n_agents=n_agents, n_tasks=n_tasks,
                attempts=0, snapshot=snapshot_json,
            ))
        rec = self.get(job_id)
        assert rec is not None
        return rec

    def _select(self) -> Any:
        return select(*_SUMMARY, (jobs.c.plan.is_not(None)).label("has_plan"))

    def get(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._select().where(jobs.c.id == job_id)).first()
        return _record(row) if row is not None else None

    def snapshot_json(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(jobs.c.snapshot).where(jobs.c.id == job_id)).scalar()

    def plan_json(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(jobs.c.plan).where(jobs.c.id == job_id)).scalar()

    def page(self, *, limit: int, offset: int,
             state: JobState | None = None) -> tuple[list[JobRecord], int]:
        """Jobs newest first, and how many there are in all (with that state)."""
        q = self._select().order_by(jobs.c.created_at.desc(), jobs.c.id)
        count = select(func.count()).select_from(jobs)
        if state is not None:
            q = q.where(jobs.c.state == state.value)
            count = count.where(jobs.c.state == state.value)
        with self.engine.connect() as conn:
            rows = conn.execute(q.limit(limit).offset(offset)).all()
            total = int(conn.execute(count).scalar() or 0)
        return [_record(r) for r in rows], total

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
        out = {s.value: 0 for s in JobState}
        out.update({str(s): int(n) for s, n in rows})
        return out

    def mark_running(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                state=JobState.RUNNING.value, started_at=_now(), attempts=jobs.c.attempts + 1))

    def record_progress(self, job_id: str, *, objective: float | None,
                        bound: float | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                best_objective=objective, best_bound=bound))

    def save_plan(self, job_id: str, plan_json: str, *, plan_status: str,
                  objective: float | None, bound: float | None) -> None:
        """Store a best-so-far plan without changing the job's state."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                plan=plan_json, plan_status=plan_status, best_objective=objective,
                best_bound=bound))

    def finish(self, job_id: str, state: JobState, *, plan_json: str | None = None,
               plan_status: str | None = None, objective: float | None = None,
               bound: float | None = None, error: tuple[str, str, str | None] | None = None
               ) -> None:
        """Move a job to a final state; a given plan replaces the stored one."""
        # A finished job never runs again: its snapshot (up to max_body_bytes) goes.
        values: dict[str, Any] = {"state": state.value, "finished_at": _now(), "snapshot": ""}
        if plan_json is not None:
            values.update(plan=plan_json, plan_status=plan_status, best_objective=objective,
                          best_bound=bound)
        if error is not None:
            values.update(error_type=error[0], error_message=error[1], error_field=error[2])
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    def delete(self, job_id: str) -> bool:
        """Remove a finished job (and its plan); False if it is not finished or not there."""
        with self.engine.begin() as conn:
            n = conn.execute(jobs.delete().where(
                (jobs.c.id == job_id) & jobs.c.state.in_(_FINAL))).rowcount
        return bool(n)

    def prune(self, *, older_than: datetime) -> int:
        """Delete jobs finished before `older_than`; how many went."""
        with self.engine.begin() as conn:
            n = conn.execute(jobs.delete().where(
                jobs.c.state.in_(_FINAL) & (jobs.c.finished_at < older_than))).rowcount
        return int(n or 0)

    # -- the lease: one service per database ------------------------------------------

    def acquire_lease(self, owner: str, ttl_s: float, *, steal_from: str | None = None
                      ) -> None:
        """Take (or renew) the database's lease for `ttl_s` seconds.

        Raises LeaseHeldError when another owner holds an unexpired lease: two
        services on one database would both recover and run the same jobs.
        `steal_from` takes the lease from that holder even before it expires (the
        caller knows it is dead). Taking it is one conditional UPDATE (ours,
        expired, or the named dead holder's) or the first INSERT
        (the primary key refuses a second), so two services starting together
        cannot both win.
        """
        now = _now()
        until = now + timedelta(seconds=ttl_s)
        with self.engine.begin() as conn:  # one conditional UPDATE: atomic in either database
            n = conn.execute(update(lease_table).where(
                (lease_table.c.id == 1)
                & ((lease_table.c.owner == owner) | (lease_table.c.expires_at < now)
                   | (lease_table.c.owner == (steal_from or owner)))
            ).values(owner=owner, expires_at=until)).rowcount
        if n:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(lease_table.insert().values(id=1, owner=owner, expires_at=until))
            return
        except IntegrityError:
            pass  # a row exists: another owner, not expired
        with self.engine.connect() as conn:
            row = conn.execute(select(lease_table).where(lease_table.c.id == 1)).first()
        held_by = row.owner if row is not None else "?"
        held_until = _utc(row.expires_at) if row is not None else None
        raise LeaseHeldError(
            f"the job database is in use by another service ({held_by}) until "
            f"{held_until.isoformat(timespec='seconds') if held_until else '?'}; give this "
            "one its own --database-url, or stop the other", held_by)

    def release_lease(self, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(lease_table.delete().where(
                (lease_table.c.id == 1) & (lease_table.c.owner == owner)))

    def release(self, job_id: str) -> None:
        """Put a running job back in the queue (graceful shutdown): the run does not count."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(
                (jobs.c.id == job_id) & (jobs.c.state == JobState.RUNNING.value)).values(
                state=JobState.QUEUED.value, started_at=None,
                attempts=case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0)))

    def recover(self, *, mode: str, max_attempts: int) -> list[str]:
        """Account for every job after a (re)start; returns the ids to queue, oldest first.

        Jobs found `running` were cut off by a crash or restart: they are queued
        again (mode "requeue", fewer than `max_attempts` runs so far) or marked
        `interrupted` with a reason. `queued` jobs stay queued.
        """
        with self.engine.begin() as conn:
            running = conn.execute(select(jobs.c.id, jobs.c.attempts).where(
                jobs.c.state == JobState.RUNNING.value)).all()
            for job_id, attempts in running:
                if mode == "requeue" and attempts < max_attempts:
                    conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                        state=JobState.QUEUED.value, started_at=None))
                else:
                    why = ("the server stopped while this job was running"
                           + (f" ({attempts} attempts)" if mode == "requeue" else ""))
                    conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                        state=JobState.INTERRUPTED.value, finished_at=_now(),
                        error_type="interrupted", error_message=why))
            rows = conn.execute(select(jobs.c.id).where(
                jobs.c.state == JobState.QUEUED.value).order_by(jobs.c.created_at)).all()
        return [r[0] for r in rows]
