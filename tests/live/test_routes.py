"""The live routes in-process: hostile input is a 4xx naming the field; a restart replays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings


def client(db: Path, **kw: Any) -> TestClient:
    s = Settings(workers=1, database_url=f"sqlite:///{db}", live_coordinate_every=0,
                 live_imbalance=0, **kw)
    return TestClient(create_app(s), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One service for the module's request checks: they are refused and change nothing."""
    with client(tmp_path_factory.mktemp("live") / "live.db") as c:
        yield c


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/tasks", {"id": "a", "work": -1}, "work"),
    ("/v1/tasks", {"id": "a", "priority": "urgent"}, "priority"),
    ("/v1/tasks", {"id": "a b"}, "id"),
    ("/v1/tasks", {"id": "a", "bogus": 1}, "bogus"),
    ("/v1/tasks", {"tasks": [{"id": "a"}, {"id": "b", "deadline": 0}]}, "tasks.1.deadline"),
    ("/v1/tasks", {"tasks": []}, "tasks"),
    ("/v1/tasks", [{"id": "a", "demand": {"cpu": -1}}], "tasks.0.demand"),
    ("/v1/tasks", {"id": "a", "payload": 3}, "payload"),
    ("/v1/agents", {"id": "w", "concurrency": 0}, "concurrency"),
    ("/v1/agents", {"id": "w", "speed": "fast"}, "speed"),
    ("/v1/agents", {"capacity": {"cpu": 1}}, "id"),
    ("/v1/agents/w/pull", {"max": 5000}, "max"),
    ("/v1/agents/w/pull", {"acks": [{"task": "t", "attempt": 0}]}, "acks.0.attempt"),
    ("/v1/agents/w/heartbeat", {"status": "gone"}, "status"),
    ("/v1/tasks/t/complete", {"attempt": 1, "outcome": "meh"}, "outcome"),
    ("/v1/tasks/t/complete", {"outcome": "ok"}, "attempt"),
])
def test_hostile_bodies_are_422_with_the_field(live: TestClient, path: str, body: Any,
                                               field: str) -> None:
    r = live.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()


@pytest.mark.parametrize("raw", [b"{", b"null", b"3", b'"x"', b"[1]", b"\xff"])
def test_malformed_submits_are_422(live: TestClient, raw: bytes) -> None:
    r = live.post("/v1/tasks", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"type", "message", "field"}


def test_unknown_ids_are_404(live: TestClient) -> None:
    assert live.post("/v1/agents/ghost/pull", json={"wait": 0}).status_code == 404
    assert live.post("/v1/agents/ghost/heartbeat").status_code == 404
    assert live.get("/v1/tasks/ghost").status_code == 404
    assert live.delete("/v1/tasks/ghost").status_code == 404
    assert live.post("/v1/tasks/ghost/complete", json={"attempt": 1}).status_code == 404


def test_a_restart_replays_tasks_leases_and_results(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    with client(db, live_tenant_weights="gold=3") as c:
        assert c.post("/v1/agents", json={"id": "w", "concurrency": 2}).status_code == 201
        r = c.post("/v1/tasks", json=[{"id": f"t{i}", "payload": f"p{i}", "tenant": "gold"}
                                      for i in range(5)])
        assert r.status_code == 202
        assert [t["state"] for t in r.json()["tasks"]] == ["assigned"] * 2 + ["queued"] * 3
        got = c.post("/v1/agents/w/pull", json={"max": 2, "wait": 0}).json()["tasks"]
        assert [t["payload"] for t in got] == ["p0", "p1"]
        done = c.post("/v1/agents/w/pull", json={"max": 1, "wait": 0, "acks": [
            {"task": "t0", "attempt": 1, "result": "r0", "tokens": 7}]}).json()
        assert done["acks"] == {"accepted": 1, "late": 0}
        before = {t["id"]: t for t in c.get("/v1/tasks").json()["tasks"]}
    with client(db, live_tenant_weights="gold=3") as c:  # a new process on the same store
        after = {t["id"]: t for t in c.get("/v1/tasks").json()["tasks"]}
        assert after == before
        assert c.get("/v1/tasks/t0").json()["result"] == "r0"
        # t1 is still leased to w (re-leased for a full lease): its result counts once.
        assert c.post("/v1/tasks/t1/complete", json={"attempt": 1}).json()["accepted"]
        assert not c.post("/v1/tasks/t1/complete", json={"attempt": 1}).json()["accepted"]
        q = c.get("/v1/queues").json()
        assert q["tokens_by_tenant"] == {"gold": 7.0}
        assert q["stats"]["late_completions"] == 1
        assert q["stats"]["replayed_events"] > 0
        metrics = c.get("/metrics").text
        assert 'allocator_live_queue_depth{priority="normal"}' in metrics
        assert 'allocator_live_tenant_tokens_total{tenant="gold"} 7.0' in metrics


def test_live_off_serves_no_live_routes(tmp_path: Path) -> None:
    with client(tmp_path / "x.db", live=False) as c:
        assert c.get("/v1/queues").status_code == 404
        assert c.get("/healthz").status_code == 200


def test_mcp_tools_read_and_submit(tmp_path: Path) -> None:
    from api.mcp_server import build_mcp

    with client(tmp_path / "mcp.db") as c:
        mcp = build_mcp(lambda: c.app.state.service)  # type: ignore[attr-defined]
        assert c.portal is not None

        async def call(name: str, args: dict[str, Any]) -> Any:
            return (await mcp.call_tool(name, args))

        c.post("/v1/agents", json={"id": "w", "concurrency": 1})
        got = c.portal.call(call, "live_submit", {"tasks": [
            {"id": "m1", "priority": "critical", "tenant": "t"}, {"id": "m2"}]})
        assert "m1" in str(got) and "assigned" in str(got)
        loads = str(c.portal.call(call, "live_loads", {}))
        assert '"w"' in loads or "'w'" in loads
        kpis = str(c.portal.call(call, "live_kpis", {}))
        assert "queued" in kpis and "waits" in kpis
        assert "critical" in str(c.portal.call(call, "live_queues", {}))


@pytest.mark.anyio
async def test_mcp_live_tools_name_bad_fields_and_need_a_live_service() -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    from api.mcp_server import build_mcp

    class NoLive:
        live_service = None

    mcp = build_mcp(lambda: NoLive())  # type: ignore[arg-type,return-value]
    with pytest.raises(ToolError, match=r"invalid_input: .*\(field tasks\.0\.work\)"):
        await mcp.call_tool("live_submit", {"tasks": [{"id": "x", "work": -2}]})
    with pytest.raises(ToolError, match="live service runs inside"):
        await mcp.call_tool("live_loads", {})


def test_registration_states_the_body_limit(tmp_path: Path) -> None:
    """An agent cannot split its acks under a limit it does not know."""
    with client(tmp_path / "live.db", max_body_bytes=65536) as c:
        got = c.post("/v1/agents", json={"id": "w"})
        assert got.status_code == 201
        assert got.json()["max_body_bytes"] == 65536
