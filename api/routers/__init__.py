"""One router per resource. `ROUTERS` is the list the app includes, in order.

Extension point: a capability (rebalance, pareto, simulate, bottlenecks)
gets its own module here exposing `router`, and one line in `ROUTERS`.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.routers import health, jobs, metrics, solve, solvers, validate

ROUTERS: list[APIRouter] = [
    health.router,
    solve.router,
    jobs.router,
    validate.router,
    solvers.router,
    metrics.router,
]
