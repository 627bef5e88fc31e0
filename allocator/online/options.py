"""User-facing knobs of an online run, shared by `allocator simulate`, `allocator
replay` and the HTTP `simulate` body: one parser, one meaning.

- `tenants`: weights W1,W2,... of tenants `tenant0`, `tenant1`, ... (the
  generated workloads spread tasks evenly over them); they are the WFQ/CFS
  flow weights;
- `class_weights`: C,H,N,L, the stride weights of the four classes;
- `aging`: the aging limit of the high, normal and low classes;
- `admission`: `none` or `throttle` (with `target_wait`);
- `params`: any tunable policy parameter by name (`steal.<field>`,
  `weight.<class>`, `aging.<class>`, `flow_weight.<tenant>`, aliases
  `steal_threshold`, `steal_interval`, ...; see allocator.planning.tune);
- `flaky`: K:P:UNTIL, K agents that fail each attempt with probability P
  until time UNTIL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from allocator.errors import InvalidInputError
from allocator.online.admission import AdmissionConfig
from allocator.online.policies import Policy, make_policy
from allocator.online.queues import PriorityConfig
from models import Priority

ADMISSIONS = ("none", "throttle")
_CLASSES = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)


def parse_numbers(text: str, field_name: str, *, count: int | None = None,
                  positive: bool = True) -> list[float]:
    """`1,2.5,3` -> [1.0, 2.5, 3.0]: finite numbers (> 0 when `positive`)."""
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidInputError(f"must be numbers separated by commas, got {text!r}",
                                field=field_name) from None
    if not vals or (count is not None and len(vals) != count):
        want = f"{count} numbers" if count else "at least one number"
        raise InvalidInputError(f"need {want}, got {text!r}", field=field_name)
    for v in vals:
        if not math.isfinite(v) or (v <= 0 if positive else v < 0):
            raise InvalidInputError(f"numbers must be finite and {'> 0' if positive else '>= 0'}"
                                    f", got {text!r}", field=field_name)
    return vals


def parse_flaky(text: str) -> tuple[int, float, float]:
    """`K:P:UNTIL` -> (K agents, attempt failure probability P, until time)."""
    parts = text.split(":")
    try:
        k, p, until = int(parts[0]), float(parts[1]), float(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise InvalidInputError(f"must look like K:P:UNTIL (e.g. 2:0.8:100), got {text!r}",
                                field="flaky") from None
    if k < 0 or not 0.0 <= p <= 1.0 or not (math.isfinite(until) and until >= 0):
        raise InvalidInputError(f"need K >= 0, 0 <= P <= 1 and UNTIL >= 0, got {text!r}",
                                field="flaky")
    return k, p, until


def parse_params(items: Sequence[str]) -> dict[str, float]:
    """`name=value` items -> {name: value} (names checked as in `allocator tune`)."""
    from allocator.planning.tune import parse_param

    out: dict[str, float] = {}
    for it in items:
        name, vals = parse_param(it)
        if len(vals) != 1:
            raise InvalidInputError(f"give one value for {name}, got {it!r}", field="param")
        out[name] = vals[0]
    return out


@dataclass(slots=True)
class OnlineOptions:
    tenants: list[float] | None = None
    class_weights: list[float] | None = None
    aging: float | None = None
    admission: str = "none"
    target_wait: float = 5.0
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.admission not in ADMISSIONS:
            raise InvalidInputError(f"admission must be one of {', '.join(ADMISSIONS)}, got "
                                    f"{self.admission!r}", field="admission")
        if self.class_weights is not None and len(self.class_weights) != 4:
            raise InvalidInputError("need four class weights (critical, high, normal, low)",
                                    field="class_weights")
        for name in ("aging", "target_wait"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and not math.isnan(v)
                                      and v > 0):
                raise InvalidInputError(f"must be > 0, got {v!r}", field=name)

    @classmethod
    def from_text(cls, *, tenants: str | None = None, class_weights: str | None = None,
                  aging: float | None = None, admission: str = "none",
                  target_wait: float = 5.0, params: Sequence[str] = ()) -> OnlineOptions:
        """From CLI strings (`--tenants 1,3`, `--class-weights 8,4,2,1`, `--param a=b`)."""
        return cls(tenants=parse_numbers(tenants, "tenants") if tenants else None,
                   class_weights=(parse_numbers(class_weights, "class_weights", count=4)
                                  if class_weights else None),
                   aging=aging, admission=admission, target_wait=target_wait,
                   params=parse_params(params))

    def policy(self, name: str | Policy) -> Policy:
        """The named policy with these weights, aging and parameters."""
        base = make_policy(name)
        prio = PriorityConfig(weights=dict(base.priority.weights),
                              aging=dict(base.priority.aging))
        if self.class_weights is not None:
            prio.weights = dict(zip(_CLASSES, self.class_weights, strict=True))
        if self.aging is not None:
            for c in (Priority.HIGH, Priority.NORMAL, Priority.LOW):
                prio.aging[c] = self.aging
        flows = dict(base.flow_weights)
        if self.tenants:
            flows.update({f"tenant{k}": w for k, w in enumerate(self.tenants)})
        pol = make_policy(base, priority=prio, flow_weights=flows)
        if self.params:
            from allocator.planning.tune import apply_params

            pol = apply_params(pol, self.params)
        return pol

    def admission_config(self) -> AdmissionConfig | None:
        if self.admission == "throttle":
            return AdmissionConfig(throttle=True, target_wait=self.target_wait)
        return None

    def as_dict(self) -> Mapping[str, object]:
        return {"tenants": self.tenants, "class_weights": self.class_weights,
                "aging": self.aging, "admission": self.admission,
                "target_wait": self.target_wait, "params": dict(self.params)}
