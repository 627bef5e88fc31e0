"""The online executor's measures for Prometheus: a collector that reads an Executor per scrape.

Not in metrics.py on purpose: metrics.py is compiled with mypyc (GROUP in
allocator/_native.py), and a compiled class must not subclass
prometheus_client's interpreted `Collector` (a Protocol whose instances keep a
managed `__dict__`). mypyc did not lay such a subclass out the same way in
every build of the same source: one fresh build gave it no `__dict__` slot of
its own, so it inherited the base's negative (managed) dict offset and a weak
reference offset on top of its vtable pointer; reading `describe` then raised
`SystemError: Objects/dictobject.c ... bad argument to internal function` and
the garbage collector segfaulted. This module is never compiled, so the
collector is an ordinary Python class (tests/online/test_native.py keeps
interpreted bases with a managed `__dict__` out of the group).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from allocator.online.metrics import agent_utilisation, summary

if TYPE_CHECKING:
    from allocator.online.core import Executor


class ExecutorCollector(Collector):
    """Prometheus collector reading an Executor on every scrape."""

    def __init__(self, ex: Executor, prefix: str = "allocator_online") -> None:
        self.ex = ex
        self.prefix = prefix

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        p = self.prefix
        s = summary(self.ex, objective=False)
        tasks = CounterMetricFamily(f"{p}_tasks", "Tasks by outcome", labels=["outcome"])
        for k in ("completed", "rejected", "failed"):
            tasks.add_metric([k], s[k])
        yield tasks
        yield CounterMetricFamily(f"{p}_submitted", "Tasks submitted", value=s["tasks"])
        yield CounterMetricFamily(f"{p}_steals", "Tasks moved by stealing", value=s["steals"])
        yield CounterMetricFamily(f"{p}_migrations", "Tasks moved by plans",
                                  value=s["migrations"])
        yield CounterMetricFamily(f"{p}_retries", "Retried attempts", value=s["retries"])
        for k, doc in (("load_variance", "Variance of per-agent utilisation"),
                       ("jain", "Jain's index of per-agent utilisation"),
                       ("utilisation", "Busy share of agent capacity"),
                       ("miss_rate", "Share of deadline tasks not completed in time"),
                       ("throughput", "Completed tasks per time unit"),
                       ("steal_rate", "Steals per time unit"),
                       ("migration_rate", "Plan migrations per time unit")):
            yield GaugeMetricFamily(f"{p}_{k}", doc, value=s[k])
        for name, keys in (("wait", ("p50_wait", "p99_wait")),
                           ("latency", ("p50_latency", "p99_latency"))):
            g = GaugeMetricFamily(f"{p}_{name}", f"{name} percentiles", labels=["quantile"])
            g.add_metric(["0.5"], s[keys[0]])
            g.add_metric(["0.99"], s[keys[1]])
            yield g
        util = GaugeMetricFamily(f"{p}_agent_utilisation", "Per-agent utilisation",
                                 labels=["agent"])
        for a, v in agent_utilisation(self.ex).items():
            util.add_metric([a], v)
        yield util
        tok = CounterMetricFamily(f"{p}_agent_tokens", "Tokens reported used", labels=["agent"])
        brk = GaugeMetricFamily(f"{p}_agent_breaker_open", "1 when the breaker is not closed",
                                labels=["agent"])
        for ag in self.ex.agents.values():
            tok.add_metric([ag.id], ag.tokens_used)
            brk.add_metric([ag.id], 0.0 if ag.breaker.state.value == "closed" else 1.0)
        yield tok
        yield brk


def register(ex: Executor, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Export the executor's metrics through a (new by default) CollectorRegistry."""
    reg = registry if registry is not None else CollectorRegistry()
    reg.register(ExecutorCollector(ex))
    return reg
