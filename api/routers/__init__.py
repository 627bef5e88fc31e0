"""One router per resource. `ROUTERS` is the list the app includes, in order.

Capabilities beyond solve (rebalance, pareto, simulate, and bottlenecks once
it exists) live in `capabilities`, which adds a route only for what the
engine has (see api.capabilities).
"""

from __future__ import annotations

from fastapi import APIRouter

from api.routers import capabilities, health, jobs, metrics, solve, solvers, validate

ROUTERS: list[APIRouter] = [
    health.router,
    solve.router,
    jobs.router,
    validate.router,
    solvers.router,
    capabilities.router,
    metrics.router,
]
