"""Prometheus metrics of one app instance (its own registry, so apps never clash)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets (seconds) from sub-millisecond routes to long synchronous solves.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                   5, 10, 30, 60)
SOLVE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
GAP_BUCKETS = (0.0, 0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
#: HTTP methods labelled by name; any other (made-up) method is labelled `other`, so a
#: client cannot create a new time series per request.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _JobsCollector:
    """`allocator_jobs{state}` read from the store at scrape time."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Any:
        g = GaugeMetricFamily("allocator_jobs", "Jobs in the store by state", labels=["state"])
        try:
            for state, n in self._counts().items():
                g.add_metric([state], n)
        except Exception:  # the store being down must not break the scrape
            pass
        yield g


class _LiveCollector:
    """The live service's gauges from a snapshot taken on the event loop (`refresh_live`).

    The scrape itself runs in a thread; reading the coordinator there would race
    with the loop, so /metrics takes the snapshot first and this only formats it.
    """

    def __init__(self) -> None:
        self.snap: dict[str, Any] | None = None

    def collect(self) -> Any:
        s = self.snap
        if not s:
            return
        load = GaugeMetricFamily("allocator_live_agent_load", "Estimated seconds until the "
                                 "agent drains its work", labels=["agent"])
        running = GaugeMetricFamily("allocator_live_agent_running", "Tasks leased to the "
                                    "agent and running", labels=["agent"])
        up = GaugeMetricFamily("allocator_live_agent_up", "1 if the agent is up",
                               labels=["agent"])
        breaker = GaugeMetricFamily("allocator_live_breaker_state", "Circuit breaker of the "
                                    "agent (1 for its current state)",
                                    labels=["agent", "state"])
        tokens_a = CounterMetricFamily("allocator_live_agent_tokens", "Tokens used by tasks "
                                       "on the agent", labels=["agent"])
        done_a = CounterMetricFamily("allocator_live_agent_completed", "Tasks completed by "
                                     "the agent", labels=["agent"])
        for a in s["agents"]:
            load.add_metric([a["id"]], a["load"])
            running.add_metric([a["id"]], a["running"])
            up.add_metric([a["id"]], 1.0 if a["status"] == "up" else 0.0)
            for st in ("closed", "open", "half_open"):
                breaker.add_metric([a["id"], st], 1.0 if a["breaker"] == st else 0.0)
            tokens_a.add_metric([a["id"]], a["tokens"])
            done_a.add_metric([a["id"]], a["completed"])
        depth = GaugeMetricFamily("allocator_live_queue_depth", "Queued live tasks per "
                                  "priority class", labels=["priority"])
        for c, n in s["queued_by_class"].items():
            depth.add_metric([c], n)
        states = GaugeMetricFamily("allocator_live_tasks", "Live tasks by state",
                                   labels=["state"])
        for c, n in s["states"].items():
            states.add_metric([c], n)
        tokens_t = CounterMetricFamily("allocator_live_tenant_tokens", "Tokens used by the "
                                       "tenant's tasks", labels=["tenant"])
        for t, n in s["tokens_by_tenant"].items():
            tokens_t.add_metric([t], n)
        events = CounterMetricFamily("allocator_live_events", "Live service counters "
                                     "(steals, late completions, lease expiries ...)",
                                     labels=["kind"])
        for k, n in s["stats"].items():
            events.add_metric([k], n)
        yield from (load, running, up, breaker, tokens_a, done_a, depth, states, tokens_t,
                    events)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("allocator_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("allocator_http_request_duration_seconds",
                                 "HTTP request latency", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.solve_seconds = Histogram("allocator_solve_duration_seconds",
                                       "Wall time of solves in workers", ["solver", "kind"],
                                       buckets=SOLVE_BUCKETS, registry=r)
        self.solve_gap = Histogram("allocator_solve_gap", "Relative optimality gap of plans",
                                   ["solver"], buckets=GAP_BUCKETS, registry=r)
        self.queue_depth = Gauge("allocator_queue_depth", "Work waiting for a worker",
                                 ["queue"], registry=r)
        self.workers_busy = Gauge("allocator_workers_busy", "Workers running a solve",
                                  registry=r)
        self.rejected = Counter("allocator_rejected_total", "Requests refused by admission "
                                "control or limits", ["reason"], registry=r)
        self.worker_crashes = Counter("allocator_worker_crashes_total",
                                      "Worker processes that died during a solve", registry=r)

    def watch_jobs(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_JobsCollector(counts))  # type: ignore[arg-type]

    def watch_live(self, snapshot: Callable[[], dict[str, Any] | None]) -> None:
        """Export the live service's gauges; `refresh_live` (on the loop) samples them."""
        self._live_snapshot = snapshot
        self._live = _LiveCollector()
        self.registry.register(self._live)  # type: ignore[arg-type]

    def refresh_live(self) -> None:
        live = getattr(self, "_live", None)
        if live is not None:
            live.snap = self._live_snapshot()


class MetricsMiddleware:
    """Counts requests and their latency by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if path is None:
                path = "/mcp" if scope["path"].startswith("/mcp") else "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.requests.labels(method, path, str(status)).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - t0)
