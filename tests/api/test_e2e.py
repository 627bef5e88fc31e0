"""End to end against a real `allocator serve` process: submit, poll, fetch, cancel."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from allocator.validate import validate
from models import Plan, Snapshot
from tests.api.conftest import example, slow_snapshot, small_snapshot
from tests.api.server import Server


@pytest.fixture(scope="module")
def server(make_server: Any) -> Server:
    return make_server(ALLOCATOR_MAX_QUEUE="4", ALLOCATOR_WORKERS="2")


@pytest.fixture
def client(server: Server) -> httpx.Client:
    with server.client() as c:
        yield c


def wait_final(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def wait_workers(client: httpx.Client, n: int, timeout: float = 60) -> None:
    """Until `n` solver workers are up (after a kill, a fresh one takes a moment)."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").json().get("workers", 0) < n:
        assert time.monotonic() < deadline, f"fewer than {n} workers after {timeout} s"
        time.sleep(0.1)


def assert_error(r: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"type", "message", "field"}
    assert body["type"] == type_
    return body


def test_sync_solve_returns_a_valid_plan(client: httpx.Client) -> None:
    snap = small_snapshot()
    r = client.post("/v1/solve", json={"snapshot": snap, "solver": "cpsat"})
    assert r.status_code == 200, r.text
    plan = Plan.model_validate(r.json())
    assert plan.status == "optimal"
    assert validate(Snapshot.model_validate(snap), plan) == []


def test_job_submit_poll_fetch(client: httpx.Client) -> None:
    snap = small_snapshot(6)
    r = client.post("/v1/jobs", json={"snapshot": snap, "solver": "cpsat", "time_limit": 2})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] in ("queued", "running")
    done = wait_final(client, job["id"])
    assert done["state"] == "succeeded"
    assert done["progress"] == 1.0 and done["has_plan"] and done["plan_status"] == "optimal"
    assert done["attempts"] == 1 and done["gap"] == 0.0
    plan = Plan.model_validate(client.get(f"/v1/jobs/{job['id']}/plan").json())
    assert plan.objective == pytest.approx(done["best_objective"])
    assert validate(Snapshot.model_validate(snap), plan) == []
    page = client.get("/v1/jobs", params={"limit": 1, "state": "succeeded"}).json()
    assert page["limit"] == 1 and page["total"] >= 1 and len(page["items"]) == 1


def test_cancel_keeps_the_best_plan_so_far(client: httpx.Client) -> None:
    snap = slow_snapshot()
    job = client.post("/v1/jobs", json={"snapshot": snap, "solver": "cpsat",
                                        "time_limit": 5}).json()
    deadline = time.monotonic() + 10
    while True:  # running, with a best objective reported
        cur = client.get(f"/v1/jobs/{job['id']}").json()
        if cur["state"] == "running" and cur["best_objective"] is not None:
            break
        assert time.monotonic() < deadline, cur
        time.sleep(0.05)
    assert 0 < cur["progress"] < 1
    t0 = time.monotonic()
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200
    assert time.monotonic() - t0 < 3
    gone = r.json()
    assert gone["state"] == "cancelled" and gone["has_plan"]
    plan = Plan.model_validate(client.get(f"/v1/jobs/{job['id']}/plan").json())
    assert plan.status == "feasible"
    assert validate(Snapshot.model_validate(snap), plan) == []
    # cancelling again is harmless
    assert client.delete(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"


def test_crashing_solve_fails_its_job_and_the_server_carries_on(client: httpx.Client) -> None:
    snap = small_snapshot()
    job = client.post("/v1/jobs", json={"snapshot": snap, "solver": "test:crash"}).json()
    failed = wait_final(client, job["id"])
    assert failed["state"] == "failed"
    assert failed["error"]["type"] == "worker_crashed"
    assert "exit code" in failed["error"]["message"]
    bug = client.post("/v1/jobs", json={"snapshot": snap, "solver": "test:bug"}).json()
    failed = wait_final(client, bug["id"])
    assert failed["state"] == "failed" and "ZeroDivisionError" in failed["error"]["message"]
    r = client.post("/v1/solve", json={"snapshot": snap, "solver": "test:crash"})
    assert_error(r, 503, "solver_failed")
    # and the next solve works once a fresh worker is up (before that, a call that cannot
    # start within its 0.5 s limit is a 503 with Retry-After)
    wait_workers(client, 2)
    assert client.post("/v1/solve", json={"snapshot": snap}).status_code == 200
    metrics = client.get("/metrics").text
    assert "allocator_worker_crashes_total 2.0" in metrics


def test_over_capacity_is_429_with_retry_after(client: httpx.Client) -> None:
    snap = slow_snapshot()
    ids, refused = [], None
    for _ in range(8):
        r = client.post("/v1/jobs", json={"snapshot": snap, "solver": "cpsat", "time_limit": 5})
        if r.status_code == 429:
            refused = r
            break
        ids.append(r.json()["id"])
    # Four are queued or running when the refusal comes (one more is accepted if one of
    # them ended meanwhile, e.g. on a loaded machine).
    assert refused is not None and len(ids) >= 4
    states = [client.get(f"/v1/jobs/{j}").json()["state"] for j in ids]
    assert sum(s in ("queued", "running") for s in states) <= 4, states
    assert_error(refused, 429, "capacity")
    assert int(refused.headers["retry-after"]) > 0
    for job_id in reversed(ids):
        assert client.delete(f"/v1/jobs/{job_id}").json()["state"] in (
            "cancelled", "succeeded", "timed_out", "failed")


@pytest.mark.parametrize(
    ("body", "status", "type_", "field"),
    [
        pytest.param(b'{"snapshot": {"agents": [{"id": "a", "capacity": {"cpu": NaN}}]}}',
                     422, "invalid_input", "snapshot.agents.0.capacity", id="NaN capacity"),
        pytest.param(b'{"snapshot": {"agents": "many"}}', 422, "invalid_input",
                     "snapshot.agents", id="wrong type"),
        pytest.param(b'{"snapshot": ', 422, "invalid_input", None, id="broken JSON"),
        pytest.param(b'[1, 2]', 422, "invalid_input", None, id="not an object"),
        pytest.param(b'{"snapshot": {"agents": []}, "solver": "nope"}', 422, "unknown_solver",
                     "solver", id="unknown solver"),
        pytest.param(b'{"snapshot": {"agents": []}, "time_limit": -1}', 422, "invalid_input",
                     "time_limit", id="negative time limit"),
        pytest.param(json.dumps({"snapshot": {"agents": [{"id": f"a{i}"} for i in range(60)]}})
                     .encode(), 422, "invalid_input", "snapshot.agents", id="too many agents"),
        pytest.param(b'{"snapshot": {"agents": [{"id": "a", "speed": 5e-324}]}}', 422,
                     "invalid_input", "snapshot.agents.0.speed", id="absurd speed"),
        pytest.param(b'{"snapshot": {"agents": [{"id": "a", "cost_rate": 1e300}]}}', 422,
                     "invalid_input", "snapshot.agents.0.cost_rate", id="absurd cost"),
        pytest.param(b'{"snapshot": {"agents": [], "tasks": [{"id": "t", "current_agent": "x"}]}}',
                     422, "invalid_input", "snapshot", id="dangling reference"),
    ],
)
def test_bad_input_is_one_error_shape(client: httpx.Client, body: bytes, status: int,
                                      type_: str, field: str | None) -> None:
    for route in ("/v1/solve", "/v1/jobs"):
        r = client.post(route, content=body, headers={"content-type": "application/json"})
        err = assert_error(r, status, type_)
        if field is not None:
            assert err["field"] is not None and err["field"].startswith(field), err


def test_request_errors_say_what_to_change(client: httpx.Client) -> None:
    """A bare snapshot, JSON broken on line 2, no content-type: the message says the fix."""
    json_h = {"content-type": "application/json"}
    bare = json.dumps(small_snapshot())
    for route in ("/v1/solve", "/v1/jobs", "/v1/validate"):
        err = assert_error(client.post(route, content=bare, headers=json_h), 422,
                           "invalid_input")
        assert err["field"] == "snapshot", err
        assert err["message"].startswith('body must be {"snapshot": ...'), err
        assert "field 'snapshot' is missing" in err["message"], err
        assert "bare snapshot" in err["message"], err
    err = assert_error(client.post("/v1/validate", content=json.dumps({"snapshot": {}}),
                                   headers=json_h), 422, "invalid_input")
    assert err["field"] == "plan" and "field 'plan' is missing" in err["message"], err
    err = assert_error(client.post("/v1/solve", content=b'{"snapshot": {\n  "agents": [,]}}',
                                   headers=json_h), 422, "invalid_input")
    assert err["message"].startswith("malformed JSON at line 2, column 14"), err
    for headers in ({}, {"content-type": "text/plain"}):
        err = assert_error(client.post("/v1/solve", content=json.dumps({"snapshot": {}}),
                                       headers=headers), 422, "invalid_input")
        assert "content-type: application/json" in err["message"], err
    err = assert_error(client.post("/v1/solve", content=b"[1, 2]", headers=json_h), 422,
                       "invalid_input")
    assert "must be a JSON object" in err["message"], err


def test_huge_bodies_are_413(client: httpx.Client) -> None:
    big = b'{"snapshot": {"agents": [' + b'{"id": "a"},' * 40_000 + b'{"id": "z"}]}}'
    assert_error(client.post("/v1/solve", content=big,
                             headers={"content-type": "application/json"}),
                 413, "body_too_large")

    def chunks() -> Any:  # no Content-Length: streamed
        for _ in range(100):
            yield b" " * 10_000

    assert_error(client.post("/v1/jobs", content=chunks(),
                             headers={"content-type": "application/json"}),
                 413, "body_too_large")


def test_unknown_things_are_404(client: httpx.Client) -> None:
    assert_error(client.get("/v1/jobs/nope"), 404, "not_found")
    assert_error(client.get("/v1/jobs/nope/plan"), 404, "not_found")
    assert_error(client.delete("/v1/jobs/nope"), 404, "not_found")
    assert_error(client.get("/v2/nothing"), 404, "not_found")


def test_validate_solvers_health_metrics(client: httpx.Client) -> None:
    snap = small_snapshot()
    plan = client.post("/v1/solve", json={"snapshot": snap}).json()
    ok = client.post("/v1/validate", json={"snapshot": snap, "plan": plan}).json()
    assert ok == {"valid": True, "violations": []}
    plan["assignments"].append(dict(plan["assignments"][0]))
    bad = client.post("/v1/validate", json={"snapshot": snap, "plan": plan}).json()
    assert not bad["valid"] and bad["violations"]
    names = {s["name"] for s in client.get("/v1/solvers").json()["solvers"]}
    assert {"greedy", "cpsat", "auto"} <= names
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json()["status"] == "ready"
    text = client.get("/metrics").text
    for name in ("allocator_http_requests_total", "allocator_http_request_duration_seconds",
                 "allocator_solve_duration_seconds", "allocator_solve_gap",
                 "allocator_queue_depth", 'allocator_jobs{state="succeeded"}'):
        assert name in text
    assert "access-control-allow-origin" not in client.get(
        "/v1/solvers", headers={"origin": "http://evil.example"}).headers


@pytest.mark.anyio
async def test_mcp_over_streamable_http(server: Server) -> None:
    from mcp import Client

    async with Client(f"{server.url}/mcp") as mcp:
        tools = {t.name for t in (await mcp.list_tools()).tools}
        assert {"solve", "validate", "job_status", "submit_job", "solvers"} <= tools
        result = await mcp.call_tool("solve", {"snapshot": small_snapshot()})
        assert not result.is_error
        assert result.structured_content["status"] == "optimal"


@pytest.mark.serial
def test_capabilities_beyond_solve(client: httpx.Client) -> None:
    from api.capabilities import available

    have = available()
    paths = set(client.get("/openapi.json").json()["paths"])
    for cap in ("rebalance", "pareto", "simulate", "bottlenecks"):
        assert (f"/v1/{cap}" in paths) == (cap in have), cap
    snap = example("seed-overloaded.json")
    if "rebalance" in have:
        r = client.post("/v1/rebalance", json={"snapshot": snap, "max_migrations": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        plan = Plan.model_validate(body["plan"])
        assert len(plan.migrations) <= 2 and body["summary"]["valid"] is True
        assert validate(Snapshot.model_validate(snap), plan) == []
    if "pareto" in have:
        r = client.post("/v1/pareto", json={"snapshot": small_snapshot(), "exact": True})
        assert r.status_code == 200, r.text
        front = r.json()["front"]
        assert front["points"] and front["objectives"] == ["cost", "makespan"]
        for p in front["points"]:
            plan = Plan.model_validate(p["plan"])
            assert validate(Snapshot.model_validate(small_snapshot()), plan) == []
    if "simulate" in have:
        r = client.post("/v1/simulate", json={"workload": {"tasks": 200, "agents": 4},
                                              "policies": ["fifo", "jsq"]})
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        assert [row["policy"] for row in rows] == ["fifo", "jsq"]
        assert all(row["completed"] + row["rejected"] + row["failed"] == 200 for row in rows)
        # Periodic plans beside the policies alone, from the body as from the CLI flags.
        r = client.post("/v1/simulate", json={
            "workload": {"tasks": 150, "agents": 4}, "policies": ["jsq"],
            "modes": ["online", "batch", "coordinated"],
            "coordinator": {"every": 20, "solver": "greedy", "budget": 0.2},
            "decision_latency": 0.001})
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        assert [(row["mode"], row["policy"]) for row in rows] == [
            ("online", "jsq"), ("batch", "batch"), ("coordinated", "jsq+plans")]
        assert all(row["completed"] + row["rejected"] + row["failed"] == 150 for row in rows)
        assert rows[1]["interval"] == rows[2]["interval"] == 20
        # The issue-15 run options from the body, and the row keys they report in.
        r = client.post("/v1/simulate", json={
            "workload": {"tasks": 200, "agents": 4, "flaky": "1:0.9:30", "skill_groups": 3,
                         "arrival": "bursty"},
            "policies": ["wfq", "edf+stealing"],
            "options": {"tenants": [1, 3], "class_weights": [8, 4, 2, 1], "aging": 20,
                        "admission": "throttle", "target_wait": 3}})
        assert r.status_code == 200, r.text
        for row in r.json()["rows"]:
            assert row["lost"] == 0 and row["duplicated"] == 0 and row["retries"] > 0
            assert [(t["tenant"], t["weight"]) for t in row["per_tenant"]] == [
                ("tenant0", 1.0), ("tenant1", 3.0)]
            assert {c["class"]: c["weight"] for c in row["per_class"]}["critical"] == 8.0
            assert len(row["per_agent"]) == 4 and set(row["per_agent"][0]) == {
                "agent", "completed", "busy_share", "completed_last_quarter"}
            assert isinstance(row["rejected_after_burst"], int)
            assert row["steal_interval_mean"] >= 0.0
        assert_error(client.post("/v1/simulate", json={"policies": ["nope"]}), 422,
                     "invalid_input")
        assert_error(client.post("/v1/simulate", json={"modes": ["warp"]}), 422,
                     "invalid_input")
        assert_error(client.post("/v1/simulate", json={
            "coordinator": {"solver": "milp"}}), 422, "invalid_input")
        assert_error(client.post("/v1/simulate", json={"workload": {"tasks": 90_000}}), 422,
                     "invalid_input")
    if "bottlenecks" in have:
        r = client.post("/v1/bottlenecks", json={"snapshot": snap, "solver": "greedy"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert "resources" in body["report"]
        given = client.post("/v1/bottlenecks", json={"snapshot": snap, "plan": body["plan"]})
        assert given.status_code == 200 and given.json()["plan"] == body["plan"]
        bad_plan = {**body["plan"], "assignments": [{"task": "nope", "agent": "agent-1",
                                                      "start": 0, "end": 1}]}
        assert_error(client.post("/v1/bottlenecks", json={"snapshot": snap, "plan": bad_plan}),
                     422, "invalid_input")
