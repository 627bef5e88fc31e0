"""Edges of the service: Host allow-list, metric labels, magnitudes, plans, time limits."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.api.conftest import small_snapshot
from tests.api.server import Server
from tests.api.test_e2e import assert_error, wait_final, wait_workers
from tests.test_magnitude_limits import EDGES, edit


@pytest.fixture(scope="module")
def server(make_server: Any) -> Server:
    return make_server(ALLOCATOR_WORKERS="1", ALLOCATOR_SYNC_TIME_LIMIT="1",
                       ALLOCATOR_TIME_LIMIT_GRACE_S="1", ALLOCATOR_ALLOWED_HOSTS="api.test:8443",
                       ALLOCATOR_MAX_TASKS="100000")


@pytest.fixture
def client(server: Server) -> httpx.Client:
    with server.client() as c:
        yield c


def strict_json(text: str) -> Any:
    """json.loads refusing the non-standard NaN / Infinity tokens."""
    def bad(token: str) -> Any:
        raise AssertionError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=bad)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "api.test:9999", ""])
def test_foreign_host_is_refused_on_every_route(client: httpx.Client, host: str) -> None:
    for method, path in [("GET", "/healthz"), ("GET", "/v1/solvers"), ("POST", "/v1/solve"),
                         ("GET", "/openapi.json"), ("POST", "/mcp")]:
        r = client.request(method, path, headers={"host": host}, json={})
        assert_error(r, 421, "host_not_allowed")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:1234", "[::1]:80", "api.test:8443",
                                  "API.TEST:8443"])
def test_loopback_and_configured_hosts_pass(client: httpx.Client, host: str) -> None:
    assert client.get("/healthz", headers={"host": host}).status_code == 200


def test_made_up_methods_do_not_grow_the_metric_labels(client: httpx.Client) -> None:
    for k in range(5):
        client.request(f"BREW{k}", "/v1/solvers")
    text = client.get("/metrics").text
    assert "BREW" not in text
    assert 'method="other"' in text


@pytest.mark.parametrize(("patch", "field"), [
    ({"options": {"max_migrations": 10**29}}, "snapshot.options.max_migrations"),
    ({"migration": {"label_factors": {"zone": 1e300}}}, "snapshot.migration.label_factors.zone"),
    ({"migration": {"pair_factors": [{"from": "a", "to": "b", "factor": 1e300}]}},
     "snapshot.migration.pair_factors.0.factor"),
    ({"migration": {"size_share": 1e300}}, "snapshot.migration.size_share"),
])
def test_huge_migration_numbers_are_422(client: httpx.Client, patch: dict[str, Any],
                                        field: str) -> None:
    snap = {**small_snapshot(), **patch}
    for path in ("/v1/solve", "/v1/rebalance"):
        body = assert_error(client.post(path, json={"snapshot": snap}), 422, "invalid_input")
        assert body["field"] == field


def test_rebalance_max_migrations_far_above_the_tasks_is_no_cap(client: httpx.Client) -> None:
    snap = small_snapshot()
    for t in snap["tasks"]:
        t["current_agent"] = "a"
    r = client.post("/v1/rebalance", json={"snapshot": snap, "max_migrations": 1_000_000})
    assert r.status_code == 200, r.text


def good_plan(client: httpx.Client, snap: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/solve", json={"snapshot": snap, "solver": "greedy"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_bottlenecks_refuses_duplicate_and_nan_plans(client: httpx.Client) -> None:
    snap = small_snapshot()
    plan = good_plan(client, snap)
    r = client.post("/v1/bottlenecks", json={"snapshot": snap, "plan": plan})
    assert r.status_code == 200, r.text
    strict_json(r.text)
    dup = {**plan, "assignments": plan["assignments"] + plan["assignments"][:1]}
    body = assert_error(client.post("/v1/bottlenecks", json={"snapshot": snap, "plan": dup}),
                        422, "invalid_input")
    assert body["field"].startswith("plan.")
    nan = json.loads(json.dumps(plan))
    nan["assignments"][0]["end"] = math.nan
    r = client.post("/v1/bottlenecks", content=json.dumps({"snapshot": snap, "plan": nan}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


def test_simulate_refuses_duplicate_policies(client: httpx.Client) -> None:
    r = client.post("/v1/simulate", json={"workload": {"tasks": 50},
                                          "policies": ["fifo", "jsq", "fifo"]})
    body = assert_error(r, 422, "invalid_input")
    assert body["field"] == "policies"


def test_simulate_holds_its_time_limit(client: httpx.Client) -> None:
    t0 = time.monotonic()
    r = client.post("/v1/simulate", json={"workload": {"tasks": 100_000, "agents": 50},
                                          "policies": ["fifo", "jsq", "edf"],
                                          "time_limit": 0.5})
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    out = strict_json(r.text)
    assert took < 0.5 + 2, took
    assert out["complete"] is False
    assert any(row.get("skipped") == "time_limit" for row in out["rows"])


def test_a_stubborn_sync_solve_is_killed_at_limit_plus_grace(client: httpx.Client) -> None:
    t0 = time.monotonic()
    r = client.post("/v1/solve", json={"snapshot": small_snapshot(), "solver": "test:stubborn",
                                       "time_limit": 0.5})
    took = time.monotonic() - t0
    assert took < 0.5 + 2, took
    assert r.status_code == 200, r.text  # the greedy plan it had before getting stuck
    assert r.json()["solver"] == "greedy"
    # the worker was replaced: the next solve works
    wait_workers(client, 1)
    assert client.post("/v1/solve", json={"snapshot": small_snapshot(),
                                          "solver": "cpsat"}).status_code == 200


def ran_for(job: dict[str, Any]) -> float:
    """Seconds from the job's start to its end (not counting a wait for a fresh worker)."""
    start, end = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds()


def test_a_stubborn_job_ends_timed_out_with_its_best_plan(client: httpx.Client) -> None:
    job = client.post("/v1/jobs", json={"snapshot": small_snapshot(), "solver": "test:stubborn",
                                        "time_limit": 1}).json()
    done = wait_final(client, job["id"])
    assert done["state"] == "timed_out" and done["has_plan"], done
    assert ran_for(done) < 1 + 2
    assert client.get(f"/v1/jobs/{job['id']}/plan").status_code == 200


def test_an_interruptible_solve_times_out_in_the_worker(client: httpx.Client) -> None:
    job = client.post("/v1/jobs", json={"snapshot": small_snapshot(), "solver": "test:sleep",
                                        "time_limit": 0.5}).json()
    done = wait_final(client, job["id"])
    assert done["state"] == "timed_out" and done["has_plan"], done
    assert ran_for(done) < 0.5 + 1  # the worker's alarm, well before the pool's kill


def test_client_disconnect_frees_the_worker(make_server: Any) -> None:
    server = make_server(ALLOCATOR_WORKERS="1", ALLOCATOR_SYNC_TIME_LIMIT="60",
                         ALLOCATOR_CANCEL_GRACE_S="0.5")
    body = {"snapshot": small_snapshot(), "solver": "test:stubborn", "time_limit": 60}

    def hang_up() -> None:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/v1/solve", json=body, timeout=0.5)

    t = threading.Thread(target=hang_up)
    t.start()
    t.join()
    t0 = time.monotonic()
    with server.client() as c:
        r = c.post("/v1/solve", json={"snapshot": small_snapshot(), "solver": "greedy"})
    assert r.status_code == 200, r.text
    # not the 60 s the abandoned solve asked for (a fresh worker may take seconds to start)
    assert time.monotonic() - t0 < 20


# -- large bodies: parsed in the parser process, counted first ---------------------------

def big_snapshot(n_tasks: int, n_agents: int = 20) -> dict[str, Any]:
    """Over api.bodies.INLINE_BODY_BYTES of JSON, so it takes the off-loop path."""
    return {
        "agents": [{"id": f"a{i}", "capacity": {"cpu": 1000}, "cost_rate": 1 + i % 3,
                    "skills": [f"s{k}" for k in range(7)]}
                   for i in range(n_agents)],
        "tasks": [{"id": f"task-{j:06d}", "work": 1 + j % 5, "demand": {"cpu": 1},
                   "skills": [f"s{j % 7}"]} for j in range(n_tasks)],
    }


@pytest.fixture(scope="module")
def big_server(make_server: Any) -> Server:
    return make_server(ALLOCATOR_WORKERS="1", ALLOCATOR_SYNC_TIME_LIMIT="2",
                       ALLOCATOR_MAX_TASKS="5000", ALLOCATOR_MAX_BODY_BYTES=str(16 << 20))


def test_large_bodies_work_on_every_route(big_server: Server) -> None:
    from api.bodies import INLINE_BODY_BYTES

    snap = big_snapshot(3000)
    assert len(json.dumps(snap)) > INLINE_BODY_BYTES
    with big_server.client() as c:
        r = c.post("/v1/solve", json={"snapshot": snap, "solver": "greedy"})
        assert r.status_code == 200, r.text
        plan = r.json()
        assert len(plan["assignments"]) == 3000
        r = c.post("/v1/validate", json={"snapshot": snap, "plan": plan})
        assert r.status_code == 200 and r.json()["valid"] is True, r.text
        r = c.post("/v1/bottlenecks", json={"snapshot": snap, "plan": plan})
        assert r.status_code == 200, r.text
        strict_json(r.text)
        r = c.post("/v1/jobs", json={"snapshot": snap, "solver": "greedy"})
        assert r.status_code == 202 and r.headers["location"].startswith("/v1/jobs/"), r.text
        assert wait_final(c, r.json()["id"])["state"] == "succeeded"


@pytest.mark.parametrize(("make_body", "field"), [
    (lambda: {"snapshot": big_snapshot(20_000)}, "snapshot.tasks"),
    (lambda: {"snapshot": {**big_snapshot(3000), "time": math.inf}}, "snapshot.time"),
    (lambda: {"snapshot": big_snapshot(3000), "solver": ""}, "solver"),
    (lambda: big_snapshot(3000), "snapshot"),  # a bare snapshot: the wrapper is missing
    (lambda: {"snapshot": {**big_snapshot(3000), "weights": {"cost": 1e300}}},
     "snapshot.weights.cost"),
])
def test_large_bad_bodies_are_422_naming_the_field(big_server: Server, make_body: Any,
                                                   field: str) -> None:
    with big_server.client() as c:
        text = json.dumps(make_body())
        r = c.post("/v1/solve", content=text, headers={"content-type": "application/json"})
        body = assert_error(r, 422, "invalid_input")
        assert body["field"] == field, body


def test_large_malformed_and_nested_bodies_are_422(big_server: Server) -> None:
    with big_server.client() as c:
        for text in ["[" * 400_000 + "]" * 400_000, '{"snapshot": ' + "x" * 400_000]:
            r = c.post("/v1/jobs", content=text, headers={"content-type": "application/json"})
            assert_error(r, 422, "invalid_input")


def test_small_deeply_nested_body_is_422(client: httpx.Client) -> None:
    for path in ("/v1/solve", "/v1/validate", "/v1/jobs"):
        r = client.post(path, content="[" * 50_000 + "]" * 50_000,
                        headers={"content-type": "application/json"})
        assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize(("case", "path", "value", "field"), EDGES, ids=[e[0] for e in EDGES])
def test_the_api_takes_and_refuses_what_the_cli_does(client: httpx.Client, case: str,
                                                     path: str, value: Any,
                                                     field: str | None) -> None:
    """The models' one limit (tests/test_magnitude_limits.py, the CLI side): the API
    refused 1e12 and speed 1e-9 (its own 1e9 and [1e-6, 1e6]) where the CLI took them."""
    r = client.post("/v1/solve", json={"snapshot": edit(path, value), "solver": "greedy"})
    if field is None:
        assert r.status_code == 200, r.text
    else:
        assert assert_error(r, 422, "invalid_input")["field"] == f"snapshot.{field}"


def test_rebalance_body_counts_go_to_the_models_limit(client: httpx.Client) -> None:
    body = {"snapshot": edit("tasks.1.current_agent", "b"), "time_limit": 1}
    assert client.post("/v1/rebalance", json={**body, "max_migrations": 10**15}
                       ).status_code == 200
    err = assert_error(client.post("/v1/rebalance", json={**body, "max_migrations": 10**15 + 1}),
                       422, "invalid_input")
    assert err["field"] == "max_migrations"


@pytest.mark.parametrize("n_tasks", [4, 3000], ids=["inline body", "parser-process body"])
def test_a_repeated_key_is_422_naming_its_path(client: httpx.Client, n_tasks: int) -> None:
    """Two "capacity" keys in one agent: the standard reader kept the last, silently
    (tests/test_duplicate_keys.py has the other front ends)."""
    text = json.dumps({"snapshot": small_snapshot(n_tasks), "solver": "greedy"})
    body = text.replace('"capacity": {"cpu": 4}',
                        '"capacity": {"cpu": 1}, "capacity": {"cpu": 4}', 1).encode()
    assert (len(body) > 128 * 1024) == (n_tasks > 4)
    for path in ("/v1/solve", "/v1/jobs", "/v1/rebalance"):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        err = assert_error(r, 422, "invalid_input")
        assert err["field"] == "snapshot.agents.0.capacity", (path, err)
        assert "duplicate key 'capacity'" in err["message"]
