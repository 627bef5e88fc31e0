"""Numbers as a reader wants them in a table: units, thousands separators, no 6.815e+04.

One place decides how a metric prints, from its name (`*_wait`, `span` in seconds,
`miss_rate`/`utilisation` in %, counts with separators), so `replay`, `tune` and
`capacity` tables agree. No dependencies: the CLI imports it without the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Formatter = Callable[[Any], str]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def count(v: Any) -> str:
    """12,345 (an integer count)."""
    return "-" if _missing(v) else f"{int(v):,}"


def decimal(v: Any) -> str:
    """A plain number, never in scientific notation: 3 significant digits, at most 3 decimals
    below 1, separators above 1,000 (68,150; 506; 45.7; 0.408; 0.0045)."""
    if _missing(v):
        return "-"
    x = float(v)
    a = abs(x)
    if a >= 100 or (x == int(x) and a >= 1):
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:,.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a == 0:
        return "0"
    if a >= 0.001:
        return f"{x:.3f}"
    return f"{x:.2g}" if a >= 1e-4 else "0.000"


def percent(v: Any) -> str:
    """A share as a percentage: 0.0283 -> 2.8 %."""
    return "-" if _missing(v) else f"{100 * float(v):.1f} %"


def ratio(v: Any) -> str:
    """An index in [0, 1] (Jain's): 3 decimals."""
    return "-" if _missing(v) else f"{float(v):.3f}"


_PERCENT = ("miss_rate", "utilisation", "relative_spread", "work_share")
_RATIO = ("jain", "jain_tenants")
_COUNTS = ("agents", "tasks", "jobs", "procs", "nodes", "completed", "rejected", "failed",
           "steals", "migrations", "lost", "duplicated", "requeued", "retries", "events")


def unit_of(metric: str) -> str:
    """The unit a header shows for a metric: s, %, agents or nothing."""
    base = metric.removeprefix("pred ").removeprefix("sim ")
    if base.endswith(("_wait", "_latency")) or base in ("span", "wall_s"):
        return "s"
    if base in _PERCENT:
        return "%"
    return ""


def formatter(metric: str) -> Formatter:
    """How a metric's values print in a table."""
    base = metric.removeprefix("pred ").removeprefix("sim ")
    if base in _PERCENT:
        return percent
    if base in _RATIO:
        return ratio
    if base in _COUNTS:
        return count
    return decimal


def header(metric: str) -> str:
    """`p95_wait` -> `p95 wait (s)`, `miss_rate` -> `miss rate` (its cells carry the %)."""
    name = metric.removesuffix("_s").replace("_", " ")
    return f"{name} (s)" if unit_of(metric) == "s" else name


def cell(metric: str, v: Any) -> str:
    """One value of a metric, formatted (with its unit when inline, e.g. `45.7 s`)."""
    text = formatter(metric)(v)
    unit = unit_of(metric)
    return f"{text} s" if unit == "s" and text != "-" else text
