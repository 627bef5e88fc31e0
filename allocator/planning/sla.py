"""The SLA grammar of `allocator capacity`: comma-separated clauses `metric<=value`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from allocator.errors import InvalidInputError

_SLA_RE = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+|inf)\s*$")


@dataclass(slots=True, frozen=True)
class Clause:
    metric: str
    op: str
    limit: float

    def holds(self, value: float) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return {"<=": value <= self.limit + 1e-12, "<": value < self.limit,
                ">=": value >= self.limit - 1e-12, ">": value > self.limit}[self.op]

    def margin(self, value: float) -> float:
        """Headroom as a share of the limit (> 0: met with room, < 0: missed)."""
        if not math.isfinite(value):
            return -math.inf
        scale = abs(self.limit) if self.limit else 1.0
        d = self.limit - value if self.op in ("<=", "<") else value - self.limit
        return d / scale

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"


SLA_METRICS = ("mean_wait", "p50_wait", "p95_wait", "p99_wait", "miss_rate", "utilisation",
               "mean_bounded_slowdown")

#: The values each metric can take: a clause outside them can never hold (or always
#: does), and the search would walk up to its cap before saying so.
_DOMAIN = {"mean_wait": (0.0, math.inf), "p50_wait": (0.0, math.inf),
           "p95_wait": (0.0, math.inf), "p99_wait": (0.0, math.inf),
           "miss_rate": (0.0, 1.0), "utilisation": (0.0, 1.0),
           "mean_bounded_slowdown": (1.0, math.inf)}


def _never_holds(c: Clause) -> bool:
    lo, hi = _DOMAIN[c.metric]
    return {"<=": c.limit < lo, "<": c.limit <= lo, ">=": c.limit > hi,
            ">": c.limit >= hi}[c.op]


def parse_sla(text: str) -> list[Clause]:
    """`"p95_wait<=60,miss_rate<=0.01"` -> clauses (metrics: SLA_METRICS)."""
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _SLA_RE.match(part)
        if m is None:
            raise InvalidInputError(f"SLA clause must look like metric<=value, got {part!r}",
                                    field="sla")
        metric, op, val = m.groups()
        if metric not in SLA_METRICS:
            raise InvalidInputError(f"unknown SLA metric {metric!r}; known: "
                                    f"{', '.join(SLA_METRICS)}", field="sla")
        try:
            limit = float(val)
        except ValueError:
            raise InvalidInputError(f"SLA clause {part.strip()!r}: {val!r} is not a number",
                                    field="sla") from None
        clause = Clause(metric, op, limit)
        if _never_holds(clause):
            lo, hi = _DOMAIN[metric]
            raise InvalidInputError(f"SLA clause {clause} can never hold: {metric} lies in "
                                    f"[{lo:g}, {hi:g}]", field="sla")
        out.append(clause)
    if not out:
        raise InvalidInputError("empty SLA", field="sla")
    return out


def sla_met(sla: Sequence[Clause], metrics: Mapping[str, float]) -> bool:
    return all(c.metric in metrics and c.holds(metrics[c.metric]) for c in sla)
