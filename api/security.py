"""API keys (bearer tokens, compared in constant time) and the request body limit."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Routes that never need a key: liveness and readiness probes.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


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


class McpGate:
    """Send /mcp requests to the MCP app, behind the same API keys as every route."""

    def __init__(self, app: ASGIApp, mcp_app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.mcp_app = mcp_app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/mcp" or path.startswith("/mcp/")):
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not key_ok(auth, self.keys):
                await _send_error(send, 401, "unauthorized", "missing or invalid API key",
                                  [(b"www-authenticate", b"Bearer")])
                return
            await self.mcp_app(scope, receive, send)
            return
        await self.app(scope, receive, send)
