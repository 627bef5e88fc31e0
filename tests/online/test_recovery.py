"""Properties of the executor under faults, for every policy.

Every policy x {flaky agents, crashes with rejoin, bursts, mixed skills} runs
on the simulator (small workloads, so hypothesis stays fast):

- nothing is lost or duplicated (the simulator's own per-task accounting);
- recovery bound: after a flaky agent's breaker last opened (until time U),
  it goes half-open at U and gets a dispatch no later than the (1 + W)-th
  arrival from then on, W being the agents already half-open and waiting for
  their probe (probes go one per arrival, in the order agents went half-open;
  tests/online/helpers.probe_violations): half-open probes are part of the
  placement contract, whatever the policy;
- throttling: once every dispatch waits under target/2 (the load stayed
  under the limit), no task submitted `recovery_bound()` later is throttled;
- fairness: with every task eligible everywhere but split over skill-group
  queues, tenant service shares under saturation are within 10% (relative)
  of the weights, for wfq and cfs with and without stealing.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.online import (
    AdmissionConfig,
    BreakerConfig,
    Executor,
    TaskCompleted,
    make_policy,
    policy_names,
)
from allocator.online.events import BreakerClosed, Code, Defer, Dispatch, Reject
from allocator.online.simulator import Simulator
from allocator.online.workload import WorkloadConfig, generate
from models import Agent, Priority

from .helpers import probe_violations, submit

SCENARIOS = {
    "flaky": dict(flaky=2, flaky_p=0.9, flaky_until=40.0),
    "crash": dict(mtbf=60.0, mttr=10.0),
    "burst": dict(arrival="bursty", burst_factor=8.0, load=0.9),
    "skills": dict(skill_share=0.3, skill_groups=3),
}
BREAKER = BreakerConfig(window=6, min_calls=3, open_timeout=5.0, max_open_timeout=20.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(policy_names()), scenario=st.sampled_from(sorted(SCENARIOS)),
       seed=st.integers(0, 2**16), agents=st.integers(2, 6),
       throttle=st.booleans())
def test_every_policy_under_every_fault(policy: str, scenario: str, seed: int, agents: int,
                                        throttle: bool) -> None:
    cfg = WorkloadConfig(tasks=250, agents=agents, seed=seed, **SCENARIOS[scenario])
    wl = generate(cfg)
    adm = AdmissionConfig(throttle=True, target_wait=3.0) if throttle else None
    sim = Simulator(wl, policy, seed=seed, log=None, breaker=BREAKER, admission=adm)
    row = sim.run().row
    assert row["lost"] == 0 and row["duplicated"] == 0
    assert row["completed"] + row["rejected"] + row["failed"] == cfg.tasks
    if not throttle:  # (a throttled arrival is no probe)
        assert not probe_violations(sim.executor.log, wl.arrival.tolist(), wl.flaky), policy


@pytest.mark.parametrize("policy", policy_names())
def test_many_agents_recovering_at_once_are_probed_in_turn(policy: str) -> None:
    """Half of 16 agents fail every attempt until t=30: each arrival probes one of the
    half-open agents, in the order they went half-open (the stated bound), so none
    waits for more than the agents ahead of it."""
    wl = generate(WorkloadConfig(tasks=1500, agents=16, load=0.5, flaky=8, flaky_p=1.0,
                                 flaky_until=30.0, seed=1))
    sim = Simulator(wl, policy, seed=1, log=None, breaker=BREAKER, max_retries=5)
    row = sim.run().row
    assert row["lost"] == 0 and row["duplicated"] == 0
    assert not probe_violations(sim.executor.log, wl.arrival.tolist(), wl.flaky)
    # Once every breaker closed (t0), the recovered agents take work like the others:
    # dispatches from t0 on, at least a fifth of a healthy agent's mean (pareto sizes
    # make counts uneven: 0.27-2.3 of it over the policies here; a lost agent has 0).
    log = sim.executor.log
    t0 = max(e.time for e in log if isinstance(e, BreakerClosed))
    count = dict.fromkeys((a.id for a in wl.agents), 0)
    for e in log:
        if isinstance(e, Dispatch) and e.time >= t0:
            count[e.agent] += 1
    healthy = [v for k, v in count.items() if k not in wl.flaky]
    assert min(count[a] for a in wl.flaky) >= 0.2 * sum(healthy) / len(healthy), count


@pytest.mark.parametrize("policy", policy_names())
def test_recovered_agent_carries_its_share_under_every_placement(policy: str) -> None:
    """The issue's case: one of two agents fails every attempt until t=20."""
    wl = generate(WorkloadConfig(tasks=600, agents=2, load=0.7, speed_spread=0.0, skew=0.0,
                                 flaky=1, flaky_p=1.0, flaky_until=20.0, seed=3))
    row = Simulator(wl, policy, breaker=BREAKER, max_retries=10).run().row
    assert row["lost"] == 0 and row["duplicated"] == 0
    bad, good = row["per_agent"]
    assert bad["agent"] == "a0"
    # Healthy again for ~95% of the run: it does a fair part of the late work.
    assert bad["completed_last_quarter"] >= 0.3 * good["completed_last_quarter"], row["per_agent"]
    assert bad["busy_share"] > 0.3


@settings(max_examples=25, deadline=None)
@given(policy=st.sampled_from(policy_names()), burst=st.integers(10, 80),
       agents=st.integers(1, 4), prios=st.lists(st.sampled_from(list(Priority)), min_size=90,
                                                max_size=90))
def test_throttle_stops_once_load_stays_under_its_limit(
        policy: str, burst: int, agents: int, prios: list[Priority]) -> None:
    """A burst at t=0, then one task every 2 units (work 1): light load, waits < 1.

    With target_wait 4 the light phase is under the limit (every dispatch
    waits < 2 = target/2) from the dispatch of the last burst task (D) on, so
    nothing submitted after D + recovery_bound() may be throttled.
    """
    adm = AdmissionConfig(throttle=True, target_wait=4.0, adapt_interval=1.0, max_defers=0)
    ex = Executor(policy, agents=[Agent(id=f"a{i}") for i in range(agents)], admission=adm)
    events = [(0.0, f"b{k}", prios[k % 90]) for k in range(burst)]
    start = float(burst) / agents + 5.0
    events += [(start + 2.0 * k, f"n{k}", prios[k]) for k in range(90)]
    running: dict[str, tuple[str, float]] = {}  # task -> (agent, end)
    dispatched: dict[str, float] = {}
    throttled: list[tuple[str, float]] = []
    i = 0
    now = 0.0
    while i < len(events) or running:
        nxt_done = min((end for _, end in running.values()), default=float("inf"))
        nxt_arr = events[i][0] if i < len(events) else float("inf")
        now = min(nxt_done, nxt_arr)
        evs = []
        for tid, (ag, end) in list(running.items()):
            if end <= now:
                evs.append(TaskCompleted(task_id=tid, agent=ag, attempt=1, time=now))
                del running[tid]
        while i < len(events) and events[i][0] <= now:
            _, tid, pr = events[i]
            evs.append(submit(tid, time=now, priority=pr))
            i += 1
        for ins in ex.handle(*evs):
            if isinstance(ins, Dispatch):
                running[ins.task_id] = (ins.agent, now + 1.0)
                dispatched[ins.task_id] = now
            elif isinstance(ins, Reject | Defer) and ins.code is Code.THROTTLED:
                throttled.append((ins.task_id, now))
    d = max((t for tid, t in dispatched.items() if tid.startswith("b")), default=0.0)
    late = [(tid, t) for tid, t in throttled if t >= d + ex.admission.recovery_bound()]
    assert not late, (d, late[:3])


@settings(max_examples=8, deadline=None)
@given(policy=st.sampled_from(["wfq", "cfs", "wfq+stealing", "cfs+stealing"]),
       weights=st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0]), min_size=2, max_size=3),
       groups=st.integers(2, 4), seed=st.integers(0, 1000))
def test_tenant_shares_follow_weights_across_queues(policy: str, weights: list[float],
                                                    groups: int, seed: int) -> None:
    wl = generate(WorkloadConfig(tasks=4000, agents=6, load=4.0, tenants=len(weights),
                                 skill_groups=groups, sizes="exp", deadline_share=0.0,
                                 speed_spread=0.0, skew=0.0, seed=seed))
    pol = make_policy(policy, flow_weights={f"tenant{k}": w for k, w in enumerate(weights)})
    row = Simulator(wl, pol, seed=seed).run().row
    total = sum(weights)
    # Within 10 % (relative) of the weight's share. The error is the start-up (the
    # first tasks run before queues build up) over the saturated window: 4000 tasks
    # on 6 agents leave at most 4.4 % (40 random draws of this test's space; 3000
    # tasks on 16 agents up to 13.7 %, 12,000 on 16 at most 3.3 %). A fairness bug is
    # far larger (strict priority gives 45:0, per-queue accounting 35:5, not 10:30).
    for r in row["per_tenant"]:
        want = r["weight"] / total
        assert abs(r["service_share"] - want) <= 0.1 * want, row["per_tenant"]


@pytest.mark.parametrize("policy", ["priority", "priority+stealing"])
def test_class_weights_hold_across_queues(policy: str) -> None:
    """8:1 class weights over skill-group queues give 8:1 service, not strict priority."""
    from allocator.online import PriorityConfig

    wl = generate(WorkloadConfig(tasks=3000, agents=6, load=4.0, tenants=1, skill_groups=3,
                                 priorities=(0.0, 0.5, 0.0, 0.5), sizes="exp",
                                 deadline_share=0.0, speed_spread=0.0, skew=0.0, seed=1))
    cfg = PriorityConfig(weights={Priority.HIGH: 8.0, Priority.LOW: 1.0},
                         aging=dict.fromkeys(Priority, 1e9))
    row = Simulator(wl, make_policy(policy, priority=cfg)).run().row
    share = {r["class"]: r["service_share"] for r in row["per_class"]}
    assert share["high"] == pytest.approx(8 / 9, rel=0.1)
    assert share["low"] == pytest.approx(1 / 9, rel=0.1)
