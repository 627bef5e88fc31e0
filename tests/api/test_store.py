"""The job store on its own, on SQLite and on a real PostgreSQL server the tests start.

Versioned migrations, restart recovery, retention (delete, prune, snapshots
dropped on finish) and the lease that keeps a second service off a database.
PostgreSQL comes from the `pgserver` package (a dev extra): its own initdb and
server in a temporary directory, stopped when the module ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from api.schemas import JobState
from api.store import MIGRATIONS, JobStore, LeaseHeldError


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pgserver = pytest.importorskip("pgserver", reason="pgserver (dev extra) not installed")
    pytest.importorskip("psycopg", reason="psycopg (dev extra) not installed")
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield srv.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        srv.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        s = JobStore(f"sqlite:///{tmp_path / 'sub' / 'jobs.db'}")
    else:
        base = request.getfixturevalue("postgres_url")
        db = f"t{uuid.uuid4().hex[:12]}"  # a fresh database per test
        admin = JobStore(base)
        with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text(f"CREATE DATABASE {db}"))
        admin.close()
        s = JobStore(base.replace("/postgres?", f"/{db}?", 1))
        assert s.engine.dialect.name == "postgresql"
    s.migrate()
    yield s
    s.close()


def _job(store: JobStore) -> str:
    return store.create(snapshot_json="{}", solver="greedy", time_limit=1, seed=0, n_agents=1,
                        n_tasks=0).id


def test_migrations_are_versioned_and_idempotent(store: JobStore) -> None:
    assert store.schema_version() == MIGRATIONS[-1][0]
    assert store.migrate() == MIGRATIONS[-1][0]  # nothing left to apply
    assert [v for v, _, _ in MIGRATIONS] == sorted({v for v, _, _ in MIGRATIONS})


@pytest.mark.parametrize(
    ("mode", "attempts", "expected"),
    [
        pytest.param("requeue", 1, JobState.QUEUED, id="requeued after one attempt"),
        pytest.param("requeue", 2, JobState.INTERRUPTED, id="interrupted after max attempts"),
        pytest.param("interrupt", 1, JobState.INTERRUPTED, id="interrupt mode"),
    ],
)
def test_recover_running_jobs(store: JobStore, mode: str, attempts: int,
                              expected: JobState) -> None:
    queued, running, finished = _job(store), _job(store), _job(store)
    for _ in range(attempts):
        store.mark_running(running)
    store.mark_running(finished)
    store.finish(finished, JobState.SUCCEEDED, plan_json="{}", plan_status="optimal",
                 objective=1.0, bound=1.0)
    requeue = store.recover(mode=mode, max_attempts=2)
    rec = store.get(running)
    assert rec is not None and rec.state == expected
    if expected == JobState.INTERRUPTED:
        assert rec.error_type == "interrupted" and rec.error_message
        assert requeue == [queued]
    else:
        assert requeue == [queued, running]
    done = store.get(finished)
    assert done is not None and done.state == JobState.SUCCEEDED and done.has_plan
    assert sum(store.counts().values()) == 3


def test_release_on_graceful_shutdown_does_not_count_the_run(store: JobStore) -> None:
    job = _job(store)
    store.mark_running(job)
    store.release(job)
    rec = store.get(job)
    assert rec is not None and rec.state == JobState.QUEUED and rec.attempts == 0
    store.finish(job, JobState.SUCCEEDED)
    store.release(job)  # only running jobs are released
    assert store.get(job).state == JobState.SUCCEEDED  # type: ignore[union-attr]


def test_finishing_drops_the_snapshot_and_keeps_the_plan(store: JobStore) -> None:
    job = store.create(snapshot_json='{"agents": []}' * 1000, solver="greedy", time_limit=1,
                       seed=0, n_agents=1, n_tasks=0).id
    store.mark_running(job)
    store.finish(job, JobState.SUCCEEDED, plan_json='{"p": 1}', plan_status="optimal",
                 objective=1.0, bound=1.0)
    assert store.snapshot_json(job) == ""
    assert store.plan_json(job) == '{"p": 1}'


def test_delete_takes_finished_jobs_only(store: JobStore) -> None:
    queued, done = _job(store), _job(store)
    store.finish(done, JobState.CANCELLED)
    assert store.delete(queued) is False and store.get(queued) is not None
    assert store.delete(done) is True and store.get(done) is None
    assert store.delete(done) is False


def test_prune_deletes_jobs_finished_before_the_cutoff(store: JobStore) -> None:
    old, running = _job(store), _job(store)
    store.mark_running(running)
    store.finish(old, JobState.SUCCEEDED)
    assert store.prune(older_than=datetime.now(UTC) - timedelta(hours=1)) == 0
    assert store.prune(older_than=datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert store.get(old) is None and store.get(running) is not None


def test_one_service_per_database(store: JobStore) -> None:
    store.acquire_lease("first", ttl_s=30)
    store.acquire_lease("first", ttl_s=30)  # renewing is fine
    with pytest.raises(LeaseHeldError, match="first"):
        store.acquire_lease("second", ttl_s=30)
    store.release_lease("first")
    store.acquire_lease("second", ttl_s=0.001)
    import time

    time.sleep(0.01)
    store.acquire_lease("third", ttl_s=30)  # an expired lease (a dead service) is taken over
    with pytest.raises(LeaseHeldError):
        store.acquire_lease("second", ttl_s=30)


def test_a_row_the_code_cannot_read_is_reported_not_a_crash(store: JobStore,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    """A row edited by hand into a state the code does not know made GET /v1/jobs a 500
    (ValueError in the listing): it is now listed as failed with an error naming the
    field and the value, the log names the row, and the other rows list as they were."""
    bogus, good = _job(store), _job(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET state = 'bogus' WHERE id = :i"), {"i": bogus})
    with caplog.at_level("WARNING", logger="api.store"):
        rows, total = store.page(limit=10, offset=0)
    assert total == 2
    by_id = {r.id: r for r in rows}
    assert by_id[good].state is JobState.QUEUED and by_id[good].error_type is None
    bad = by_id[bogus]
    assert bad.state is JobState.FAILED and bad.error_type == "unreadable_row"
    assert bad.error_field == "state" and "'bogus'" in (bad.error_message or "")
    assert bogus in caplog.text
    assert store.get(bogus) == bad


def test_a_date_the_code_cannot_read_is_reported_not_a_crash(tmp_path: Path) -> None:
    """(SQLite only: PostgreSQL's typed columns refuse such a date.)"""
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.migrate()
    broken, good = _job(store), _job(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET created_at = 'garbage' WHERE id = :i"), {"i": broken})
    rows, _ = store.page(limit=10, offset=0)
    by_id = {r.id: r for r in rows}
    assert by_id[good].state is JobState.QUEUED
    assert by_id[broken].error_field == "created_at"
    assert by_id[broken].state is JobState.FAILED
    store.close()


def test_get_jobs_lists_around_an_unreadable_row(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    db = tmp_path / "jobs.db"
    store = JobStore(f"sqlite:///{db}")
    store.migrate()
    bogus = _job(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET state = 'bogus' WHERE id = :i"), {"i": bogus})
    store.close()
    with TestClient(create_app(Settings(workers=1, database_url=f"sqlite:///{db}",
                                        live=False)), base_url="http://127.0.0.1") as c:
        got = c.get("/v1/jobs")
        assert got.status_code == 200, got.text
        item = {j["id"]: j for j in got.json()["items"]}[bogus]
        assert item["state"] == "failed" and item["error"]["type"] == "unreadable_row"
        assert c.get(f"/v1/jobs/{bogus}").status_code == 200
