"""A job's progress comes from the engine's on-improvement callback: monotone, and the
stored plan always has the best objective the job reported (finished or cancelled)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import pytest

from allocator.io import gap_to_snapshot
from allocator.io.gapgen import generate_gap
from allocator.validate import validate
from models import Plan, Snapshot
from tests.api.server import Server


@pytest.fixture(scope="module")
def server(make_server: Any) -> Server:
    return make_server(ALLOCATOR_MAX_QUEUE="4", ALLOCATOR_WORKERS="1")


def _gap_snapshot(kind: str, seed: int) -> dict[str, Any]:
    snap = gap_to_snapshot(generate_gap(kind, 10, 150, seed=seed))
    return snap.model_dump(mode="json", by_alias=True)


def _poll(client: httpx.Client, job_id: str, until_s: float,
          stop_when: Any = None) -> tuple[dict[str, Any], list[float]]:
    seen: list[float] = []
    deadline = time.monotonic() + until_s
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["best_objective"] is not None:
            seen.append(job["best_objective"])
        if job["state"] not in ("queued", "running") or (stop_when and stop_when(job)):
            return job, seen
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


@pytest.mark.parametrize("solver", ["auto", "milp", "cpsat"])
def test_job_progress_is_monotone_and_the_stored_plan_has_the_best_objective(
        server: Server, solver: str) -> None:
    snap = _gap_snapshot("d", 41)
    with server.client() as client:
        job = client.post("/v1/jobs", json={"snapshot": snap, "solver": solver,
                                            "time_limit": 3}).json()
        done, seen = _poll(client, job["id"], 30)
        assert done["state"] == "succeeded", done
        assert seen and all(b <= a for a, b in itertools.pairwise(seen))
        plan = Plan.model_validate(client.get(f"/v1/jobs/{job['id']}/plan").json())
    assert validate(Snapshot.model_validate(snap), plan) == []
    assert plan.objective == pytest.approx(done["best_objective"])
    assert plan.objective <= min(seen) + 1e-6 * abs(min(seen))


@pytest.mark.parametrize("solver", ["auto", "milp"])
def test_a_cancelled_job_stores_the_best_plan_it_reported(server: Server, solver: str) -> None:
    snap = _gap_snapshot("e", 42)
    with server.client() as client:
        job = client.post("/v1/jobs", json={"snapshot": snap, "solver": solver,
                                            "time_limit": 60}).json()
        _cur, _ = _poll(client, job["id"], 20,
                       stop_when=lambda j: j["state"] == "running"
                       and j["best_objective"] is not None)
        time.sleep(0.5)
        t0 = time.monotonic()
        r = client.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200
        gone = r.json()
        assert time.monotonic() - t0 < 5
        assert gone["state"] == "cancelled" and gone["has_plan"], gone
        plan = Plan.model_validate(client.get(f"/v1/jobs/{job['id']}/plan").json())
        final = client.get(f"/v1/jobs/{job['id']}").json()
    assert validate(Snapshot.model_validate(snap), plan) == []
    assert plan.objective == pytest.approx(final["best_objective"])
