"""API keys, the Host allow-list and the body limit, in process (fast; mutation-tested).

`test_every_route_needs_a_key` walks `app.routes` of a real app, so a router
added (or a router that loses its key dependency) is covered without a list
to update. The middlewares are driven as plain ASGI callables.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from api.app import create_app
from api.security import (
    DOC_PATHS,
    PUBLIC_PATHS,
    BodyLimitMiddleware,
    HostGate,
    KeyGate,
    _split_host,
    host_allowed,
    key_ok,
)
from api.settings import Settings

KEYS = ["k1", "second-key"]


# -- every route of the app ------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_app() -> Any:
    return create_app(Settings(api_keys=KEYS, workers=1))


def _flat(routes: list[Any]) -> list[Any]:
    """Routes with included routers expanded (FastAPI >= 0.165 keeps them nested)."""
    out = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        out += _flat(inner.routes) if inner is not None else [r]
    return out


def app_routes(app: Any) -> list[tuple[str, str]]:
    """(method, concrete path) of every route but the health probes, read from app.routes."""
    out = []
    for r in _flat(app.routes):
        if isinstance(r, Mount):
            out.append(("POST", r.path))
            continue
        if not isinstance(r, APIRoute | Route) or r.path in PUBLIC_PATHS:
            continue
        path = re.sub(r"\{[^}]+\}", "x", r.path)
        for m in sorted(r.methods or {"GET"}):
            if m != "HEAD":
                out.append((m, path))
    return out


def test_the_route_walk_sees_every_router(keyed_app: Any) -> None:
    paths = {p for _, p in app_routes(keyed_app)}
    assert {"/v1/solve", "/v1/jobs", "/v1/jobs/x", "/v1/jobs/x/plan", "/v1/validate",
            "/v1/solvers", "/metrics", "/openapi.json", "/docs"} <= paths
    assert not paths & PUBLIC_PATHS
    # The walk misses nothing the OpenAPI schema (built by FastAPI itself) lists.
    schema_paths = {re.sub(r"\{[^}]+\}", "x", p) for p in keyed_app.openapi()["paths"]}
    assert schema_paths - PUBLIC_PATHS <= paths
    from api.capabilities import available

    for cap in available():
        assert f"/v1/{cap}" in paths


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer nope"},
                                     {"authorization": "Basic k1"}],
                         ids=["no key", "wrong key", "wrong scheme"])
def test_every_route_needs_a_key(keyed_app: Any, headers: dict[str, str]) -> None:
    client = TestClient(keyed_app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    routes = [*app_routes(keyed_app), ("POST", "/mcp")]
    for method, path in routes:
        r = client.request(method, path, headers=headers, json={})
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        assert r.json()["type"] == "unauthorized"
    for path in PUBLIC_PATHS:  # the probes answer without a key (503: service not started)
        assert client.get(path, headers=headers).status_code in (200, 503)


def test_a_valid_key_passes_every_route(keyed_app: Any) -> None:
    client = TestClient(keyed_app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    for key in KEYS:
        for method, path in app_routes(keyed_app):
            r = client.request(method, path, headers={"authorization": f"Bearer {key}"},
                               json={})
            assert r.status_code != 401, (method, path, r.text[:200])


def test_without_keys_no_route_asks_for_one() -> None:
    app = create_app(Settings(workers=1))
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    for method, path in app_routes(app):
        assert client.request(method, path, json={}).status_code != 401, (method, path)


# -- key_ok ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, False), ("", False), ("Bearer k1", True), ("Bearer second-key", True),
        ("BEARER k1", True), ("Bearer  k1 ", True), ("Bearer k", False), ("Bearer k1x", False),
        ("Bearerk1", False), ("Token k1", False), ("Bearer", False), ("k1", False),
        ("Bearer second-key k1", False),
    ],
)
def test_key_ok(header: str | None, ok: bool) -> None:
    assert key_ok(header, KEYS) is ok
    assert key_ok(header, []) is True


# -- ASGI harness ---------------------------------------------------------------------


class Echo:
    """An inner app that records the call and answers 200 with the body it read."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        if scope["type"] == "http":
            while True:
                msg = await receive()
                body += msg.get("body", b"")
                if not msg.get("more_body", False):
                    break
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})


def call(app: Any, scope: dict[str, Any], chunks: list[bytes] | None = None,
         ) -> tuple[int | None, dict[bytes, bytes], bytes]:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)] if chunks else [
        {"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    asyncio.run(app(scope, receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (start["status"] if start else None,
            dict(start["headers"]) if start else {}, body)


def http(method: str = "POST", path: str = "/x", **headers: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path,
            "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


def error_of(body: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(body)
    assert set(out) == {"type", "message", "field"} and out["field"] is None
    return out


# -- BodyLimitMiddleware ---------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def test_body_limit_by_declared_length() -> None:
    rejected = Counter()
    inner = Echo()
    app = BodyLimitMiddleware(inner, limit=10, on_reject=rejected)
    status, headers, body = call(app, http(content_length="11"), [b"x" * 11])
    assert status == 413 and rejected.n == 1 and inner.calls == 0
    assert error_of(body) == {"type": "body_too_large", "field": None,
                              "message": "request body larger than 10 bytes"}
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(body)).encode()
    assert call(app, http(content_length="10"), [b"x" * 10]) == (
        200, {}, b"x" * 10)
    assert call(app, http(content_length="ten"), [b"x"])[0] == 413
    assert rejected.n == 2


def test_body_limit_on_streamed_bodies() -> None:
    app = BodyLimitMiddleware(Echo(), limit=10)
    assert call(app, http(), [b"12345", b"67890"]) == (200, {}, b"1234567890")
    assert call(app, http(), [b"12345", b"67890", b"1"])[0] == 413
    assert call(app, http(), [b"12345678901"])[0] == 413
    assert call(app, http(), [b"1", b"", b"2"]) == (200, {}, b"12")


def test_body_limit_skips_reads_and_non_http() -> None:
    inner = Echo()
    app = BodyLimitMiddleware(inner, limit=1)
    for method in ("GET", "HEAD", "OPTIONS"):
        assert call(app, http(method, content_length="100"), [b"xx"])[0] == 200
    assert call(app, http("PUT", content_length="2"), [b"xx"])[0] == 413
    assert call(app, http("DELETE", content_length="2"), [b"xx"])[0] == 413
    seen = inner.calls
    asyncio.run(app({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert inner.calls == seen + 1


# -- Host allow-list -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("api.example", ["api.example"], True),
        ("API.Example:8080", ["api.example"], True),
        ("api.example:8080", [" api.example:* "], True),
        ("api.example:8080", ["api.example:8080"], True),
        ("api.example:8081", ["api.example:8080"], False),
        ("api.example", ["api.example:8080"], False),
        ("evil.example", ["api.example"], False),
        ("api.example.evil", ["api.example"], False),
        ("anything:1", ["*"], True),
        ("", ["*"], False),
        ("   ", ["api.example"], False),
        ("[::1]:8000", ["[::1]:*"], True),
        ("[::1]", ["[::1]"], True),
        ("[::2]:8000", ["[::1]:*"], False),
        ("x", [], False),
    ],
)
def test_host_allowed(host: str, allowed: list[str], ok: bool) -> None:
    assert host_allowed(host, allowed) is ok


def test_split_host() -> None:
    assert _split_host("a.b:80") == ("a.b", "80")
    assert _split_host("a.b") == ("a.b", "")
    assert _split_host("[::1]:80") == ("[::1]", "80")
    assert _split_host("[::1]") == ("[::1]", "")
    assert _split_host("[fe80::1]:*") == ("[fe80::1]", "*")


def test_host_gate() -> None:
    rejected = Counter()
    inner = Echo()
    gate = HostGate(inner, ["api.example"], on_reject=rejected)
    for host in ("127.0.0.1:9", "localhost:8000", "[::1]:1", "localhost", "api.example"):
        assert call(gate, http(host=host))[0] == 200, host
    status, _headers, body = call(gate, http(host="evil.example:80"))
    assert status == 421 and rejected.n == 1
    err = error_of(body)
    assert err["type"] == "host_not_allowed" and "'evil.example:80'" in err["message"]
    assert call(gate, http())[0] == 421  # no Host header at all
    assert call(gate, http(host="e" * 300))[0] == 421
    assert "e" * 101 not in error_of(call(gate, http(host="e" * 300))[2])["message"]
    assert rejected.n == 4
    # A websocket is checked the same way; lifespan passes.
    ws = {**http(host="evil.example"), "type": "websocket"}
    assert call(gate, ws)[0] == 421
    calls = inner.calls
    asyncio.run(gate({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert inner.calls == calls + 1


# -- KeyGate (docs and /mcp) -----------------------------------------------------------


def test_key_gate() -> None:
    app, mcp = Echo(), Echo()
    gate = KeyGate(app, mcp, KEYS)
    for path in [*sorted(DOC_PATHS), "/mcp", "/mcp/session"]:
        status, headers, body = call(gate, http("GET", path))
        assert status == 401, path
        assert headers[b"www-authenticate"] == b"Bearer"
        assert error_of(body)["type"] == "unauthorized"
        assert call(gate, http("GET", path, authorization="Bearer nope"))[0] == 401
    assert app.calls == mcp.calls == 0
    assert call(gate, http("GET", "/docs", authorization="Bearer k1"))[0] == 200
    assert (app.calls, mcp.calls) == (1, 0)
    assert call(gate, http("POST", "/mcp", authorization="Bearer second-key"))[0] == 200
    assert call(gate, http("POST", "/mcp/x", authorization="Bearer k1"))[0] == 200
    assert (app.calls, mcp.calls) == (1, 2)
    # Other paths are the routers' business (their dependency checks the key).
    assert call(gate, http("GET", "/v1/solvers"))[0] == 200
    assert call(gate, http("GET", "/mcpx"))[0] == 200
    assert (app.calls, mcp.calls) == (3, 2)
    # Without an MCP app, /mcp is an ordinary path; without keys, everything passes.
    assert call(KeyGate(app, None, KEYS), http("GET", "/mcp"))[0] == 200
    open_gate = KeyGate(app, mcp, [])
    assert call(open_gate, http("GET", "/docs"))[0] == 200
    assert call(open_gate, http("GET", "/mcp"))[0] == 200
    assert mcp.calls == 3
    calls = app.calls
    asyncio.run(gate({"type": "lifespan", "path": "/docs"}, None, None))  # type: ignore[arg-type]
    assert app.calls == calls + 1


def test_key_gate_message_and_path_less_scopes() -> None:
    app, mcp = Echo(), Echo()
    gate = KeyGate(app, mcp, KEYS)
    _, _, body = call(gate, http("GET", "/mcp"))
    assert error_of(body)["message"] == "missing or invalid API key"
    calls = app.calls
    asyncio.run(gate({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert app.calls == calls + 1 and mcp.calls == 0


def test_host_gate_wildcard_still_needs_a_host_and_names_the_setting() -> None:
    gate = HostGate(Echo(), ["*"])
    assert call(gate, http())[0] == 421  # no Host header at all
    assert call(gate, http(host="any.example"))[0] == 200
    _, _, body = call(HostGate(Echo(), []), http(host="evil.example"))
    assert error_of(body)["message"] == (
        "Host 'evil.example' is not allowed on this server (settings: allowed_hosts)")


class ReadsThenWaits(Echo):
    """Reads the body, then waits for the next message (a disconnect), as until_disconnect does."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if msg["type"] != "http.request" or not msg.get("more_body", False):
                break
        after = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body + after["type"].encode()})


def test_streamed_body_is_replayed_then_the_real_receive_takes_over() -> None:
    app = BodyLimitMiddleware(ReadsThenWaits(), limit=10)
    assert call(app, http(), [b"12", b"34"]) == (200, {}, b"1234http.disconnect")


def test_a_client_that_leaves_mid_body_still_reaches_the_app() -> None:
    inner = Echo()
    app = BodyLimitMiddleware(inner, limit=10)
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b"12", "more_body": True},
                {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    asyncio.run(app(http(), receive, send))
    assert inner.calls == 1  # the app sees the disconnect and decides what to do
