"""kill -9 the server with jobs queued, running and finished; start it again: none vanish."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.conftest import slow_snapshot, small_snapshot
from tests.api.test_e2e import wait_final


def test_every_job_is_accounted_for_after_kill_9(make_server: Any, tmp_path: Any) -> None:
    db = tmp_path / "jobs.db"
    server = make_server(db, ALLOCATOR_WORKERS="1", ALLOCATOR_JOB_TIME_LIMIT="2")
    with server.client() as c:
        done = c.post("/v1/jobs", json={"snapshot": small_snapshot(), "solver": "cpsat"}).json()
        assert wait_final(c, done["id"])["state"] == "succeeded"
        running = c.post("/v1/jobs", json={"snapshot": slow_snapshot(), "solver": "cpsat",
                                           "time_limit": 2}).json()
        queued = [c.post("/v1/jobs", json={"snapshot": small_snapshot(3 + k), "solver": "cpsat",
                                           "time_limit": 0.5}).json() for k in range(3)]
        deadline = time.monotonic() + 10
        while c.get(f"/v1/jobs/{running['id']}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = c.get("/v1/jobs", params={"limit": 50}).json()
    assert before["total"] == 5
    server.kill9()

    again = make_server(db, ALLOCATOR_WORKERS="1", ALLOCATOR_JOB_TIME_LIMIT="2")
    with again.client() as c:
        after = c.get("/v1/jobs", params={"limit": 50}).json()
        assert {j["id"] for j in after["items"]} == {j["id"] for j in before["items"]}
        first = c.get(f"/v1/jobs/{done['id']}").json()
        assert first["state"] == "succeeded" and first["has_plan"]
        assert c.get(f"/v1/jobs/{done['id']}/plan").status_code == 200
        rerun = wait_final(c, running["id"], timeout=30)
        assert rerun["state"] == "succeeded" and rerun["attempts"] == 2
        for q in queued:
            assert wait_final(c, q["id"], timeout=30)["state"] == "succeeded"
        counts = c.get("/metrics").text
        assert 'allocator_jobs{state="succeeded"} 5.0' in counts


def test_a_second_service_on_the_same_database_refuses_to_start(make_server: Any,
                                                                tmp_path: Any) -> None:
    from tests.api.server import Server

    db = tmp_path / "shared.db"
    first = make_server(db, ALLOCATOR_WORKERS="1")
    second = Server(db, ALLOCATOR_WORKERS="1")
    with pytest.raises(RuntimeError, match="in use by another service"):
        second.start(timeout=60)
    with first.client() as c:
        assert c.get("/readyz").status_code == 200


def test_delete_removes_a_finished_job(make_server: Any, tmp_path: Any) -> None:
    server = make_server(tmp_path / "del.db", ALLOCATOR_WORKERS="1")
    with server.client() as c:
        job = c.post("/v1/jobs", json={"snapshot": small_snapshot(), "solver": "greedy"}).json()
        done = wait_final(c, job["id"])
        assert done["state"] == "succeeded"
        r = c.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["state"] == "succeeded"
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert c.get(f"/v1/jobs/{job['id']}/plan").status_code == 404
