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
from typing import Any

from fastapi import FastAPI
from mcp.server.transport_security import TransportSecuritySettings

from api.errors import install_error_handlers
from api.mcp_server import build_mcp, strict_mcp_app
from api.metrics import Metrics, MetricsMiddleware
from api.routers import ROUTERS
from api.security import LOOPBACK_HOSTS, BodyLimitMiddleware, HostGate, KeyGate
from api.service import Service
from api.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """Solve task-allocation snapshots: synchronously (`POST /v1/solve`) or as
persistent jobs (`/v1/jobs`). Every error has one JSON shape: `{type, message, field}`.
See docs/api.md."""


def make_live(settings: Settings) -> Any:
    """The live coordination service configured from the settings (started by the lifespan)."""
    from allocator.live.coordinator import LiveOptions
    from allocator.live.service import LiveService, ResolveOptions
    from allocator.online.admission import AdmissionConfig
    from models import Priority

    caps = {}
    for name, cap in settings.live_queue_caps.items():
        try:
            caps[Priority(name)] = cap
        except ValueError:
            raise ValueError(f"live_queue_caps: unknown priority class {name!r} (known: "
                             f"{', '.join(p.value for p in Priority)})") from None
    options = LiveOptions(policy=settings.live_policy, tenant_weights=settings.live_tenant_weights,
                          lease_s=settings.live_lease_s, seed=settings.live_seed,
                          max_retries=settings.live_max_retries,
                          admission=AdmissionConfig(class_caps=caps) if caps else None)
    resolve = ResolveOptions(every=settings.live_coordinate_every or None,
                             imbalance=settings.live_imbalance or None,
                             solver=settings.live_solver)
    return LiveService(settings.database_url, options, resolve=resolve)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    for name in settings.plugins:
        importlib.import_module(name)
    metrics = Metrics()
    service = Service(settings, metrics=metrics)
    mcp = build_mcp(lambda: service)
    mcp_app = None
    if settings.mcp_http:
        mcp_app = strict_mcp_app(mcp.streamable_http_app(
            streamable_http_path="/mcp",
            transport_security=TransportSecuritySettings(
                allowed_hosts=[*(f"{h}:*" for h in LOOPBACK_HOSTS), *settings.allowed_hosts,
                               *settings.mcp_hosts],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*",
                                 "http://[::1]:*"]),
        ))

    live = make_live(settings) if settings.live else None
    service.live_service = live

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            if live is not None:
                await live.start()
            if mcp_app is not None:
                async with mcp.session_manager.run():
                    yield
            else:
                yield
        finally:
            if live is not None:
                await live.close()
            await service.close()

    app = FastAPI(title="allocator", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    app.state.live = live
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if live is not None:
        from api.routers import live as live_routes

        app.include_router(live_routes.router)
        metrics.watch_live(lambda: live.c.metrics_snapshot() if live.coord else None)
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
