"""Every status code the OpenAPI schema documents, for every route, is requested at least once.

The (method, path, code) triples come from the server's own `/openapi.json`
(each operation's `responses`), not from a hand list: a route or a documented
code added later without a request here fails `test_every_documented_code_has_a_request`.
Each request is made against a real server and must answer exactly its code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import small_snapshot

KEY = "status-key"
GOOD = {"authorization": f"Bearer {KEY}"}
BAD = {"authorization": "Bearer wrong"}
LONG_ID = "j" * 65  # JobId allows 1..64 characters
MISSING = "no-such-job"

Call = Callable[[httpx.Client, dict[str, Any]], httpx.Response]


def documented(schema: dict[str, Any]) -> set[tuple[str, str, int]]:
    out = set()
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for code in op.get("responses", {}):
                out.add((method.upper(), path, int(code)))
    return out


def _post(path: str, body: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]],
          headers: dict[str, str] = GOOD) -> Call:
    def call(c: httpx.Client, ctx: dict[str, Any]) -> httpx.Response:
        return c.post(path, json=body(ctx) if callable(body) else body, headers=headers)
    return call


def _get(path: str | Callable[[dict[str, Any]], str], headers: dict[str, str] = GOOD,
         method: str = "GET") -> Call:
    def call(c: httpx.Client, ctx: dict[str, Any]) -> httpx.Response:
        return c.request(method, path(ctx) if callable(path) else path, headers=headers)
    return call


def _big(c: httpx.Client, path: str) -> httpx.Response:
    return c.post(path, content=b'{"snapshot": "' + b"x" * 70_000 + b'"}',
                  headers={**GOOD, "content-type": "application/json"})


SNAP = small_snapshot()
CAPS = {
    "/v1/rebalance": {"snapshot": SNAP, "max_migrations": 1},
    "/v1/pareto": {"snapshot": SNAP, "exact": True},
    "/v1/simulate": {"workload": {"tasks": 40, "agents": 2}, "policies": ["fifo"]},
    "/v1/bottlenecks": {"snapshot": SNAP, "solver": "greedy"},
}
BAD_BODY = {"snapshot": {"agents": "not a list"}}


def recipes(have: set[str]) -> dict[tuple[str, str, int], Call]:
    """One request per documented (method, path, code) that answers exactly that code.

    Phase "busy" (the only worker held by a sleeping job, one sync call
    waiting) makes the 409 and 429 answers; the others run when idle.
    """
    r: dict[tuple[str, str, int], Call] = {
        ("GET", "/healthz", 200): _get("/healthz", {}),
        ("GET", "/readyz", 200): _get("/readyz", {}),
        ("GET", "/metrics", 200): _get("/metrics"),
        ("GET", "/metrics", 401): _get("/metrics", BAD),
        ("GET", "/v1/solvers", 200): _get("/v1/solvers"),
        ("GET", "/v1/solvers", 401): _get("/v1/solvers", {}),
        ("POST", "/v1/solve", 200): _post("/v1/solve", {"snapshot": SNAP}),
        ("POST", "/v1/solve", 401): _post("/v1/solve", {"snapshot": SNAP}, BAD),
        ("POST", "/v1/solve", 413): lambda c, ctx: _big(c, "/v1/solve"),
        ("POST", "/v1/solve", 422): _post("/v1/solve", BAD_BODY),
        ("POST", "/v1/jobs", 202): _post("/v1/jobs", {"snapshot": SNAP, "solver": "greedy"}),
        ("POST", "/v1/jobs", 401): _post("/v1/jobs", {"snapshot": SNAP}, {}),
        ("POST", "/v1/jobs", 413): lambda c, ctx: _big(c, "/v1/jobs"),
        ("POST", "/v1/jobs", 422): _post("/v1/jobs", BAD_BODY),
        ("GET", "/v1/jobs", 200): _get("/v1/jobs?limit=5"),
        ("GET", "/v1/jobs", 401): _get("/v1/jobs", BAD),
        ("GET", "/v1/jobs", 422): _get("/v1/jobs?limit=0"),
        ("GET", "/v1/jobs/{job_id}", 200): _get(lambda ctx: f"/v1/jobs/{ctx['done']}"),
        ("GET", "/v1/jobs/{job_id}", 401): _get(f"/v1/jobs/{MISSING}", {}),
        ("GET", "/v1/jobs/{job_id}", 404): _get(f"/v1/jobs/{MISSING}"),
        ("GET", "/v1/jobs/{job_id}", 422): _get(f"/v1/jobs/{LONG_ID}"),
        ("GET", "/v1/jobs/{job_id}/plan", 200): _get(lambda ctx: f"/v1/jobs/{ctx['done']}/plan"),
        ("GET", "/v1/jobs/{job_id}/plan", 401): _get(f"/v1/jobs/{MISSING}/plan", BAD),
        ("GET", "/v1/jobs/{job_id}/plan", 404): _get(f"/v1/jobs/{MISSING}/plan"),
        ("GET", "/v1/jobs/{job_id}/plan", 422): _get(f"/v1/jobs/{LONG_ID}/plan"),
        ("DELETE", "/v1/jobs/{job_id}", 200): _get(lambda ctx: f"/v1/jobs/{ctx['done']}",
                                                   method="DELETE"),
        ("DELETE", "/v1/jobs/{job_id}", 401): _get(f"/v1/jobs/{MISSING}", {}, "DELETE"),
        ("DELETE", "/v1/jobs/{job_id}", 404): _get(f"/v1/jobs/{MISSING}", method="DELETE"),
        ("DELETE", "/v1/jobs/{job_id}", 422): _get(f"/v1/jobs/{LONG_ID}", method="DELETE"),
        ("POST", "/v1/validate", 200): _post("/v1/validate", lambda ctx: {
            "snapshot": SNAP, "plan": ctx["plan"]}),
        ("POST", "/v1/validate", 401): _post("/v1/validate", {}, BAD),
        ("POST", "/v1/validate", 413): lambda c, ctx: _big(c, "/v1/validate"),
        ("POST", "/v1/validate", 422): _post("/v1/validate", {"snapshot": SNAP}),
    }
    if "agents" in have:
        r.update(live_recipes())
    for path, body in CAPS.items():
        if path.removeprefix("/v1/") not in have:
            continue
        r[("POST", path, 200)] = _post(path, body)
        r[("POST", path, 401)] = _post(path, body, {})
        r[("POST", path, 413)] = lambda c, ctx, p=path: _big(c, p)  # type: ignore[misc]
        r[("POST", path, 422)] = _post(path, {"workload": {"tasks": -1}, "snapshot": 3})
    return r


def live_recipes() -> dict[tuple[str, str, int], Call]:
    """The live service's routes (docs/live.md), in an order that makes each answer."""
    a, t = "/v1/agents/st-a", "/v1/tasks/st-t1"
    r: dict[tuple[str, str, int], Call] = {
        ("POST", "/v1/agents", 201): _post("/v1/agents", {"id": "st-a"}),
        ("POST", "/v1/agents", 401): _post("/v1/agents", {"id": "st-a"}, BAD),
        ("POST", "/v1/agents", 422): _post("/v1/agents", {"id": "st-a", "concurrency": 0}),
        ("GET", "/v1/agents", 200): _get("/v1/agents"),
        ("GET", "/v1/agents", 401): _get("/v1/agents", {}),
        ("POST", "/v1/tasks", 202): _post("/v1/tasks", {"id": "st-t1", "payload": "x"}),
        ("POST", "/v1/tasks", 401): _post("/v1/tasks", {"id": "st-t2"}, {}),
        ("POST", "/v1/tasks", 422): _post("/v1/tasks", {"tasks": [{"work": -1}]}),
        ("GET", "/v1/tasks", 200): _get("/v1/tasks?state=running"),
        ("GET", "/v1/tasks", 401): _get("/v1/tasks", BAD),
        ("GET", "/v1/tasks", 422): _get("/v1/tasks?state=sleeping"),
        ("GET", "/v1/tasks/{task_id}", 200): _get(t),
        ("GET", "/v1/tasks/{task_id}", 401): _get(t, {}),
        ("GET", "/v1/tasks/{task_id}", 404): _get("/v1/tasks/nope"),
        ("GET", "/v1/tasks/{task_id}", 422): _get("/v1/tasks/a%20b"),
        ("POST", "/v1/agents/{agent_id}/heartbeat", 200): _post(f"{a}/heartbeat", {}),
        ("POST", "/v1/agents/{agent_id}/heartbeat", 401): _post(f"{a}/heartbeat", {}, {}),
        ("POST", "/v1/agents/{agent_id}/heartbeat", 404): _post("/v1/agents/no/heartbeat", {}),
        ("POST", "/v1/agents/{agent_id}/heartbeat", 422): _post(f"{a}/heartbeat",
                                                                {"status": "asleep"}),
        ("POST", "/v1/agents/{agent_id}/pull", 200): _post(f"{a}/pull", {"max": 1, "wait": 1}),
        ("POST", "/v1/agents/{agent_id}/pull", 401): _post(f"{a}/pull", {}, BAD),
        ("POST", "/v1/agents/{agent_id}/pull", 404): _post("/v1/agents/no/pull", {"wait": 0}),
        ("POST", "/v1/agents/{agent_id}/pull", 422): _post(f"{a}/pull", {"max": 0}),
        ("POST", "/v1/tasks/{task_id}/complete", 200): _post(f"{t}/complete", {"attempt": 1}),
        ("POST", "/v1/tasks/{task_id}/complete", 401): _post(f"{t}/complete", {"attempt": 1},
                                                             {}),
        ("POST", "/v1/tasks/{task_id}/complete", 404): _post("/v1/tasks/no/complete",
                                                             {"attempt": 1}),
        ("POST", "/v1/tasks/{task_id}/complete", 422): _post(f"{t}/complete", {"attempt": 0}),
        ("DELETE", "/v1/tasks/{task_id}", 200): _get(t, method="DELETE"),
        ("DELETE", "/v1/tasks/{task_id}", 401): _get(t, BAD, "DELETE"),
        ("DELETE", "/v1/tasks/{task_id}", 404): _get("/v1/tasks/nope", method="DELETE"),
        ("DELETE", "/v1/tasks/{task_id}", 422): _get("/v1/tasks/a%20b", method="DELETE"),
        ("GET", "/v1/queues", 200): _get("/v1/queues"),
        ("GET", "/v1/queues", 401): _get("/v1/queues", {}),
        ("DELETE", "/v1/agents/{agent_id}", 200): _get(a, method="DELETE"),
        ("DELETE", "/v1/agents/{agent_id}", 401): _get(a, {}, "DELETE"),
        ("DELETE", "/v1/agents/{agent_id}", 404): _get("/v1/agents/no", method="DELETE"),
        ("DELETE", "/v1/agents/{agent_id}", 422): _get("/v1/agents/a%20b", method="DELETE"),
    }
    return r


def busy_recipes(have: set[str]) -> dict[tuple[str, str, int], Call]:
    """Answers that need the worker busy: 409 (no plan yet) and 429 (over capacity)."""
    r: dict[tuple[str, str, int], Call] = {
        ("GET", "/v1/jobs/{job_id}/plan", 409): _get(lambda ctx: f"/v1/jobs/{ctx['queued']}/plan"),
        ("POST", "/v1/jobs", 429): _post("/v1/jobs", {"snapshot": SNAP}),
        ("POST", "/v1/solve", 429): _post("/v1/solve", {"snapshot": SNAP}),
    }
    for path, body in CAPS.items():
        if path.removeprefix("/v1/") in have:
            r[("POST", path, 429)] = _post(path, body)
    return r


def readyz_not_ready() -> httpx.Response:
    """503 of /readyz: an app whose service has not started (no lifespan run) is not ready."""
    client = TestClient(create_app(Settings(workers=1)), base_url="http://127.0.0.1")
    return client.get("/readyz")  # type: ignore[return-value]


def _wait(c: httpx.Client, job: str, states: set[str], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = c.get(f"/v1/jobs/{job}", headers=GOOD).json()
        if body["state"] in states:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job} never reached {states}")


@pytest.fixture(scope="module")
def server(make_server: Any) -> Any:
    return make_server(ALLOCATOR_API_KEYS=KEY, ALLOCATOR_WORKERS="1", ALLOCATOR_MAX_QUEUE="2",
                       ALLOCATOR_MAX_SYNC_WAITING="1", ALLOCATOR_MAX_BODY_BYTES="65536",
                       ALLOCATOR_SYNC_TIME_LIMIT="2")


def test_every_documented_code_has_a_request(server: Any) -> None:
    schema = httpx.get(f"{server.url}/openapi.json", headers=GOOD).json()
    have = {p.removeprefix("/v1/") for p in schema["paths"]}
    covered = set(recipes(have)) | set(busy_recipes(have)) | {("GET", "/readyz", 503)}
    assert documented(schema) - covered == set(), "documented but never requested"
    assert covered - documented(schema) == set(), "requested but not documented"
    assert ("GET", "/v1/jobs/{job_id}/plan", 409) in documented(schema)


def test_every_documented_code_is_answered(server: Any) -> None:
    schema = httpx.get(f"{server.url}/openapi.json", headers=GOOD).json()
    have = {p.removeprefix("/v1/") for p in schema["paths"]}
    wrong: list[str] = []
    with httpx.Client(base_url=server.url, timeout=60) as c:
        ctx: dict[str, Any] = {}
        # Busy: a sleeping job holds the only worker, a second job waits (no plan: 409),
        # one synchronous solve waits for the worker (the next sync call: 429).
        sleeper = c.post("/v1/jobs", headers=GOOD, json={
            "snapshot": SNAP, "solver": "test:sleep", "time_limit": 5}).json()["id"]
        _wait(c, sleeper, {"running"})
        ctx["queued"] = c.post("/v1/jobs", headers=GOOD, json={"snapshot": SNAP}).json()["id"]
        waiting = threading.Thread(target=lambda: c.post("/v1/solve", headers=GOOD,
                                                         json={"snapshot": SNAP}))
        waiting.start()
        deadline = time.monotonic() + 30
        while c.get("/readyz").json()["queue_depth"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        for (method, path, code), call in busy_recipes(have).items():
            r = call(c, ctx)
            if r.status_code != code:
                wrong.append(f"{method} {path}: {r.status_code} != {code} ({r.text[:200]})")
            elif code == 429:
                assert int(r.headers["retry-after"]) >= 1, (method, path)
        assert c.delete(f"/v1/jobs/{sleeper}", headers=GOOD).status_code == 200
        waiting.join(60)
        _wait(c, ctx["queued"], {"succeeded"})
        # Idle: everything else.
        done = c.post("/v1/jobs", headers=GOOD, json={"snapshot": SNAP, "solver": "greedy"})
        ctx["done"] = done.json()["id"]
        _wait(c, ctx["done"], {"succeeded"})
        ctx["plan"] = c.get(f"/v1/jobs/{ctx['done']}/plan", headers=GOOD).json()
        for (method, path, code), call in recipes(have).items():
            r = call(c, ctx)
            if r.status_code != code:
                wrong.append(f"{method} {path}: {r.status_code} != {code} ({r.text[:200]})")
            elif code >= 400:
                assert set(r.json()) >= {"type", "message"}, (method, path, r.text)
    r = readyz_not_ready()
    if r.status_code != 503:
        wrong.append(f"GET /readyz: {r.status_code} != 503")
    assert wrong == []
