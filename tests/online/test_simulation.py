"""Simulator: determinism, invariants under failures, and the policies' sanity."""

from __future__ import annotations

import pytest

from allocator.errors import InvalidInputError
from allocator.online import policy_names
from allocator.online.simulator import Simulator, simulate
from allocator.online.workload import WorkloadConfig, generate

VOLATILE = ("wall_s", "events_per_s")


def _cfg(**kw: object) -> WorkloadConfig:
    base: dict[str, object] = dict(tasks=1500, agents=6, skew=1.2, seed=7)
    base.update(kw)
    return WorkloadConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["p2c", "random", "edf+stealing", "priority", "cfs"])
def test_same_seed_same_result(policy: str) -> None:
    a = simulate(generate(_cfg(mtbf=200.0, task_failure=0.02)), policy, seed=3)
    b = simulate(generate(_cfg(mtbf=200.0, task_failure=0.02)), policy, seed=3)
    for k in VOLATILE:
        a.pop(k)
        b.pop(k)
    assert a == b


def test_different_seed_different_workload() -> None:
    a = generate(_cfg(seed=1))
    b = generate(_cfg(seed=2))
    assert a.arrival[10] != b.arrival[10]


@pytest.mark.parametrize("policy", policy_names())
def test_every_policy_accounts_for_every_task_under_failures(policy: str) -> None:
    wl = generate(_cfg(tasks=800, mtbf=100.0, mttr=20.0, task_failure=0.05, hard_share=0.2,
                       skill_share=0.2, arrival="bursty"))
    row = simulate(wl, policy, seed=1)
    assert row["lost"] == 0 and row["duplicated"] == 0
    assert row["completed"] + row["rejected"] + row["failed"] == row["tasks"] == 800
    assert row["live"] == 0


def test_stealing_balances_a_skewed_workload_better_than_staying_home() -> None:
    wl = generate(_cfg(tasks=3000, skew=2.0, load=0.7))
    rr = simulate(wl, "round-robin")
    st = simulate(wl, "edf+stealing")
    assert st["steals"] > 0
    assert st["p99_wait"] < rr["p99_wait"]


def test_rate_limited_agents_report_token_usage() -> None:
    wl = generate(_cfg(tasks=300, tokens_per_min=60_000.0, load=0.5))
    res = Simulator(wl, "jsq").run()
    assert res.row["lost"] == 0
    assert sum(a.tokens_used for a in res.executor.agents.values()) > 0


def test_coordinator_installs_plans_as_migrations() -> None:
    from allocator.online.coordinator import Coordinator
    from allocator.validate import validate

    wl = generate(_cfg(tasks=1500, skew=1.5, load=0.9))
    sim = Simulator(wl, "round-robin")
    coord = Coordinator(sim.executor, every=20.0, solver="greedy", time_limit=1.0)
    plans: list[object] = []

    def hook(ex, now):  # type: ignore[no-untyped-def]
        snap = ex.snapshot(weights=coord.weights)
        out = coord.step(now)
        if coord.last_plan is not None and coord.last_plan not in plans:
            plans.append(coord.last_plan)
            assert validate(snap, coord.last_plan) == []
        return out

    sim.coordinator = hook
    sim.coordinate_every = 10.0
    row = sim.run().row
    assert coord.solves > 0 and row["migrations"] > 0
    assert row["lost"] == 0 and row["duplicated"] == 0
    base = simulate(generate(_cfg(tasks=1500, skew=1.5, load=0.9)), "round-robin")
    assert row["p99_wait"] < base["p99_wait"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"skew": -1.0}, "skew"),
        ({"speed_spread": float("inf")}, "speed_spread"),
        ({"pareto_alpha": 0.0}, "pareto_alpha"),
        ({"max_size": -1.0}, "max_size"),
        ({"burst_share": 2.0}, "burst_share"),
        ({"task_failure": float("nan")}, "task_failure"),
        ({"concurrency": 0}, "concurrency"),
        ({"tenants": 0}, "tenants"),
        ({"mtbf": -1.0}, "mtbf"),
        ({"slack": (5.0, 1.0)}, "slack"),
        ({"priorities": (0.0, 0.0, 0.0, 0.0)}, "priorities"),
        ({"priorities": (-1.0, 1.0, 1.0, 1.0)}, "priorities"),
    ],
)
def test_workload_knobs_out_of_range_are_typed_errors(kwargs: dict[str, object],
                                                      field: str) -> None:
    """Found by fuzzing: these crashed inside numpy (negative powers, NaN probabilities)."""
    with pytest.raises(InvalidInputError) as err:
        WorkloadConfig(tasks=10, agents=2, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize("kw", [
    dict(),
    dict(tokens_per_min=60_000.0, migration_cost=0.25, hard_share=0.3, deadline_share=0.6),
    dict(skill_share=0.3, skill_groups=3, demand=(("gpu", 0.2, 0.6),), concurrency=2),
])
def test_spec_chunks_equal_spec_one_at_a_time(kw: dict[str, object]) -> None:
    # The columnar builder (events.task_specs, compiled with the core) and spec(i) agree
    # on every field, across chunk boundaries.
    wl = generate(WorkloadConfig(tasks=700, agents=6, seed=3, **kw))  # type: ignore[arg-type]
    chunks = list(wl.spec_chunks(chunk=256))
    assert [len(c) for c in chunks] == [256, 256, 188]
    got = [s for c in chunks for s in c]
    assert got == [wl.spec(i) for i in range(wl.n)] == list(wl.specs(chunk=100))
    assert any(s.deadline is None for s in got) == (kw.get("deadline_share", 1.0) != 1.0)
