"""Capacity planning: Erlang C against textbook values, the planner on an M/M/c case."""

from __future__ import annotations

import math

import pytest

from allocator.errors import InvalidInputError
from allocator.planning.capacity import (
    AgentType,
    ClassForecast,
    Forecast,
    candidate_mixes,
    erlang_b,
    erlang_c,
    mgc_wait,
    parse_sla,
    plan_capacity,
    sla_met,
    workload_stats,
)


@pytest.mark.parametrize(("c", "a", "expected"), [
    pytest.param(3, 2.0, 4 / 9, id="M/M/3 at 2 Erlangs: 4/9"),
    pytest.param(2, 1.0, 1 / 3, id="M/M/2 at rho 0.5: 2rho^2/(1+rho)"),
    pytest.param(1, 0.7, 0.7, id="M/M/1: P(wait) = rho"),
    pytest.param(4, 4.0, 1.0, id="saturated: always waits"),
])
def test_erlang_c_textbook(c: int, a: float, expected: float) -> None:
    assert erlang_c(c, a) == pytest.approx(expected, rel=1e-12)


def test_erlang_b_textbook() -> None:
    # B(2, 1) = (1/2) / (1 + 1 + 1/2) = 0.2
    assert erlang_b(2, 1.0) == pytest.approx(0.2)


def test_mmc_mean_wait_and_quantile_are_exact() -> None:
    # M/M/3, lambda 2, mu 1: Wq = C / (c mu - lambda) = 4/9; P(W > t) = 4/9 e^{-t}
    m = mgc_wait(3, 2.0, 1.0)
    assert m.mean == pytest.approx(4 / 9)
    assert m.quantile(0.95) == pytest.approx(math.log((4 / 9) / 0.05))
    assert m.quantile(0.5) == 0.0  # 5/9 of arrivals do not wait at all
    # Allen-Cunneen scales the mean by (ca2 + cs2) / 2: deterministic service halves it
    assert mgc_wait(3, 2.0, 1.0, cs2=0.0).mean == pytest.approx(2 / 9)
    assert not mgc_wait(2, 2.0, 1.0).stable


def test_sla_parsing() -> None:
    sla = parse_sla("p95_wait<=60, miss_rate<0.01")
    assert [str(c) for c in sla] == ["p95_wait<=60", "miss_rate<0.01"]
    assert sla_met(sla, {"p95_wait": 60.0, "miss_rate": 0.0})
    assert not sla_met(sla, {"p95_wait": 61.0, "miss_rate": 0.0})
    assert not sla_met(sla, {"p95_wait": 1.0})  # a missing metric is not met
    with pytest.raises(InvalidInputError, match="unknown SLA metric"):
        parse_sla("p96_wait<=1")
    with pytest.raises(InvalidInputError, match="metric<=value"):
        parse_sla("p95_wait=1")


@pytest.mark.parametrize("clause", ["mean_wait<=-1", "p99_wait<0", "miss_rate<0",
                                    "utilisation>=1.5", "utilisation>1",
                                    "mean_bounded_slowdown<=0.5", "mean_bounded_slowdown<1"])
def test_sla_that_can_never_hold_is_refused(clause: str) -> None:
    # Before, the search walked up to its cap of agents and answered "no mix met".
    with pytest.raises(InvalidInputError, match="can never hold") as e:
        parse_sla(clause)
    assert e.value.field == "sla"


@pytest.mark.parametrize("clause", ["mean_wait<=0", "miss_rate<=0", "utilisation<=1",
                                    "utilisation>=1", "mean_bounded_slowdown<=1",
                                    "mean_wait<=inf"])
def test_sla_at_the_edge_of_its_domain_is_kept(clause: str) -> None:
    assert [str(c) for c in parse_sla(clause)] == [clause]


@pytest.mark.parametrize("value", ["1e5e5", ".", "-", "1-2"])
def test_sla_value_that_is_not_a_number_names_the_field(value: str) -> None:
    with pytest.raises(InvalidInputError, match="is not a number") as e:
        parse_sla(f"mean_wait<={value}")
    assert e.value.field == "sla"


def test_forecast_sample_matches_its_stats() -> None:
    fc = Forecast([ClassForecast(rate=8.0, size_mean=1.0, size_cv=1.0)], tasks=20_000)
    st = workload_stats(fc.generate(0))
    assert st.rate == pytest.approx(8.0, rel=0.03)
    assert st.mean_work == pytest.approx(1.0, rel=0.03)
    assert st.ca2 == pytest.approx(1.0, rel=0.1) and st.cs2 == pytest.approx(1.0, rel=0.1)


def test_planner_picks_the_erlang_c_answer_on_mmc() -> None:
    # lambda 8/s, exponential work of mean 1 s: Wq(9) = 0.653, Wq(10) = 0.205, Wq(11) = 0.082.
    # SLA mean_wait <= 0.4: Erlang C says 10 agents; the simulation must agree.
    exact = min(c for c in range(9, 20) if mgc_wait(c, 8.0, 1.0).mean <= 0.4)
    assert exact == 10
    fc = Forecast([ClassForecast(rate=8.0, size_mean=1.0, size_cv=1.0)], tasks=8000)
    plan = plan_capacity("mean_wait<=0.4", forecast=fc, seeds=(0, 1, 2), curve_span=1,
                         what_if=["agents-1", "arrivals*2"])
    out = plan.to_json()
    assert out["agents"] == {"agent": 10} and out["cost"] == 10
    assert out["estimate_agents"] == {"agent": 10}
    assert out["sla_met"] is True
    assert out["predicted"]["mean_wait"] == pytest.approx(mgc_wait(10, 8.0, 1.0).mean)
    assert out["simulated"]["mean_wait"] == pytest.approx(0.205, abs=0.08)
    assert out["confidence"]["runs"] == 3 and out["confidence"]["met_runs"] == 3
    assert out["confidence"]["one_fewer_meets"] is False
    assert [r["agents"] for r in out["curve"]] == [9, 10, 11]
    minus, double = out["what_if"]
    assert minus["agents"] == {"agent": 9} and minus["sla_met"] is False
    assert double["sla_met"] is False and "unstable" in double["note"]  # 16 Erlangs on 10


def test_cheapest_mix_prefers_cheap_capacity() -> None:
    types = [AgentType("small", speed=1.0, cost=1.0), AgentType("big", speed=2.0, cost=1.5)]
    mixes = candidate_mixes(types, offered=3.0)
    assert mixes[0] == (0, 2)  # capacity 4 for 3.0: the cheapest stable mix
    fc = Forecast([ClassForecast(rate=3.0, size_mean=1.0, size_cv=1.0)], tasks=3000)
    plan = plan_capacity("mean_wait<=0.5", forecast=fc, types=types, seeds=(0,),
                         curve_span=1)
    assert plan.met and plan.mix is not None
    small_only = plan_capacity("mean_wait<=0.5", forecast=fc, seeds=(0,), curve_span=0)
    assert plan.cost <= small_only.cost
    assert plan.to_json()["agents"].keys() == {"small", "big"}


@pytest.mark.parametrize(("kw", "names"), [
    pytest.param({"rate": math.nan}, "rate=nan", id="nan rate"),
    pytest.param({"size_mean": math.inf}, "size_mean=inf", id="infinite size"),
    pytest.param({"rate": 0.0, "size_cv": -1.0}, "rate=0.0, size_cv=-1.0", id="two bad"),
])
def test_a_forecast_class_names_the_value_it_rejects(kw: dict[str, float], names: str) -> None:
    with pytest.raises(InvalidInputError, match=names):
        Forecast([ClassForecast(**kw)])  # type: ignore[arg-type]


@pytest.mark.parametrize("offered", [1e9, 1e300, math.inf])
def test_an_offered_load_beyond_any_plan_is_an_input_error_not_a_memory_error(
        offered: float) -> None:
    """One type and 1e9 agents' worth of work made itertools.product build a range of
    4e9 ints (MemoryError); 1e300 overflowed."""
    with pytest.raises(InvalidInputError) as e:
        candidate_mixes([AgentType("agent", speed=1.0, cost=1.0)], offered=offered)
    assert e.value.field == "workload"


def test_trace_estimator_matches_erlang_c_on_a_stationary_mmc_sample() -> None:
    from allocator.planning.capacity import predict_trace

    w = Forecast([ClassForecast(rate=8.0, size_mean=1.0, size_cv=1.0)], tasks=60_000).generate(3)
    span = float(w.tasks["arrival"].max())  # type: ignore[arg-type]
    for c in (9, 10):
        got = predict_trace(w, c, window=span * 2)  # one window: global Erlang C thinning
        exact = mgc_wait(c, 8.0, 1.0)
        assert got["mean_wait"] == pytest.approx(exact.mean, rel=0.25)
        assert got["p_wait"] == pytest.approx(exact.p_wait, rel=0.1)
        assert got["p95_wait"] == pytest.approx(exact.quantile(0.95), rel=0.25)
