"""API keys (bearer tokens, compared in constant time), the Host allow-list and the body limit."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Routes that never need a key: liveness and readiness probes.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
#: FastAPI's documentation routes: behind the keys when keys are set.
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
#: Host header values every server accepts (any port): loopback only.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def key_ok(authorization: str | None, keys: list[str]) -> bool:
    """Whether an Authorization header carries one of `keys` (every key is compared)."""
    if not keys:
        return True
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = token.strip().encode()
    ok = False
    for k in keys:  # no early exit: the time taken does not depend on which key matched
        ok |= hmac.compare_digest(given, k.encode())
    return ok


async def _send_error(send: Send, status: int, type_: str, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"type": type_, "message": message, "field": None}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse request bodies over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int, on_reject: object = None) -> None:
        self.app = app
        self.limit = limit
        self.on_reject = on_reject

    async def _reject(self, send: Send) -> None:
        if callable(self.on_reject):
            self.on_reject()
        await _send_error(send, 413, "body_too_large",
                          f"request body larger than {self.limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                too_big = True
            if too_big:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return
        # Streamed (chunked) body: read it up to the limit, then replay it.
        messages: list[Message] = []
        size = 0
        while True:
            msg = await receive()
            messages.append(msg)
            if msg["type"] != "http.request":
                break
            size += len(msg.get("body", b""))
            if size > self.limit:
                await self._reject(send)
                return
            if not msg.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Whether a Host header value matches the allow-list.

    Entries are `name` or `name:port`; `name:*` (or a bare name) allows any
    port, `*` allows everything (a server behind a proxy that checks Host).
    """
    host = host.strip().lower()
    if not host:
        return False
    name, port = _split_host(host)
    for entry in allowed:
        e = entry.strip().lower()
        if e == "*":
            return True
        e_name, e_port = _split_host(e)
        if e_name == name and e_port in ("", "*", port):
            return True
    return False


def _split_host(host: str) -> tuple[str, str]:
    """`name[:port]` or `[v6]:port` into (name, port); port is "" when absent."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return f"[{name}]", rest.removeprefix(":")
    name, _, port = host.partition(":")
    return name, port


class HostGate:
    """Refuse requests whose Host header is not allowed (DNS rebinding), on every route.

    A browser tricked into resolving `evil.example` to 127.0.0.1 still sends
    `Host: evil.example`; answering only the allowed names keeps a keyless
    local server out of reach of web pages. Health probes are checked too:
    orchestrators address the server by a name the operator allows.
    """

    def __init__(self, app: ASGIApp, allowed: list[str], on_reject: object = None) -> None:
        self.app = app
        self.allowed = [*(f"{h}:*" for h in LOOPBACK_HOSTS), *allowed]
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.allowed):
                if callable(self.on_reject):
                    self.on_reject()
                await _send_error(send, 421, "host_not_allowed",
                                  f"Host {host[:100]!r} is not allowed on this server "
                                  "(settings: allowed_hosts)")
                return
        await self.app(scope, receive, send)


class KeyGate:
    """/mcp (sent to the MCP app) and the OpenAPI docs, behind the same keys as every route.

    The routers check keys through a dependency; these paths are not routers'
    (FastAPI's own docs routes, the mounted MCP app), so they are gated here.
    """

    def __init__(self, app: ASGIApp, mcp_app: ASGIApp | None, keys: list[str]) -> None:
        self.app = app
        self.mcp_app = mcp_app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        is_mcp = self.mcp_app is not None and (path == "/mcp" or path.startswith("/mcp/"))
        if scope["type"] == "http" and (is_mcp or path in DOC_PATHS):
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not key_ok(auth, self.keys):
                await _send_error(send, 401, "unauthorized", "missing or invalid API key",
                                  [(b"www-authenticate", b"Bearer")])
                return
            if is_mcp:
                assert self.mcp_app is not None
                await self.mcp_app(scope, receive, send)
                return
        await self.app(scope, receive, send)
