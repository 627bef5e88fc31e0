"""Policy tuning on a workload: sweep parameters, keep the best, measure sensitivity.

A parameter is named as in the CLI (`--param name=v1,v2,...`):

============================  ===============================================
name                          what it sets on the Policy
============================  ===============================================
steal_threshold               steal.margin_frac (gain a steal must promise)
steal_interval                steal.backoff (first back-off after a failed
                              steal; doubles up to steal.max_backoff, which
                              is raised to at least this value)
steal_max_backoff             steal.max_backoff
steal.<field>                 any StealConfig field (latency, max_batch,
                              victims, min_victim_queue, ...)
aging                         aging limit (s) of high, normal and low
aging.<class>                 aging limit of one class (critical ... low)
weight.<class>                scheduling share of one class
flow_weight.<tenant>          WFQ/CFS weight of one tenant
============================  ===============================================

Search: `grid` evaluates every combination; `random` draws `samples`
combinations from the grid with a seeded generator (without repetition).
Every trial replays the same workload on the same agents with the same seed.

Sensitivity of a parameter = the spread (max - min) of the objective's mean
over the trials that share each of its values (its main effect); the table
also lists those per-value means, so "steal_threshold matters 3x more than
steal_interval" is read off measured numbers.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from allocator.errors import InvalidInputError
from allocator.online.policies import Policy, StealConfig, make_policy
from allocator.online.queues import PriorityConfig
from allocator.workloads.base import Trace
from allocator.workloads.replay import HomeMode, replay
from models import Priority

ALIASES = {
    "steal_threshold": "steal.margin_frac",
    "steal_interval": "steal.backoff",
    "steal_max_backoff": "steal.max_backoff",
}
_STEAL_FIELDS = set(StealConfig.__dataclass_fields__)
_INT_STEAL = {"min_victim_queue", "max_batch", "victims", "max_steals_per_task", "deque_cap"}
_CLASSES = {p.value: p for p in Priority}


def parse_param(text: str) -> tuple[str, list[float]]:
    """`name=v1,v2,...` -> (name, values); values are numbers (`inf` allowed)."""
    name, sep, vals = text.partition("=")
    name = name.strip()
    if not sep or not name or not vals.strip():
        raise InvalidInputError(f"parameter must look like name=v1,v2,..., got {text!r}",
                                field="param")
    try:
        values = [float(v) for v in vals.split(",") if v.strip()]
    except ValueError:
        raise InvalidInputError(f"values of {name} must be numbers, got {vals!r}",
                                field="param") from None
    check_param(name)
    for v in values:
        check_value(name, v)
    return name, values


def check_value(name: str, v: float) -> None:
    """A value the policy can run with. Counts must be whole numbers (`int(inf)` raised
    OverflowError before any policy saw the value); the ranges are the policy's own
    (Policy.__post_init__ checks every way a policy is built), tried on a default one
    so a bad value fails before the first trial."""
    n = ALIASES.get(name, name)
    head, _, tail = n.partition(".")
    if head == "steal" and tail in _INT_STEAL and not (math.isfinite(v) and v == int(v)):
        raise InvalidInputError(f"{name} must be a whole number, got {v!r}",
                                field=f"steal.{tail}")
    _apply(Policy(name="check"), {name: v})


def check_param(name: str) -> None:
    n = ALIASES.get(name, name)
    head, _, tail = n.partition(".")
    ok = (
        (head == "steal" and tail in _STEAL_FIELDS)
        or (n == "aging")
        or (head in ("aging", "weight") and tail in _CLASSES)
        or (head == "flow_weight" and bool(tail))
    )
    if not ok:
        raise InvalidInputError(
            f"unknown parameter {name!r}; known: {', '.join(ALIASES)}, steal.<field> "
            f"({', '.join(sorted(_STEAL_FIELDS))}), aging, aging.<class>, weight.<class>, "
            "flow_weight.<tenant>", field="param")


def apply_params(policy: Policy, params: Mapping[str, float]) -> Policy:
    """A copy of `policy` with the named parameters set (see the module table)."""
    for name, v in params.items():
        check_param(name)
        check_value(name, v)
    return _apply(policy, params)


def _apply(policy: Policy, params: Mapping[str, float]) -> Policy:
    steal = replace(policy.steal)
    prio = PriorityConfig(weights=dict(policy.priority.weights),
                          aging=dict(policy.priority.aging))
    flows = dict(policy.flow_weights)
    for name, v in params.items():
        n = ALIASES.get(name, name)
        head, _, tail = n.partition(".")
        if head == "steal":
            setattr(steal, tail, int(v) if tail in _INT_STEAL else float(v))
            if tail == "backoff":
                steal.max_backoff = max(steal.max_backoff, float(v))
        elif n == "aging":
            for c in (Priority.HIGH, Priority.NORMAL, Priority.LOW):
                prio.aging[c] = float(v)
        elif head == "aging":
            prio.aging[_CLASSES[tail]] = float(v)
        elif head == "weight":
            prio.weights[_CLASSES[tail]] = float(v)
        else:
            flows[tail] = float(v)
    return replace(policy, steal=steal, priority=prio, flow_weights=flows)


@dataclass(slots=True)
class Trial:
    params: dict[str, float]
    row: dict[str, Any]


@dataclass(slots=True)
class TuneResult:
    policy: str
    objective: str
    trials: list[Trial]
    best: Trial
    default: Trial
    sensitivity: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "objective": self.objective,
            "best": {"params": self.best.params, **_clean(self.best.row)},
            "default": _clean(self.default.row),
            "improvement": _improvement(self.default.row[self.objective],
                                        self.best.row[self.objective]),
            "sensitivity": self.sensitivity, "trials": len(self.trials),
        }


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()}


def _improvement(before: float, after: float) -> float:
    return (before - after) / before if before else 0.0


def combinations(space: Mapping[str, Sequence[float]], *, search: str = "grid",
                 samples: int = 20, seed: int = 0) -> list[dict[str, float]]:
    """The parameter settings to try, in a deterministic order."""
    names = list(space)
    grid = [dict(zip(names, vals, strict=True))
            for vals in itertools.product(*(space[n] for n in names))]
    if search == "grid":
        return grid
    if search != "random":
        raise InvalidInputError(f"search must be grid or random, got {search!r}",
                                field="search")
    if samples < 1:
        raise InvalidInputError(f"samples must be >= 1, got {samples}", field="samples")
    rng = random.Random(seed)
    return rng.sample(grid, min(samples, len(grid)))


def tune(
    workload: Trace,
    policy: str | Policy,
    space: Mapping[str, Sequence[float]],
    *,
    agents: int = 4,
    speeds: Sequence[float] | None = None,
    objective: str = "mean_bounded_slowdown",
    search: str = "grid",
    samples: int = 20,
    seed: int = 0,
    home: HomeMode = "tenant",
    progress: Callable[[int, int, Trial], None] | None = None,
) -> TuneResult:
    """Replay the workload under each setting; lowest `objective` wins (ties: p99_wait).

    The untouched policy is replayed too (`default`), so the gain is measured
    against it in the same run.
    """
    if not space:
        raise InvalidInputError("give at least one --param", field="param")
    for name in space:
        check_param(name)
    base = make_policy(policy)
    settings = combinations(space, search=search, samples=samples, seed=seed)

    def run(params: dict[str, float]) -> Trial:
        row = replay(workload, apply_params(base, params), agents=agents, speeds=speeds,
                     seed=seed, home=home, samples=0).row()
        if objective not in row:
            known = ", ".join(k for k, v in row.items() if isinstance(v, float))
            raise InvalidInputError(f"unknown objective {objective!r}; known: {known}",
                                    field="objective")
        return Trial(params, row)

    default = run({})
    trials: list[Trial] = []
    for i, p in enumerate(settings):
        trials.append(run(p))
        if progress is not None:
            progress(i + 1, len(settings), trials[-1])
    best = min(trials, key=lambda t: (t.row[objective], t.row["p99_wait"]))
    return TuneResult(policy=base.name, objective=objective, trials=trials, best=best,
                      default=default, sensitivity=sensitivity(trials, objective))


def sensitivity(trials: Sequence[Trial], objective: str) -> dict[str, dict[str, Any]]:
    """Main effect of each parameter: mean objective per value, and its spread."""
    out: dict[str, dict[str, Any]] = {}
    if not trials:
        return out
    allv = [t.row[objective] for t in trials]
    mean_all = sum(allv) / len(allv)
    for name in trials[0].params:
        by: dict[float, list[float]] = {}
        for t in trials:
            by.setdefault(t.params[name], []).append(t.row[objective])
        means = {v: sum(xs) / len(xs) for v, xs in sorted(by.items())}
        spread = max(means.values()) - min(means.values())
        out[name] = {
            "means": {f"{v:g}": m for v, m in means.items()},
            "best_value": min(means, key=lambda v: means[v]),
            "spread": spread,
            "relative_spread": spread / mean_all if mean_all else 0.0,
        }
    return out
