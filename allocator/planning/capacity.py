"""Capacity planning: the cheapest agent mix that meets an SLA, estimated then simulated.

1. **Estimate** (queueing theory). The workload is summarised as an arrival
   rate λ, a mean work E[S] and the squared coefficients of variation of the
   inter-arrival times (ca²) and of the work (cs²). With c agents of mean
   speed s̄, the offered load is a = λ·E[S]/s̄ Erlangs and the utilisation
   ρ = a/c. The probability of waiting is Erlang C, C(c, a) (exact for
   M/M/c). The mean wait is the Allen–Cunneen M/G/c (GI/G/c) approximation
   Wq ≈ C(c, a) / (c·μ − λ) · (ca² + cs²) / 2 with μ = s̄/E[S] (exact for
   M/M/c, where ca² = cs² = 1). Wait quantiles use the tail
   P(W > t) ≈ C · exp(−θ t), θ = (c·μ − λ) · 2 / (ca² + cs²), exact for M/M/c
   and matching the approximate mean otherwise. The predicted miss rate is the
   mean over tasks of P(W > deadline − arrival − work/s̄) (1 when the slack is
   shorter than the run). Mixed speeds are treated as c agents of the mean
   speed: an approximation. This *stationary* estimate is the one used for
   forecasts. For a trace (estimator `trace`, the default there) the averages
   hide the load swings of a real log, so the estimate is trace-driven:
   V_i = the wait task i would see at one pooled server of speed c·s̄ (the
   Lindley recursion over the trace's own arrivals and run times), thinned by
   Erlang C at the task's local load: P(W > t) ≈ mean_i C(c, a_i)/(a_i/c)·1[V_i > t],
   a_i the offered load of the task's window. For M/M/c it is exact in
   distribution (W | W > 0 and V | V > 0 are both Exp(cμ − λ)).
2. **Confirm** (simulation). The mix the estimate calls cheapest is replayed
   through the executor (`allocator.workloads.replay`) with the chosen policy
   over several seeds; if the simulation misses the SLA the planner walks up
   the cost-ordered mixes, if it meets it the planner also tries the next
   cheaper mixes, and answers with the cheapest mix whose every run meets the
   SLA. With a trace and a deterministic policy the seeds do not change the
   run; the trace is then also split into `blocks` consecutive parts and the
   answer says in how many of them the SLA holds.

The code is split by concern; this module keeps the public names importable:
`queueing` (Erlang B/C, Allen–Cunneen, the stationary and trace-driven
predictions), `sla` (the clause grammar), `forecast` (forecast classes and
samples), `mixes` (agent types and the mix search space), `planner` (the
simulation check and the search); the curve plot is in allocator.report.capacity.
"""

from __future__ import annotations

from typing import Any

from allocator.planning.forecast import ClassForecast, Forecast, scale_arrivals
from allocator.planning.mixes import (
    MAX_MIXES,
    AgentType,
    Mix,
    candidate_mixes,
    check_types,
    mix_agents,
    mix_capacity,
    mix_cost,
    mix_dict,
    read_agent_types,
)
from allocator.planning.planner import (
    CapacityPlan,
    Planner,
    SimCheck,
    SimJob,
    plan_capacity,
    records_metrics,
    simulate_run,
)
from allocator.planning.queueing import (
    LOCAL_MIN_JOBS,
    LOCAL_RHO_CAP,
    LOCAL_WINDOWS,
    WaitModel,
    WorkloadStats,
    erlang_b,
    erlang_c,
    mgc_wait,
    predict,
    predict_trace,
    virtual_wait,
    workload_stats,
)
from allocator.planning.sla import SLA_METRICS, Clause, parse_sla, sla_met

__all__ = [
    "LOCAL_MIN_JOBS", "LOCAL_RHO_CAP", "LOCAL_WINDOWS", "MAX_MIXES", "SLA_METRICS",
    "AgentType", "CapacityPlan", "ClassForecast", "Clause", "Forecast", "Mix", "Planner",
    "SimCheck", "SimJob", "WaitModel", "WorkloadStats", "candidate_mixes", "check_types",
    "erlang_b", "erlang_c", "mgc_wait", "mix_agents", "mix_capacity", "mix_cost", "mix_dict",
    "parse_sla", "plan_capacity", "predict", "predict_trace",
    "read_agent_types", "records_metrics", "scale_arrivals", "simulate_run", "sla_met",
    "virtual_wait", "workload_stats",
]


def __getattr__(name: str) -> Any:
    """`plot_curve` lives in allocator.report.capacity (matplotlib loads on use)."""
    if name == "plot_curve":
        from allocator.report.capacity import plot_curve

        return plot_curve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
