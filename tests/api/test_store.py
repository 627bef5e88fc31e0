"""The job store on its own: versioned migrations and restart recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.schemas import JobState
from api.store import MIGRATIONS, JobStore


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(f"sqlite:///{tmp_path / 'sub' / 'jobs.db'}")
    s.migrate()
    return s


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
