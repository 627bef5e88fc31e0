"""Hypothesis: random workloads with random agent failures; nothing lost or duplicated.

The driver here is deliberately adversarial and independent of the simulator:
it completes, fails, or never answers (agent crash) attempts in random order,
sends stale results for old attempts, cancels tasks, makes agents leave and
rejoin, and installs random plans. It counts terminal instructions per task
itself.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.online import (
    AgentFailed,
    AgentJoined,
    AgentLeft,
    Executor,
    PlanInstalled,
    Shutdown,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSpec,
    TaskSubmitted,
    Tick,
    policy_names,
)
from allocator.online.admission import AdmissionConfig
from allocator.online.events import TERMINAL, Cancel, Dispatch, Retry
from allocator.online.state import QUEUED
from models import Agent, Assignment, Plan, PlanStatus, Priority

AGENTS = ["a0", "a1", "a2", "a3"]

op = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 3), st.sampled_from(list(Priority)),
              st.booleans(), st.booleans()),
    st.tuples(st.just("complete"), st.integers(0, 50)),
    st.tuples(st.just("fail"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("stale"), st.integers(0, 50)),
    st.tuples(st.just("crash"), st.sampled_from(AGENTS)),
    st.tuples(st.just("leave"), st.sampled_from(AGENTS)),
    st.tuples(st.just("join"), st.sampled_from(AGENTS)),
    st.tuples(st.just("cancel"), st.integers(0, 80)),
    st.tuples(st.just("plan"), st.integers(0, 1000)),
    st.tuples(st.just("tick"),),
)


def queued_tasks_by_class(ex: Executor) -> list[int]:
    """What is really waiting, per class: every task sitting in some queue of the executor."""
    queues: list[Any] = [p.queue for p in ex._pools.values()]
    for a in ex.agents.values():
        queues += [a.queue, a.planned]
    seen: dict[str, Any] = {}
    for q in queues:
        for t in q:
            assert t.id not in seen, f"{t.id} sits in two queues"
            seen[t.id] = t
    live_queued = {t.id for t in ex.tasks.values() if t.phase == QUEUED}
    assert set(seen) <= live_queued, "a queue holds a task that is not queued"
    counts = [0, 0, 0, 0]
    for tid in live_queued:
        counts[ex.tasks[tid].spec.priority.rank] += 1
    return counts


def check_counts(ex: Executor) -> None:
    """The per-class queued counts admission caps read equal the tasks actually queued."""
    assert ex._queued_by_class == queued_tasks_by_class(ex)


#: Low-class cap of 1 (deferrals and rejections on the queue cap), or no caps (fast path).
CAPS = [None, AdmissionConfig(class_caps={Priority.LOW: 1, Priority.NORMAL: 3},
                              max_defers=2, defer_delay=0.5)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(policy_names()), ops=st.lists(op, min_size=1, max_size=120),
       seed=st.integers(0, 2**16), drain_by_running=st.booleans(),
       admission=st.sampled_from(CAPS))
def test_no_task_lost_or_duplicated(policy: str, ops: list[tuple[Any, ...]], seed: int,
                                    drain_by_running: bool,
                                    admission: AdmissionConfig | None) -> None:
    ex = Executor(policy, seed=seed, max_retries=2, admission=admission,
                  agents=[Agent(id=a, concurrency=1 + i % 2, skills=["gpu"] if i < 2 else [])
                          for i, a in enumerate(AGENTS)])
    ends: dict[str, int] = {}
    retries = 0
    running: dict[tuple[str, int], str] = {}  # (task, attempt) -> agent
    old: list[tuple[str, str, int]] = []
    submitted: list[str] = []
    now = 0.0

    def apply(out: list[Any]) -> None:
        nonlocal retries
        for ins in out:
            if isinstance(ins, Retry):
                retries += 1
            if isinstance(ins, Dispatch):
                running[(ins.task_id, ins.attempt)] = ins.agent
            elif isinstance(ins, Cancel):
                running.pop((ins.task_id, ins.attempt), None)
            elif isinstance(ins, TERMINAL):
                ends[ins.task_id] = ends.get(ins.task_id, 0) + 1
        check_counts(ex)

    def pick(k: int) -> tuple[tuple[str, int], str] | None:
        if not running:
            return None
        key = sorted(running)[k % len(running)]
        return key, running.pop(key)

    for o in ops:
        now += 0.25
        kind = o[0]
        if kind == "submit":
            tid = f"t{len(submitted)}"
            submitted.append(tid)
            _, home, prio, gpu, deadline = o
            spec = TaskSpec(tid, work=1.0 + home, priority=prio, home=AGENTS[home],
                            skills=("gpu",) if gpu else (), tenant=f"x{home % 2}",
                            deadline=now + 3 if deadline else None,
                            hard_deadline=deadline and home == 3)
            apply(ex.handle(TaskSubmitted(task=spec, time=now)))
        elif kind in ("complete", "fail"):
            hit = pick(o[1])
            if hit:
                (tid, att), ag = hit
                old.append((tid, ag, att))
                ev = (TaskCompleted(task_id=tid, agent=ag, attempt=att, time=now)
                      if kind == "complete" else
                      TaskFailed(task_id=tid, agent=ag, attempt=att, time=now,
                                 retryable=o[2]))
                apply(ex.handle(ev))
        elif kind == "stale" and old:
            tid, ag, att = old[o[1] % len(old)]
            apply(ex.handle(TaskCompleted(task_id=tid, agent=ag, attempt=att, time=now)))
        elif kind == "crash":
            for key in [k for k, v in running.items() if v == o[1]]:
                old.append((key[0], o[1], key[1]))
                del running[key]  # a crashed agent never answers
            apply(ex.handle(AgentFailed(agent_id=o[1], time=now)))
        elif kind == "leave":
            apply(ex.handle(AgentLeft(agent_id=o[1], time=now)))
        elif kind == "join":
            i = AGENTS.index(o[1])
            apply(ex.handle(AgentJoined(agent=Agent(id=o[1], concurrency=1 + i % 2,
                                                    skills=["gpu"] if i < 2 else []),
                                        time=now)))
        elif kind == "cancel" and submitted:
            apply(ex.handle(TaskCancelled(task_id=submitted[o[1] % len(submitted)],
                                          time=now)))
        elif kind == "plan":
            live = sorted(ex.tasks)
            asg = [Assignment(task=t, agent=AGENTS[(o[1] + k) % 4], start=now + k, end=now + k)
                   for k, t in enumerate(live)]
            apply(ex.handle(PlanInstalled(plan=Plan(status=PlanStatus.FEASIBLE, solver="test",
                                                    assignments=asg), time=now)))
        else:
            apply(ex.handle(Tick(time=now)))

    # Finish: either run everything to completion, or shut down and return the rest.
    if drain_by_running:
        for a in AGENTS:
            apply(ex.handle(AgentJoined(agent=Agent(id=a, concurrency=2, skills=["gpu"]),
                                        time=now)))
        for _ in range(500):
            if not running:
                break
            now += 1.0
            (tid, att), ag = pick(0)  # type: ignore[misc]
            apply(ex.handle(TaskCompleted(task_id=tid, agent=ag, attempt=att, time=now)))
    apply(ex.handle(Shutdown(drain=False, cancel_running=True, time=now + 1)))

    assert ex.live() == 0
    assert sorted(ends) == sorted(submitted), "a task was lost"
    assert all(c == 1 for c in ends.values()), "a task ended twice"
    m = ex.metrics
    assert m.completed + m.rejected + m.failed == len(submitted)
    assert m.retries == retries, "each Retry instruction is counted once in the metrics"
    assert ex._queued_by_class == [0, 0, 0, 0]
