"""API keys: every route but the health probes needs one when keys are configured."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.security import key_ok
from tests.api.conftest import small_snapshot


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        pytest.param(None, False, id="no header"),
        pytest.param("Bearer k2", True, id="second key"),
        pytest.param("bearer k1", True, id="scheme is case-insensitive"),
        pytest.param("Bearer k3", False, id="wrong key"),
        pytest.param("Basic k1", False, id="wrong scheme"),
        pytest.param("Bearer ", False, id="empty token"),
    ],
)
def test_key_ok(header: str | None, ok: bool) -> None:
    assert key_ok(header, ["k1", "k2"]) is ok
    assert key_ok(header, []) is True  # no keys configured: open


def test_routes_need_a_key_when_keys_are_set(make_server: Any) -> None:
    server = make_server(ALLOCATOR_API_KEYS="k1,k2", ALLOCATOR_WORKERS="1")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        for method, path in [("GET", "/v1/solvers"), ("GET", "/v1/jobs"),
                             ("GET", "/v1/jobs/x"), ("DELETE", "/v1/jobs/x"),
                             ("GET", "/metrics"), ("POST", "/v1/solve"),
                             ("POST", "/v1/validate"), ("POST", "/mcp"),
                             ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/redoc")]:
            for headers in ({}, {"authorization": "Bearer nope"}):
                r = c.request(method, path, headers=headers, json={})
                assert r.status_code == 401, (method, path, r.text)
                assert r.json()["type"] == "unauthorized"
        good = {"authorization": "Bearer k2"}
        assert c.get("/v1/solvers", headers=good).status_code == 200
        assert c.get("/metrics", headers=good).status_code == 200
        assert c.get("/openapi.json", headers=good).json()["info"]["title"] == "allocator"
        assert c.get("/docs", headers=good).status_code == 200
        r = c.post("/v1/solve", headers=good, json={"snapshot": small_snapshot()})
        assert r.status_code == 200, r.text
