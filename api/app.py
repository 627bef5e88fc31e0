"""The FastAPI application factory.

`create_app(settings)` wires the routers, the error handlers, metrics, the
body limit, API keys and the MCP streamable HTTP app under /mcp; the
`lifespan` creates what lives as long as the process: the job store
(migrated, jobs recovered), the worker pool and the MCP session manager.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from mcp.server.transport_security import TransportSecuritySettings

from api.errors import install_error_handlers
from api.mcp_server import build_mcp
from api.metrics import Metrics, MetricsMiddleware
from api.routers import ROUTERS
from api.security import LOOPBACK_HOSTS, BodyLimitMiddleware, HostGate, KeyGate
from api.service import Service
from api.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """Solve task-allocation snapshots: synchronously (`POST /v1/solve`) or as
persistent jobs (`/v1/jobs`). Every error has one JSON shape: `{type, message, field}`.
See docs/api.md."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    for name in settings.plugins:
        importlib.import_module(name)
    metrics = Metrics()
    service = Service(settings, metrics=metrics)
    mcp = build_mcp(lambda: service)
    mcp_app = None
    if settings.mcp_http:
        mcp_app = mcp.streamable_http_app(
            streamable_http_path="/mcp",
            transport_security=TransportSecuritySettings(
                allowed_hosts=[*(f"{h}:*" for h in LOOPBACK_HOSTS), *settings.allowed_hosts,
                               *settings.mcp_hosts],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*",
                                 "http://[::1]:*"]),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            if mcp_app is not None:
                async with mcp.session_manager.run():
                    yield
            else:
                yield
        finally:
            await service.close()

    app = FastAPI(title="allocator", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(KeyGate, mcp_app=mcp_app, keys=settings.api_keys)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes,
                       on_reject=lambda: metrics.rejected.labels("body_too_large").inc())
    app.add_middleware(HostGate, allowed=[*settings.allowed_hosts, *settings.mcp_hosts],
                       on_reject=lambda: metrics.rejected.labels("host_not_allowed").inc())
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
