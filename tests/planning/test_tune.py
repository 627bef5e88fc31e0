"""Tuning: parameter names, search, best setting and sensitivity on a tiny trace."""

from __future__ import annotations

import pytest

from allocator.errors import InvalidInputError
from allocator.online.events import TaskSpec
from allocator.online.policies import make_policy
from allocator.planning.tune import apply_params, combinations, parse_param, tune
from allocator.workloads.base import Trace
from models import Priority


def test_parse_and_apply_params() -> None:
    assert parse_param("steal_threshold=0.1,0.5") == ("steal_threshold", [0.1, 0.5])
    p = apply_params(make_policy("priority+stealing"), {
        "steal_threshold": 0.5, "steal_interval": 10.0, "steal.max_batch": 4,
        "aging": 120, "aging.low": 600, "weight.low": 3, "flow_weight.t1": 2})
    assert p.steal.margin_frac == 0.5 and p.steal.backoff == 10.0
    assert p.steal.max_backoff == 10.0  # raised so the interval is not capped below itself
    assert p.steal.max_batch == 4 and isinstance(p.steal.max_batch, int)
    assert p.priority.aging[Priority.HIGH] == 120 and p.priority.aging[Priority.LOW] == 600
    assert p.priority.weights[Priority.LOW] == 3 and p.flow_weights == {"t1": 2}
    # the base policy is untouched
    assert make_policy("priority+stealing").steal.margin_frac != 0.5
    with pytest.raises(InvalidInputError, match="unknown parameter"):
        parse_param("steal.nope=1")
    with pytest.raises(InvalidInputError, match="name=v1"):
        parse_param("aging")


def test_random_search_is_seeded_subset_of_grid() -> None:
    space = {"aging": [1.0, 2.0, 3.0], "weight.low": [1.0, 2.0]}
    grid = combinations(space)
    assert len(grid) == 6
    a = combinations(space, search="random", samples=3, seed=7)
    assert a == combinations(space, search="random", samples=3, seed=7)
    assert len(a) == 3 and all(x in grid for x in a)


def _workload(trace: list[tuple[float, TaskSpec]]) -> Trace:
    import polars as pl

    return Trace(tasks=pl.DataFrame({
        "id": [s.id for _, s in trace], "arrival": [t for t, _ in trace],
        "work": [s.work for _, s in trace], "demand": [1.0] * len(trace),
        "deadline": [s.deadline for _, s in trace],
        "priority": [s.priority.value for _, s in trace], "tenant": [s.tenant for _, s in trace],
    }, schema_overrides={"deadline": pl.Float64, "tenant": pl.String}))


def test_tune_finds_the_weight_that_serves_the_urgent_class() -> None:
    # One agent; a blocker, then 5 low tasks (1 s each), then a high task due at t=3.
    # Served by class weights alone (aging off), the high task is on time only if
    # high outweighs low; with weight.high = 0.01 stride scheduling runs the lows first.
    trace = [(0.0, TaskSpec(id="w", work=1))]
    trace += [(0.1 + i * 0.01, TaskSpec(id=f"l{i}", work=1, priority=Priority.LOW))
              for i in range(5)]
    trace += [(0.2, TaskSpec(id="h", work=1, priority=Priority.HIGH, deadline=3.0))]
    res = tune(_workload(trace), "priority",
               {"weight.high": [0.01, 100.0], "aging": [1e9]}, agents=1, objective="miss_rate")
    assert len(res.trials) == 2
    assert res.best.params == {"weight.high": 100.0, "aging": 1e9}
    assert res.best.row["miss_rate"] == 0.0
    s = res.sensitivity["weight.high"]
    assert s["means"] == {"0.01": 1.0, "100": 0.0} and s["spread"] == 1.0
    assert res.sensitivity["aging"]["spread"] == 0.0


@pytest.mark.parametrize(("text", "field"), [
    pytest.param("steal.max_batch=inf", "steal.max_batch", id="inf count (OverflowError before)"),
    pytest.param("steal.max_batch=2.5", "steal.max_batch", id="fractional count"),
    pytest.param("steal.victims=-1", "steal.victims", id="negative count"),
    pytest.param("steal_threshold=nan", "steal.margin_frac", id="nan margin"),
    pytest.param("steal_threshold=-1", "steal.margin_frac", id="negative margin"),
    pytest.param("weight.high=0", "priority.weights.high", id="zero class weight"),
    pytest.param("flow_weight.t1=-1", "flow_weights.t1", id="negative flow weight"),
    pytest.param("aging=nan", "priority.aging.high", id="nan aging"),
])
def test_a_value_the_policy_cannot_run_with_is_refused(text: str, field: str) -> None:
    """Refused when parsed (before the first trial) and when applied (the HTTP/MCP path
    through options.params), naming the policy field."""
    with pytest.raises(InvalidInputError) as err:
        parse_param(text)
    assert err.value.field == field
    name, _, value = text.partition("=")
    with pytest.raises(InvalidInputError) as err:
        apply_params(make_policy("edf+stealing"), {name: float(value)})
    assert err.value.field == field


def test_never_values_stay_allowed() -> None:
    assert parse_param("steal.overflow_wait=inf") == ("steal.overflow_wait", [float("inf")])
    assert parse_param("aging=inf")[1] == [float("inf")]
    assert parse_param("steal.min_victim_queue=0")[1] == [0.0]
